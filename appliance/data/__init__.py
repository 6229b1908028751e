"""Data in: contract-checked ingestion, quarantine, versioned snapshots."""
