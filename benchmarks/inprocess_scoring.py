"""In-process batch scoring, one thread: udfs' scoring plans vs scikit-learn's predict_proba.

The bare GradientBoostingClassifier(100, depth 3) on 20 doubles, and the demo pipeline
(ColumnTransformer: median imputer on age/tenure, one-hot plan, passthrough active) ending in
GradientBoosting(100, depth 3), RandomForest(100, depth 10), ExtraTrees(100, depth 10),
DecisionTree(depth 10), HistGradientBoosting and LogisticRegression. Each model is saved with
``udfs.save_model`` (which compiles its plan) and loaded with ``udfs.load_model``. Per model and
round, on the same rows: scikit-learn's ``predict_proba`` on the DataFrame (the array for the
bare model), ``udfs.scoring.predict_proba(bundle.scorer, bundle.signature, columns)`` (coercion,
NULL policy, plan) and the raw ``PlanRunner.predict_proba`` on the prepared arrays. Medians of
``--runs`` interleaved rounds after a warm-up; results are checked bit-identical first.
Writes benchmarks/results/inprocess_scoring.md.

    .venv/bin/python benchmarks/inprocess_scoring.py [--rows 100000] [--runs 5]
"""

from __future__ import annotations

# One thread everywhere, before numpy and scikit-learn start their thread pools.
from udfs.threads import set_environment

set_environment()  # before numpy is imported

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BARE_FEATURES,
    bare_data,
    gbc,
    interleaved,
    machine,
    met,
    plan_missing,
    table,
    train_bare,
    train_pipeline,
    versions,
)

import udfs
from udfs import scoring
from udfs.demo.data import FEATURES, customers

RESULTS = Path(__file__).resolve().parent / "results" / "inprocess_scoring.md"
TREES = ">= 3x sklearn"
LINEAR = ">= 1.5x sklearn"


def estimators() -> list[tuple[str, str, object | None]]:
    """(label, target, final estimator of the pipeline; None for the bare GBC)."""
    return [
        ("bare GBC(100, depth 3), 20 doubles", TREES, None),
        ("pipeline + GBC(100, depth 3)", TREES, gbc()),
        (
            "pipeline + RandomForest(100, depth 10)",
            TREES,
            RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0),
        ),
        (
            "pipeline + ExtraTrees(100, depth 10)",
            TREES,
            ExtraTreesClassifier(n_estimators=100, max_depth=10, random_state=0),
        ),
        (
            "pipeline + DecisionTree(depth 10)",
            TREES,
            DecisionTreeClassifier(max_depth=10, random_state=0),
        ),
        (
            "pipeline + HistGradientBoosting",
            LINEAR,
            HistGradientBoostingClassifier(random_state=0),
        ),
        ("pipeline + LogisticRegression", LINEAR, LogisticRegression(max_iter=1000)),
    ]


def bench(
    index: int, label: str, target: str, estimator, rows: int, runs: int, store: Path
) -> list[str]:
    name = f"bench_{index}"
    if estimator is None:
        model, sample = train_bare()
        udfs.save_model(model, name, sample=sample, store=store, feature_names=BARE_FEATURES)
        X = bare_data(rows)
        sk_input = X  # fitted on an array: scikit-learn gets the array
        columns = [pd.Series(X[:, i]) for i in range(X.shape[1])]
    else:
        model, sample = train_pipeline(estimator)
        udfs.save_model(model, name, sample=sample, store=store)
        sk_input = customers(rows, seed=7, null_fraction=0.02)[FEATURES]
        columns = [sk_input[c] for c in FEATURES]
    bundle = udfs.load_model(name, store=store)
    why = plan_missing(bundle.signature)
    if why is not None or not getattr(bundle.scorer, "is_plan", False):
        return [
            label,
            "",
            "",
            "",
            "",
            "",
            "no plan",
            "",
            target,
            f"missed (no scoring plan: {why})",
        ]
    runner, signature = bundle.scorer, bundle.signature
    batch = scoring.prepare(signature, columns)
    # The plan's promise: bit-identical to scikit-learn on the same (coerced) input.
    identical = np.array_equal(runner.predict_proba(batch.arrays), model.predict_proba(batch.X))
    # Against scikit-learn on the caller's own DataFrame: udfs' NULL policy may differ (a None
    # string reaches the model as NaN, which the encoder may not have seen as a category).
    got = scoring.predict_proba(runner, signature, columns).to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    differ = int((got != model.predict_proba(sk_input)[:, 1]).sum())
    t = interleaved(
        {
            "sklearn": (lambda: None, lambda: model.predict_proba(sk_input)),
            "udfs": (lambda: None, lambda: scoring.predict_proba(runner, signature, columns)),
            "raw": (lambda: None, lambda: runner.predict_proba(batch.arrays)),
        },
        runs,
    )
    ratio, raw_ratio = t["sklearn"] / t["udfs"], t["sklearn"] / t["raw"]
    wanted = 3.0 if target == TREES else 1.5
    row = [
        label,
        f"{rows / t['sklearn']:,.0f}",
        f"{rows / t['udfs']:,.0f}",
        f"{ratio:.2f}x",
        f"{rows / t['raw']:,.0f}",
        f"{raw_ratio:.2f}x",
        "yes" if identical else "NO",
        f"{differ:,}",
        target,
        met(ratio >= wanted and identical),
    ]
    print(" | ".join(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    store = Path(tempfile.mkdtemp(prefix="udfs-bench-")) / "models"
    store.mkdir()
    rows = [
        bench(index, label, target, estimator, opts.rows, opts.runs, store)
        for index, (label, target, estimator) in enumerate(estimators())
    ]
    header = [
        "Model",
        "sklearn predict_proba rows/s",
        "udfs `scoring.predict_proba` rows/s",
        "udfs vs sklearn",
        "raw `PlanRunner.predict_proba` rows/s",
        "raw vs sklearn",
        "Plan bit-identical to sklearn (same coerced input)",
        "Rows differing from sklearn on the raw DataFrame",
        "Target (udfs vs sklearn)",
        "Met",
    ]
    text = (
        f"In-process batch scoring, {opts.rows:,} rows, one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1); "
        f"each model's figures are medians of {opts.runs} interleaved rounds (sklearn, udfs, raw "
        "plan) after a warm-up, in one process. Pipelines take the demo customer columns "
        "(age double, tenure bigint, plan text, active boolean; ~2% NULL age and plan) as a "
        "DataFrame; the bare GBC takes a float64 array of 20 columns. The udfs figure includes "
        "coercion and the NULL policy (`udfs.scoring.predict_proba(bundle.scorer, "
        "bundle.signature, columns)`); the raw figure is the plan alone on prepared arrays.\n"
        f"Machine: {machine()}; {versions('scikit-learn', 'numpy', 'pandas')}. "
        f"Run took {time.perf_counter() - started:.0f} s.\n\n" + table(header, rows)
    )
    if any(row[7] not in ("", "0") for row in rows):
        text += (
            "\n\nRows differing from sklearn on the raw DataFrame are those with a NULL `plan`: "
            "the training DataFrame holds None there, so the OneHotEncoder learned None as a "
            "category; udfs hands a NULL string to the model as NaN, which the encoder treats as "
            "unknown (all zeros). The plan itself is bit-identical to scikit-learn on the input "
            "udfs gives it."
        )
    print("\n" + text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
