"""Registry: immutable versions, aliases, promotion and rollback as single transactions, the audit log."""

from __future__ import annotations

import multiprocessing
import sqlite3
from itertools import pairwise

import pytest

from appliance.errors import Conflict, NotFound
from appliance.registry import Registry
from storage.database import connect
from storage.metadata_schema import MIGRATIONS


def _registry(path) -> Registry:
    return Registry(connect(path, MIGRATIONS))


def _add_versions(reg: Registry, count: int, status: str = "registered") -> None:
    reg.conn.execute(
        "INSERT OR IGNORE INTO runs (id, model, kind, status, started_at) "
        "VALUES ('r1', 'fraud', 'train', 'succeeded', 0)"
    )
    for _ in range(count):
        reg.register_version(
            "fraud",
            status=status,
            artifact_sha256="0" * 64,
            feature_schema={},
            metrics={"auc": 0.9},
            params={},
            gate_report={"passed": status == "registered"},
            data_version="d",
            code_version="c",
            run_id="r1",
        )


@pytest.fixture
def reg(tmp_path) -> Registry:
    r = _registry(tmp_path / "metadata.db")
    r.add_model("fraud", "/spec.toml")
    return r


def test_versions_number_up_and_a_passing_one_becomes_candidate(reg):
    _add_versions(reg, 3)
    assert [v.version for v in reg.versions("fraud")] == [1, 2, 3]
    assert reg.alias("fraud", "candidate") == 3
    assert reg.alias("fraud", "production") is None


def test_promote_then_rollback_walks_back_through_production_history(reg):
    _add_versions(reg, 3)
    reg.promote("fraud", 1)
    reg.promote("fraud", 2)
    reg.promote("fraud", 3)
    assert reg.alias("fraud", "candidate") is None  # promoting the candidate clears the alias
    assert reg.rollback("fraud").version == 2
    assert reg.rollback("fraud").version == 1
    with pytest.raises(Conflict, match="no earlier production version"):
        reg.rollback("fraud")
    assert reg.alias("fraud", "production") == 1
    actions = [(e.action, e.version) for e in reg.audit_log("fraud")][:5]
    assert actions == [("rollback", 1), ("rollback", 2), ("promote", 3), ("promote", 2), ("promote", 1)]


def test_rollback_after_repromoting_returns_to_what_served_just_before(reg):
    _add_versions(reg, 2)
    reg.promote("fraud", 1)
    reg.promote("fraud", 2)
    reg.promote("fraud", 1)
    assert reg.rollback("fraud").version == 2


def test_rejected_versions_cannot_be_promoted(reg):
    _add_versions(reg, 1, status="rejected")
    assert reg.alias("fraud", "candidate") is None
    with pytest.raises(Conflict, match="failed its validation gates"):
        reg.promote("fraud", 1)
    assert reg.alias("fraud", "production") is None


def test_unknown_model_and_version_are_not_found(reg):
    with pytest.raises(NotFound, match=r"unknown model 'nope'.*fraud"):
        reg.promote("nope", 1)
    with pytest.raises(NotFound, match="no version 7"):
        reg.promote("fraud", 7)
    with pytest.raises(Conflict, match="no production version"):
        reg.rollback("fraud")


def test_promoting_the_production_version_again_is_refused(reg):
    _add_versions(reg, 1)
    reg.promote("fraud", 1)
    with pytest.raises(Conflict, match="already in production"):
        reg.promote("fraud", 1)


def test_versions_and_audit_log_cannot_be_changed(reg):
    _add_versions(reg, 1)
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        reg.conn.execute("UPDATE model_versions SET status = 'rejected'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        reg.conn.execute("DELETE FROM audit_log")


def test_a_failed_promotion_changes_nothing(reg):
    _add_versions(reg, 2)
    reg.promote("fraud", 1)
    before = (reg.alias("fraud", "production"), len(reg.audit_log("fraud")))
    with pytest.raises(NotFound):
        reg.promote("fraud", 9)
    assert (reg.alias("fraud", "production"), len(reg.audit_log("fraud"))) == before


def _promote_many(path: str, versions: list[int], rounds: int) -> None:
    reg = _registry(path)
    for _ in range(rounds):
        for v in versions:
            try:
                reg.promote("fraud", v, actor=f"proc-{versions[0]}")
            except Conflict:
                pass  # the other process got there first: it is already production


def test_concurrent_promotions_from_two_processes_stay_consistent(tmp_path):
    path = tmp_path / "metadata.db"
    reg = _registry(path)
    reg.add_model("fraud", "/spec.toml")
    _add_versions(reg, 4)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_promote_many, args=(str(path), vs, 25)) for vs in ([1, 2], [3, 4])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    promotions = reg.conn.execute("SELECT version FROM promotions ORDER BY id").fetchall()
    audited = [e for e in reg.audit_log("fraud", limit=1000) if e.action == "promote"]
    assert len(promotions) == len(audited) > 0
    # every promotion moved production away from the version before it, and the alias is the last one
    versions = [r[0] for r in promotions]
    assert all(a != b for a, b in pairwise(versions))
    assert reg.alias("fraud", "production") == versions[-1]
    assert [e.detail["from"] for e in reversed(audited)] == [None, *versions[:-1]]
