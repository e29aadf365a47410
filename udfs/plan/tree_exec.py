"""Run a compiled tree node (``udfs.plan.trees``) with numpy and the C kernels only.

Never imports scikit-learn, scipy or pandas: this runs in fresh PostgreSQL backends, where those
imports cost over a second. Every operation after the kernel is the one scikit-learn performs, in
the same order and memory layout, so results are bit-identical.

Input rules follow the estimator's own validation: models that cast X to float32 raise ValueError
on infinity, on values too large for float32 (|x| > 3.4028235e38 after rounding) and, unless the
model accepts missing values, on NaN, where scikit-learn raises too; they never return a number.
"""

from __future__ import annotations

import numpy as np

from udfs.plan import _kernels

# Trees node versions: 1 for scikit-learn's trees; 2 for XGBoost and LightGBM (udfs.plan.boosters):
# float32 accumulation, infinities in float32 models, zero-as-missing nodes, the libraries' rules.
_VERSIONS = (1, 2)
# _kernels.f32_unary operations.
_SIGMOID32, _EXP32 = 0, 1
_CACHE_SIZE = 32
# (id(node), id(arrays)) -> (node, arrays, Prepared). Holding node and arrays keeps their ids unique.
_cache: dict[tuple[int, int], tuple[dict, dict, Prepared]] = {}


def run(node: dict, arrays: dict[str, np.ndarray], X: np.ndarray, method: str) -> np.ndarray:
    """``method`` ("predict" or "predict_proba") of the compiled model on dense float64 ``X``.

    The prepared kernel is cached for the (node, arrays) objects, so repeated calls with the same
    objects pay only the kernel and a few numpy calls.
    """
    key = (id(node), id(arrays))
    hit = _cache.get(key)
    if hit is None or hit[0] is not node or hit[1] is not arrays:
        hit = (node, arrays, prepare(node, arrays))
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = hit
    return hit[2].run(X, method)


def prepare(node: dict, arrays: dict[str, np.ndarray]) -> Prepared:
    """Build the kernel object for a node once; ``Prepared.run`` then scores batches."""
    return Prepared(node, arrays)


def classes(node: dict) -> np.ndarray | None:
    """The class labels of a trees node, with the dtype the estimator's ``classes_`` had."""
    labels = node.get("classes")
    if labels is None:
        return None
    dtype = np.dtype(node["classes_dtype"])
    if dtype.kind == "O":
        out = np.empty(len(labels), dtype=object)
        out[:] = labels
        return out
    return np.array(labels, dtype=dtype)


def softmax(raw: np.ndarray, order: str) -> np.ndarray:
    """sklearn.utils.extmath.softmax, step for step, on an array laid out as sklearn's is."""
    x = np.array(raw, order=order, copy=True)
    x -= np.max(x, axis=1).reshape(-1, 1)
    np.exp(x, out=x)
    x /= np.sum(x, axis=1).reshape(-1, 1)
    return x


