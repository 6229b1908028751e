"""Monitoring: drift, data quality and performance of a served model, per event-time window."""
