"""PostgreSQL under faults: killed backends, server restarts, tampered and incompatible models.

A tampered artifact (bytes appended in ml.models) is refused at the first call by
tests/postgres/test_deploy.py::test_tampered_artifact_is_refused; here the artifact AND its
sha256 are rewritten together, which only the deployment record can catch.
"""

import json
import os
import signal
import threading
import time

import numpy as np
import psycopg2
import pytest
import sklearn

import udfs
from tests.fixtures.models import FEATURES, expected
from tests.fixtures.postgres import MODELS, Db, create_customers, python_rows
from tests.reliability.pg_support import alive, connect
from udfs.demo.data import customers
from udfs.postgres.client.cluster import LocalCluster
from udfs.postgres.client.deploy import deploy
from udfs.postgres.client.install import install
from udfs.postgres.client.score import score_table

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]
FAULTS: list[str] = []  # faults injected and survived, for the report


@pytest.fixture(scope="module")
def big(db: Db) -> int:
    """A table that ml.score_table needs a few seconds for, in many chunks."""
    rows = customers(60_000, seed=3)[["id", *FEATURES]]
    create_customers(db, "big", rows)
    db.run("ANALYZE big")
    return len(rows)


def _kill_midway(db: Db, conn, statement: str, params: tuple, after: float) -> Exception:
    """Run ``statement`` on ``conn`` in a thread; terminate its backend after ``after`` s."""
    pid = conn.get_backend_pid()
    caught: list = []

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
        except Exception as exc:
            caught.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(after)
    assert db.one("SELECT state FROM pg_stat_activity WHERE pid = %s", pid) == "active"
    assert db.one("SELECT pg_terminate_backend(%s)", pid)
    thread.join(timeout=60)
    assert caught and isinstance(caught[0], psycopg2.OperationalError), caught
    return caught[0]


def test_backend_killed_mid_score_table_leaves_no_table(ml_dsn, db: Db, big: int) -> None:
    call = "CALL ml.score_table('spend', 'big', %s, chunk_rows => 2000)"
    started = time.perf_counter()
    db.run(call, "scored_whole")
    took = time.perf_counter() - started
    assert db.one("SELECT count(*) FROM scored_whole") == big
    assert took > 0.5, f"score_table took {took:.2f} s: too fast to be killed midway"
    _kill_midway(db, connect(ml_dsn), call, ("scored_killed",), took * 0.4)
    assert db.one("SELECT to_regclass('scored_killed')") is None  # one transaction: all or none
    # udfs pg score (chunks driven from the client, one transaction too) killed midway.
    client = connect(ml_dsn, autocommit=False)
    caught: list = []
    thread = threading.Thread(
        target=lambda: _guard(
            caught, score_table, client, "spend", "big", "scored_client", None, 2000
        )
    )
    thread.start()
    time.sleep(took * 0.4)
    assert db.one("SELECT pg_terminate_backend(%s)", client.get_backend_pid())
    thread.join(timeout=60)
    assert caught and isinstance(caught[0], psycopg2.OperationalError), caught
    assert db.one("SELECT to_regclass('scored_client')") is None
    alive(db.conn)
    FAULTS.extend(
        ["backend terminated mid CALL ml.score_table", "backend terminated mid udfs pg score"]
    )


def _guard(caught: list, function, *args) -> None:
    try:
        function(*args)
    except Exception as exc:
        caught.append(exc)


def refused_in_a_new_connection(dsn: str, statement: str, match: str) -> None:
    """``statement`` fails with ``match`` in a fresh backend, which then still answers."""
    fresh = connect(dsn)
    try:
        with pytest.raises(psycopg2.Error, match=match):
            fresh.cursor().execute(statement)
        alive(fresh)
    finally:
        fresh.close()


def test_plan_and_sha256_rewritten_together_are_refused(ml_dsn, db: Db) -> None:
    """An ml_admin who rewrites both cannot make a deployed function run another model."""
    db.run(
        "UPDATE ml.models m SET plan = s.plan, plan_sha256 = s.plan_sha256, "
        "signature = jsonb_set(m.signature, '{plan}', s.signature->'plan') FROM ml.models s "
        "WHERE m.name = 'plain' AND s.name = 'spend'"
    )
    refused_in_a_new_connection(
        ml_dsn,
        "SELECT ml.plain(40, 3)",
        r"model 'plain' v1: scoring plan sha256 is .* but ml.deploy recorded .* refusing",
    )
    FAULTS.append("plan and sha256 rewritten in ml.models")


