"""ml.drift on a real cluster: the shifted feature only, the core's numbers, profiles, rights."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from tests.core.test_drift import drift_rows, reference, verdicts
from tests.fixtures.postgres import Db, create_customers, role_db
from udfs.drift import COLUMNS
from udfs.postgres.client.deploy import deploy
from udfs.profile import PREDICTION

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tables(db: Db) -> dict:
    """``drift_shifted`` (age 15 years older) and ``drift_same``, drawn as training was."""
    frames = {"drift_shifted": drift_rows(), "drift_same": drift_rows(shift=0)}
    for table, frame in frames.items():
        create_customers(db, table, frame)
        db.run(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return frames


def drift(db: Db, model: str, table: str) -> list[tuple]:
    return db.rows("SELECT * FROM ml.drift(%s, %s)", model, table)


@pytest.mark.parametrize("model", ["churn", "spend", "segment"])
def test_only_the_shifted_feature_drifts_and_numbers_equal_the_core(
    db: Db, tables, model_store, model: str
) -> None:
    with db.conn.cursor() as cur:
        cur.execute("SET udfs.batch_chunk_rows = 300")  # several chunks
        cur.execute("SELECT * FROM ml.drift(%s, 'drift_shifted')", (model,))
        got = cur.fetchall()
        cur.execute("RESET udfs.batch_chunk_rows")
    assert got == reference(model_store, model, tables["drift_shifted"])
    assert [r[0] for r in got] == ["age", "tenure", "plan", "active", PREDICTION]
    assert {f for f, v in verdicts(got).items() if v != "stable"} - {PREDICTION} == {"age"}
    assert verdicts(got)["age"] == "drifted"
    assert set(verdicts(drift(db, model, "drift_same")).values()) == {"stable"}


def test_result_columns(db: Db, tables) -> None:
    with db.conn.cursor() as cur:
        cur.execute("SELECT * FROM ml.drift('plain', 'drift_same') LIMIT 0")
        names = [c.name for c in cur.description]
    assert tuple(names) == COLUMNS


def test_missing_or_foreign_profile(db: Db, tables, model_store) -> None:
    """A version uploaded without a profile says to re-save it; a profile of another model
    is refused; deploying again from the store fills the profile in."""
    baseline = drift(db, "plain", "drift_same")
    try:
        db.run("UPDATE ml.models SET profile = NULL WHERE name = 'plain'")
        with pytest.raises(
            psycopg2.Error,
            match=r"model 'plain' v1 has no training profile in "
            r"this database.*Re-save it with udfs.save_model",
        ):
            drift(db, "plain", "drift_same")
        deploy(db.conn, "plain", store=model_store)
        assert drift(db, "plain", "drift_same") == baseline
        db.run(
            "UPDATE ml.models SET profile = jsonb_set(profile, '{model_sha256}', %s) "
            "WHERE name = 'plain'",
            '"' + "0" * 64 + '"',
        )
        with pytest.raises(psycopg2.Error, match="belongs to another model"):
            drift(db, "plain", "drift_same")
    finally:
        db.run("UPDATE ml.models SET profile = NULL WHERE name = 'plain'")
        deploy(db.conn, "plain", store=model_store)
    assert drift(db, "plain", "drift_same") == baseline


def test_runs_as_the_caller(ml_dsn: str, db: Db, tables) -> None:
    """An ml_user checks only the tables it may read; it never reads ml.models itself."""
    analyst = role_db(ml_dsn, db, "udfs_drift_analyst", "ml_user")
    try:
        with pytest.raises(psycopg2.Error, match="permission denied for table drift_same"):
            drift(analyst, "churn", "drift_same")
        db.run("GRANT SELECT ON drift_same TO udfs_drift_analyst")
        assert drift(analyst, "churn", "drift_same") == drift(db, "churn", "drift_same")
        with pytest.raises(psycopg2.Error, match="permission denied for table models"):
            analyst.rows("SELECT profile FROM ml.models")
    finally:
        analyst.close()
        db.run("REVOKE ALL ON drift_same FROM udfs_drift_analyst")
    prosecdef = db.one("SELECT prosecdef FROM pg_proc WHERE oid = 'ml.drift'::regproc")
    assert prosecdef is False
