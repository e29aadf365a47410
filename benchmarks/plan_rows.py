"""Single-row latency: the fused row path vs PlanRunner on a one-row batch vs scikit-learn.

    .venv/bin/python benchmarks/plan_rows.py [--calls 20000]

What a per-row SQL call (``ml.churn_proba(age, tenure, plan, active)``) costs inside udfs, for:

(a) the demo pipeline (SimpleImputer(median) on age/tenure, OneHotEncoder(ignore) on plan,
    passthrough active) + GradientBoostingClassifier(100, depth 3), label ``churned``;
(b) the same with RandomForestClassifier(50, max_depth=8), label ``segment``;
(c) a bare GradientBoostingClassifier(100, depth 3) on 20 doubles (numpy input);
(d) the demo pipeline with LogisticRegression.

Each call is timed on its own (``perf_counter_ns``) over rows cycled from a scoring table, after a
warm-up; the table reports medians in microseconds. Every row path result is checked against the
batch path first. One thread (BLAS limited to one), no other work in the process.
"""

from __future__ import annotations

from udfs.threads import set_environment

set_environment()  # before numpy is imported

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from udfs.demo.data import FEATURES, customers
from udfs.infer_signature import infer_signature
from udfs.plan.compile import compile_model
from udfs.plan.execute import PlanRunner
from udfs.plan.row import row_arrays
from udfs.plan.verify import verify_plan


def demo_pipeline(model) -> Pipeline:
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["age", "tenure"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("active", "passthrough", ["active"]),
        ]
    )
    return Pipeline([("prep", prep), ("model", model)])


def per_call(call: Callable[[int], object], calls: int, warmup: int = 2000) -> float:
    """Median microseconds of ``call(i)``, each call timed alone."""
    for i in range(warmup):
        call(i)
    times = []
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        call(i)
        times.append(clock() - start)
    return statistics.median(times) / 1000


def case(name: str, model, X, y, rows: list[list], sk_rows: list, calls: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        names = None if isinstance(X, pd.DataFrame) else [f"f{i}" for i in range(X.shape[1])]
        signature = infer_signature(model, X, "bench", feature_names=names)
        plan = compile_model(model, signature)
        sample = (
            [X[c] for c in X.columns] if names is None else [X[:, i] for i in range(len(names))]
        )
        verify_plan(plan, model, signature, sample)
    runner = PlanRunner(plan, signature)
    row = runner.row_scorer()
    types = [f.type for f in signature.features]
    batches = [row_arrays(r, types) for r in rows]
    for r, arrays in zip(rows, batches, strict=True):
        got, want = row.predict_proba(r), runner.predict_proba(arrays)[0]
        assert got.tobytes() == want.tobytes(), (name, r)
        assert row.predict(r) == runner.predict(arrays)[0]
    n = len(rows)
    result = {
        "case": name,
        "fused": row.fused,
        "row proba": per_call(lambda i: row.predict_proba(rows[i % n]), calls),
        "row predict": per_call(lambda i: row.predict(rows[i % n]), calls),
        "plan 1-row proba": per_call(lambda i: runner.predict_proba(batches[i % n]), calls // 4),
    }
    m = len(sk_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result["sklearn 1-row proba"] = per_call(
            lambda i: model.predict_proba(sk_rows[i % m]), max(calls // 40, 200), warmup=50
        )
    result["fallbacks"] = row.fallbacks
    return result


def records(frame: pd.DataFrame) -> list[list]:
    out = []
    for rec in frame[FEATURES].astype(object).itertuples(index=False):
        age, tenure, plan, active = rec
        out.append(
            [
                None if age != age else float(age),
                int(tenure),
                None if plan is None or plan != plan else plan,
                bool(active),
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    train = customers(20000, seed=42, null_fraction=0.02)
    score = customers(500, seed=3, null_fraction=0.02)
    rows = records(score)
    sk_rows = [score[FEATURES].iloc[[i]] for i in range(50)]
    rng = np.random.default_rng(0)
    X20 = rng.normal(size=(20000, 20))
    y20 = (X20[:, 0] + X20[:, 1] * X20[:, 2] > 0).astype(np.int64)
    rows20 = rng.normal(size=(500, 20)).tolist()
    sk20 = [np.asarray([r]) for r in rows20[:50]]
    results = [
        case(
            "(a) demo pipeline + GBC(100x3)",
            demo_pipeline(GradientBoostingClassifier(n_estimators=100, max_depth=3)),
            train[FEATURES],
            train["churned"],
            rows,
            sk_rows,
            args.calls,
        ),
        case(
            "(b) demo pipeline + RF(50, depth 8)",
            demo_pipeline(RandomForestClassifier(50, max_depth=8, random_state=0)),
            train[FEATURES],
            train["segment"],
            rows,
            sk_rows,
            args.calls,
        ),
        case(
            "(c) bare GBC(100x3), 20 doubles",
            GradientBoostingClassifier(n_estimators=100, max_depth=3),
            X20,
            y20,
            rows20,
            sk20,
            args.calls,
        ),
        case(
            "(d) demo pipeline + LogisticRegression",
            demo_pipeline(LogisticRegression(max_iter=500)),
            train[FEATURES],
            train["churned"],
            rows,
            sk_rows,
            args.calls,
        ),
    ]
    columns = ["row proba", "row predict", "plan 1-row proba", "sklearn 1-row proba"]
    print(f"{'median us per row':40s}" + "".join(f"{c:>21s}" for c in columns) + "  vs sklearn")
    for r in results:
        cells = "".join(f"{r[c]:21.2f}" for c in columns)
        ratio = r["sklearn 1-row proba"] / r["row proba"]
        flags = "" if r["fused"] and not r["fallbacks"] else f" (fused={r['fused']}, fallbacks)"
        print(f"{r['case']:40s}{cells}  {ratio:8.0f}x{flags}")


if __name__ == "__main__":
    main()
