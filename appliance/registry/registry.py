"""Registry operations over metadata.db. Promotion and rollback are one transaction each."""

from __future__ import annotations

import json
import sqlite3
import time

import msgspec

from appliance.errors import Conflict, InvalidInput, NotFound
from storage.database import MAX_INTEGER, transaction


class ModelVersion(msgspec.Struct, frozen=True):
    model: str
    version: int
    status: str  # registered | rejected (failed its gates)
    artifact_sha256: str
    feature_schema: dict
    metrics: dict
    params: dict
    gate_report: dict
    data_version: str
    code_version: str
    run_id: str
    created_at: float


class EndedDeployment(msgspec.Struct, frozen=True):
    """A deployment a rollback ended: its candidate or its baseline no longer serves as it assumed."""

    id: int
    strategy: str
    candidate_version: int
    status: str  # aborted, or rolled_back where a blue-green abort switched back
    reason: str


class RolledBack(ModelVersion, frozen=True, kw_only=True):
    """A rollback's answer: the version now in production, the one it replaced, and the running deployment it
    ended (None when none ran)."""

    rolled_back_from: int
    ended_deployment: EndedDeployment | None = None


class ModelSummary(msgspec.Struct, frozen=True):
    name: str
    spec_path: str
    production: int | None
    candidate: int | None
    versions: int


class AuditEntry(msgspec.Struct, frozen=True):
    id: int
    at: float
    actor: str
    action: str
    model: str | None
    version: int | None
    detail: dict


