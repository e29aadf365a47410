"""Row and batch scorers for the SQL engines, with exactly the core's results and NULL policy.

Per-row SQL calls (``SELECT ml.churn(age, ...)``, row triggers) hand over one row of plain Python
values. Through the core, each row pays for pandas coercion of one-row columns; for a model with
a scoring plan, :class:`RowScorer` builds the same one-row arrays straight from the values
(floats, ints, strings, booleans, NULLs, the types SQL hands over) and calls the plan. Anything
else (text to parse, a Decimal, a value out of range) goes through the core unchanged, as does
a row the plan refuses (the core then names the model, the column and the value). The one-row
arrays are the ones ``scoring.prepare`` builds (tests/core/test_fastpath.py checks it on every
type and NULL), and the plan was verified bit-identical to scikit-learn when it was saved. This
module imports neither pyspark, psycopg2, plpy, scikit-learn nor pandas: a fresh database
backend scoring rows through a plan never pays for importing them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.signature import Signature

_INT64 = (-(2**63), 2**63 - 1)
_NAN_OBJECT = np.array([np.nan], dtype=object)


def _python(value: Any) -> Any:
    """A numpy scalar or pandas NA as the plain Python value a SQL engine expects."""
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _double(value: Any) -> np.ndarray | None:
    if type(value) is float or (type(value) is int and _INT64[0] <= value <= _INT64[1]):
        return np.array([value], dtype=np.float64)
    return None


def _bigint(value: Any) -> np.ndarray | None:
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return np.array([value], dtype=np.int64)
    return None


def _boolean(value: Any) -> np.ndarray | None:
    return np.array([value]) if type(value) is bool else None


def _string(value: Any) -> np.ndarray | None:
    return np.array([value], dtype=object) if type(value) is str else None


# One-row arrays exactly as ``scoring.prepare`` builds them from these Python types.
_LEAN = {"double": _double, "bigint": _bigint, "boolean": _boolean, "string": _string}
# A NULL as prepare builds it (only reached for features that accept missing values).
_NULL = {
    "double": lambda: np.array([np.nan]),
    "bigint": lambda: np.array([np.nan]),
    "boolean": lambda: _NAN_OBJECT.copy(),
    "string": lambda: _NAN_OBJECT.copy(),
}


class RowScorer:
    """Score one row at a time with the semantics of :func:`udfs.scoring.predict`.

    ``scorer`` is what the core takes (``ModelBundle.scorer``: a plan runner or an estimator).

    >>> RowScorer(bundle.scorer, bundle.signature).predict([41.5, 12, "pro", True])  # doctest: +SKIP
    1
    """

    def __init__(self, scorer: Any, signature: Signature) -> None:
        self.scorer = scorer
        self.signature = signature
        self._lean = bool(getattr(scorer, "is_plan", False))
        self._kinds = [
            (_LEAN[f.type], _NULL[f.type], f.accepts_missing) for f in signature.features
        ]
        self._verified: set[str] = set()

    @property
    def lean(self) -> bool:
        """Whether one-row arrays are built without the core's pandas coercion."""
        return self._lean

    def predict(self, values: Sequence[Any]) -> Any:
        """The prediction for one row (label or double), or None under the NULL policy."""
        return self._score(values, "predict")

    def predict_proba(self, values: Sequence[Any]) -> Any:
        """P(classes[1]) for binary models, a list in class order for multiclass, or None."""
        return self._score(values, "predict_proba")

    def _score(self, values: Sequence[Any], method: str) -> Any:
        if self._lean and len(values) == len(self._kinds):
            arrays = self._arrays(values)
            if arrays is _NULL_ROW:
                return None
            if arrays is not None:
                try:
                    return self._finish(getattr(self.scorer, method)(arrays)[0], method)
                except Exception:
                    pass  # the core raises the same refusal, naming the model and the column
        return self._core(values, method)

    def _arrays(self, values: Sequence[Any]) -> Any:
        """The row's one-row arrays, ``_NULL_ROW`` if its result is NULL, None for the core."""
        arrays = []
        for value, (lean, null, accepts_missing) in zip(values, self._kinds, strict=True):
            if value is None or (type(value) is float and math.isnan(value)):
                if not accepts_missing:
                    return _NULL_ROW
                arrays.append(null())
                continue
            array = lean(value)
            if array is None:
                return None
            arrays.append(array)
        return arrays

    def _finish(self, result: Any, method: str) -> Any:
        if method == "predict":
            label = _python(result)
            return int(label) if self.signature.label_type == "bigint" else label
        if self.signature.task == "binary":
            return float(result[1])
        return [float(p) for p in result]

    def _core(self, values: Sequence[Any], method: str) -> Any:
        from udfs import scoring  # pandas: only rows the shortcut does not take pay for it

        scoring.check_arity(self.signature, len(values))
        columns = [[value] for value in values]
        result = getattr(scoring, method)(self.scorer, self.signature, columns)
        return _python(result.iloc[0])


_NULL_ROW = object()


class BatchScorer:
    """Score a batch with the semantics of :mod:`udfs.scoring`: labels and probabilities."""

    def __init__(self, scorer: Any, signature: Signature) -> None:
        self.scorer = scorer
        self.signature = signature

    def score(self, columns: Sequence[Any], proba: bool) -> tuple[Any, Any]:
        """(predictions, probabilities or None) as pandas Series: what ``scoring.predict`` and
        ``scoring.predict_proba`` say."""
        from udfs import scoring

        proba = proba and self.signature.has_proba
        labels = scoring.predict(self.scorer, self.signature, columns)
        probabilities = (
            scoring.predict_proba(self.scorer, self.signature, columns) if proba else None
        )
        return labels, probabilities
