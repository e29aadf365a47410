"""Single-row scoring for per-row SQL calls and row triggers, with the core's exact semantics.

scikit-learn spends ~150-400 us validating a one-row input before a tree ensemble walks its
trees in ~20 us. Per-row SQL calls (``SELECT ml.churn(age, ...)``, row triggers) pay that on
every row, so :class:`RowScorer` has a lean path for models whose inference can be called
directly on a float array, and otherwise goes through :mod:`udfs.scoring` with a one-row batch.

The lean path is verified against the core on the first row it scores, and switched off for
good if the two ever disagree, so it can only be faster, never different. This module imports
neither pyspark, psycopg2 nor plpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from udfs import scoring
from udfs.signature import Signature

# Types that reach the lean path unchanged; anything else (str, Decimal, bool) goes to the core.
_PLAIN_NUMBERS = (float, int)
# The smallest magnitude that rounds to inf in float32. The trees see float32, where such a value
# is infinite: scikit-learn refuses it (naming the column, through the core), so the lean paths
# must not score it.
_FLOAT32_OVERFLOW = (2 - 2**-24) * 2.0**127


class _GradientBoosting:
    """Lean inference for GradientBoosting{Classifier,Regressor}: sklearn's own compiled stages."""

    def __init__(self, model: Any) -> None:
        from sklearn.ensemble._gradient_boosting import predict_stages

        self._stages = predict_stages
        self.model = model
        n = int(model.n_features_in_)
        self.x64 = np.zeros((1, n), dtype=np.float64)
        self.x32 = np.zeros((1, n), dtype=np.float32)
        # With a Dummy (prior) or zero init the initial raw prediction does not depend on X.
        self.raw0 = model._raw_predict_init(self.x32)

    @staticmethod
    def supports(model: Any, signature: Signature) -> bool:
        from sklearn.dummy import DummyClassifier, DummyRegressor
        from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

        if type(model) not in (GradientBoostingClassifier, GradientBoostingRegressor):
            return False
        if any(f.type not in ("double", "bigint") for f in signature.features):
            return False
        init = getattr(model, "init_", None)
        return init == "zero" or type(init) in (DummyClassifier, DummyRegressor)

    def _raw(self, values: Sequence[float]) -> np.ndarray:
        self.x64[0, :] = values
        # float64 first, then float32: the rounding sklearn's validate_data does on the batch path.
        np.copyto(self.x32, self.x64, casting="same_kind")
        out = self.raw0.copy()
        self._stages(self.model.estimators_, self.x32, self.model.learning_rate, out)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, values: Sequence[float]) -> Any:
        raw = self._raw(values)
        if not hasattr(self.model, "classes_"):
            return float(raw[0])
        encoded = int(raw[0] >= 0) if raw.ndim == 1 else int(np.argmax(raw, axis=1)[0])
        return self.model.classes_[encoded]

    def predict_proba(self, values: Sequence[float]) -> np.ndarray:
        return self.model._loss.predict_proba(self._raw(values))[0]


