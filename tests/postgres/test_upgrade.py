"""`udfs pg install` over the schema of an earlier release upgrades it in place.

The earlier release is a real one: its ``install.sql`` and its ``udfs`` package come from git
history (the last commit before the client/server split), its kernels are compiled from its own
source, and its backends import its code. It deploys models, attaches triggers and records
errors; then this release's install upgrades the database, and everything still scores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.fixtures.models import expected, scoring_rows
from tests.fixtures.postgres import Db, assert_same, create_customers, python_rows
from udfs.postgres.client.deploy import deploy
from udfs.postgres.client.install import SCHEMA_VERSION, install, python_paths

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# The last commit whose schema had no recorded version (postgres/install.sql, udfs.postgres.runtime).
EARLIER = "0073be5dba80177b280e813c0b161c3dd52c2c24"


def _git(*args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({done.stderr.decode().strip()}): the upgrade test "
            "needs the project's history (a full clone, not a shallow one)"
        )
    return done.stdout


@pytest.fixture(scope="module")
def earlier_release() -> Iterator[tuple[str, Path]]:
    """The earlier release's install.sql and a directory holding its ``udfs`` package.

    The directory is outside pytest's (private) temporary tree: the server's OS user reads it.
    """
    commit = _git("rev-parse", "--verify", f"{EARLIER}^{{commit}}").decode().strip()
    root = Path(tempfile.mkdtemp(prefix="udfs-earlier-"))
    try:
        archive = _git("archive", "--format=tar", commit, "udfs")
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        _compile_kernels(root / "udfs" / "plan")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        yield _git("show", f"{commit}:postgres/install.sql").decode(), root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _compile_kernels(plan_dir: Path) -> None:
    """The earlier release's C kernels, built from its own source as its pyproject builds them."""
    target = plan_dir / f"_kernels{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            *("cc", "-shared", "-fPIC", "-O2", "-ffp-contract=off", "-fno-strict-aliasing"),
            *(f"-I{include}", str(plan_dir / "_kernels.c"), "-o", str(target)),
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def upgraded(pg_db: str, earlier_release, model_store, trained) -> dict:
    """A database set up by the earlier release, then upgraded by this one."""
    install_sql, code = earlier_release
    rows = scoring_rows()
    old = Db(pg_db)
    try:
        old.run(install_sql)
        paths = [str(code), *python_paths()[:2]]  # its udfs first, then this env's libraries
        old.run("INSERT INTO ml.settings VALUES ('sys_path', %s)", json.dumps(paths))
        old.run("INSERT INTO ml.settings VALUES ('errors_keep_values', 'on')")
        for name in ("spend", "churn", "segment"):
            deploy(old.conn, name, store=model_store)
        assert "udfs-earlier-" in old.one("SELECT ml.runtime_info()->>'udfs_path'")
        create_customers(old, "row_scored", rows.iloc[:0])
        old.run("SELECT ml.attach_scoring_trigger('row_scored', 'churn', 'label')")
        _insert(old, "row_scored", rows.iloc[:20])
        create_customers(old, "stmt_scored", rows.iloc[:0])
        old.run(
            "SELECT ml.attach_scoring_trigger('stmt_scored', 'spend', 'score', 'statement', 'null')"
        )
        old.run(
            "INSERT INTO stmt_scored (id, age, tenure, plan, active) VALUES "
            "(1, 40, 3, 'pro', true), (2, 'Infinity', 3, 'pro', true)"
        )
        before = {
            table: old.one(f"SELECT count(*) FROM ml.{table}")
            for table in ("models", "deployments", "scoring_errors", "settings")
        }
        assert before["scoring_errors"] == 1
        assert "udfs.runtime" in old.one("SELECT prosrc FROM pg_proc WHERE proname = 'churn'")
    finally:
        old.close()
    conn = psycopg2.connect(pg_db)  # a new backend: it has imported no udfs yet
    try:
        info = install(conn)
    finally:
        conn.close()
    return {"info": info, "before": before, "rows": rows}


@pytest.fixture
def db(pg_db: str, upgraded) -> Iterator[Db]:
    """A new connection to the upgraded database (this module's own, not the shared one)."""
    handle = Db(pg_db)
    yield handle
    handle.close()


def test_install_reports_the_upgrade(upgraded) -> None:
    assert upgraded["info"]["upgraded_from"] == 1
    assert upgraded["info"]["schema_version"] == SCHEMA_VERSION
    assert upgraded["info"]["udfs_path"] == str(ROOT / "udfs")


def test_upgrade_keeps_models_history_settings_and_errors(db: Db, upgraded) -> None:
    for table, count in upgraded["before"].items():
        kept = db.one(f"SELECT count(*) FROM ml.{table}")
        # settings gains schema_version; nothing else is added or lost
        assert kept == count + (table == "settings"), table
    assert db.one("SELECT value FROM ml.settings WHERE key = 'errors_keep_values'") == "on"
    assert db.one("SELECT key FROM ml.scoring_errors") == {"id": 2}


def test_live_models_score_with_this_release(db: Db, upgraded, trained) -> None:
    rows = upgraded["rows"]
    for name in ("spend", "churn", "segment"):
        source = db.one("SELECT prosrc FROM pg_proc WHERE proname = %s", name)
        assert "udfs.server" in source and "udfs.runtime" not in source
    create_customers(db, "customers", rows)
    got = db.column("SELECT ml.churn(age, tenure, plan, active) FROM customers ORDER BY id")
    assert_same(got, expected(trained["churn"], rows))
    batch = db.rows("SELECT key::bigint, prediction FROM ml.segment_batch('customers', 'id')")
    assert_same([p for _, p in sorted(batch)], expected(trained["segment"], rows))
    db.run("CALL ml.score_table('spend', 'customers', 'spend_scores')")
    scores = db.column("SELECT prediction FROM spend_scores ORDER BY id")
    assert_same(scores, expected(trained["spend"], rows))


def test_triggers_attached_before_the_upgrade_still_score(db: Db, upgraded, trained) -> None:
    rows = upgraded["rows"]
    assert_same(
        db.column("SELECT label FROM row_scored ORDER BY id"),
        expected(trained["churn"], rows.iloc[:20]),
    )
    more = rows.iloc[20:60]
    for table in ("row_scored", "stmt_scored"):
        _insert(db, table, more)
    ids = tuple(int(i) for i in more["id"])
    assert_same(
        db.column("SELECT label FROM row_scored WHERE id IN %s ORDER BY id", ids),
        expected(trained["churn"], more.sort_values("id")),
    )
    assert_same(
        db.column("SELECT score FROM stmt_scored WHERE id IN %s ORDER BY id", ids),
        expected(trained["spend"], more.sort_values("id")),
    )


def test_the_earlier_entry_points_are_gone(db: Db) -> None:
    forms = db.column(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'ml'::regnamespace AND p.proname = '_score_arrays'"
    )
    assert forms == ["ml._score_arrays(text,regclass,text,bigint,bigint)"]


def _insert(db: Db, table: str, rows) -> None:
    """One INSERT of ``rows`` (one statement: the statement trigger fires once)."""
    with db.conn.cursor() as cur:
        values = python_rows(rows[["id", "age", "tenure", "plan", "active"]])
        args = b",".join(cur.mogrify("(%s, %s, %s, %s, %s)", v) for v in values).decode()
        cur.execute(f"INSERT INTO {table} (id, age, tenure, plan, active) VALUES {args}")
