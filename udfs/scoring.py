"""The shared scoring core: a batch of feature columns in, predictions out.

``model`` is a fitted scikit-learn estimator or, when the model has a verified scoring plan, the
plan's runner (:class:`PlanScorer`, bit-identical to the estimator): callers hand over
``ModelBundle.scorer`` and get the plan wherever there is one.

Spark's pandas UDFs and Postgres' PL/Python functions both call :func:`predict` and
:func:`predict_proba`, so both engines give identical results for identical rows. This module
imports neither pyspark, psycopg2 nor plpy.

NULL policy: a NULL (or NaN) in a feature that the model accepts missing values for reaches the
model as NaN. A NULL in any other feature makes that row's result NULL (``pd.NA``); the other
rows of the batch are still predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from udfs.coercion import Column, coerce
from udfs.errors import InputError, ScoringError, UdfsError
from udfs.signature import Signature

# The smallest magnitude that float32 rounds to infinity: halfway between float32's largest
# value and 2**128. A model that casts its input to float32 refuses |x| at or above it; below
# it (up to about 3.4028235678e38) x rounds down to float32's largest value and is accepted.
FLOAT32_OVERFLOW = (2 - 2**-24) * 2**127
# pandas dtypes that carry NULL for each portable result type.
RESULT_DTYPES: dict[str, Any] = {
    "double": "Float64",
    "bigint": "Int64",
    "boolean": "boolean",
    "string": object,
}


@dataclass(frozen=True)
class Batch:
    """A coerced batch: the model input for the rows that can be predicted, and which those are.

    ``arrays`` are the coerced feature columns of those rows, in signature order: what a
    scoring plan takes. ``X`` builds from them what the scikit-learn model takes.
    """

    arrays: list[np.ndarray]
    valid: np.ndarray
    size: int
    names: tuple[str, ...]
    input_kind: str

    @property
    def all_valid(self) -> bool:
        return bool(self.valid.all())

    @property
    def rows(self) -> int:
        return int(self.valid.sum())

    @property
    def X(self) -> pd.DataFrame | np.ndarray:
        if self.input_kind == "array":
            return np.column_stack([a.astype(np.float64) for a in self.arrays])
        return pd.DataFrame(dict(zip(self.names, self.arrays, strict=True)), copy=False)


class PlanScorer(Protocol):
    """A compiled scoring plan (``udfs.plan.execute.PlanRunner``): scores coerced arrays."""

    is_plan: bool

    def predict(self, columns: Sequence[np.ndarray]) -> np.ndarray: ...

    def predict_proba(self, columns: Sequence[np.ndarray]) -> np.ndarray: ...


def check_arity(signature: Signature, count: int) -> None:
    """Raise :class:`InputError` unless ``count`` matches the model's number of features."""
    expected = len(signature.features)
    if count != expected:
        raise InputError(
            f"model '{signature.name}' takes {expected} feature"
            f"{'s' if expected != 1 else ''} ({signature.describe_features()}) "
            f"but {count} {'were' if count != 1 else 'was'} passed",
            model=signature.name,
            expected=expected,
            value=count,
        )


def prepare(signature: Signature, columns: Sequence[Column]) -> Batch:
    """Coerce ``columns`` (in signature order) and apply the NULL policy."""
    check_arity(signature, len(columns))
    coerced = [
        coerce(signature.name, f, col) for f, col in zip(signature.features, columns, strict=True)
    ]
    sizes = {len(values) for values, _ in coerced}
    if len(sizes) > 1:
        raise InputError(
            f"model '{signature.name}': feature columns have different lengths {sorted(sizes)}",
            model=signature.name,
        )
    size = sizes.pop()
    valid = np.ones(size, dtype=bool)
    for feature, (_, null) in zip(signature.features, coerced, strict=True):
        if not feature.accepts_missing:
            valid &= ~null
    keep = None if valid.all() else valid
    arrays = [
        _kept(values if keep is None else values[keep], feature)
        for feature, (values, _) in zip(signature.features, coerced, strict=True)
    ]
    names = tuple(signature.feature_names)
    return Batch(arrays, valid, size, names, signature.input_kind)


