"""Row and batch scorers for the SQL engines, with exactly the core's results and NULL policy.

Per-row SQL calls (``SELECT ml.churn(age, ...)``, row triggers) hand over one row of plain Python
values. Through the core, each row pays for pandas coercion of one-row columns; for a model with
a scoring plan, :class:`RowScorer` hands the typed values (floats, ints, strings, booleans,
NULLs: what SQL passes for the function's argument types) to the plan's row program
(``udfs.plan.row``), bit-identical to the plan on a one-row batch, which was itself verified
against scikit-learn. Anything else (text to parse, a Decimal, a value out of range, a row the
plan refuses) goes through the core, which coerces it or names the model, the column and the
value. This module imports neither pyspark, psycopg2, plpy, scikit-learn nor pandas: a fresh
database backend scoring rows through a plan never pays for importing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.signature import Signature


def _python(value: Any) -> Any:
    """A numpy scalar or pandas NA as the plain Python value a SQL engine expects."""
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class RowScorer:
    """Score one row at a time with the semantics of :func:`udfs.scoring.predict`.

    ``scorer`` is what the core takes (``ModelBundle.scorer``: a plan runner or an estimator).

    >>> RowScorer(bundle.scorer, bundle.signature).predict([41.5, 12, "pro", True])  # doctest: +SKIP
    1
    """

    def __init__(self, scorer: Any, signature: Signature) -> None:
        self.scorer = scorer
        self.signature = signature
        # The plan's row program: one row of typed values, no arrays, no pandas.
        self._row = scorer.row_scorer() if getattr(scorer, "is_plan", False) else None
        self._optional = [f.accepts_missing for f in signature.features]
        self._typed = [f.type != "string" for f in signature.features]

    @property
    def lean(self) -> bool:
        """Whether rows go through the plan's row program (not the core's pandas coercion)."""
        return self._row is not None

    def predict(self, values: Sequence[Any]) -> Any:
        """The prediction for one row (label or double), or None under the NULL policy."""
        return self._score(values, "predict")

    def predict_proba(self, values: Sequence[Any]) -> Any:
        """P(classes[1]) for binary models, a list in class order for multiclass, or None."""
        return self._score(values, "predict_proba")

    def _score(self, values: Sequence[Any], method: str) -> Any:
        if self._row is not None and len(values) == len(self._optional):
            for value, optional in zip(values, self._optional, strict=True):
                if not optional and (value is None or (type(value) is float and value != value)):
                    # The NULL policy: a NULL the model can't take gives NULL, once the row's
                    # other values are known to be valid: text in a typed column ('0.0' for a
                    # bigint) is refused by the core as in a batch, NULL or not.
                    text = zip(values, self._typed, strict=True)
                    if any(type(v) is str for v, typed in text if typed):
                        return self._core(values, method)
                    return None
            try:
                return self._finish(self._row.score(values, method), method)
            except Exception:
                pass  # another type (the core coerces it), or a refusal the core will name
        return self._core(values, method)

    def _finish(self, result: Any, method: str) -> Any:
        if method == "predict":
            label = _python(result)
            return int(label) if self.signature.label_type == "bigint" else label
        if self.signature.task == "binary":
            return float(result[1])
        return [float(p) for p in result]

    def _core(self, values: Sequence[Any], method: str) -> Any:
        from udfs import scoring  # pandas: only rows the row program does not take pay for it

        scoring.check_arity(self.signature, len(values))
        columns = [[value] for value in values]
        result = getattr(scoring, method)(self.scorer, self.signature, columns)
        return _python(result.iloc[0])


class BatchScorer:
    """Score a batch with the semantics of :mod:`udfs.scoring`: labels and probabilities."""

    def __init__(self, scorer: Any, signature: Signature) -> None:
        self.scorer = scorer
        self.signature = signature

    def score(self, columns: Sequence[Any], proba: bool) -> tuple[Any, Any]:
        """(predictions, probabilities or None) as pandas Series: what ``scoring.predict`` and
        ``scoring.predict_proba`` say, from one pass of the model where it has a plan."""
        from udfs import scoring

        if proba and self.signature.has_proba:
            return scoring.predict_with_proba(self.scorer, self.signature, columns)
        return scoring.predict(self.scorer, self.signature, columns), None
