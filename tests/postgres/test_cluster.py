"""The embedded cluster: start, reuse, PL/Python with the venv's packages, stop."""

from __future__ import annotations

import json
import os
import socket
import sysconfig
from pathlib import Path

import psycopg2
import pytest
import sklearn

from udfs.errors import ConfigError
from udfs.postgres.client.cluster import LocalCluster, find_binaries, postgres_can_read


def fetch_one(dsn: str, query: str, *params: object) -> object:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.postgres
def test_up_returns_a_working_dsn(pg_dsn: str) -> None:
    assert fetch_one(pg_dsn, "select version()").startswith("PostgreSQL 15.")
    assert fetch_one(pg_dsn, "show listen_addresses") == "127.0.0.1"


@pytest.mark.postgres
def test_up_is_idempotent(pg_cluster: LocalCluster, pg_dsn: str) -> None:
    pid = pg_cluster.status()["pid"]
    assert pg_cluster.up() == pg_dsn
    # A second object on the same root (as a second CLI call would make) finds the same server.
    again = LocalCluster(pg_cluster.root)
    assert again.up() == pg_dsn
    assert again.status()["pid"] == pid


@pytest.mark.postgres
def test_status_reports_running(pg_cluster: LocalCluster, pg_dsn: str) -> None:
    status = pg_cluster.status()
    assert status["running"] is True
    assert status["dsn"] == pg_dsn
    assert pg_dsn.endswith(f":{status['port']}/postgres")
    assert isinstance(status["pid"], int)
    assert Path(status["data_dir"], "PG_VERSION").read_text().strip() == "15"


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="only root's temp dirs are closed to the server")
def test_unreachable_root_falls_back_to_tmp(pg_cluster: LocalCluster) -> None:
    # pytest's temp dirs under root are mode 700, so the postgres user cannot enter them.
    assert not postgres_can_read(pg_cluster.root)
    assert pg_cluster.data_dir.parent.name.startswith("udfs-pg-")
    assert json.loads(pg_cluster.state_file.read_text())["base"] == str(pg_cluster.base)


@pytest.mark.postgres
def test_plpython_imports_the_venv_packages(pg_db: str) -> None:
    site_packages = sysconfig.get_paths()["purelib"]
    assert postgres_can_read(Path(site_packages))
    conn = psycopg2.connect(pg_db)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION plpython3u")
            cur.execute(
                """
                CREATE FUNCTION sklearn_version(site_packages text) RETURNS text AS $$
                import sys
                sys.path.insert(0, site_packages)
                import numpy, sklearn
                return sklearn.__version__
                $$ LANGUAGE plpython3u
                """
            )
            cur.execute("select sklearn_version(%s)", (site_packages,))
            assert cur.fetchone()[0] == sklearn.__version__
    finally:
        conn.close()


@pytest.mark.postgres
def test_server_environment_limits_blas_threads(pg_db: str) -> None:
    conn = psycopg2.connect(pg_db)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
            cur.execute(
                """
                CREATE FUNCTION server_env(name text) RETURNS text AS $$
                import os
                return os.environ.get(name)
                $$ LANGUAGE plpython3u
                """
            )
            cur.execute("select server_env('OPENBLAS_NUM_THREADS'), server_env('PYTHONPATH')")
            assert cur.fetchone() == ("1", None)
    finally:
        conn.close()


@pytest.mark.postgres
def test_down_stops_and_up_moves_off_a_taken_port(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "pg")
    try:
        first = cluster.up()
        cluster.down()
        assert cluster.status()["running"] is False
        cluster.down()  # stopping a stopped cluster is fine
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", cluster.status()["port"]))
            squatter.listen()
            second = cluster.up()
        assert second != first
        assert fetch_one(second, "select 1") == 1
    finally:
        cluster.destroy()
    assert not cluster.status()["running"]


def test_missing_binaries_point_to_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDFS_PG_BIN", str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"missing: initdb, pg_ctl, postgres\. Run scripts/setup\.sh"
    ):
        find_binaries()
