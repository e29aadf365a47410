"""spark-submit to a real standalone cluster: a master and two workers, each its own process.

The driver (spark-submit, client deploy mode) is the only process that sees the model store: it
lives in the driver's temp directory and reaches the driver as ``--store``. The executors get
the model as bytes (``udfs.spark.register`` broadcasts them) and must never read the store.
That is enforced, not assumed (``tests/fixtures/standalone.py``):

- each worker, and so each executor it launches, runs in a directory of its own, with
  ``$UDFS_HOME`` there and ``$UDFS_STORE`` pointing at an empty store of its own, so no default
  leads to the driver's store;
- every Python process of the executors runs an audit hook (a ``sitecustomize`` on the
  workers' ``PYTHONPATH``) that refuses (``PermissionError``) and records any open, listing or
  chdir under the driver's directory, the store included; the test checks that the hook was
  armed in both workers' executors and recorded nothing.

Input and output are parquet directories that every process sees, as HDFS or S3 would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import udfs
from tests.fixtures.standalone import (
    FORBIDDEN_ENV,
    SPY,
    SPY_LOG_ENV,
    StandaloneCluster,
    standalone_cluster,
)
from udfs.demo.data import FEATURES, customers

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "cluster_churn"
ARGS = ", ".join(FEATURES)
FILES = 8  # input files: one task each, spread over the two one-core executors
# Short-lived JVMs on a small machine: the C1 compiler alone starts them faster.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _as_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """NULLs as NaN, the way udfs hands missing values to scikit-learn."""
    return frame.astype(object).where(frame.notna(), np.nan)


def _churn_model() -> tuple[Pipeline, pd.DataFrame]:
    """Like the demo's churn model: imputer + one-hot on the string column + boosted trees."""
    train = customers(2000, seed=11, null_fraction=0.02)
    features = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["age", "tenure"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("active", "passthrough", ["active"]),
        ]
    )
    booster = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)
    model = Pipeline([("features", features), ("model", booster)])
    X = _as_missing(train[FEATURES])
    return model.fit(X, train["churned"]), X


def _submit_command(master: str, query: Path, store: Path, events: Path) -> list[str]:
    return [
        str(BIN / "spark-submit"),
        "--master", master,
        "--properties-file", str(ROOT / "spark_jobs/conf/cpu.properties"),
        "--conf", "spark.sql.catalogImplementation=in-memory",
        # One 1-core, 512 MB executor per worker; tasks start once both have registered.
        "--conf", "spark.executor.cores=1",
        "--conf", "spark.executor.memory=512m",
        "--conf", "spark.cores.max=2",
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=60s",
        "--driver-java-options", JVM_OPTIONS,
        "--conf", f"spark.executor.extraJavaOptions={JVM_OPTIONS}",
        # One partition per input file (they are tiny), so both executors get tasks.
        "--conf", "spark.sql.files.maxPartitionBytes=1048576",
        "--conf", "spark.sql.files.openCostInBytes=1048576",
        # The event log records which executor ran each task.
        "--conf", "spark.eventLog.enabled=true",
        "--conf", f"spark.eventLog.dir=file://{events}",
        "--conf", "spark.eventLog.compress=false",
        "--conf", "spark.eventLog.rolling.enabled=false",
        str(ROOT / "spark_jobs/score_sql.py"), str(query),
        "--store", str(store), "--model", NAME,
    ]  # fmt: skip


