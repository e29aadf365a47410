"""Run-side final estimators: linear models in numpy, tree ensembles through ``tree_exec``.

Linear models, exactly as scikit-learn computes them:

- dense input: ``X @ coef_.T + intercept_`` with the same shapes, dtype and memory layout as
  sklearn's call (``udfs.plan.ops`` reproduces the layout), so BLAS takes the same kernel and
  returns the same bits for the same batch. BLAS may pick another kernel for another batch
  size: sklearn's own one-row and batch results can differ in the last bit (~1e-16), and so do
  the plan's, identically. The plan is bit-identical to sklearn on the same batch;
- sparse input (a sparse OneHotEncoder / ColumnTransformer output): scipy's CSR product sums
  each row sequentially over its nonzeros in column order, starting from 0. The plan does the
  same, column by column over the nonzero entries;
- ``expit`` is scipy's ``1 / (1 + exp(-x))`` with the C library's ``exp`` (``math.exp``;
  numpy's SIMD ``exp`` differs in the last bit for ~2% of inputs); softmax uses ``np.exp``,
  as sklearn's ``softmax`` does.

Imports numpy, stdlib and udfs only; ``udfs.plan.tree_exec`` lazily.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from udfs.errors import InputError
from udfs.plan import _kernels
from udfs.plan.ops import Frame, Sparse, check_finite, frame_values, validate

_F32 = np.dtype(np.float32)
# exp(x) overflows above log(DBL_MAX) ~ 709.78; below 709 math.exp never raises.
_EXP_SAFE = 709.0


def libm_exp(x: np.ndarray) -> np.ndarray:
    """``exp`` element-wise through the C library, as scipy's ``expit`` computes it."""
    if x.dtype == np.float64:
        out = np.empty(x.shape, dtype=np.float64)
        _kernels.exp_array(np.ascontiguousarray(x), out)
        return out
    flat = x.ravel()
    safe = flat <= _EXP_SAFE
    out = np.empty(flat.shape, dtype=np.float64)
    if safe.all():
        out[:] = list(map(math.exp, flat.tolist()))
    else:
        for i, v in enumerate(flat.tolist()):
            try:
                out[i] = math.exp(v)
            except OverflowError:
                out[i] = math.inf
    return out.reshape(x.shape)


def expit(x: np.ndarray) -> np.ndarray:
    """scipy.special.expit, bit for bit: ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + libm_exp(-x))


def softmax(X: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax(X, copy=False)."""
    max_prob = np.max(X, axis=1).reshape((-1, 1))
    X -= max_prob
    np.exp(X, out=X)
    sum_prob = np.sum(X, axis=1).reshape((-1, 1))
    X /= sum_prob
    return X


def sparse_dot(values: np.ndarray, coef_t: np.ndarray) -> np.ndarray:
    """scipy's ``csr @ dense``: per row, ``y = 0; y += a_ij * b_j`` over nonzeros in column order."""
    n, k = values.shape
    if coef_t.ndim == 1:
        out = np.zeros(n, dtype=np.result_type(values.dtype, coef_t.dtype))
        for j in range(k):
            column = values[:, j]
            np.add(out, column * coef_t[j], out=out, where=column != 0)
        return out
    out = np.zeros((n, coef_t.shape[1]), dtype=np.result_type(values.dtype, coef_t.dtype))
    for j in range(k):
        column = values[:, j : j + 1]
        np.add(out, column * coef_t[j], out=out, where=column != 0)
    return out


