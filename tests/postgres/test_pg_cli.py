"""`udfs pg ...` against the session cluster (--dsn) and the embedded-cluster commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.fixtures.models import scoring_rows
from tests.fixtures.postgres import Db, create_customers
from udfs.cli import cli
from udfs.errors import ConfigError
from udfs.postgres.client.connect import resolve_dsn

pytestmark = pytest.mark.postgres


def udfs_pg(*args: str) -> str:
    result = CliRunner().invoke(cli, ["pg", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_install_deploy_score_rollback(pg_db: str, model_store) -> None:
    from udfs.postgres.client.install import SCHEMA_VERSION

    installed = udfs_pg("install", "--dsn", pg_db)
    assert f"installed ml schema {SCHEMA_VERSION}: PL/Python 3.11" in installed
    store = ["--store", str(model_store), "--dsn", pg_db]
    assert udfs_pg("deploy", "churn@1", *store).strip() == "deployed churn@1"
    db = Db(pg_db)
    try:
        create_customers(db, "customers", scoring_rows())
        out = udfs_pg("score", "churn", "--table", "customers", "--into", "scored", "--dsn", pg_db)
        assert "wrote 24 rows to scored" in out
        # Row 4 has a NULL 'active', which churn cannot predict through: NULL, per the policy.
        assert db.rows("SELECT count(*), count(prediction) FROM scored") == [(24, 23)]
    finally:
        db.close()
    result = CliRunner().invoke(cli, ["pg", "rollback", "churn", "--dsn", pg_db])
    assert result.exit_code != 0 and "no earlier deployment" in str(result.exception)


def test_status_of_a_stopped_cluster(tmp_path) -> None:
    assert udfs_pg("status", "--root", str(tmp_path)).startswith("stopped")


def test_dsn_resolution(tmp_path, monkeypatch) -> None:
    for name in ("PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_dsn("postgresql://x@h/db", tmp_path) == "postgresql://x@h/db"
    with pytest.raises(ConfigError, match="Start it with `udfs pg up`"):
        resolve_dsn(None, tmp_path)
    monkeypatch.setenv("PGHOST", "db.example")
    assert resolve_dsn(None, tmp_path) == ""