class Registry:
    """Reads and writes the registry tables of one metadata database."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # -- models ---------------------------------------------------------------------------------

    def add_model(self, name: str, spec_path: str, actor: str = "system") -> bool:
        """Register a model name with its spec file; returns False if it was already there."""
        with transaction(self.conn):
            row = self.conn.execute("SELECT spec_path FROM models WHERE name = ?", (name,)).fetchone()
            if row:
                if row[0] != spec_path:
                    self.conn.execute("UPDATE models SET spec_path = ? WHERE name = ?", (spec_path, name))
                    self._audit(actor, "spec_moved", name, None, {"from": row[0], "to": spec_path})
                return False
            self.conn.execute(
                "INSERT INTO models (name, spec_path, created_at) VALUES (?, ?, ?)", (name, spec_path, time.time())
            )
            self._audit(actor, "model_added", name, None, {"spec_path": spec_path})
        return True

    def models(self) -> list[ModelSummary]:
        """Every model with its aliases and version count."""
        rows = self.conn.execute("""
            SELECT m.name, m.spec_path,
                   (SELECT version FROM aliases WHERE model = m.name AND alias = 'production') AS production,
                   (SELECT version FROM aliases WHERE model = m.name AND alias = 'candidate') AS candidate,
                   (SELECT COUNT(*) FROM model_versions WHERE model = m.name) AS versions
            FROM models m ORDER BY m.name""")
        return [ModelSummary(**dict(r)) for r in rows]

    def model(self, name: str) -> ModelSummary:
        """One model's summary; an unknown name is NotFound listing the known ones."""
        for summary in self.models():
            if summary.name == name:
                return summary
        known = ", ".join(m.name for m in self.models()) or "none yet — run `appliance init`"
        raise NotFound(f"unknown model '{name}' (known: {known})")

    # -- versions -------------------------------------------------------------------------------

    def register_version(
        self,
        model: str,
        *,
        status: str,
        artifact_sha256: str,
        feature_schema: dict,
        metrics: dict,
        params: dict,
        gate_report: dict,
        data_version: str,
        code_version: str,
        run_id: str,
        actor: str = "training",
        audit_detail: dict | None = None,
    ) -> ModelVersion:
        """Add the next immutable version of a model; a passing one also becomes the candidate.
        ``audit_detail`` adds to the audit entry (where an outside model came from, and why)."""
        self.model(model)
        with transaction(self.conn):
            version = self.conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model = ?", (model,)
            ).fetchone()[0]
            now = time.time()
            self.conn.execute(
                """INSERT INTO model_versions (model, version, status, artifact_sha256, feature_schema_json,
                   metrics_json, params_json, gate_report_json, data_version, code_version, run_id, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    model,
                    version,
                    status,
                    artifact_sha256,
                    json.dumps(feature_schema),
                    json.dumps(metrics),
                    json.dumps(params),
                    json.dumps(gate_report),
                    data_version,
                    code_version,
                    run_id,
                    now,
                ),
            )
            self._audit(
                actor,
                "version_registered",
                model,
                version,
                {"status": status, "artifact": artifact_sha256, "run_id": run_id, **(audit_detail or {})},
            )
            if status == "registered":
                self._set_alias(model, "candidate", version, now)
        return self.version(model, version)

    def version(self, model: str, version: int) -> ModelVersion:
        """One version; unknown ones are NotFound."""
        row = (
            self.conn.execute(
                "SELECT * FROM model_versions WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
            if 0 < version <= MAX_INTEGER
            else None
        )
        if row is None:
            self.model(model)
            raise NotFound(f"model '{model}' has no version {version}; see `appliance models`")
        return _version(row)

    def versions(self, model: str) -> list[ModelVersion]:
        """All versions of a model, oldest first."""
        self.model(model)
        rows = self.conn.execute("SELECT * FROM model_versions WHERE model = ? ORDER BY version", (model,))
        return [_version(r) for r in rows]

    def alias(self, model: str, alias: str) -> int | None:
        """The version an alias points at, or None."""
        row = self.conn.execute("SELECT version FROM aliases WHERE model = ? AND alias = ?", (model, alias)).fetchone()
        return row[0] if row else None

    def production_versions(self) -> dict[str, int]:
        """Model name → production version, for every model that has one (one cheap query)."""
        rows = self.conn.execute("SELECT model, version FROM aliases WHERE alias = 'production'")
        return {r[0]: r[1] for r in rows}

    # -- promotion and rollback -----------------------------------------------------------------

    def promote(
        self, model: str, version: int, actor: str = "cli", reason: str = "", override: bool = False
    ) -> ModelVersion:
        """Point production at a version, in one transaction; a rejected version only with an override and a reason."""
        if override and not reason.strip():
            raise InvalidInput("an override needs a reason: add --reason '...' (it goes into the audit log)")
        with transaction(self.conn):
            target = self.version(model, version)
            failed = [c["name"] for c in target.gate_report.get("checks", []) if not c["passed"]]
            if target.status != "registered" and not override:
                raise Conflict(
                    f"model '{model}' version {version} failed its validation gates ({', '.join(failed)}) and "
                    f"cannot be promoted; see its gate report with `appliance models {model}`, or promote it "
                    "anyway with --override --reason '...'"
                )
            current = self.alias(model, "production")
            if current == version:
                raise Conflict(f"model '{model}' version {version} is already in production")
            now = time.time()
            self._set_alias(model, "production", version, now)
            if self.alias(model, "candidate") == version:
                self.conn.execute("DELETE FROM aliases WHERE model = ? AND alias = 'candidate'", (model,))
            self.conn.execute(
                "INSERT INTO promotions (model, version, promoted_at) VALUES (?, ?, ?)", (model, version, now)
            )
            if target.status == "registered":
                self._audit(actor, "promote", model, version, {"from": current, "reason": reason})
            else:
                self._audit(
                    actor,
                    "promote_override",
                    model,
                    version,
                    {"from": current, "reason": reason, "failed_gates": failed},
                )
        return target

    def rollback(
        self, model: str, actor: str = "cli", reason: str = "", ends_deployment: tuple[str, str] | None = None
    ) -> RolledBack:
        """Return production to the version that served before the current one, in one transaction.

        A deployment running for the model ends in the same transaction, as ``ends_deployment`` (status, reason)
        says, by default aborted because it was rolled back: production no longer serves the version it was
        started against (or, switched blue-green, its candidate), so neither its advance nor its abort would
        do what it says, and a new deployment could not start beside it."""
        with transaction(self.conn):
            self.model(model)
            live = self.conn.execute(
                "SELECT id, version FROM promotions WHERE model = ? AND rolled_back_at IS NULL "
                "ORDER BY id DESC LIMIT 2",
                (model,),
            ).fetchall()
            if not live:
                raise Conflict(f"model '{model}' has no production version to roll back")
            if len(live) < 2:
                raise Conflict(
                    f"model '{model}' has no earlier production version to roll back to "
                    f"(version {live[0]['version']} is the first)"
                )
            now = time.time()
            self.conn.execute("UPDATE promotions SET rolled_back_at = ? WHERE id = ?", (now, live[0]["id"]))
            previous = live[1]["version"]
            self._set_alias(model, "production", previous, now)
            self._audit(actor, "rollback", model, previous, {"from": live[0]["version"], "reason": reason})
            status, why = ends_deployment or ("aborted", "rolled back" + (f": {reason}" if reason else ""))
            ended = self.conn.execute(
                "UPDATE deployments SET status = ?, ended_at = ?, reason = ?, traffic_percent = 0 "
                "WHERE model = ? AND status = 'running' RETURNING id, strategy, candidate_version, status, reason",
                (status, now, why, model),
            ).fetchone()
            if ended:
                self._audit(
                    actor,
                    f"deployment_{status}",
                    model,
                    ended["candidate_version"],
                    {"deployment": ended["id"], "strategy": ended["strategy"], "reason": why},
                )
        return RolledBack(
            **msgspec.structs.asdict(self.version(model, previous)),
            rolled_back_from=live[0]["version"],
            ended_deployment=EndedDeployment(**dict(ended)) if ended else None,
        )

    # -- audit ----------------------------------------------------------------------------------

    def audit_log(self, model: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest audit entries first, optionally for one model."""
        sql = "SELECT * FROM audit_log" + (" WHERE model = ?" if model else "") + " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(sql, (model, limit) if model else (limit,))
        return [_audit_entry(r) for r in rows]

    def production_history(self, model: str) -> list[AuditEntry]:
        """Each change of the model's production version, oldest first: a promotion (or an override) names the
        version it put in production, a rollback the version it returned to."""
        self.model(model)
        rows = self.conn.execute(
            "SELECT * FROM audit_log WHERE model = ? AND action IN ('promote', 'promote_override', 'rollback') "
            "ORDER BY id",
            (model,),
        )
        return [_audit_entry(r) for r in rows]

    def audit(self, actor: str, action: str, model: str | None, version: int | None, detail: dict) -> None:
        """Append an audit entry; call it inside the transaction of the change it records."""
        self._audit(actor, action, model, version, detail)

    def _audit(self, actor: str, action: str, model: str | None, version: int | None, detail: dict) -> None:
        self.conn.execute(
            "INSERT INTO audit_log (at, actor, action, model, version, detail_json) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, model, version, json.dumps(detail)),
        )

    def _set_alias(self, model: str, alias: str, version: int, now: float) -> None:
        self.conn.execute(
            "INSERT INTO aliases (model, alias, version, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (model, alias, version, now),
        )


def _version(row: sqlite3.Row) -> ModelVersion:
    data = dict(row)
    for key in ("feature_schema", "metrics", "params", "gate_report"):
        data[key] = json.loads(data.pop(f"{key}_json"))
    return ModelVersion(**data)


def _audit_entry(row: sqlite3.Row) -> AuditEntry:
    data = dict(row)
    data["detail"] = json.loads(data.pop("detail_json"))
    return AuditEntry(**data)
