"""spark-submit on a local cluster: the job, the per-worker model cache, tables that persist."""

import collections
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.models import FEATURES, expected
from udfs.demo.data import customers

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PARTITIONS = 8


@pytest.fixture(scope="module")
def job(tmp_path_factory, model_store):
    """Run sql/spark/churn_scores.sql with spark-submit, then export its table in a new session."""
    tmp = tmp_path_factory.mktemp("job")
    rows = customers(4000, seed=3, null_fraction=0.05)[["id", *FEATURES]]
    rows.to_parquet(tmp / "customers.parquet")
    setup = tmp / "setup.sql"
    setup.write_text(
        "DROP TABLE IF EXISTS customers;\n"
        f"CREATE TABLE customers USING parquet AS SELECT /*+ REPARTITION({PARTITIONS}) */ * "
        f"FROM parquet.`{tmp / 'customers.parquet'}`;\n"
    )
    env = {
        **os.environ,
        "UDFS_HOME": str(tmp / "home"),
        "UDFS_STORE": str(model_store),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    loads = tmp / "loads.log"
    submit = [
        str(BIN / "spark-submit"),
        "--master", "local-cluster[1,1,1024]",
        "--properties-file", str(ROOT / "spark_jobs/conf/cpu.properties"),
        "--conf", f"spark.executorEnv.UDFS_SPARK_LOAD_LOG={loads}",
        # One partition per file, so the query runs PARTITIONS tasks on the one worker.
        "--conf", "spark.sql.files.maxPartitionBytes=1048576",
        "--conf", "spark.sql.files.openCostInBytes=1048576",
        str(ROOT / "spark_jobs/score_sql.py"),
    ]  # fmt: skip
    outputs = []
    for sql in (setup, ROOT / "sql/spark/churn_scores.sql"):
        proc = subprocess.run(
            [*submit, str(sql)], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append(proc.stdout)
    export = tmp / "export.sql"
    export.write_text(
        f"INSERT OVERWRITE DIRECTORY '{tmp / 'out'}' USING parquet SELECT * FROM churn_scores"
    )
    later = subprocess.run(
        [str(BIN / "udfs"), "spark", "sql", str(export), "--master", "local[1]", "--gpu", "off"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert later.returncode == 0, later.stdout + later.stderr
    return {"rows": rows, "stdout": outputs[1], "loads": loads, "out": tmp / "out"}


def test_job_prints_each_statement_with_rows_and_time(job):
    out = job["stdout"]
    assert "registered: churn, churn_proba, plain, segment, segment_proba, spend" in out
    assert "[2/3] CREATE TABLE churn_scores USING parquet AS SELECT id" in out
    assert "-> 4,000 rows, " in out
    assert "-> 4 rows, " in out  # the per-plan summary: 3 plans and NULL
    assert "(master local-cluster[1,1,1024])" in out


def test_table_persists_into_a_later_session_with_exact_scores(job, trained):
    saved = pd.read_parquet(job["out"]).sort_values("id").reset_index(drop=True)
    rows = job["rows"]
    assert saved["id"].tolist() == rows["id"].tolist()
    assert saved["churn"].astype(object).where(saved["churn"].notna(), None).tolist() == expected(
        trained["churn"], rows
    )
    assert saved["segment"].tolist() == expected(trained["segment"], rows)
    want = expected(trained["churn"], rows, "predict_proba")
    got = saved["churn_probability"].to_numpy()
    assert [w is None for w in want] == np.isnan(got).tolist()
    np.testing.assert_allclose(got[~np.isnan(got)], [w for w in want if w is not None], atol=1e-12)


def test_each_model_is_loaded_at_most_once_per_python_worker(job):
    entries = [tuple(line.split()[:2]) for line in job["loads"].read_text().splitlines()]
    per_worker = collections.Counter(entries)
    assert entries, "the executors loaded no model"
    assert max(per_worker.values()) == 1, per_worker
    assert len({sha for _, sha in entries}) == 2  # churn and segment, over 8 tasks


class _Launched:
    """What spark-submit's SparkConf holds: only what the launcher set."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings

    def contains(self, key: str) -> bool:
        return key in self.settings

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.settings.get(key, default)


@pytest.mark.parametrize(
    ("master", "local_defaults"),
    [
        ("spark://m:7077", False),
        ("yarn", False),
        ("k8s://https://k:6443", False),
        ("local[4]", True),
    ],
)
def test_submitted_cluster_jobs_get_no_local_defaults(
    monkeypatch, tmp_path, master, local_defaults
):
    """Under spark-submit on a cluster, no warehouse or metastore on the driver's disk, no UI off,
    no 4 shuffle partitions: the cluster's defaults rule. udfs' own settings still apply."""
    session_module = importlib.import_module("udfs.spark.session")  # not the session function

    launched = {"spark.master": master, "spark.sql.shuffle.partitions": "200"}
    monkeypatch.setattr(session_module, "submitted", lambda: True)
    monkeypatch.setattr(session_module, "SparkConf", lambda: _Launched(launched))
    conf = session_module.session_conf(None, "off", state_dir=tmp_path)
    assert ("spark.sql.warehouse.dir" in conf) is local_defaults
    assert ("spark.ui.enabled" in conf) is local_defaults
    assert "spark.sql.shuffle.partitions" not in conf  # the launcher's 200 stays
    assert conf["spark.python.worker.reuse"] == "true"
    assert conf["spark.executorEnv.OMP_NUM_THREADS"] == "1"