class Linear:
    """A linear model's decision function, predict and predict_proba."""

    def __init__(self, node: dict, arrays: dict[str, np.ndarray]) -> None:
        coef = arrays[node["coef"]]
        if node.get("coef_order") == "F":
            coef = np.asfortranarray(coef)  # the layout sklearn's coef_ had
        self.sparse_check = bool(node.get("sparse_check", True))
        # sklearn multiplies by coef_.T (an F-ordered view of the C-ordered coef_): same here.
        self.coef_t = coef.T if coef.ndim == 2 else coef
        self.intercept = arrays[node["intercept"]]
        self.where = node["where"]
        self.kind = node["kind"]  # regressor | logistic | sgd_log | sgd_huber | classifier
        self.ravel = bool(node.get("ravel", False))
        self.classes = arrays[node["classes"]] if node.get("classes") else None
        if self.classes is not None and node.get("classes_object"):
            self.classes = np.array(self.classes.tolist(), dtype=object)  # str labels, as sklearn

    def decision(self, X: Any) -> np.ndarray:
        if isinstance(X, Sparse):
            values = X.values
            if self.sparse_check:
                check_finite(values, allow_nan=False, where=self.where)
            scores = sparse_dot(values, self.coef_t) + self.intercept
        else:
            values = validate(X, "numeric", True, where=self.where)
            scores = values @ self.coef_t + self.intercept
        if self.ravel:
            return scores.ravel()
        if scores.ndim > 1 and scores.shape[1] == 1:
            return scores.reshape((-1,))
        return scores

    def predict(self, X: Any) -> np.ndarray:
        return self.labels(self.decision(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.proba(self.decision(X))

    def both(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(predict, predict_proba) from one decision function: the labels first, since the
        probabilities are computed in place over the scores, as scikit-learn does."""
        scores = self.decision(X)
        labels = self.labels(scores)
        return labels, self.proba(scores)

    def labels(self, scores: np.ndarray) -> np.ndarray:
        """``predict`` from the decision function (which it leaves unchanged)."""
        if self.classes is None:
            return scores
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes.take(indices, axis=0)

    def proba(self, scores: np.ndarray) -> np.ndarray:
        """``predict_proba`` from the decision function (which it may overwrite)."""
        if self.kind == "logistic" and scores.ndim > 1:
            return softmax(scores)
        if self.kind in ("logistic", "sgd_log"):
            prob = expit(scores)
            if prob.ndim == 1:
                return np.stack([1 - prob, prob], axis=1)
            return _normalize(prob, len(self.classes))
        if self.kind == "sgd_huber":
            return _modified_huber(scores, len(self.classes))
        raise InputError(f"{self.where}: this model has no predict_proba")


def _normalize(prob: np.ndarray, n_classes: int) -> np.ndarray:
    """OvR normalization of LinearClassifierMixin._predict_proba_lr."""
    prob_sum = prob.sum(axis=1)
    all_zero = prob_sum == 0
    if np.any(all_zero):
        prob[all_zero, :] = 1
        prob_sum[all_zero] = n_classes
    prob /= prob_sum.reshape((prob.shape[0], -1))
    return prob


def _modified_huber(scores: np.ndarray, n_classes: int) -> np.ndarray:
    """SGDClassifier.predict_proba for loss='modified_huber'."""
    binary = n_classes == 2
    if binary:
        prob2 = np.ones((scores.shape[0], 2))
        prob = prob2[:, 1]
    else:
        prob = scores
    np.clip(scores, -1, 1, prob)
    prob += 1.0
    prob /= 2.0
    if binary:
        prob2[:, 0] -= prob
        return prob2
    return _normalize(prob, n_classes)


class Trees:
    """A tree ensemble: sklearn's input validation here, the trees in ``udfs.plan.tree_exec``."""

    def __init__(self, node: dict, arrays: dict[str, np.ndarray]) -> None:
        from udfs.plan import tree_exec  # only plans with trees need the compiled kernels

        self._prepared = tree_exec.prepare(node["trees"], arrays)
        self.cast = np.dtype(node["cast"])
        self.nan_ok = bool(node["nan_ok"])
        self.inf_ok = bool(node["inf_ok"])
        self.where = node["where"]
        # "xgboost" | "lightgbm": that library's own input conversion (udfs.plan.boosters).
        self.library = node.get("library")

    def _input(self, X: Any) -> np.ndarray:
        if self.library is not None:
            return library_input(self.library, X, self.where)
        if type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2 and self.cast == _F32:
            # The kernel rounds each float64 to float32 itself (as astype does) and refuses what
            # overflows it, so only NaN is checked here, and no float32 copy is made.
            if not self.nan_ok and np.isnan(X).any():
                raise InputError(f"{self.where}: the input contains NaN, which the model rejects")
            return np.ascontiguousarray(X)
        # check_array(X, dtype=float32 | float64): one conversion from X's own dtype, as sklearn.
        with np.errstate(over="ignore"):
            if isinstance(X, Sparse):
                values = X.values.astype(self.cast)
            elif isinstance(X, Frame):
                values = frame_values(X, self.cast)
            else:
                values = np.asarray(X, dtype=self.cast)
        if values.dtype.kind == "f":
            if not self.nan_ok and np.isnan(values).any():
                raise InputError(f"{self.where}: the input contains NaN, which the model rejects")
            if not self.inf_ok and np.isinf(values).any():
                raise InputError(
                    f"{self.where}: the input contains infinity or a value too large for "
                    f"{self.cast}, which the model rejects"
                )
        return np.ascontiguousarray(values, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        return self._prepared.run(self._input(X), "predict")

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._prepared.run(self._input(X), "predict_proba")

    def both(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(predict, predict_proba) from one walk of the trees."""
        return self._prepared.both(self._input(X))


# LightGBM's kZeroThreshold (1e-35f) as a double: dense entries within it are read as 0.0.
LIGHTGBM_ZERO = float(np.float32(1e-35))


def _no_object(X: Frame, where: str) -> None:
    for name, column in zip(X.names, X.columns, strict=True):
        if column.dtype.kind not in "biuf":
            raise InputError(
                f"{where}: column '{name}' has dtype {column.dtype}; the model takes int, float "
                "or bool columns"
            )


def _as_f64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def library_input(library: str, X: Any, where: str) -> np.ndarray:
    """What ``library`` ("xgboost" | "lightgbm") makes of X: the kernel's float64 input."""
    if library == "xgboost":
        return _xgboost_input(X, where)
    if library == "lightgbm":
        return _lightgbm_input(X, where)
    raise ValueError(f"unknown library {library!r}")


def _xgboost_input(X: Any, where: str) -> np.ndarray:
    """The float64 matrix whose float32 rounding (in the kernel) is what XGBoost predicts on.

    XGBoost converts a DataFrame column by column (float columns as they are, int and bool
    columns with ``to_numpy(float32)``) and refuses object columns; an array keeps a float
    dtype and goes through float32 otherwise; a sparse matrix's absent entries are missing.
    """
    if isinstance(X, Sparse):
        values = X.values.astype(np.float64)
        return np.where(values == 0, np.nan, values)  # CSR keeps no zeros: absent = missing
    if isinstance(X, Frame):
        _no_object(X, where)
        out = np.empty((X.n_rows, len(X.columns)), dtype=np.float64)
        for j, column in enumerate(X.columns):
            out[:, j] = column if column.dtype.kind == "f" else column.astype(np.float32)
        return out
    values = np.asarray(X)
    if values.dtype.kind == "f":
        return _as_f64(values)
    with np.errstate(over="ignore"):
        try:
            return _as_f64(values.astype(np.float32))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: cannot convert the input: {exc}") from None


def _lightgbm_input(X: Any, where: str) -> np.ndarray:
    """The float64 matrix LightGBM predicts on.

    A DataFrame becomes ``to_numpy(result_type(dtypes, float32))`` (object columns refused); an
    array goes through scikit-learn's ``check_array(dtype="numeric")`` (object -> float64), then
    float32 unless it is float32 or float64. LightGBM reads a dense row as its entries with
    ``|x| > 1e-35f`` (or NaN), so smaller ones are 0.0. A sparse matrix keeps its values, however
    small (absent = 0.0).
    """
    if isinstance(X, Sparse):
        return _as_f64(X.values)
    values = _lightgbm_dense(X, where)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(values) <= LIGHTGBM_ZERO, 0.0, values)


def _lightgbm_dense(X: Any, where: str) -> np.ndarray:
    if isinstance(X, Frame):
        _no_object(X, where)
        target = np.result_type(*[c.dtype for c in X.columns], np.float32)
        out = np.empty((X.n_rows, len(X.columns)), dtype=np.float64)
        for j, column in enumerate(X.columns):
            out[:, j] = column.astype(target)
        return out
    values = np.asarray(X)
    try:
        if values.dtype.kind == "O":
            values = values.astype(np.float64)
        elif values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: cannot convert the input: {exc}") from None
    return _as_f64(values)