def _run_driver(cluster: StandaloneCluster, command: list[str], cwd: Path) -> str:
    """spark-submit in client mode: the driver runs here, in ``cwd``; its stdout."""
    env = cluster.env(
        UDFS_HOME=str(cwd / "home"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    for key in ("UDFS_STORE", "UDFS_SPARK_LOAD_LOG", "PYTHONPATH"):
        env.pop(key, None)  # the driver learns where the store is from --store alone
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"spark-submit timed out\n{stdout}\n{stderr}\n{cluster.logs()}")
    finally:
        if proc.poll() is None:  # interrupted: kill the driver's group (its JVM and Python)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, f"{stdout}\n{stderr}\n{cluster.logs()}"
    return stdout


def _finished_states(cluster: StandaloneCluster, timeout: float = 30) -> tuple[dict, list[dict]]:
    """The master's and workers' /json once the application is over everywhere."""
    deadline = time.monotonic() + timeout
    while True:
        master = cluster.master_state()
        workers = [w.state() for w in cluster.workers]
        over = master.get("completedapps") and all(w.get("finishedexecutors") for w in workers)
        if over or time.monotonic() > deadline:
            return master, workers
        time.sleep(0.25)


def _event_log(events: Path) -> list[dict]:
    (log,) = [p for p in events.iterdir() if not p.name.startswith(".")]
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Save the model on the driver side, score on the cluster, collect the evidence, tear down."""
    tmp = tmp_path_factory.mktemp("standalone")
    driver = tmp / "driver"  # the driver's working directory; the store lives only here
    store = driver / "models"
    data = tmp / "data"  # input and output: the "shared file system" of this one-machine cluster
    events = tmp / "events"
    for d in (driver, data / "customers", events):
        d.mkdir(parents=True)

    model, sample = _churn_model()
    ref = udfs.save_model(model, NAME, sample=sample, store=store)
    rows = customers(3000, seed=12, null_fraction=0.05)[["id", *FEATURES]]
    rows.loc[rows.index[::97], "plan"] = "platinum"  # a category never seen in training
    for i, part in enumerate(np.array_split(np.arange(len(rows)), FILES)):
        rows.iloc[part].to_parquet(data / "customers" / f"part-{i}.parquet", index=False)
    out = data / "scored"
    query = driver / "score.sql"
    query.write_text(
        # A schema of its own: Spark then runs no job to read it from the files' footers.
        "CREATE TEMPORARY VIEW customers "
        "(id BIGINT, age DOUBLE, tenure BIGINT, plan STRING, active BOOLEAN) "
        f"USING parquet OPTIONS (path '{data / 'customers'}');\n"
        f"INSERT OVERWRITE DIRECTORY '{out}' USING parquet\n"
        f"SELECT id, {NAME}({ARGS}) AS label, {NAME}_proba({ARGS}) AS probability\n"
        "FROM customers;\n"
    )

    started = time.monotonic()
    # forbidden: the executors' audit hook refuses and records any access under driver/.
    with standalone_cluster(tmp / "cluster", workers=2, forbidden=[driver]) as cluster:
        up = time.monotonic() - started
        stdout = _run_driver(
            cluster, _submit_command(cluster.master_url, query, store, events), driver
        )
        submitted = time.monotonic() - started
        master, workers = _finished_states(cluster)
        evidence = {
            "rows": rows,
            "sha256": ref.sha256,
            "cluster": cluster.root,
            "model": model,
            "out": out,
            "stdout": stdout,
            "master": master,
            "workers": workers,
            "worker_ui_ports": [w.ui_port for w in cluster.workers],
            "loads": [_lines(w.load_log) for w in cluster.workers],
            "worker_stores": [sorted(os.listdir(w.store)) for w in cluster.workers],
            "spy": _lines(cluster.spy_log),
            "events": _event_log(events),
            "leftovers": cluster.stop(),
        }
    evidence["seconds"] = (up, submitted, time.monotonic() - started)
    return evidence


def test_scores_equal_scikit_learn_bit_for_bit(run):
    assert f"registered: {NAME}, {NAME}_proba" in run["stdout"]
    assert "(master spark://127.0.0.1:" in run["stdout"]
    got = pd.read_parquet(run["out"]).sort_values("id").reset_index(drop=True)
    rows = run["rows"].sort_values("id").reset_index(drop=True)
    X = _as_missing(rows[FEATURES])
    assert got["id"].tolist() == rows["id"].tolist()
    assert got["label"].tolist() == run["model"].predict(X).tolist()
    assert got["probability"].tolist() == run["model"].predict_proba(X)[:, 1].tolist()


def test_the_application_ran_on_both_workers(run):
    master = run["master"]
    assert [w["state"] for w in master["workers"]] == ["ALIVE", "ALIVE"]
    (app,) = master["completedapps"]
    assert app["name"] == "udfs score.sql"
    assert app["state"] == "FINISHED"
    # Each worker launched one executor for this application...
    for state in run["workers"]:
        assert [e["appid"] for e in state["finishedexecutors"]] == [app["id"]]
    # ...and the event log says which executor (whose logs each worker serves) ran which task.
    events = run["events"]
    worker_of = {}
    for e in events:
        if e["Event"] == "SparkListenerExecutorAdded":
            info = e["Executor Info"]
            assert info["Host"] == "127.0.0.1"
            port = urlparse(info["Log Urls"]["stdout"]).port
            worker_of[e["Executor ID"]] = run["worker_ui_ports"].index(port)
    assert sorted(worker_of.values()) == [0, 1]
    tasks = [e["Task Info"] for e in events if e["Event"] == "SparkListenerTaskEnd"]
    assert len(tasks) >= 8
    assert "driver" not in {t["Executor ID"] for t in tasks}
    per_worker = [sum(worker_of[t["Executor ID"]] == i for t in tasks) for i in (0, 1)]
    assert min(per_worker) >= 1, per_worker


def test_python_workers_under_each_spark_worker_loaded_the_model(run):
    # Each line: "<pid> <sha256> gpu=<gpu> <backend>", written by the executors' Python workers.
    for loads in run["loads"]:
        assert loads, "no Python worker under this Spark worker loaded the model"
        assert {line.split()[1] for line in loads} == {run["sha256"]}, loads


def test_executors_never_read_the_driver_side_store(run):
    armed = [line.split()[2] for line in run["spy"] if line.startswith("armed ")]
    # The audit hook ran in the Python processes of both workers' executors...
    under = {Path(cwd).relative_to(run["cluster"]).parts[0] for cwd in armed}
    assert under == {"worker-0", "worker-1"}, armed
    # ...and none of them touched the driver's directory (store included).
    assert [line for line in run["spy"] if not line.startswith("armed ")] == []
    assert run["worker_stores"] == [[], []]


def test_no_cluster_process_outlives_the_test(run):
    assert run["leftovers"] == []
    up, submitted, total = run["seconds"]
    print(f"standalone: cluster up {up:.1f} s, job done {submitted:.1f} s, stopped {total:.1f} s")


def test_the_guard_refuses_and_records_reads_of_the_store(tmp_path):
    """The audit hook the executors run, on its own: the check above can fail."""
    (tmp_path / "spy").mkdir()
    (tmp_path / "spy" / "sitecustomize.py").write_text(SPY)
    store = tmp_path / "driver" / "models"
    store.mkdir(parents=True)
    (store / "model.bin").write_bytes(b"x")
    log = tmp_path / "spy.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "spy"),
        FORBIDDEN_ENV: str(tmp_path / "driver"),
        SPY_LOG_ENV: str(log),
    }
    probe = "import os, sys; os.listdir(sys.argv[1]); open(sys.argv[1] + '/model.bin').read()"
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(store)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "PermissionError: executor touched the driver's model store" in proc.stderr
    lines = log.read_text().splitlines()
    assert lines[0].startswith("armed ")
    assert lines[1:] == [f"read {lines[0].split()[1]} os.listdir {store}"]
