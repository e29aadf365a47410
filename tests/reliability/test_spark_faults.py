"""Spark under faults: a dying Python worker, tampered or incompatible models, memory."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

import udfs
from tests.fixtures.models import FEATURES, expected
from udfs import spark as udfs_spark
from udfs.demo.data import customers
from udfs.errors import IntegrityError, UdfsError, VersionMismatchError

pytestmark = [pytest.mark.reliability, pytest.mark.spark]

CRASH_JOB = textwrap.dedent(
    """
    import os, sys
    from collections.abc import Iterator
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from udfs import spark as udfs_spark

    work, store = sys.argv[1], sys.argv[2]
    # local[2,4]: two cores, and a failed task is retried up to 4 times (plain local[2]: never).
    spark = udfs_spark.session("faults", master="local[2,4]", gpu="off", state_dir=work + "/spark")
    udfs_spark.register(spark, "churn", store=store)
    marker = work + "/crash-once"

    @pandas_udf("long")
    def crash_once(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for batch in batches:
            try:
                os.remove(marker)  # the first worker to get here dies; the retry finds no marker
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
            yield batch

    spark.udf.register("crash_once", crash_once)
    rows = spark.read.parquet(work + "/rows.parquet").repartition(4)
    rows.createOrReplaceTempView("customers")
    out = spark.sql(
        "SELECT id, churn(age, tenure, plan, active) AS churn, crash_once(id) AS k FROM customers"
    )
    out.toPandas().to_parquet(work + "/out.parquet")
    print("failed tasks:", spark.sparkContext._jsc.sc().statusStore().executorList(True).head().failedTasks())
    """
)


@pytest.mark.slow
def test_dying_python_worker_is_retried_and_the_result_is_complete(tmp_path, model_store, trained):
    rows = customers(2000, seed=13, null_fraction=0.05)[["id", *FEATURES]]
    rows.to_parquet(tmp_path / "rows.parquet")
    (tmp_path / "crash-once").touch()
    (tmp_path / "job.py").write_text(CRASH_JOB)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "job.py"), str(tmp_path), str(model_store)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "crash-once").exists(), "no worker crashed"
    assert "failed tasks: 1" in proc.stdout, proc.stdout
    out = pd.read_parquet(tmp_path / "out.parquet").sort_values("id")
    assert out["id"].tolist() == rows["id"].tolist()
    got = out["churn"].astype(object).where(out["churn"].notna(), None).tolist()
    assert got == expected(trained["churn"], rows)


def _svr(store):
    """A model no scoring plan covers: it ships and runs as a pickle."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(40, 10, 100), "tenure": rng.integers(0, 30, 100)})
    model = make_pipeline(StandardScaler(), SVR()).fit(X, X["age"])
    return udfs.save_model(model, "svr", sample=X, store=store)


def test_tampered_plan_or_artifact_is_refused_at_registration(spark, tmp_path, trained):
    t = trained["churn"]
    ref = udfs.save_model(t.model, "churn", sample=t.train[FEATURES], store=tmp_path)
    data = bytearray((ref.path / "plan.npz").read_bytes())
    data[len(data) // 2] ^= 1
    (ref.path / "plan.npz").write_bytes(bytes(data))
    with pytest.raises(UdfsError, match="scoring plan"):
        udfs_spark.register(spark, "churn", store=tmp_path)
    ref = _svr(tmp_path)
    data = bytearray(ref.artifact_path.read_bytes())
    data[100] ^= 1
    ref.artifact_path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to load a corrupted or tampered model"):
        udfs_spark.register(spark, "svr", store=tmp_path)


def test_other_sklearn_release_is_refused_for_pickles_only(spark, tmp_path, trained):
    """A pickle may not load under another scikit-learn release; a plan does not depend on it."""
    for ref in (
        _svr(tmp_path),
        udfs.save_model(
            trained["churn"].model, "churn", sample=trained["churn"].train[FEATURES], store=tmp_path
        ),
    ):
        signature = json.loads((ref.path / "model.json").read_text())
        signature["libraries"]["scikit-learn"] = "0.24.2"
        (ref.path / "model.json").write_text(json.dumps(signature))
    with pytest.raises(VersionMismatchError, match=r"saved with scikit-learn 0\.24\.2"):
        udfs_spark.register(spark, "svr", store=tmp_path)
    assert udfs_spark.register(spark, "churn", store=tmp_path) == ["churn", "churn_proba"]