@pytest.fixture
def other_release(tmp_path, trained, db: Db):
    """Save churn as 'mismatch' (a pickle: its plan is withheld) with another scikit-learn version.

    Only pickles depend on the scikit-learn release, and only where pickles are allowed.
    """
    db.run("INSERT INTO ml.settings VALUES ('allow_pickles', 'on')")

    def save(version: str, plan: bool = False, name: str = "mismatch"):
        t = trained["churn"]
        ref = udfs.save_model(t.model, name, sample=t.train[FEATURES], store=tmp_path)
        signature = json.loads((ref.path / "model.json").read_text())
        signature["libraries"]["scikit-learn"] = version
        if not plan:
            signature["plan"] = {"unsupported": "withheld by the test"}
        (ref.path / "model.json").write_text(json.dumps(signature))
        return tmp_path

    yield save
    db.run("DELETE FROM ml.settings WHERE key = 'allow_pickles'")


def test_other_sklearn_minor_is_refused_at_deploy(db: Db, other_release) -> None:
    store = other_release("0.24.2")
    with pytest.raises(psycopg2.Error, match=r"'mismatch' v1 was saved with scikit-learn 0\.24\.2"):
        deploy(db.conn, "mismatch", store=store)
    assert (
        db.one("SELECT to_regprocedure('ml.mismatch(double precision,bigint,text,boolean)')")
        is None
    )
    FAULTS.append("pickled model saved with another scikit-learn minor: refused at deploy")


def test_plan_does_not_depend_on_the_sklearn_release(db: Db, other_release, trained) -> None:
    store = other_release("0.24.2", plan=True, name="mismatch_plan")
    db.run("DELETE FROM ml.settings WHERE key = 'allow_pickles'")
    assert deploy(db.conn, "mismatch_plan", store=store) == 1
    row = customers(1, seed=4)[FEATURES]
    got = db.one("SELECT ml.mismatch_plan(%s, %s, %s, %s)", *python_rows(row)[0])
    assert got == expected(trained["churn"], row)[0]


def test_changed_sklearn_after_deploy_is_refused_at_first_call(
    ml_dsn, db: Db, other_release
) -> None:
    """A deployed pickle whose recorded release no longer matches is refused when loaded."""
    deploy(db.conn, "mismatched", store=other_release(sklearn.__version__, name="mismatched"))
    db.run(
        "UPDATE ml.models SET signature = jsonb_set(signature, '{libraries,scikit-learn}', "
        "'\"0.24.2\"') WHERE name = 'mismatched'"
    )
    refused_in_a_new_connection(
        ml_dsn,
        "SELECT ml.mismatched(40, 3, 'pro', true)",
        r"saved with scikit-learn 0\.24\.2.*UDFS_ALLOW",
    )
    FAULTS.append("pickled model's scikit-learn changed after deploy: refused at first call")


def test_other_sklearn_patch_is_loaded(db: Db, other_release, trained) -> None:
    major, minor, *_ = sklearn.__version__.split(".")
    store = other_release(f"{major}.{minor}.99")
    assert deploy(db.conn, "mismatch", store=store) >= 1  # the warning goes to the server log
    row = customers(1, seed=4)[FEATURES]
    got = db.one("SELECT ml.mismatch(%s, %s, %s, %s)", *python_rows(row)[0])
    assert got == expected(trained["churn"], row)[0]


@pytest.mark.slow
def test_server_restart_and_crash(tmp_path, model_store, trained) -> None:
    """Our own cluster: scoring works on a new connection after a restart and after a crash."""
    cluster = LocalCluster(tmp_path / "pg")
    try:
        dsn = cluster.up()
        conn = psycopg2.connect(dsn)
        install(conn)
        for name in MODELS:
            deploy(conn, name, store=model_store)
        rows = customers(200, seed=9)[["id", *FEATURES]]
        handle = Db(dsn)
        create_customers(handle, "rows", rows)
        query = "SELECT ml.churn_proba(age, tenure, plan, active) FROM rows ORDER BY id"
        want = expected(trained["churn"], rows, "predict_proba")
        assert np.allclose(handle.column(query), want, rtol=1e-12, atol=1e-12)
        cluster.down()
        dsn = cluster.up()
        with pytest.raises(psycopg2.OperationalError):
            handle.run("SELECT 1")  # the old connection is gone
        handle = Db(dsn)
        assert np.allclose(handle.column(query), want, rtol=1e-12, atol=1e-12)
        FAULTS.append("server restart")
        # A backend killed by SIGKILL: the server resets every backend, then serves again.
        victim = Db(dsn)
        pid = victim.one("SELECT pg_backend_pid()")
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        for _attempt in range(50):
            try:
                fresh = Db(dsn)
                break
            except psycopg2.OperationalError:  # still in crash recovery
                time.sleep(0.2)
        else:
            raise AssertionError("the server did not come back after a backend crash")
        assert np.allclose(fresh.column(query), want, rtol=1e-12, atol=1e-12)
        FAULTS.append("backend SIGKILL (server crash recovery)")
    finally:
        cluster.destroy()
