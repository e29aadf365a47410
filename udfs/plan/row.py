"""One row at a time: a scoring plan compiled into one Python function and one C call.

A per-row SQL function hands over one row of Python values (``float`` for double, ``int`` for
bigint, ``bool`` for boolean, ``str`` for string, ``None`` for NULL). :class:`RowPlan` scores it
without building one-row arrays: the transform runs on Python scalars in a function generated
for the plan (straight-line code, one local variable per column), tree ensembles walk the row in
C (``Forest.row``), linear models call the same numpy product on a ``(1, n)`` array.

Exactness: a row's result is what :class:`~udfs.plan.execute.PlanRunner` returns for the one-row
arrays ``udfs.fastpath`` builds from the same values, bit for bit, raising where it raises. The
batch path's behaviour depends on dtypes (which change with the NULLs of the row: a NULL bigint
is float64, a NULL boolean makes an object column), so a row function is generated per dtype
pattern: every step knows the numpy dtype of each of its columns and converts scalars exactly as
numpy converts them (``int`` to ``float``, ``bool`` to 1.0/0.0, objects through ``float()``).
Scalar arithmetic is IEEE double arithmetic in Python as in numpy (no fused multiply-add).

What is not fused falls back to the batch path, for the whole plan (a step or dtype without a
scalar version here) or for one row (a bigint beyond 2**53, whose float32 rounding depends on the
route; a string reaching a numeric conversion, which numpy would parse). :attr:`RowPlan.fallbacks`
counts the rows that took the batch path.

Imports numpy, stdlib and udfs only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from udfs.errors import InputError
from udfs.plan.estimators import LIGHTGBM_ZERO, Linear, Trees, softmax
from udfs.plan.ops import interleaved_dtype, target_dtype

F8 = np.dtype(np.float64)
F4 = np.dtype(np.float32)
I8 = np.dtype(np.int64)
B1 = np.dtype(bool)
OBJ = np.dtype(object)
_TRACKED = (F8, F4, I8, B1, OBJ)
_FLOATS = (F8, F4, np.dtype(np.float16))
_INT64 = (-(2**63), 2**63 - 1)
# Integers beyond this may round differently to float32 directly and through float64.
_EXACT = 2**53
_NAN = math.nan
_INF = math.inf


class _Unfusable(Exception):
    """This plan (for this dtype pattern) has no row function: use the batch path."""


class _Fallback(Exception):
    """This row's values cannot take the row function: use the batch path."""


class _Meta(NamedTuple):
    """What the batch path holds between steps: a Frame (one dtype per column) or an array."""

    kind: str  # "frame" | "dense" | "sparse"
    dtypes: tuple[np.dtype, ...]  # per column
    dtype: np.dtype | None  # the array's dtype (dense, sparse); None for a frame

    @property
    def width(self) -> int:
        return len(self.dtypes)


def _array(kind: str, dtype: np.dtype, width: int) -> _Meta:
    _tracked(dtype)
    return _Meta(kind, (dtype,) * width, dtype)


def _tracked(dtype: np.dtype) -> np.dtype:
    if dtype not in _TRACKED:
        raise _Unfusable(f"dtype {dtype}")
    return dtype


# ------------------------------------------------------------------ generated code


def _obj_to_float(v: Any) -> float:
    """numpy's object -> float64 cast of one element (strings it would parse: the batch path)."""
    if type(v) is float:
        return v
    if isinstance(v, str | bytes):
        raise _Fallback
    return float(v)


def _fail(message: str) -> None:
    raise InputError(message)


