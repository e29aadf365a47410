"""Shared benchmark helpers: the two benchmark models, interleaved medians, targets, headers.

Every benchmark reports each figure for two models side by side:

- ``bare``: GradientBoostingClassifier(100 trees, depth 3) on 20 doubles (``f0`` .. ``f19``);
- ``pipeline``: the demo's churn pipeline (``udfs.demo.models``): a ColumnTransformer (median
  imputer on ``age`` double and ``tenure`` bigint, one-hot ``plan`` text, passthrough ``active``
  boolean) then the same GradientBoostingClassifier, trained on
  ``customers(20_000, seed=42, null_fraction=0.02)``.

Import this module after setting any thread-count variables: it imports numpy and scikit-learn.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from udfs.demo.data import FEATURES, customers

BARE_FEATURES = [f"f{i}" for i in range(20)]
MODEL_LABELS = {
    "bare": "bare GBC (20 doubles)",
    "pipeline": "pipeline (ColumnTransformer + GBC; double, bigint, text, boolean)",
}
Step = tuple[Callable[[], object], Callable[[], object]]  # (untimed reset, timed action)


# --- the two models ----------------------------------------------------------------------------


def gbc() -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)


def train_bare(rows: int = 5_000, seed: int = 0) -> tuple[GradientBoostingClassifier, np.ndarray]:
    """The bare model and its training features (a float64 array, columns ``BARE_FEATURES``)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(BARE_FEATURES)))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(0, 0.3, rows) > 0).astype(np.int64)
    return gbc().fit(X, y), X


def bare_data(rows: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, len(BARE_FEATURES)))


def customer_features() -> ColumnTransformer:
    """The demo churn model's preprocessing (udfs/demo/models.py)."""
    return ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["age", "tenure"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("active", "passthrough", ["active"]),
        ]
    )


def pipeline(estimator: Any | None = None) -> Pipeline:
    return Pipeline(
        [("features", customer_features()), ("model", gbc() if estimator is None else estimator)]
    )


def train_pipeline(estimator: Any | None = None) -> tuple[Pipeline, pd.DataFrame]:
    """The pipeline fitted on the demo's training data; returns it and its training features."""
    train = customers(20_000, seed=42, null_fraction=0.02)
    X = train[FEATURES]
    return pipeline(estimator).fit(X, train["churned"]), X


def pipeline_data(rows: int, seed: int = 7) -> pd.DataFrame:
    """Scoring rows for the pipeline: id + FEATURES, ~2% NULL ``age`` and ``plan``."""
    return customers(rows, seed=seed, null_fraction=0.02)[["id", *FEATURES]]


def plan_missing(signature: Any) -> str | None:
    """None when the saved model has a verified scoring plan, else why it has none."""
    if signature.plan_sha256:
        return None
    return (signature.plan or {}).get("unsupported", "no plan recorded")


# --- timing -------------------------------------------------------------------------------------


def median_seconds(action: Callable[[], object], runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``runs`` calls after ``warmup`` untimed ones (noisy 2-core boxes)."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(steps: dict[str, Step], runs: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each step's action: ``warmup`` rounds, then ``runs`` rounds in turn.

    Every round runs every step once, so a method and its baseline see the same machine load.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for attempt in range(warmup + runs):
        for name, (reset, action) in steps.items():
            reset()
            start = time.perf_counter()
            action()
            if attempt >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# --- reporting ----------------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "missed"


def verdict(results: dict[str, bool]) -> str:
    """``{"bare": True, "pipeline": False}`` -> ``bare: met, pipeline: missed``."""
    return ", ".join(f"{name}: {met(ok)}" for name, ok in results.items())


def versions(*packages: str) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def machine() -> str:
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", 1-min load average {os.getloadavg()[0]:.1f} (shared machine)"
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}{load}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
