"""Alerting: rules over monitoring results, one open alert per rule and target, and the actions
they take (log, webhook, retrain) — the retrain action closes the loop back to training."""
