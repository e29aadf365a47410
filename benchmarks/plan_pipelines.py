"""Scoring plan vs scikit-learn, in process, one thread: batch throughput and single-row latency.

    .venv/bin/python benchmarks/plan_pipelines.py [--rows 100000]

The demo pipeline (ColumnTransformer(SimpleImputer on a double and a bigint, OneHotEncoder on a
string, passthrough boolean)) with GradientBoostingClassifier(100, depth 3) and with
LogisticRegression. Medians of 5 runs; the plan is verified before it is timed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from udfs import scoring
from udfs.demo.data import FEATURES, customers
from udfs.inference import infer_signature
from udfs.plan.compile import compile_model
from udfs.plan.execute import PlanRunner
from udfs.plan.verify import verify_plan


def pipeline(model) -> Pipeline:
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age", "tenure"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    return Pipeline([("prep", prep), ("model", model)])


def median_time(call, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, model, rows: int) -> None:
    train = customers(2000, seed=1, null_fraction=0.05)
    model.fit(train[FEATURES], train["churned"])
    signature = infer_signature(model, train[FEATURES], "bench")
    plan = compile_model(model, signature)
    verify_plan(plan, model, signature, [train[c] for c in FEATURES])
    runner = PlanRunner(plan, signature)
    data = customers(rows, seed=2, null_fraction=0.05)
    batch = scoring.prepare(signature, [data[c] for c in FEATURES])
    columns = [batch.X[c].to_numpy() for c in FEATURES]
    assert np.array_equal(runner.predict_proba(columns), model.predict_proba(batch.X))
    sk = median_time(lambda: model.predict_proba(batch.X))
    pl = median_time(lambda: runner.predict_proba(columns))
    one_batch = scoring.prepare(signature, [data[c][:1] for c in FEATURES])
    one = [one_batch.X[c].to_numpy() for c in FEATURES]
    sk1 = median_time(lambda: [model.predict_proba(one_batch.X) for _ in range(200)]) / 200
    pl1 = median_time(lambda: [runner.predict_proba(one) for _ in range(2000)]) / 2000
    print(
        f"{name:28s} batch {rows} rows: sklearn {rows / sk:>10,.0f} rows/s, plan "
        f"{rows / pl:>10,.0f} rows/s ({sk / pl:.2f}x) | one row: sklearn {sk1 * 1e6:8.1f} us, "
        f"plan {pl1 * 1e6:6.1f} us ({sk1 / pl1:.0f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    bench("demo pipeline + LogisticReg", pipeline(LogisticRegression(max_iter=500)), args.rows)
    bench(
        "demo pipeline + GBC(100x3)",
        pipeline(GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)),
        args.rows,
    )


if __name__ == "__main__":
    main()
