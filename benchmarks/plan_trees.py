"""Compiled tree plans (udfs.plan.trees / tree_exec) against scikit-learn, one thread each.

Prints, per model, the median of 5 runs of scikit-learn's predict_proba (predict for regressors)
and of the plan on the same batch, their ratio, a bit-equality check, and the warm single-row time.

    .venv/bin/python benchmarks/plan_trees.py [--rows 100000]
"""

from __future__ import annotations

# One thread everywhere, before numpy/sklearn load their thread pools.
from udfs.threads import set_environment

set_environment()  # before numpy is imported

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median_seconds, table, versions

from udfs.plan import tree_exec, trees

N_FEATURES = 20
TRAIN_ROWS = 20_000


def _models(X: np.ndarray, y: np.ndarray) -> dict[str, object]:
    return {
        "GB 100 x depth 3": GradientBoostingClassifier(n_estimators=100, max_depth=3),
        "RF 100 x depth 10": RandomForestClassifier(n_estimators=100, max_depth=10),
        "DecisionTree (full depth)": DecisionTreeClassifier(),
        "HGB 100 iterations": HistGradientBoostingClassifier(max_iter=100, early_stopping=False),
    }


def _single_row_us(action, repeat: int = 2000) -> float:
    action()
    best = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            action()
        best.append((time.perf_counter() - start) / repeat * 1e6)
    return float(np.median(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    X, y = make_classification(TRAIN_ROWS + args.rows, N_FEATURES, n_informative=10, random_state=0)
    X_train, y_train, X_test = X[:TRAIN_ROWS], y[:TRAIN_ROWS], X[TRAIN_ROWS:]
    X_test = np.ascontiguousarray(X_test)
    one = np.ascontiguousarray(X_test[:1])
    print(f"# {machine()}; {versions('scikit-learn', 'numpy')}; {args.rows} rows x {N_FEATURES}")
    rows = []
    for label, model in _models(X_train, y_train).items():
        model.set_params(random_state=0)
        model.fit(X_train, y_train)
        start = time.perf_counter()
        node, arrays = trees.compile_estimator(model)
        compile_s = time.perf_counter() - start
        prepared = tree_exec.prepare(node, arrays)
        equal = np.array_equal(model.predict_proba(X_test), prepared.run(X_test, "predict_proba"))
        t_sk = median_seconds(lambda m=model: m.predict_proba(X_test))
        t_plan = median_seconds(lambda p=prepared: p.run(X_test, "predict_proba"))
        one_sk = _single_row_us(lambda m=model: m.predict_proba(one), repeat=200)
        one_plan = _single_row_us(
            lambda n=node, a=arrays: tree_exec.run(n, a, one, "predict_proba")
        )
        size = sum(a.nbytes for a in arrays.values())
        rows.append(
            [
                label,
                f"{t_sk * 1e3:.0f} ms",
                f"{t_plan * 1e3:.1f} ms",
                f"{t_sk / t_plan:.2f}x",
                "yes" if equal else "NO",
                f"{one_sk:.0f} us",
                f"{one_plan:.1f} us",
                f"{compile_s:.2f} s",
                f"{size / 1e6:.2f} MB",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    header = [
        "model",
        "sklearn",
        "plan",
        "ratio",
        "bit-equal",
        "sklearn 1 row",
        "plan 1 row",
        "compile",
        "arrays",
    ]
    print()
    print(table(header, rows))


if __name__ == "__main__":
    main()
