"""Run-side transformers: each ``build_*`` turns a plan node into a function ``X -> X``.

Everything that does not depend on the batch (category lookups, statistics cast to the fitted
dtype, column indices) is resolved once at build time, so a one-row batch costs microseconds.
Each function repeats the operations of the sklearn ``transform`` it replaces, in the same order
and on the same dtypes (see :mod:`udfs.plan.ops`). Imports numpy and udfs only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from udfs.errors import InputError
from udfs.plan import _kernels
from udfs.plan.ops import (
    FLOAT_DTYPES,
    Frame,
    Sparse,
    check_finite,
    dense_values,
    sparse_part,
    validate,
)

Step = Callable[[Any], Any]
Arrays = dict[str, np.ndarray]
_FLOATS = tuple(d.name for d in FLOAT_DTYPES)


def _get(arrays: Arrays, name: str | None) -> np.ndarray | None:
    return None if name is None else arrays[name]


def build_passthrough(node: dict, arrays: Arrays) -> Step:
    return lambda X: X


def build_pipeline_steps(steps: list[Step]) -> Step:
    def run(X: Any) -> Any:
        for step in steps:
            X = step(X)
        return X

    return run


def build_column_transformer(node: dict, arrays: Arrays, parts: list[Step]) -> Step:
    selections = [np.asarray(p["columns"], dtype=np.intp) for p in node["parts"]]
    sparse = bool(node["sparse"])
    where = node["where"]

    def run(X: Any) -> Any:
        outputs = []
        for step, columns in zip(parts, selections, strict=True):
            # _safe_indexing: DataFrame columns by position, ndarray X[:, key] (a copy).
            sub = X.take(columns) if isinstance(X, Frame) else X[:, columns]
            outputs.append(step(sub))
        n = X.n_rows if isinstance(X, Frame) else X.shape[0]
        if not outputs:
            return np.zeros((n, 0))
        if sparse:
            # check_array(part, accept_sparse=True) then sparse.hstack(...).tocsr().
            values = [sparse_part(part, where) for part in outputs]
            dtype = np.result_type(*[v.dtype for v in values])
            return Sparse(np.ascontiguousarray(np.hstack([v.astype(dtype) for v in values])))
        return np.hstack([dense_values(part) for part in outputs])

    return run


def build_imputer(node: dict, arrays: Arrays) -> Step:
    fill_dtype = np.dtype(node["fill_dtype"])
    raw = arrays[node["statistics"]]
    if node.get("statistics_kind", "numeric") != "numeric":
        raw = np.array(raw.tolist(), dtype=object)  # str / bool / float objects, as sklearn's
    statistics = raw.astype(fill_dtype)
    keep = _get(arrays, node.get("keep"))  # column indices kept (statistics not NaN)
    indicator = _get(arrays, node.get("indicator"))  # MissingIndicator.features_
    n_features = len(statistics)
    dtype: Any = node["dtype"]
    dtype = tuple(dtype) if isinstance(dtype, list) else dtype
    where = node["where"]
    valid = statistics if keep is None else statistics[keep]
    # Python objects for object dtype (as sklearn assigns them), numpy scalars otherwise.
    fills = [valid[j] for j in range(len(valid))]

    def run(X: Any) -> np.ndarray:
        X = validate(X, dtype, "allow-nan", where=where, copy=True)
        if X.dtype.kind not in "iufO":
            raise InputError(f"{where}: SimpleImputer does not support data with dtype {X.dtype}")
        if X.dtype.kind == "f":
            mask = np.isnan(X)
        elif X.dtype.kind == "O":
            mask = X != X  # sklearn's _object_dtype_isnan
        else:
            mask = np.zeros(X.shape, dtype=bool)
        if keep is not None:
            X = X[:, keep]
            masked = mask[:, keep]
        else:
            masked = mask
        for j, value in enumerate(fills):
            rows = masked[:, j]
            if rows.any():
                X[rows, j] = value
        if indicator is None:
            return X
        flags = mask[:, indicator] if len(indicator) < n_features else mask
        return np.hstack((X, flags))

    return run


def build_scaler(node: dict, arrays: Arrays) -> Step:
    kind = node["kind"]
    where = node["where"]
    first = _get(arrays, node.get("first"))  # mean_/center_ (subtract) or scale_ (multiply)
    second = _get(arrays, node.get("second"))  # scale_ (divide) or min_ (add)
    clip = node.get("clip")

    def run(X: Any) -> np.ndarray:
        X = validate(X, _FLOATS, "allow-nan", where=where, copy=True)
        if kind == "minmax":
            X *= first
            X += second
        else:
            # StandardScaler casts its statistics to X's dtype; RobustScaler/MaxAbsScaler
            # operate with them as they are (same values for float64 X).
            if first is not None:
                X -= first.astype(X.dtype) if kind == "standard" else first
            if second is not None:
                X /= second.astype(X.dtype) if kind == "standard" else second
        if clip is not None:
            lo = np.asarray(clip[0], dtype=X.dtype)
            hi = np.asarray(clip[1], dtype=X.dtype)
            X = np.clip(X, lo, hi, out=X)
        return X

    return run


class _Lookup:
    """Maps one column's values to slots: category index, ``unknown`` or ``missing``."""

    def __init__(self, spec: dict, categories: np.ndarray) -> None:
        self.unknown = int(spec["unknown_slot"])
        self.missing = int(spec["missing_slot"])
        self.numeric = spec["kind"] == "numeric"
        if self.numeric:
            order = np.argsort(categories, kind="stable")
            self.sorted = categories[order].astype(np.float64)
            self.order = order.astype(np.intp)
        else:
            self.table: dict[Any, int] = {}
            for i, value in enumerate(categories.tolist()):
                if not _is_missing(value):
                    self.table.setdefault(value, i)

    def codes(self, column: np.ndarray) -> np.ndarray:
        if self.numeric and column.dtype.kind in "biuf":
            values = column.astype(np.float64)
            pos = np.searchsorted(self.sorted, values)
            pos = np.minimum(pos, len(self.sorted) - 1)
            found = self.sorted[pos] == values
            codes = np.where(found, self.order[pos], self.unknown)
            codes[np.isnan(values)] = self.missing
            return codes
        if self.numeric:
            # object column (booleans with NULLs): compare by value, as sklearn's set lookup.
            return np.fromiter(
                (self._numeric_slot(v) for v in column.tolist()), dtype=np.intp, count=len(column)
            )
        unknown = self.unknown
        if column.dtype == object:  # a dict lookup per value, in C
            codes = np.empty(len(column), dtype=np.intp)
            _kernels.lookup(np.ascontiguousarray(column), self.table, unknown, codes)
        else:
            get = self.table.get
            codes = np.fromiter(
                (get(v, unknown) for v in column.tolist()), dtype=np.intp, count=len(column)
            )
        if (codes == unknown).any():
            for i in np.flatnonzero(codes == unknown).tolist():
                if _is_missing(column[i]):
                    codes[i] = self.missing
        return codes

    def _numeric_slot(self, value: Any) -> int:
        if _is_missing(value):
            return self.missing
        try:
            number = float(value)
        except (TypeError, ValueError):
            return self.unknown
        pos = int(np.searchsorted(self.sorted, number))
        if pos < len(self.sorted) and self.sorted[pos] == number:
            return int(self.order[pos])
        return self.unknown


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def build_encoder(node: dict, arrays: Arrays) -> Step:
    features = node["features"]
    lookups = [_Lookup(f, arrays[f["categories"]]) for f in features]
    tables = [arrays[f["table"]] for f in features]
    errors = [arrays[f["errors"]].astype(bool) for f in features]
    names = node["names"]
    dtype = np.dtype(node["dtype"])
    sparse = bool(node["sparse"])
    where = node["where"]
    finite = node["finite"]  # what _check_X checks on each numeric column

    def run(X: Any) -> Any:
        if isinstance(X, Frame):
            columns = list(X.columns)
            labels = list(X.names)
            if finite:
                for column in columns:
                    check_finite(column, allow_nan=finite == "allow-nan", where=where)
        else:
            whole = validate(X, None, finite, where=where)
            columns = [whole[:, i] for i in range(whole.shape[1])]
            labels = names
        blocks = []
        for i, column in enumerate(columns):
            codes = lookups[i].codes(column)
            bad = errors[i][codes]
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                value = column[row]
                value = value.item() if isinstance(value, np.generic) else value
                raise InputError(
                    f"column '{labels[i]}' has the value {value!r}, which the model did not see "
                    "in training, and its encoder rejects unknown values",
                    column=labels[i],
                    value=repr(value),
                )
            blocks.append(tables[i][codes])
        out = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(codes), 0), dtype)
        out = np.ascontiguousarray(out, dtype=dtype)
        return Sparse(out) if sparse else out

    return run