def _python(value: Any) -> Any:
    """A numpy scalar or pandas NA as the plain Python value a SQL engine expects."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class RowScorer:
    """Score one row at a time with the semantics of :func:`udfs.scoring.predict`.

    >>> RowScorer(model, signature).predict([41.5, 12, "pro", True])  # doctest: +SKIP
    1
    """

    def __init__(self, model: Any, signature: Signature) -> None:
        self.model = model
        self.signature = signature
        self._optional = [f.accepts_missing for f in signature.features]
        self._lean = (
            _GradientBoosting(model) if _GradientBoosting.supports(model, signature) else None
        )
        self._verified: set[str] = set()

    @property
    def lean(self) -> bool:
        """Whether the lean path is in use."""
        return self._lean is not None

    def predict(self, values: Sequence[Any]) -> Any:
        """The prediction for one row (label or double), or None under the NULL policy."""
        return self._score(values, "predict")

    def predict_proba(self, values: Sequence[Any]) -> Any:
        """P(classes[1]) for binary models, a list in class order for multiclass, or None."""
        return self._score(values, "predict_proba")

    def _score(self, values: Sequence[Any], method: str) -> Any:
        scoring.check_arity(self.signature, len(values))
        if self._lean is not None and self._plain(values):
            if method not in self._verified:
                return self._verify(values, method)
            return self._finish(getattr(self._lean, method)(values), method)
        return self._core(values, method)

    def _plain(self, values: Sequence[Any]) -> bool:
        """Finite plain numbers only: NULL, NaN, inf and float32 overflow take the core path."""
        for value in values:
            if type(value) not in _PLAIN_NUMBERS or not math.isfinite(value):
                return False
            if abs(value) >= _FLOAT32_OVERFLOW:
                return False
        return True

    def _finish(self, result: Any, method: str) -> Any:
        if method == "predict":
            label = _python(result)
            return int(label) if self.signature.label_type == "bigint" else label
        if self.signature.task == "binary":
            return float(result[1])
        return [float(p) for p in result]

    def _core(self, values: Sequence[Any], method: str) -> Any:
        columns = [[value] for value in values]
        with sklearn.config_context(skip_parameter_validation=True):
            result = getattr(scoring, method)(self.model, self.signature, columns)
        return _python(result.iloc[0])

    def _verify(self, values: Sequence[Any], method: str) -> Any:
        expected = self._core(values, method)
        if self._finish(getattr(self._lean, method)(values), method) == expected:
            self._verified.add(method)
        else:  # never different from the core: give up the lean path for this model
            self._lean = None
        return expected


class BatchScorer:
    """Score a batch with the semantics of :mod:`udfs.scoring`, labels and probabilities at once.

    The core's ``predict`` and ``predict_proba`` each run the model, so a classifier scored for
    both walks its trees twice. For a GradientBoosting model whose features are all doubles,
    a batch of finite float64 columns goes through scikit-learn's own compiled stages ONCE,
    and both results are derived from that raw score exactly as scikit-learn derives them.
    Anything else (NULLs, NaN, inf, other types, other models) goes to the core unchanged.

    The first batch of each kind is computed both ways and compared exactly; if they ever
    differ, the lean path is switched off for good: it can only be faster, never different.
    """

    def __init__(self, model: Any, signature: Signature) -> None:
        self.model = model
        self.signature = signature
        eligible = _GradientBoosting.supports(model, signature) and all(
            f.type == "double" for f in signature.features
        )
        self._lean = eligible and signature.label_type in ("double", "bigint")
        self._verified: set[bool] = set()

    @property
    def lean(self) -> bool:
        """Whether the lean path is in use."""
        return self._lean

    def score(self, columns: Sequence[Any], proba: bool) -> tuple[pd.Series, pd.Series | None]:
        """(predictions, probabilities or None): what ``scoring.predict``/``predict_proba`` say."""
        proba = proba and self.signature.has_proba
        if self._lean and self._plain(columns):
            lean = self._lean_score(columns, proba)
            if proba in self._verified:
                return lean
            core = self._core(columns, proba)
            if _same(lean, core):
                self._verified.add(proba)
            else:  # never different from the core: give up the lean path for this model
                self._lean = False
            return core
        return self._core(columns, proba)

    def _plain(self, columns: Sequence[Any]) -> bool:
        scoring.check_arity(self.signature, len(columns))
        for column in columns:
            if not isinstance(column, np.ndarray) or column.dtype != np.float64:
                return False
            if len(column) == 0 or not np.isfinite(column).all():
                return False
            if (np.abs(column) >= _FLOAT32_OVERFLOW).any():
                return False
        return True

    def _core(self, columns: Sequence[Any], proba: bool) -> tuple[pd.Series, pd.Series | None]:
        labels = scoring.predict(self.model, self.signature, columns)
        probabilities = (
            scoring.predict_proba(self.model, self.signature, columns) if proba else None
        )
        return labels, probabilities

    def _lean_score(
        self, columns: Sequence[Any], proba: bool
    ) -> tuple[pd.Series, pd.Series | None]:
        from sklearn.ensemble._gradient_boosting import predict_stages

        model = self.model
        # float64 -> float32 per value: the rounding validate_data does on the core's path.
        X = np.empty((len(columns[0]), len(columns)), dtype=np.float32)
        for j, column in enumerate(columns):
            X[:, j] = column
        raw = model._raw_predict_init(X)
        predict_stages(model.estimators_, X, model.learning_rate, raw)
        if raw.shape[1] == 1:  # decision_function's squeeze
            raw = raw.ravel()
        if not hasattr(model, "classes_"):
            values = raw
        elif raw.ndim == 1:
            values = model.classes_[(raw >= 0).astype(int)]
        else:
            values = model.classes_[np.argmax(raw, axis=1)]
        values = np.asarray(values)
        if self.signature.label_type == "bigint" and values.dtype.kind == "f":
            values = values.astype(np.int64)
        labels = pd.Series(values).astype(scoring.RESULT_DTYPES[self.signature.label_type])
        if not proba:
            return labels, None
        p = np.asarray(model._loss.predict_proba(raw))
        if self.signature.task == "binary":
            return labels, pd.Series(p[:, 1].astype(np.float64)).astype("Float64")
        return labels, pd.Series(p.astype(np.float64).tolist(), dtype=object)


def _same(a: tuple[pd.Series, pd.Series | None], b: tuple[pd.Series, pd.Series | None]) -> bool:
    """Exactly the same results: dtypes, values, NULLs."""
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return False
        if x is not None and not (x.dtype == y.dtype and x.tolist() == y.tolist()):
            return False
    return True