def _kept(values: np.ndarray, feature: Any) -> np.ndarray:
    """A boolean column that held NULLs is an object array; once the rows with NULL are left
    out, it is a bool one again, as without NULLs (XGBoost and LightGBM refuse object)."""
    if feature.type == "boolean" and values.dtype == object and not pd.isna(values).any():
        return values.astype(bool)
    return values


def _diagnose(
    model: Any, signature: Signature, method: str, batch: Batch, exc: Exception
) -> tuple[str, dict]:
    """Name the column and value behind a model failure, where they can be found."""
    if "unknown categor" in str(exc).lower():
        X = batch.X
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=batch.names)
        for feature in signature.features:
            if feature.categories is None:
                continue
            column = frame[feature.name]
            unseen = ~column.isin(feature.categories) & column.notna()
            if unseen.any():
                value = column[unseen].iloc[0]
                return (
                    f"column '{feature.name}' has the value {value!r}, which the model did not "
                    "see in training, and its encoder rejects unknown values",
                    {"column": feature.name, "value": repr(value)},
                )
    # Whatever the model said (a ValueError on infinity, a numpy overflow warning raised as an
    # error, ...), an infinite or float32-overflowing input is the likely cause. Several may
    # sit in one row, and not every one of them is refused by every model (a float64 model
    # takes 3.5e38): name a column only if the model refuses its value alone.
    for column, row in _extreme_values(signature, batch):
        if _refused_alone(model, method, batch, column, row):
            feature = signature.features[column]
            value = float(batch.arrays[column][row])
            return (
                f"column '{feature.name}' has the value {value!r}, which the model rejects "
                "(infinite, or too large for a float32 input)",
                {"column": feature.name, "value": repr(value)},
            )
    return "", {}


def _extreme_values(signature: Signature, batch: Batch) -> list[tuple[int, int]]:
    """(column, row) of the first infinite value and of the largest finite float32-overflowing
    value of each double column, in signature order (a pipeline may scale a value into
    float32's range, but the largest is the last to get there)."""
    found = []
    for i, feature in enumerate(signature.features):
        if feature.type != "double":
            continue
        numbers = batch.arrays[i]
        infinite = np.isinf(numbers)
        if infinite.any():
            found.append((i, int(np.argmax(infinite))))
        with np.errstate(invalid="ignore"):
            magnitude = np.where(infinite, 0.0, np.abs(numbers))
        if np.nanmax(magnitude, initial=0.0) >= FLOAT32_OVERFLOW:
            found.append((i, int(np.nanargmax(magnitude))))
    return found


def _refused_alone(model: Any, method: str, batch: Batch, column: int, row: int) -> bool:
    """Whether the model refuses ``row`` with ``column``'s value, and takes it with 0.0 there.

    In both probes the row's other infinite or float32-overflowing values are 0.0: the value
    is blamed only if it is the cause on its own.
    """

    def refuses(value: float) -> bool:
        arrays = [a[row : row + 1].copy() for a in batch.arrays]
        for i, one in enumerate(arrays):
            if i == column:
                one[0] = value
            elif one.dtype.kind == "f" and abs(one[0]) >= FLOAT32_OVERFLOW:
                one[0] = 0.0
        probe = Batch(arrays, np.ones(1, dtype=bool), 1, batch.names, batch.input_kind)
        plan = getattr(model, "is_plan", False)
        try:
            getattr(model, "predict" if method == "predict_both" else method)(
                probe.arrays if plan else probe.X
            )
        except Exception:
            return True
        return False

    return refuses(float(batch.arrays[column][row])) and not refuses(0.0)


def _call(model: Any, signature: Signature, method: str, batch: Batch) -> Any:
    """``method`` of the model on the batch's valid rows: through its plan when it has one."""
    plan = getattr(model, "is_plan", False)
    try:
        if plan:
            result = getattr(model, method)(batch.arrays)
            return result if method == "predict_both" else np.asarray(result)
        return np.asarray(getattr(model, method)(batch.X))
    except UdfsError as exc:
        if not plan:
            raise
        # The plan refuses what scikit-learn refuses; say it as the core says sklearn's refusals.
        where, details = _diagnose(model, signature, method, batch, exc)
        raise ScoringError(
            f"model '{signature.name}' failed in {method}: {where or exc.message}",
            model=signature.name,
            **(details or exc.details),
        ) from exc
    except Exception as exc:
        where, details = _diagnose(model, signature, method, batch, exc)
        prefix = f"{where}. " if where else ""
        raise ScoringError(
            f"model '{signature.name}' failed in {method}: {prefix}{type(exc).__name__}: {exc}",
            model=signature.name,
            **details,
        ) from exc


