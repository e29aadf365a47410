"""Do Spark, PostgreSQL and in-process scikit-learn give the same answers for the same rows?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from udfs.bundle import ModelBundle


@dataclass(frozen=True)
class Agreement:
    model: str
    rows: int
    labels_equal: int  # rows whose prediction is identical in all three (NULL included)
    proba_max_diff: float  # largest |difference| of any probability (0.0 when bit-identical)

    @property
    def exact(self) -> bool:
        return self.labels_equal == self.rows and self.proba_max_diff == 0.0

    def describe(self) -> str:
        verdict = "exact" if self.exact else "DIFFERENT"
        return (
            f"{self.model:<12} {self.labels_equal:,}/{self.rows:,} predictions identical, "
            f"max |probability difference| {self.proba_max_diff:g}: {verdict}"
        )


def _plain(values: pd.Series | list) -> list:
    """Python values with None for NULL, so three sources compare with ==."""
    out = []
    for v in list(values):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, np.generic):
            out.append(v.item())
        elif isinstance(v, np.ndarray):
            out.append(v.tolist())
        else:
            out.append(v)
    return out


def _max_diff(*columns: list) -> float:
    """Largest absolute difference between aligned probabilities (scalars or lists)."""
    worst = 0.0
    for values in zip(*columns, strict=True):
        present = [np.asarray(v, dtype=np.float64) for v in values if v is not None]
        if len(present) != len(values):
            worst = max(worst, np.inf if present else 0.0)
            continue
        stacked = np.stack(present)
        worst = max(worst, float(np.max(stacked.max(axis=0) - stacked.min(axis=0), initial=0.0)))
    return worst


def compare(
    model: str,
    bundle: ModelBundle,
    frame: pd.DataFrame,
    spark: pd.DataFrame,
    postgres: pd.DataFrame,
) -> Agreement:
    """Compare engine results (``id, prediction[, probability]``) with the bundle on ``frame``.

    The reference is scikit-learn itself (the bundle's estimator, not its scoring plan), with
    the udfs semantics (types, NULL policy) the engines promise.
    """
    bundle = ModelBundle(bundle.model, bundle.signature)  # no plan: scikit-learn scores
    spark = spark.sort_values("id").reset_index(drop=True)
    postgres = postgres.sort_values("id").reset_index(drop=True)
    frame = frame.sort_values("id").reset_index(drop=True)
    assert spark["id"].tolist() == frame["id"].tolist() == postgres["id"].tolist()
    local = _plain(bundle.predict(frame))
    from_spark, from_pg = _plain(spark["prediction"]), _plain(postgres["prediction"])
    equal = sum(a == b == c for a, b, c in zip(local, from_spark, from_pg, strict=True))
    diff = 0.0
    if bundle.signature.task == "regression":
        diff = _max_diff(local, from_spark, from_pg)  # how far apart, if not identical
    elif bundle.signature.has_proba:
        diff = _max_diff(
            _plain(bundle.predict_proba(frame)),
            _plain(spark["probability"]),
            _plain(postgres["probability"]),
        )
    return Agreement(model, len(frame), equal, diff)