def f32_unary(op: int, x: np.ndarray) -> np.ndarray:
    """XGBoost's float32 sigmoid or ``expf`` of a float32 array (``_kernels.f32_unary``)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _kernels.f32_unary(op, x, out)
    return out


class Prepared:
    """A node with its kernel built: ``run(X, method)`` is cheap to call repeatedly."""

    __slots__ = (
        "_acc32",
        "_categorical",
        "_classes",
        "_estimator",
        "_forest",
        "_n_features",
        "_n_outputs",
        "_predict",
        "_proba",
        "_raw_order",
    )

    def __init__(self, node: dict, arrays: dict[str, np.ndarray]) -> None:
        version = node.get("version")
        if node.get("op") != "trees" or version not in _VERSIONS:
            raise ValueError(f"not a trees node of version {_VERSIONS}: {node.get('op')!r}")
        kind = int(node["kind"])
        extra = {}
        if kind == 64:
            extra = {k: arrays[k] for k in ("bitset", "cat_bitsets", "known_bitsets")}
        if version >= 2:
            extra["allow_inf"] = bool(node.get("allow_inf", False))
            extra["acc32"] = bool(node.get("acc32", False))
        self._forest = _kernels.Forest(
            kind=kind,
            n_features=int(node["n_features"]),
            n_outputs=int(node["n_outputs"]),
            width=int(node["width"]),
            root=arrays["root"],
            depth=arrays["depth"],
            col=arrays["col"],
            feature=arrays["feature"],
            threshold=arrays["threshold"],
            left=arrays["left"],
            missing_left=arrays["missing_left"],
            value=arrays["value"],
            init=arrays["init"] if node["has_init"] else None,
            divisor=float(node["divisor"]),
            allow_nan=bool(node["input"]["allow_nan"]),
            **extra,
        )
        self._acc32 = bool(extra.get("acc32", False))
        self._estimator = str(node.get("estimator", "model"))
        self._n_features = int(node["n_features"])
        self._n_outputs = int(node["n_outputs"])
        self._proba = node.get("proba")
        self._predict = node["predict"]
        self._raw_order = node.get("raw_order", "C")
        self._classes = classes(node)
        self._categorical = [
            (int(spec["column"]), np.ascontiguousarray(arrays[spec["values"]], dtype=np.float64))
            for spec in node.get("categorical", ())
        ]

    def raw(self, X: np.ndarray) -> np.ndarray:
        """(n, K) raw scores: initial score plus every tree, as scikit-learn sums them."""
        if (
            type(X) is not np.ndarray
            or X.dtype != np.float64
            or X.ndim != 2
            or not X.flags.c_contiguous
        ):
            X = np.ascontiguousarray(X, dtype=np.float64)
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D, got {X.ndim} dimension(s)")
        if self._categorical:
            X = self._encode_categories(X)
        out = np.empty((X.shape[0], self._n_outputs))
        try:
            self._forest.run(X, out)
        except ValueError as exc:
            raise ValueError(f"{self._estimator}: {exc}") from None
        return out

    def _encode_categories(self, X: np.ndarray) -> np.ndarray:
        """HGB's OrdinalEncoder: a known category -> its index, anything else -> NaN."""
        X = X.copy()
        for col, cats in self._categorical:
            values = X[:, col]
            if np.isinf(values).any():
                # The encoder validates with allow-nan: infinity is an error, as in scikit-learn.
                raise ValueError(
                    f"{self._estimator}: Input contains infinity or a value too large for "
                    f"dtype('float64') (categorical column {col})."
                )
            if cats.size == 0:
                X[:, col] = np.nan
                continue
            idx = np.minimum(np.searchsorted(cats, values), cats.size - 1)
            X[:, col] = np.where(cats[idx] == values, idx, np.nan)
        return X

    def run(self, X: np.ndarray, method: str) -> np.ndarray:
        """ "predict" or "predict_proba", equal to the estimator's own output."""
        if method == "predict":
            return self._run_predict(self.raw(X))
        if method == "predict_proba":
            if self._proba is None:
                raise ValueError(f"{self._estimator} has no predict_proba")
            return self._run_proba(self.raw(X))
        raise ValueError(f"unknown method {method!r}")

    def both(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predict, predict_proba) from one computation of the raw scores.

        Both are derived from the same raw array, which neither rule modifies (softmax works on
        a copy), so each equals what :meth:`run` returns for its method.
        """
        if self._proba is None:
            raise ValueError(f"{self._estimator} has no predict_proba")
        raw = self.raw(X)
        return self._run_predict(raw), self._run_proba(raw)

    def _run_proba(self, raw: np.ndarray) -> np.ndarray:
        proba = self._proba
        if proba == "identity":
            return raw
        if proba in ("logit", "halflogit"):
            out = np.empty((raw.shape[0], 2))
            _kernels.binary_proba(raw, out, 2.0 if proba == "halflogit" else 1.0)
            return out
        if proba == "softmax":
            return softmax(raw, self._raw_order)
        if proba == "sigmoid32":
            # XGBClassifier: float32 probabilities, np.vstack((1 - p, p)).transpose().
            p = f32_unary(_SIGMOID32, raw.reshape(-1))
            return np.vstack((1 - p, p)).transpose()
        raise ValueError(f"unknown proba link {proba!r}")

    def _run_predict(self, raw: np.ndarray) -> np.ndarray:
        predict = self._predict
        if predict == "identity":
            return raw.reshape(-1)
        if predict == "exp":
            return np.exp(raw.reshape(-1))
        if predict == "identity32":
            return raw.reshape(-1).astype(np.float32)  # the float32 margin, held exactly
        if predict == "sigmoid32":
            return f32_unary(_SIGMOID32, raw.reshape(-1))
        if predict == "exp32":
            return f32_unary(_EXP32, raw.reshape(-1))
        if predict == "cexp":
            from udfs.plan.estimators import libm_exp  # LightGBM: std::exp

            return libm_exp(raw.reshape(-1))
        if predict == "gt05":
            # XGBClassifier: column index 1 where the float32 probability is > 0.5.
            encoded = np.repeat(0, raw.shape[0])
            encoded[f32_unary(_SIGMOID32, raw.reshape(-1)) > 0.5] = 1
            return self._classes.take(encoded)
        if predict == "proba_argmax":
            # LGBMClassifier: classes_[argmax(predict_proba)].
            return self._classes.take(np.argmax(self._run_proba(raw), axis=1))
        if predict == "argmax":
            encoded = np.argmax(raw, axis=1)
        elif predict == "ge0":
            encoded = (raw.reshape(-1) >= 0).astype(np.intp)
        elif predict == "gt0":
            encoded = (raw.reshape(-1) > 0).astype(np.intp)
        else:
            raise ValueError(f"unknown predict rule {predict!r}")
        return self._classes.take(encoded)
