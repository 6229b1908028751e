"""The model registry: immutable versions, the production and candidate aliases, and the audit log."""

from appliance.registry.registry import AuditEntry, ModelSummary, ModelVersion, Registry

__all__ = ["AuditEntry", "ModelSummary", "ModelVersion", "Registry"]
