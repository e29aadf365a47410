"""Deploy and roll back while 4 connections keep scoring: no failure, no mix, no stale version.

Model ``hot`` has two versions trained on opposite labels, so their probabilities differ on
every row of the scored table: a statement's result must equal exactly one version's full
result. Each statement notes how many switches had committed before it started and after it
ended; it must have used a version live somewhere in between, so a statement that starts after
a switch committed uses the new version.
"""

import threading
import time

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import udfs
from tests.fixtures.postgres import Db
from tests.reliability.pg_support import connect
from udfs.demo.data import customers
from udfs.postgres.client.deploy import deploy, rollback

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

SCORERS = 4
CYCLES = 5  # each a deploy of v2 and a rollback to v1
PAUSE = 0.4  # seconds between switches
STATEMENTS = {
    "scalar": "SELECT array_agg(ml.hot_proba(age, tenure) ORDER BY id) FROM hot_rows",
    "batch": "SELECT array_agg(probability ORDER BY key::bigint) FROM ml.hot_batch('hot_rows', 'id')",
}


@pytest.fixture(scope="module")
def versions(db: Db, tmp_path_factory, trained) -> tuple:
    """The store holding hot v1 and v2, and each version's probabilities on hot_rows."""
    store = tmp_path_factory.mktemp("hot")
    train = trained["churn"].train
    X = train[["age", "tenure"]]
    rows = customers(300, seed=21)[["id", "age", "tenure"]]
    probabilities = {}
    for version, labels in ((1, train["churned"]), (2, 1 - train["churned"])):
        model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, labels)
        assert udfs.save_model(model, "hot", sample=X, store=store).version == version
        probabilities[version] = model.predict_proba(rows[["age", "tenure"]])[:, 1].tolist()
    gap = np.abs(np.subtract(probabilities[1], probabilities[2]))
    assert gap.min() > 1e-6, "the two versions must differ on every row"
    db.run("DROP TABLE IF EXISTS hot_rows")
    db.run("CREATE TABLE hot_rows (id bigint PRIMARY KEY, age double precision, tenure bigint)")
    with db.conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO hot_rows VALUES (%s, %s, %s)",
            [(int(r.id), float(r.age), int(r.tenure)) for r in rows.itertuples(index=False)],
        )
    assert deploy(db.conn, "hot", 1, store=store) == 1
    return store, probabilities


def _which(result: list, probabilities: dict) -> object:
    """The version whose full result ``result`` is, or 'mixed'."""
    for version, want in probabilities.items():
        if np.allclose(result, want, rtol=1e-12, atol=1e-12):
            return version
    return "mixed"


def _score(dsn, probabilities, live, stop, log, worker, ready) -> None:
    conn = connect(dsn)
    with conn.cursor() as cur:
        # Warm up first (imports and the model load take seconds on a busy machine), so that
        # every connection scores while the switches happen, not only before them.
        cur.execute(STATEMENTS["scalar"])
        cur.execute(STATEMENTS["batch"])
        ready.wait()
        n = 0
        while not stop.is_set():
            kind = "scalar" if n % 2 == 0 else "batch"
            n += 1
            before = len(live) - 1  # switches committed before the statement starts
            try:
                cur.execute(STATEMENTS[kind])
                used = _which(cur.fetchone()[0], probabilities)
            except Exception as exc:
                used = f"failed: {exc}"
            log.append((worker, kind, before, len(live) - 1, used))
    conn.close()


def test_redeploys_under_load(ml_dsn, db: Db, versions) -> None:
    store, probabilities = versions
    live = [1]  # the live version after each committed switch
    stop, log = threading.Event(), []
    ready = threading.Barrier(SCORERS + 1, timeout=120)
    workers = [
        threading.Thread(target=_score, args=(ml_dsn, probabilities, live, stop, log, i, ready))
        for i in range(SCORERS)
    ]
    for worker in workers:
        worker.start()
    try:
        ready.wait()
        time.sleep(PAUSE)
        for _ in range(CYCLES):
            live.append(deploy(db.conn, "hot", 2, store=store))
            time.sleep(PAUSE)
            live.append(rollback(db.conn, "hot"))
            time.sleep(PAUSE)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert live == [1] + [2, 1] * CYCLES
    failed = [e for e in log if str(e[4]).startswith("failed")]
    assert not failed, failed[:3]
    mixed = [e for e in log if e[4] == "mixed"]
    assert not mixed, f"{len(mixed)} statements mixed versions: {mixed[:3]}"
    stale = [e for e in log if e[4] not in live[e[2] : e[3] + 1]]
    assert not stale, f"{len(stale)} statements used a version not live while they ran: {stale[:3]}"
    for i in range(SCORERS):
        mine = [e for e in log if e[0] == i]
        assert {e[4] for e in mine} == {1, 2}, f"scorer {i} did not see both versions"
    print(
        f"redeploy under load: {2 * CYCLES} switches ({CYCLES} deploys, {CYCLES} rollbacks), "
        f"{len(log)} statements by {SCORERS} connections "
        f"({sum(e[1] == 'scalar' for e in log)} scalar, {sum(e[1] == 'batch' for e in log)} "
        f"batch), failed: {len(failed)}, mixed: {len(mixed)}"
    )


def test_a_statement_scores_with_the_version_of_its_snapshot(ml_dsn, db: Db, versions) -> None:
    """A transaction whose snapshot predates a deploy keeps the version live in it.

    The function's new body (v2) reaches the backend when it locks the table, but its
    REPEATABLE READ snapshot cannot see v2 in ml.models: it scores with v1, then v2 after it.
    """
    store, probabilities = versions
    conn = connect(ml_dsn, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM ml.deployments")  # takes the snapshot
            assert deploy(db.conn, "hot", 2, store=store) == 2
            for statement in STATEMENTS.values():
                cur.execute(statement)
                got = _which(cur.fetchone()[0], probabilities)
                assert got == 1, (statement, got)
            conn.commit()
            for statement in STATEMENTS.values():
                cur.execute(statement)
                assert _which(cur.fetchone()[0], probabilities) == 2, statement
            conn.commit()
    finally:
        conn.close()
        assert rollback(db.conn, "hot") == 1
