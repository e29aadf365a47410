"""Compile side of the preprocessing steps: imputers, scalers and encoders to plan nodes.

Each ``compile_*`` takes the fitted step, the :class:`Builder` that collects arrays and the kind
of input the step receives (``"frame"``, ``"dense"`` or ``"sparse"``), and returns the node and
the kind of its output. Encoders are compiled by asking the fitted encoder itself: every known
category, one unseen value and a missing value per column go through its ``transform``, and the
rows it returns become a lookup table, so drop, infrequent categories and unknown handling are
sklearn's by construction.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from udfs.plan.base import PlanUnsupported

_FLOATS = ["float64", "float32", "float16"]
_UNSEEN = "\x01udfs-unseen-category\x01"


def is_scalar_nan(value: Any) -> bool:
    """A float (or numpy float) NaN: what sklearn's encoders and imputers count as missing."""
    return isinstance(value, float | np.floating) and value != value


class Builder:
    """Collects the plan's arrays under unique names."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, stem: str, array: Any) -> str:
        name = f"a{len(self.arrays)}_{stem}"
        self.arrays[name] = np.ascontiguousarray(array)
        return name


def unsupported(path: str, est: Any, why: str) -> PlanUnsupported:
    step = f"{path}: {type(est).__name__}"
    return PlanUnsupported(f"cannot compile {step}: {why}", step=step)


def _no_sparse(kind: str, path: str, est: Any) -> None:
    if kind == "sparse":
        raise unsupported(path, est, "sparse input")


def compile_imputer(est: SimpleImputer, b: Builder, kind: str, path: str) -> tuple[dict, str]:
    _no_sparse(kind, path, est)
    if not is_scalar_nan(est.missing_values):
        raise unsupported(path, est, "missing_values other than NaN")
    fit_dtype = np.dtype(est._fit_dtype)
    fill_dtype = np.dtype(est._fill_dtype)
    if fit_dtype.kind == "O":
        dtype: Any = "object"
    elif est.strategy in ("most_frequent", "constant"):
        dtype = None
    else:
        dtype = _FLOATS
    stats = np.asarray(est.statistics_)
    if stats.dtype.kind == "O":
        invalid = np.array([is_scalar_nan(v) for v in stats], dtype=bool)
    else:
        invalid = np.isnan(stats.astype(np.float64))
    keep = None
    if not est.keep_empty_features and invalid.any():
        keep = np.flatnonzero(~invalid)
    stored, stats_kind = _store_statistics(stats, invalid, est, path)
    node = {
        "op": "imputer",
        "where": f"{path}: SimpleImputer",
        "dtype": dtype,
        "fill_dtype": fill_dtype.str if fill_dtype.kind != "O" else "object",
        "statistics": b.add("statistics", stored),
        "statistics_kind": stats_kind,
        "keep": None if keep is None else b.add("keep", keep.astype(np.int64)),
        "indicator": None,
        "n_features": len(stats),
    }
    if est.add_indicator:
        indicator = est.indicator_
        if indicator.features != "missing-only" or indicator.sparse not in ("auto", False):
            raise unsupported(path, est, "a MissingIndicator with non-default settings")
        node["indicator"] = b.add("indicator", np.asarray(indicator.features_, dtype=np.int64))
    return node, "dense"


def _store_statistics(
    stats: np.ndarray, invalid: np.ndarray, est: Any, path: str
) -> tuple[np.ndarray, str]:
    """Statistics as a numeric or unicode array, plus how to turn them back into sklearn's."""
    if stats.dtype.kind != "O":
        return stats.copy(), "numeric"
    values = [v for v, bad in zip(stats.tolist(), invalid, strict=True) if not bad]
    filled = ["" if bad else v for v, bad in zip(stats.tolist(), invalid, strict=True)]
    if invalid.any() and est.keep_empty_features:
        raise unsupported(path, est, "an empty string feature kept with keep_empty_features")
    if all(type(v) is str for v in values):
        if any("\x00" in v for v in values):
            raise unsupported(path, est, "a statistic containing NUL")
        return np.array(filled, dtype=str), "str"
    if all(type(v) is bool for v in values):
        return np.array([bool(v) if v != "" else False for v in filled]), "bool"
    if all(type(v) in (float, np.float64) for v in values):
        return np.array([float(v) if v != "" else np.nan for v in filled]), "float"
    raise unsupported(path, est, "statistics of mixed types")


_SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)


def compile_scaler(est: Any, b: Builder, kind: str, path: str) -> tuple[dict, str]:
    _no_sparse(kind, path, est)
    node: dict[str, Any] = {"op": "scaler", "where": f"{path}: {type(est).__name__}"}
    first = second = clip = None
    if isinstance(est, StandardScaler):
        node["kind"] = "standard"
        first = est.mean_ if est.with_mean else None
        second = est.scale_ if est.with_std and est.scale_ is not None else None
    elif isinstance(est, MinMaxScaler):
        node["kind"] = "minmax"
        first, second = est.scale_, est.min_
        if est.clip:
            clip = [float(est.feature_range[0]), float(est.feature_range[1])]
    elif isinstance(est, MaxAbsScaler):
        node["kind"] = "maxabs"
        second = est.scale_
        if getattr(est, "clip", False):
            clip = [-1.0, 1.0]
    else:
        node["kind"] = "robust"
        first = est.center_ if est.with_centering else None
        second = est.scale_ if est.with_scaling else None
    node["first"] = None if first is None else b.add("first", np.asarray(first))
    node["second"] = None if second is None else b.add("second", np.asarray(second))
    node["clip"] = clip
    return node, "dense"