def _fallback() -> None:
    raise _Fallback


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class _Code:
    """Straight-line Python source: one variable per column value, constants by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {
            "NAN": _NAN,
            "INF": _INF,
            "NINF": -_INF,
            "fail": _fail,
            "fallback": _fallback,
            "tofloat": _obj_to_float,
            "is_missing": _is_missing,
        }
        self.count = 0

    def new(self, expr: str) -> str:
        self.count += 1
        name = f"x{self.count}"
        self.lines.append(f"{name} = {expr}")
        return name

    def const(self, value: Any) -> str:
        name = f"k{len(self.ns)}"
        self.ns[name] = value
        return name

    def line(self, text: str) -> None:
        self.lines.append(text)

    def function(self, name: str, args: Sequence[str]) -> Callable:
        body = "\n".join("    " + line for line in self.lines) or "    pass"
        source = f"def {name}({', '.join(args)}):\n{body}\n"
        namespace = dict(self.ns)
        exec(compile(source, f"<udfs row plan {name}>", "exec"), namespace)
        return namespace[name]


def _conv(src: np.dtype, dst: np.dtype) -> str | None:
    """How a value of dtype ``src`` (as a Python scalar) becomes one of ``dst``: a template for
    its expression, or None when the Python value stands for both.

    Python scalars stand for numpy values: float for float64/float32 (the float32 value exactly),
    int for int64, bool for bool, the object itself for object.
    """
    _tracked(src)
    _tracked(dst)
    if src == dst or dst == OBJ:
        return None  # float64/int64/bool -> object gives the Python float/int/bool
    if dst == F8:
        if src == F4:
            return None
        if src in (I8, B1):
            return "float({})"
        return "tofloat({})"
    if dst == F4 and src == B1:
        return "float({})"
    if dst == I8 and src == B1:
        return "int({})"
    raise _Unfusable(f"conversion {src} -> {dst}")


def _apply(code: _Code, template: str | None, name: str) -> str:
    return name if template is None else code.new(template.format(name))


def _check_finite(code: _Code, dtype: np.dtype, finite: bool | str, names: list[str], where: str):
    """ops.check_finite on these columns of ``dtype``."""
    if not finite:
        return
    allow_nan = finite == "allow-nan"
    if dtype == OBJ:
        if not allow_nan:
            message = code.const(f"{where}: the input contains NaN")
            for n in names:
                code.line(f"if {n} != {n}: fail({message})")
        return
    if dtype.kind != "f":
        return
    if allow_nan:
        message = code.const(f"{where}: the input contains infinity")
        for n in names:
            code.line(f"if {n} == INF or {n} == NINF: fail({message})")
    else:
        message = code.const(f"{where}: the input contains NaN, infinity or a value too large")
        for n in names:
            code.line(f"if {n} - {n} != 0.0: fail({message})")


def _validate(
    code: _Code, meta: _Meta, names: list[str], dtype: Any, finite: bool | str, where: str
) -> tuple[np.dtype, list[str]]:
    """ops.validate for a row: the output dtype and the converted, checked columns."""
    if meta.kind == "sparse":
        raise _Unfusable("sparse input")
    orig = np.result_type(*meta.dtypes) if meta.kind == "frame" else meta.dtype
    target = target_dtype(orig, dtype)
    if meta.kind == "frame":
        common = interleaved_dtype(meta.dtypes)
        out = target if target is not None and target != common else common
        _tracked(out)
        names = [
            _apply(code, _conv(common, out), _apply(code, _conv(d, common), n))
            for d, n in zip(meta.dtypes, names, strict=True)
        ]
    else:
        out = target if target is not None and target != meta.dtype else meta.dtype
        template = _conv(meta.dtype, _tracked(out))
        names = [_apply(code, template, n) for n in names]
    _check_finite(code, out, finite, names, where)
    return out, names


def _dense(code: _Code, meta: _Meta, names: list[str]) -> tuple[np.dtype, list[str]]:
    """ops.dense_values: a Frame interleaves (pandas' common dtype), arrays stay as they are."""
    if meta.kind == "frame":
        common = _tracked(interleaved_dtype(meta.dtypes))
        return common, [
            _apply(code, _conv(d, common), n) for d, n in zip(meta.dtypes, names, strict=True)
        ]
    return meta.dtype, names


# ------------------------------------------------------------------ transform steps


def _get(arrays: dict, name: str | None) -> np.ndarray | None:
    return None if name is None else arrays[name]


def _spec(code: _Code, node: dict, arrays: dict, meta: _Meta, names: list[str]):
    """Emit one transform node for input ``meta``; return (output meta, output columns)."""
    op = node["op"]
    if op == "passthrough":
        return meta, names
    if op == "pipeline":
        for step in node["steps"]:
            meta, names = _spec(code, step, arrays, meta, names)
        return meta, names
    if op == "column_transformer":
        return _column_transformer(code, node, arrays, meta, names)
    if op == "imputer":
        return _imputer(code, node, arrays, meta, names)
    if op == "scaler":
        return _scaler(code, node, arrays, meta, names)
    if op == "encoder":
        return _encoder(code, node, arrays, meta, names)
    raise _Unfusable(f"step {op!r}")


def _take(meta: _Meta, columns: list[int]) -> _Meta:
    if meta.kind == "frame":
        return _Meta("frame", tuple(meta.dtypes[i] for i in columns), None)
    if meta.kind == "sparse":
        raise _Unfusable("sparse input to a ColumnTransformer")
    return _array("dense", meta.dtype, len(columns))


def _column_transformer(code: _Code, node: dict, arrays: dict, meta: _Meta, names: list[str]):
    where = node["where"]
    sparse = bool(node["sparse"])
    parts = []
    for part in node["parts"]:
        columns = [int(i) for i in part["columns"]]
        if any(not 0 <= i < meta.width for i in columns):
            raise _Unfusable("column index out of range")
        sub_meta, sub = _spec(code, part["node"], arrays, _take(meta, columns),
                              [names[i] for i in columns])  # fmt: skip
        if sparse and sub_meta.kind != "sparse":
            # sparse_part: check_array(part, accept_sparse=True, dtype="numeric").
            dtype, sub = _validate(code, sub_meta, sub, "numeric", False, where)
        elif sparse:
            dtype = sub_meta.dtype
        else:
            dtype, sub = _dense(code, sub_meta, sub)
        parts.append((dtype, sub))
    if not parts:
        return _array("dense", F8, 0), []
    result = _tracked(np.result_type(*[dtype for dtype, _ in parts]))
    out: list[str] = []
    for dtype, sub in parts:
        template = _conv(dtype, result)
        out.extend(_apply(code, template, n) for n in sub)
    return _array("sparse" if sparse else "dense", result, len(out)), out


_RAISE = object()


def _assigned(value: Any, dtype: np.dtype) -> Any:
    """What ``X[rows, j] = value`` stores in an array of ``dtype``, as a Python scalar."""
    tmp = np.zeros((1, 1), dtype=dtype)
    try:
        with np.errstate(all="ignore"):
            tmp[np.array([True]), 0] = value
    except (TypeError, ValueError, OverflowError):
        return _RAISE
    stored = tmp[0, 0]
    return stored if dtype == OBJ else stored.item()


def _imputer(code: _Code, node: dict, arrays: dict, meta: _Meta, names: list[str]):
    fill_dtype = np.dtype(node["fill_dtype"])
    raw = arrays[node["statistics"]]
    if node.get("statistics_kind", "numeric") != "numeric":
        raw = np.array(raw.tolist(), dtype=object)
    statistics = raw.astype(fill_dtype)
    keep = _get(arrays, node.get("keep"))
    indicator = _get(arrays, node.get("indicator"))
    dtype: Any = node["dtype"]
    dtype = tuple(dtype) if isinstance(dtype, list) else dtype
    if meta.width != len(statistics):
        raise _Unfusable("imputer width")
    out, names = _validate(code, meta, names, dtype, "allow-nan", node["where"])
    if out.kind not in "iufO":
        raise _Unfusable("an imputer input dtype it rejects")  # the batch path raises
    masked = out.kind in "fO"
    flags: list[str] = []
    stacked = out
    if indicator is not None:
        # MissingIndicator: the mask of the validated input, before any filling; hstack'ed.
        stacked = _tracked(np.result_type(out, B1))
        template = _conv(B1, stacked) or "{}"
        for i in indicator.tolist():
            n = names[int(i)]
            flags.append(code.new(template.format(f"{n} != {n}" if masked else "False")))
    valid = statistics if keep is None else statistics[keep]
    kept = names if keep is None else [names[int(k)] for k in keep.tolist()]
    if masked:
        filled = []
        for j, n in enumerate(kept):
            fill = _assigned(valid[j], out)
            if fill is _RAISE:
                code.line(f"if {n} != {n}: fallback()")
                filled.append(n)
            else:
                filled.append(code.new(f"{code.const(fill)} if {n} != {n} else {n}"))
        kept = filled
    return _array("dense", stacked, len(kept) + len(flags)), kept + flags


def _scaler(code: _Code, node: dict, arrays: dict, meta: _Meta, names: list[str]):
    kind = node["kind"]
    first = _get(arrays, node.get("first"))
    second = _get(arrays, node.get("second"))
    clip = node.get("clip")
    out, names = _validate(code, meta, names, tuple(d.name for d in _FLOATS), "allow-nan",
                           node["where"])  # fmt: skip
    if out != F8:
        raise _Unfusable("a scaler on a non-float64 input")
    for stat in (first, second):
        if stat is not None and (stat.dtype != F8 or stat.shape != (meta.width,)):
            raise _Unfusable("scaler statistics")
    a = None if first is None else first.tolist()
    b = None if second is None else second.tolist()
    if kind == "minmax":
        if a is None or b is None:
            raise _Unfusable("minmax statistics")
        # X *= scale_; X += min_
        names = [code.new(f"{n} * {code.const(s)} + {code.const(m)}")
                 for n, s, m in zip(names, a, b, strict=True)]  # fmt: skip
    else:
        if b is not None and any(x == 0.0 or x != x for x in b):
            raise _Unfusable("a zero scale")  # numpy divides by zero, Python raises
        out_names = []
        for j, n in enumerate(names):
            expr = n
            if a is not None:
                expr = f"{expr} - {code.const(a[j])}"
            if b is not None:
                expr = f"({expr}) / {code.const(b[j])}"
            out_names.append(n if expr == n else code.new(expr))
        names = out_names
    if clip is not None:
        # np.clip: NaN stays NaN; a value equal to a bound stays itself (signed zeros).
        lo, hi = code.const(float(clip[0])), code.const(float(clip[1]))
        names = [code.new(f"{lo} if {n} < {lo} else ({hi} if {n} > {hi} else {n})")
                 for n in names]  # fmt: skip
    return _array("dense", F8, meta.width), names


def _column_lookup(
    spec: dict, categories: np.ndarray, table: np.ndarray, errors: np.ndarray, dtype: np.dtype
) -> tuple[str, dict, Any, Any]:
    """One encoder column as steps._Lookup + the table: (how, table of rows, unknown, missing).

    ``how`` is "float" (look up float(v); NaN is missing), "object" (look up v itself; a
    missing value is None or a float NaN) or "numeric_object" (steps._Lookup._numeric_slot).
    """
    unknown = int(spec["unknown_slot"])
    missing = int(spec["missing_slot"])
    rows = [tuple(r) for r in table.tolist()]
    bad = errors.astype(bool).tolist()
    if len(rows) < max(unknown, missing) + 1 or len(bad) != len(rows):
        raise _Unfusable("encoder table")

    def slot(code: int) -> Any:
        return _RAISE if bad[code] else rows[code]

    known: dict[Any, Any] = {}
    if spec["kind"] == "numeric":
        for i, value in enumerate(categories.astype(np.float64).tolist()):
            if value == value:
                known.setdefault(value, slot(i))
        how = "float" if dtype.kind in "biuf" else "numeric_object"
    else:
        for i, value in enumerate(categories.tolist()):
            if not _is_missing(value):
                known.setdefault(value, slot(i))
        how = "object"
    return how, known, slot(unknown), slot(missing)


def _numeric_lookup(known: dict, unknown: Any, missing: Any) -> Callable[[Any], Any]:
    """steps._Lookup._numeric_slot: an object column looked up among numeric categories."""

    def lookup(v: Any) -> Any:
        if _is_missing(v):
            return missing
        try:
            number = float(v)
        except (TypeError, ValueError):
            return unknown
        return known.get(number, unknown)

    return lookup


def _encoder(code: _Code, node: dict, arrays: dict, meta: _Meta, names: list[str]):
    features = node["features"]
    dtype = np.dtype(node["dtype"])
    if dtype not in (F8, F4):
        raise _Unfusable(f"encoder dtype {dtype}")
    where = node["where"]
    finite = node["finite"]
    if meta.width != len(features):
        raise _Unfusable("encoder width")
    if meta.kind == "frame":
        column_dtypes = meta.dtypes
        for d, n in zip(column_dtypes, names, strict=True):
            _check_finite(code, d, finite, [n], where)
    else:
        out, names = _validate(code, meta, names, None, finite, where)
        column_dtypes = (out,) * meta.width
    raise_ = code.const(_RAISE)
    out_names: list[str] = []
    for f, d, n, label in zip(features, column_dtypes, names, node["names"], strict=True):
        table = arrays[f["table"]]
        if table.dtype != dtype or table.ndim != 2:
            raise _Unfusable("encoder table dtype")
        how, known, unknown, missing = _column_lookup(
            f, arrays[f["categories"]], table, arrays[f["errors"]], d
        )
        t, u, m = code.const(known), code.const(unknown), code.const(missing)
        if how == "float":
            key = n if d in (F8, F4) else f"float({n})"
            row = code.new(f"{m} if {n} != {n} else {t}.get({key}, {u})")
        elif how == "object":
            row = code.new(f"{t}.get({n})")
            code.line(f"if {row} is None: {row} = {m} if is_missing({n}) else {u}")
        else:
            row = code.new(f"{code.const(_numeric_lookup(known, unknown, missing))}({n})")
        if unknown is _RAISE or missing is _RAISE or any(r is _RAISE for r in known.values()):
            message = code.const(
                f"column '{label}': a value the model did not see in training, and its encoder "
                "rejects unknown values"
            )
            code.line(f"if {row} is {raise_}: fail({message})")
        width = table.shape[1]
        cells = [f"x{code.count + 1 + j}" for j in range(width)]
        code.count += width
        if width:
            code.line(f"{', '.join(cells)}, = {row}")
        out_names.extend(cells)
    return _array("sparse" if node["sparse"] else "dense", dtype, len(out_names)), out_names


# ------------------------------------------------------------------ estimators


def _to_numbers(code: _Code, meta: _Meta, names: list[str]) -> list[str]:
    """The tree estimator's conversion (np.asarray(X, float32 | float64)), short of the float32
    rounding, which ``Forest.row`` does: every column as a Python number it converts exactly
    (float, int within 2**53, bool)."""
    if meta.kind == "frame":
        common = _tracked(interleaved_dtype(meta.dtypes))
        names = [_apply(code, _conv(d, common), n) for d, n in zip(meta.dtypes, names, strict=True)]
    else:
        common = meta.dtype
    if common == OBJ:
        names = [code.new(f"tofloat({n})") for n in names]
    return names


def _argmax(values: Sequence[float]) -> int:
    """np.argmax of one row: the first maximum, or the first NaN."""
    best = 0
    top = values[0]
    if top != top:
        return 0
    for i in range(1, len(values)):
        v = values[i]
        if v != v:
            return i
        if v > top:
            best, top = i, v
    return best


def _expit(x: float) -> float:
    """estimators.expit of one value: 1 / (1 + exp(-x)) with the C library's exp."""
    try:
        e = math.exp(-x)
    except OverflowError:
        e = _INF
    return 1.0 / (1.0 + e)


_ROW_RULES = (
    "identity",
    "exp",
    "argmax",
    "ge0",
    "gt0",
    "identity32",
    "sigmoid32",
    "exp32",
    "cexp",
    "gt05",
    "proba_argmax",
)


def _f32(op: int, x: float) -> np.float32:
    """tree_exec.f32_unary of one value: XGBoost's float32 sigmoid (0) or expf (1)."""
    from udfs.plan.tree_exec import f32_unary

    return f32_unary(op, np.array((x,), dtype=np.float32))[0]


class _TreeRow:
    """The final tree ensemble on one row: ``Forest.row`` plus scikit-learn's output rule."""

    def __init__(self, trees: Trees) -> None:
        from udfs.plan import _kernels

        prepared = trees._prepared
        self.forest = prepared._forest
        self.flags = (0 if trees.nan_ok else _kernels.ROW_NO_NAN) | (
            0 if trees.inf_ok else _kernels.ROW_NO_INF
        )
        self.strict = self.flags | _kernels.ROW_STRICT
        self.rule = prepared._predict
        self.link = prepared._proba
        self.order = prepared._raw_order
        self.estimator = prepared._estimator
        classes = prepared._classes
        self.labels = None if classes is None else [classes[i] for i in range(len(classes))]
        self.categorical = [
            (col, {v: float(i) for i, v in reversed(list(enumerate(cats.tolist())))})
            for col, cats in prepared._categorical
        ]
        # "xgboost" | "lightgbm": that library's input conversion (estimators._xgboost_input).
        self.library = trees.library
        if self.rule not in _ROW_RULES:
            raise _Unfusable(f"predict rule {self.rule!r}")
        if self.rule in ("argmax", "ge0", "gt0", "gt05", "proba_argmax") and self.labels is None:
            raise _Unfusable("classes")
        if self.link not in (None, "identity", "logit", "halflogit", "softmax", "sigmoid32"):
            raise _Unfusable(f"proba link {self.link!r}")

    def finish(self, code: _Code, meta: _Meta, names: list[str]) -> None:
        """Emit the conversion to the model's input and the call of ``Forest.row``."""
        if self.library is not None:
            # XGBoost and LightGBM refuse object columns, and send an int or bool array through
            # float32 (LightGBM) or parse an object one: the batch path does those.
            if meta.kind == "frame" and any(d == OBJ for d in meta.dtypes):
                raise _Unfusable(f"{self.library}: an object column")
            if meta.kind != "frame" and meta.dtype.kind != "f":
                raise _Unfusable(f"{self.library}: a {meta.dtype} array")
        names = _to_numbers(code, meta, names)
        if self.library == "xgboost" and meta.kind == "sparse":
            # A CSR matrix keeps no zeros, and XGBoost reads an absent entry as missing.
            names = [code.new(f"NAN if {n} == 0 else {n}") for n in names]
        if self.library == "lightgbm" and meta.kind != "sparse":
            # LightGBM reads dense entries within +-1e-35f as 0.0 (estimators._lightgbm_input).
            zero = code.const(LIGHTGBM_ZERO)
            names = [code.new(f"0.0 if -{zero} <= {n} <= {zero} else {n}") for n in names]
        message = code.const(f"{self.estimator}: infinity in a categorical column")
        for col, index in self.categorical:
            # HGB's OrdinalEncoder: a known category -> its index, anything else -> NaN.
            v = code.new(f"float({names[col]})")
            code.line(f"if {v} == INF or {v} == NINF: fail({message})")
            names[col] = code.new(f"NAN if {v} != {v} else {code.const(index)}.get({v}, NAN)")
        row = code.const(self.forest.row)
        code.line(f"return {row}([{', '.join(names)}], {self.flags})")

    def predict(self, raw: tuple) -> Any:
        rule = self.rule
        if rule == "identity32":
            return np.float32(raw[0])
        if rule == "sigmoid32":
            return _f32(0, raw[0])
        if rule == "exp32":
            return _f32(1, raw[0])
        if rule == "cexp":
            try:
                return np.float64(math.exp(raw[0]))
            except OverflowError:
                return np.float64(_INF)
        if rule == "gt05":
            return self.labels[int(_f32(0, raw[0]) > 0.5)]
        if rule == "proba_argmax":
            p = _expit(raw[0])
            return self.labels[_argmax((1 - p, p))]
        if rule == "ge0":
            return self.labels[raw[0] >= 0]
        if rule == "gt0":
            return self.labels[raw[0] > 0]
        if rule == "argmax":
            return self.labels[_argmax(raw)]
        if rule == "identity":
            return np.float64(raw[0])
        return np.exp(np.array(raw[:1]))[0]  # "exp", on a one-element array as the batch

    def proba(self, raw: tuple) -> np.ndarray:
        link = self.link
        if link == "sigmoid32":
            p = _f32(0, raw[0])
            return np.array((1 - p, p))
        if link == "logit":
            p = _expit(raw[0])
            return np.array((1 - p, p))
        if link == "halflogit":
            p = _expit(2.0 * raw[0])
            return np.array((1 - p, p))
        if link == "identity":
            return np.array(raw)
        if link == "softmax":
            from udfs.plan.tree_exec import softmax

            return softmax(np.array([raw]), self.order)[0]
        raise ValueError(f"{self.estimator} has no predict_proba")


class _LinearRow:
    """The final linear model on one row: numpy's product on a (1, n) array, then its rules."""

    def __init__(self, linear: Linear) -> None:
        self.linear = linear
        coef_t = linear.coef_t
        intercept = np.asarray(linear.intercept)
        if coef_t.dtype != F8 or intercept.dtype != F8 or coef_t.ndim not in (1, 2):
            raise _Unfusable("linear coefficients are not float64")
        self.coef_t = coef_t
        self.n_features = coef_t.shape[0]
        k = coef_t.shape[1] if coef_t.ndim == 2 else 1
        try:
            self.intercept = np.broadcast_to(intercept, (k,)).tolist()
        except ValueError as exc:
            raise _Unfusable("intercept shape") from exc
        if intercept.ndim > 1:
            raise _Unfusable("intercept shape")
        # Rows of coef_t for the sparse product (scipy's row-wise sum), per output.
        self.sparse_coef = coef_t.reshape(self.n_features, k).tolist()
        # decision(): 1-D for one output (or ravel), (n, k) otherwise.
        self.flat = coef_t.ndim == 1 or k == 1 or linear.ravel
        self.k = k
        self.classes = None if linear.classes is None else list(linear.classes)
        self.kind = linear.kind
        self.where = linear.where
        self.sparse_check = linear.sparse_check

    def finish(self, code: _Code, meta: _Meta, names: list[str]) -> None:
        """Emit check_array(X, dtype="numeric") and the call of :meth:`scores`."""
        if len(names) != self.n_features:
            raise _Unfusable("feature count")
        sparse = meta.kind == "sparse"
        if sparse:
            if meta.dtype not in (F8, F4):
                raise _Unfusable("sparse dtype")
            if self.sparse_check:
                _check_finite(code, meta.dtype, True, names, self.where)
        else:
            out, names = _validate(code, meta, names, "numeric", True, self.where)
            if out == OBJ:
                raise _Unfusable("object input to a linear model")  # numpy's object matmul
            template = _conv(out, F8)
            names = [_apply(code, template, n) for n in names]
        scores = code.const(self._sparse if sparse else self._dense)
        code.line(f"return {scores}([{', '.join(names)}])")

    def _dense(self, vals: list) -> list[float]:
        # The same numpy product as the batch path's on its (1, n) array: BLAS picks its kernel
        # by shape (one row: a dot product or gemv), whatever the row's layout.
        product = np.array([vals], dtype=np.float64) @ self.coef_t
        return [s + b for s, b in zip(product.ravel().tolist(), self.intercept, strict=True)]

    def _sparse(self, vals: list) -> list[float]:
        # estimators.sparse_dot: per output, 0.0 plus each nonzero's product in column order.
        out = [0.0] * self.k
        for v, row in zip(vals, self.sparse_coef, strict=True):
            if v != 0:
                for j in range(self.k):
                    out[j] += v * row[j]
        return [s + b for s, b in zip(out, self.intercept, strict=True)]

    def _array(self, scores: list[float]) -> np.ndarray:
        return np.array(scores) if self.flat else np.array([scores])

    def predict(self, scores: list[float]) -> Any:
        if self.classes is None:
            return np.float64(scores[0]) if self.flat else np.array(scores)
        if self.flat:
            return self.classes[scores[0] > 0]
        return self.classes[_argmax(scores)]

    def proba(self, scores: list[float]) -> np.ndarray:
        if self.flat and self.kind in ("logistic", "sgd_log"):
            p = _expit(scores[0])
            return np.array((1 - p, p))
        if self.kind == "logistic":
            return softmax(np.array([scores]))[0]
        return self.linear.proba(self._array(scores))[0]


# ------------------------------------------------------------------ the row plan


class RowPlan:
    """A :class:`~udfs.plan.execute.PlanRunner` fused for one row at a time.

    ``predict(values)`` and ``predict_proba(values)`` take one row of Python values in signature
    order and return ``runner.predict(arrays)[0]`` / ``runner.predict_proba(arrays)[0]`` for the
    one-row arrays ``udfs.fastpath`` builds from them: the label (a numpy scalar, or a str for
    string labels) or the value (``np.float64``), and the probability row (a float64 array).
    They raise where the batch path raises (the caller re-runs such a row through the core to
    name the column), and ``TypeError`` for a value of a type ``udfs.fastpath`` would not take.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.types = tuple(f.type for f in runner.signature.features)
        self.n = len(self.types)
        #: Rows scored through the batch path instead of the row function.
        self.fallbacks = 0
        self._transform = runner.plan.spec["transform"]
        self._arrays = runner.plan.arrays
        self.array_input = bool(runner.array_input)
        estimator = runner._estimator
        self._est: _TreeRow | _LinearRow | None = None
        try:
            if isinstance(estimator, Trees):
                self._est = _TreeRow(estimator)
            elif isinstance(estimator, Linear):
                self._est = _LinearRow(estimator)
        except _Unfusable:
            self._est = None
        # Trees straight on the row: no transform, every feature a double.
        self._direct = (
            isinstance(self._est, _TreeRow)
            and not self._est.categorical
            and _is_identity(self._transform)
            and all(t == "double" for t in self.types)
        )
        self._programs: dict[int, Callable] = {}
        self._run = self._entry() if self._est is not None and self.n else None

    @property
    def fused(self) -> bool:
        """Whether rows without NULLs take the row function (not the batch path)."""
        if self._direct:
            return True
        return self._run is not None and self._program(0) is not _unfused

    def predict(self, values: Sequence[Any]) -> Any:
        """``runner.predict`` on this row: a label or a value."""
        est = self._est
        if self._direct:
            if type(values) is not list and type(values) is not tuple:
                values = list(values)
            return est.predict(est.forest.row(values, est.strict))  # type: ignore[union-attr]
        if self._run is None:
            return self._batch(values, "predict")
        try:
            out = self._run(values)
        except _Fallback:
            return self._batch(values, "predict")
        return est.predict(out)  # type: ignore[union-attr]

    def predict_proba(self, values: Sequence[Any]) -> np.ndarray:
        """``runner.predict_proba`` on this row: the probability of each class."""
        if not self.runner.has_proba:
            raise InputError("this model has no predict_proba")
        est = self._est
        if self._direct:
            if type(values) is not list and type(values) is not tuple:
                values = list(values)
            return est.proba(est.forest.row(values, est.strict))  # type: ignore[union-attr]
        if self._run is None:
            return self._batch(values, "predict_proba")
        try:
            out = self._run(values)
        except _Fallback:
            return self._batch(values, "predict_proba")
        return est.proba(out)  # type: ignore[union-attr]

    def score(self, values: Sequence[Any], method: str) -> Any:
        """``predict`` or ``predict_proba`` by name."""
        if method == "predict":
            return self.predict(values)
        if method == "predict_proba":
            return self.predict_proba(values)
        raise ValueError(f"unknown method {method!r}")

    def source(self, key: int = 0) -> str:
        """The generated row function for a NULL pattern (bit i: feature i is a NULL bigint or
        boolean), for debugging."""
        code = self._code(key)
        return "\n".join(code.lines)

    # -------------------------------------------------------------- internals

    def _entry(self) -> Callable[[Sequence[Any]], Any]:
        """Generate ``run(values)``: type checks, the NULL pattern, then its row function."""
        code = _Code()
        args = [f"v{i}" for i in range(self.n)]
        code.ns.update(
            P=self._programs,
            build=self._program,
            badtype=_bad_type,
            big=_big_int,
            LO=_INT64[0],
            HI=_INT64[1],
            EXACT=_EXACT,
            N=self.n,
        )
        code.line("if len(values) != N: badtype(-1, values)")
        code.line(f"{', '.join(args)}, = values")
        code.line("key = 0")
        array = self.array_input
        for i, t in enumerate(self.types):
            v = f"v{i}"
            null = f"{v} is None or (type({v}) is float and {v} != {v})"
            bit = f"; key |= {1 << i}" if not array and t in ("bigint", "boolean") else ""
            if t == "double":
                code.line(f"if type({v}) is float:")
                code.line(f"    if {v} != {v}: {v} = NAN")
                code.line(f"elif {v} is None: {v} = NAN")
                code.line(f"elif type({v}) is int and LO <= {v} <= HI: {v} = float({v})")
                code.line(f"else: badtype({i}, {v})")
            elif t == "bigint":
                code.line(f"if type({v}) is int:")
                if array:
                    code.line(f"    {v} = float({v}) if LO <= {v} <= HI else badtype({i}, {v})")
                else:
                    code.line(f"    if not -EXACT <= {v} <= EXACT: big({i}, {v})")
                code.line(f"elif {null}: {v} = NAN{bit}")
                code.line(f"else: badtype({i}, {v})")
            elif t == "boolean":
                code.line(f"if type({v}) is bool:")
                code.line(f"    {v} = float({v})" if array else "    pass")
                code.line(f"elif {null}: {v} = NAN{bit}")
                code.line(f"else: badtype({i}, {v})")
            else:
                code.line(f"if type({v}) is str:")
                code.line("    fallback()" if array else "    pass")  # numpy parses strings
                code.line(f"elif {null}: {v} = NAN")
                code.line(f"else: badtype({i}, {v})")
        code.line("p = P.get(key)")
        code.line("if p is None: p = build(key)")
        code.line(f"return p({', '.join(args)})")
        return code.function("run", ["values"])

    def _program(self, key: int) -> Callable:
        program = self._programs.get(key)
        if program is None:
            try:
                code = self._code(key)
                program = code.function("row", [f"v{i}" for i in range(self.n)])
            except _Unfusable:
                program = _unfused
            self._programs[key] = program
        return program

    def _code(self, key: int) -> _Code:
        if self._est is None:
            raise _Unfusable("estimator")
        code = _Code()
        names = [f"v{i}" for i in range(self.n)]
        if self.array_input:
            meta = _array("dense", F8, self.n)
        else:
            dtypes = []
            for i, t in enumerate(self.types):
                null = bool(key >> i & 1)
                if t == "double":
                    dtypes.append(F8)
                elif t == "bigint":
                    dtypes.append(F8 if null else I8)
                elif t == "boolean":
                    dtypes.append(OBJ if null else B1)
                else:
                    dtypes.append(OBJ)
            meta = _Meta("frame", tuple(dtypes), None)
        meta, names = _spec(code, self._transform, self._arrays, meta, names)
        self._est.finish(code, meta, names)
        return code

    def _batch(self, values: Sequence[Any], method: str) -> Any:
        """The batch path on the one-row arrays udfs.fastpath builds from these values."""
        self.fallbacks += 1
        return getattr(self.runner, method)(row_arrays(values, self.types))[0]


def row_arrays(values: Sequence[Any], types: Sequence[str]) -> list[np.ndarray]:
    """The one-row arrays ``udfs.scoring.prepare`` builds from one row of typed SQL values."""
    arrays = []
    for v, t in zip(values, types, strict=True):
        if v is None or (type(v) is float and v != v):
            arrays.append(np.array([np.nan], dtype=object if t in ("boolean", "string") else None))
        elif t == "double":
            arrays.append(np.array([v], dtype=np.float64))
        elif t == "bigint":
            arrays.append(np.array([v], dtype=np.int64))
        elif t == "boolean":
            arrays.append(np.array([v]))
        else:
            arrays.append(np.array([v], dtype=object))
    return arrays


def _unfused(*values: Any) -> Any:
    raise _Fallback


def _bad_type(i: int, value: Any) -> None:
    if i < 0:
        raise InputError(f"{len(value)} values for this model's features")
    raise TypeError(f"feature {i}: a {type(value).__name__} value is not taken by the row path")


def _big_int(i: int, value: int) -> None:
    if _INT64[0] <= value <= _INT64[1]:
        raise _Fallback  # float32 rounds it differently from int64 and from float64
    _bad_type(i, value)


def _is_identity(node: dict) -> bool:
    if node["op"] == "passthrough":
        return True
    return node["op"] == "pipeline" and all(_is_identity(s) for s in node["steps"])
