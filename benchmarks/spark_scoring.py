"""Spark SQL scoring speed: udfs vs raw predict_proba, Spark's own scan, and MLflow's spark_udf.

1,000,000 rows x 20 double features from Parquet, GradientBoostingClassifier(100 trees, depth 3),
local[2], written to the `noop` format. Medians of 5 runs after a warm-up, all in one process.

    .venv/bin/python benchmarks/spark_scoring.py [--rows N] [--runs K]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Tuple  # noqa: UP035 - pandas_udf's type-hint inference

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per process, as in the Spark workers

import numpy as np
import pandas as pd
from pyspark.sql.functions import pandas_udf
from sklearn.ensemble import GradientBoostingClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median_seconds, table, versions

import udfs
from udfs import spark as udfs_spark

N_FEATURES = 20
NAMES = [f"f{i}" for i in range(N_FEATURES)]
RESULTS = Path(__file__).resolve().parent / "results" / "spark_scoring.md"

_model = None
_X = None


def _proba_half(half: int) -> int:
    rows = len(_X) // 2
    return len(_model.predict_proba(_X[half * rows : (half + 1) * rows]))


def raw_two_processes(model, X: np.ndarray) -> float:
    """Baseline (a): predict_proba on the numpy array, split over 2 forked processes."""
    global _model, _X
    _model, _X = model, X
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return median_seconds(lambda: pool.map(_proba_half, [0, 1]), runs=RUNS)


def train(seed: int = 0) -> tuple[GradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20_000, N_FEATURES))
    y = (X[:, :5].sum(axis=1) + rng.normal(0, 1, len(X)) > 0).astype(int)
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y), X


def main() -> None:
    global RUNS
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000, help="Arrow batch size (rows)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip baseline (c)")
    args = parser.parse_args()
    RUNS = args.runs
    work = Path(tempfile.mkdtemp(prefix="udfs-bench-"))
    model, sample = train()
    X = np.random.default_rng(1).normal(size=(args.rows, N_FEATURES))
    pd.DataFrame(X, columns=NAMES).to_parquet(work / "features.parquet", row_group_size=100_000)
    udfs.save_model(model, "bench", sample=sample, store=work / "models", feature_names=NAMES)

    raw = raw_two_processes(model, X)
    spark = udfs_spark.session(
        "udfs-bench",
        master="local[2]",
        gpu="off",
        state_dir=work / "spark",
        arrow_batch_size=args.batch,
    )
    udfs_spark.register(spark, "bench", store=work / "models")
    spark.read.parquet(str(work / "features.parquet")).createOrReplaceTempView("features")
    columns = ", ".join(NAMES)

    def run(select: str) -> None:
        spark.sql(f"SELECT {select} AS p FROM features").write.format("noop").mode(
            "overwrite"
        ).save()

    spark.udf.register("zeros", zeros_udf())
    timings = {
        "scan": median_seconds(lambda: run(" + ".join(NAMES)), runs=RUNS),
        "floor": median_seconds(lambda: run(f"zeros({columns})"), runs=RUNS),
        "udfs_proba": median_seconds(lambda: run(f"bench_proba({columns})"), runs=RUNS),
        "udfs_predict": median_seconds(lambda: run(f"bench({columns})"), runs=RUNS),
    }
    mlflow = None if args.no_mlflow else mlflow_udf(spark, model, sample, work)
    if mlflow is not None:
        frame = spark.table("features")
        timings["mlflow_predict"] = median_seconds(
            lambda: (
                frame.select(mlflow(*NAMES).alias("p"))
                .write.format("noop")
                .mode("overwrite")
                .save()
            ),
            runs=RUNS,
        )
    report(args.rows, raw, timings)


def zeros_udf():
    """Spark's own pandas-UDF cost: same 20 inputs through Arrow to Python and back, no model."""

    @pandas_udf("double")
    def zeros(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
        for batch in batches:
            yield pd.Series(np.zeros(len(batch[0])))

    return zeros


def mlflow_udf(spark, model, sample, work: Path):
    """Baseline (c): MLflow's spark_udf on the same model, if mlflow is installed."""
    try:
        import mlflow.pyfunc
        import mlflow.sklearn
    except ImportError:
        print("mlflow is not installed: skipping baseline (c) (pip install -e '.[bench]')")
        return None
    path = work / "mlflow-model"
    mlflow.sklearn.save_model(model, str(path), serialization_format="cloudpickle")
    return mlflow.pyfunc.spark_udf(spark, str(path), result_type="double", env_manager="local")


def report(rows: int, raw: float, t: dict[str, float]) -> None:
    base = t["scan"] + raw
    lines = [
        ["raw `predict_proba`, numpy, 2 processes (a)", f"{raw:.2f}", f"{rows / raw:,.0f}", "-"],
        ["Spark scan + native expression (b)", f"{t['scan']:.2f}", f"{rows / t['scan']:,.0f}", "-"],
        ["(a) + (b)", f"{base:.2f}", f"{rows / base:,.0f}", "1.00x"],
    ]
    labels = {
        "floor": "(d) a pandas UDF returning zeros, same inputs (Spark's Python UDF cost)",
        "udfs_proba": "udfs `bench_proba(...)`",
        "udfs_predict": "udfs `bench(...)`",
        "mlflow_predict": "MLflow `spark_udf` (predict) (c)",
    }
    for key, label in labels.items():
        if key in t:
            lines.append([label, f"{t[key]:.2f}", f"{rows / t[key]:,.0f}", f"{t[key] / base:.2f}x"])
    text = (
        f"Spark scoring: {rows:,} rows x {N_FEATURES} doubles, GradientBoostingClassifier(100, depth 3), "
        f"local[2], noop sink, median of {RUNS} runs after a warm-up.\n"
        f"Machine: {machine()}; {versions('pyspark', 'scikit-learn', 'pandas', 'pyarrow', 'mlflow-skinny')}.\n\n"
        + table(["what", "seconds", "rows/s", "time vs (a)+(b)"], lines)
    )
    text += (
        f"\n\nWhere the time goes: Spark's pandas-UDF exchange alone (d) takes {t['floor']:.2f}s; "
        f"udfs adds {t['udfs_proba'] - t['floor']:.2f}s over it, raw predict_proba in 2 processes "
        f"is {raw:.2f}s."
    )
    if "mlflow_predict" in t:
        text += f"\n\nudfs predict vs MLflow spark_udf: {t['mlflow_predict'] / t['udfs_predict']:.2f}x faster"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")
    print(text)


RUNS = 5

if __name__ == "__main__":
    main()