def compile_encoder(
    est: Any, b: Builder, kind: str, path: str, names: list[str] | None
) -> tuple[dict, str]:
    _no_sparse(kind, path, est)
    if any(c is None for c in est.categories_):
        raise unsupported(path, est, "no categories")
    n = len(est.categories_)
    fitted = getattr(est, "feature_names_in_", None)
    source = list(fitted) if fitted is not None else names or list(range(n))
    labels = [str(x) for x in source]
    one_hot = isinstance(est, OneHotEncoder)
    widths = [int(w) for w in est._n_features_outs] if one_hot else [1] * n
    tables, errors = _probe(est, widths, path)
    features = []
    for i, categories in enumerate(est.categories_):
        stored, lookup_kind, missing_at = _store_categories(np.asarray(categories), est, path)
        k = len(categories)
        features.append(
            {
                "kind": lookup_kind,
                "categories": b.add("categories", stored),
                "unknown_slot": k,
                "missing_slot": k + 1 if missing_at is None else missing_at,
                "table": b.add("table", tables[i]),
                "errors": b.add("errors", errors[i].astype(np.int8)),
            }
        )
    sparse = isinstance(est, OneHotEncoder) and bool(est.sparse_output)
    node = {
        "op": "encoder",
        "where": f"{path}: {type(est).__name__}",
        "features": features,
        "names": labels,
        "dtype": np.dtype(est.dtype).str,
        "sparse": sparse,
        "finite": "allow-nan",
    }
    return node, "sparse" if sparse else "dense"


def _store_categories(
    categories: np.ndarray, est: Any, path: str
) -> tuple[np.ndarray, str, int | None]:
    """The categories as a numeric or unicode array, and where the NaN category is."""
    values = categories.tolist()
    nan_at = next((i for i, v in enumerate(values) if is_scalar_nan(v)), None)
    if categories.dtype.kind in "biuf":
        return categories.copy(), "numeric", nan_at
    present = [v for v in values if not (v is None or is_scalar_nan(v))]
    if not all(type(v) is str for v in present):
        if all(type(v) is bool for v in present):
            return np.array(present, dtype=bool), "numeric", nan_at
        raise unsupported(path, est, "categories of mixed types")
    if any("\x00" in v for v in present):
        raise unsupported(path, est, "a category containing NUL")
    # Missing categories (NaN or None) are always last in categories_, so the strings keep
    # their indices; None matches nothing at run time (the runtime passes NaN, as sklearn sees).
    return np.array(present, dtype=str), "object", nan_at


def _unseen(categories: np.ndarray) -> Any:
    if categories.dtype.kind == "O":
        return _UNSEEN
    if categories.dtype.kind == "b":
        seen = set(categories.tolist())
        rest = [v for v in (False, True) if v not in seen]
        return rest[0] if rest else None
    finite = categories[~np.isnan(categories.astype(np.float64))]
    top = finite.max() if len(finite) else 0
    return top + 1


def _container(est: Any, columns: list[list], dtypes: list[np.dtype]) -> Any:
    if hasattr(est, "feature_names_in_"):
        return pd.DataFrame(
            {
                name: pd.Series(col, dtype=dtype)
                for name, col, dtype in zip(est.feature_names_in_, columns, dtypes, strict=True)
            }
        )
    numeric = all(d.kind in "biuf" for d in dtypes)
    return np.array(columns, dtype=np.float64 if numeric else object).T


def _transform(est: Any, X: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = est.transform(X)
    return out.toarray() if hasattr(out, "toarray") else np.asarray(out)


def _probe(est: Any, widths: list[int], path: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per column: output rows for [categories..., unseen, missing] and which ones raise."""
    cats = [np.asarray(c) for c in est.categories_]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    longest = max(len(c) for c in cats)
    known = [c.tolist() + [c.tolist()[0]] * (longest - len(c)) for c in cats]
    dtypes = [c.dtype for c in cats]
    try:
        base = _transform(est, _container(est, known, dtypes))
    except Exception as exc:  # the fitted encoder must take its own categories
        raise unsupported(path, est, f"it rejects its own categories ({exc})") from exc
    out_dtype = np.dtype(est.dtype)
    tables = [np.zeros((len(c) + 2, widths[i]), dtype=out_dtype) for i, c in enumerate(cats)]
    errors = [np.zeros(len(c) + 2, dtype=bool) for c in cats]
    for i, c in enumerate(cats):
        tables[i][: len(c)] = base[: len(c), starts[i] : starts[i + 1]]
        for slot, value in ((len(c), _unseen(c)), (len(c) + 1, np.nan)):
            if value is None:
                errors[i][slot] = True  # unreachable (a boolean column with both values seen)
                continue
            row = [[col[0]] for col in known]
            row[i] = [value]
            types = list(dtypes)
            if value is np.nan and types[i].kind in "iu":
                types[i] = np.dtype(np.float64)
            elif value is np.nan and types[i].kind == "b":
                types[i] = np.dtype(object)
            try:
                tables[i][slot] = _transform(est, _container(est, row, types))[
                    0, starts[i] : starts[i + 1]
                ]
            except ValueError:
                errors[i][slot] = True
    return tables, errors


ENCODERS = (OneHotEncoder, OrdinalEncoder)