def _scatter(values: np.ndarray, batch: Batch, dtype: Any) -> pd.Series:
    """Place the predictions of the valid rows into a full-size result with NULL elsewhere."""
    if dtype is object:
        full = np.full(batch.size, None, dtype=object)
        full[batch.valid] = values
        return pd.Series(full, dtype=object)
    if batch.all_valid:
        return pd.Series(values).astype(dtype)
    full = np.zeros(batch.size, dtype=values.dtype)
    full[batch.valid] = values
    out = pd.Series(full).astype(dtype)
    out[~batch.valid] = pd.NA
    return out


def predict(model: Any, signature: Signature, columns: Sequence[Column]) -> pd.Series:
    """Predict one batch: a double for regression, the class label for classifiers.

    The result has one entry per input row, NULL (``pd.NA``/``None``) where the NULL policy says so.
    """
    batch = prepare(signature, columns)
    labels = _call(model, signature, "predict", batch) if batch.rows else np.empty(0)
    return _labels(np.asarray(labels), batch, signature)


def predict_proba(model: Any, signature: Signature, columns: Sequence[Column]) -> pd.Series:
    """Class probabilities: P(classes[1]) for binary, a list in class order for multiclass."""
    _require_proba(signature)
    batch = prepare(signature, columns)
    n_classes = len(signature.classes or ())
    proba = (
        _call(model, signature, "predict_proba", batch) if batch.rows else np.empty((0, n_classes))
    )
    return _probabilities(np.asarray(proba), batch, signature)


def predict_with_proba(
    model: Any, signature: Signature, columns: Sequence[Column]
) -> tuple[pd.Series, pd.Series]:
    """``predict`` and ``predict_proba`` of one batch, coerced once and, through a plan, with
    the trees walked once (``PlanRunner.predict_both``, bit-identical to the two calls)."""
    _require_proba(signature)
    if not hasattr(model, "predict_both"):
        return predict(model, signature, columns), predict_proba(model, signature, columns)
    batch = prepare(signature, columns)
    if batch.rows:
        labels, proba = _call(model, signature, "predict_both", batch)
    else:
        labels, proba = np.empty(0), np.empty((0, len(signature.classes or ())))
    return (
        _labels(np.asarray(labels), batch, signature),
        _probabilities(np.asarray(proba), batch, signature),
    )


def _require_proba(signature: Signature) -> None:
    if not signature.has_proba:
        raise InputError(
            f"model '{signature.name}' is a {signature.task} model without predict_proba",
            model=signature.name,
        )


def _labels(labels: np.ndarray, batch: Batch, signature: Signature) -> pd.Series:
    if labels.ndim != 1:
        raise ScoringError(
            f"model '{signature.name}': predict returned shape {labels.shape}, expected one value per row",
            model=signature.name,
        )
    if signature.label_type == "bigint" and labels.dtype.kind == "f":
        labels = labels.astype(np.int64)
    return _scatter(labels, batch, RESULT_DTYPES[signature.label_type])


def _probabilities(proba: np.ndarray, batch: Batch, signature: Signature) -> pd.Series:
    n_classes = len(signature.classes or ())
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise ScoringError(
            f"model '{signature.name}': predict_proba returned shape {proba.shape}, "
            f"expected (rows, {n_classes})",
            model=signature.name,
        )
    if signature.task == "binary":
        return _scatter(proba[:, 1].astype(np.float64), batch, "Float64")
    rows = proba.astype(np.float64).tolist()
    if batch.all_valid:
        return pd.Series(rows, dtype=object)
    full: list[list[float] | None] = [None] * batch.size
    for position, row in zip(np.flatnonzero(batch.valid), rows, strict=True):
        full[position] = row
    return pd.Series(full, dtype=object)
