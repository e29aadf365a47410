"""Vectorized coercion of one column of feature values to its portable type.

Each coercer returns ``(values, null_mask)``. Missing values are represented the way
scikit-learn's imputers and encoders expect by default: ``NaN`` in float columns and ``np.nan``
in object columns (``None`` would slip past ``SimpleImputer(missing_values=np.nan)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs.errors import InputError
from udfs.signature import Feature

_INT64_LIMIT = float(2**63)
_INT64_MAX = float(np.nextafter(_INT64_LIMIT, 0))  # the largest float64 below 2**63
_TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0", "on")
_FALSE_WORDS = ("false", "f", "no", "n", "0", "0.0", "off")
# Decimal or scientific notation, inf, infinity and nan, as SQL casts to double accept them.
_NUMBER = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])"
_BOOL_WORDS = {**dict.fromkeys(_TRUE_WORDS, True), **dict.fromkeys(_FALSE_WORDS, False)}

# What pandas infers for an object column that may hold bytes.
_MAYBE_BINARY = ("bytes", "mixed", "mixed-integer", "unknown-array")

Column = pd.Series | np.ndarray | Sequence[Any]


def as_series(values: Column) -> pd.Series:
    """View any column-like input as a pandas Series with a fresh 0..n-1 index."""
    if isinstance(values, pd.Series):
        return values  # only positional access follows, so the index does not matter
    if isinstance(values, np.ndarray):
        return pd.Series(values.ravel() if values.ndim > 1 else values)
    return pd.Series(list(values), dtype=object if len(values) == 0 else None)


def _fail(model: str, feature: Feature, series: pd.Series, bad: np.ndarray, why: str) -> None:
    row = int(np.flatnonzero(bad)[0])
    value = series.iloc[row]
    if isinstance(value, np.generic):
        value = value.item()  # repr 2.5, not np.float64(2.5)
    count = int(bad.sum())
    more = f" ({count} such values in the batch)" if count > 1 else ""
    raise InputError(
        f"model '{model}': column '{feature.name}' expects {feature.type}, "
        f"got {value!r} ({type(value).__name__}) at row {row}: {why}{more}",
        model=model,
        column=feature.name,
        expected=feature.type,
        value=repr(value),
        row=row,
        reason=why,
    )


def _numeric(model: str, feature: Feature, s: pd.Series) -> np.ndarray:
    """Float64 values with NaN for NULL; raises on values that are not numbers."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    null = s.isna().to_numpy()
    values = np.full(len(s), np.nan)
    if null.all():
        return values
    present = s[~null]
    parsed, ok = _parse_numbers(present)
    values[~null] = parsed
    bad = np.zeros(len(s), dtype=bool)
    bad[~null] = ~ok
    _check(model, feature, s, bad, "not a number")
    return values


def _parse_numbers(present: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse non-NULL objects as numbers; return the values and which ones parsed.

    Text is parsed by Python's correctly rounded ``float`` (through numpy), not by pandas'
    faster parser, which can be off by a few ulps: '0.1' must give the double SQL gives.
    """
    if pd.api.types.infer_dtype(present, skipna=False) == "string":
        text = present.str.strip()
        ok = text.str.fullmatch(_NUMBER).to_numpy(dtype=bool)
        parsed = np.full(len(text), np.nan)
        parsed[ok] = np.array(text[ok].tolist(), dtype=np.float64)
        # Text that overflows ('1e400') is not a number; 'inf' and 'Infinity' are.
        spelled_inf = text.str.lower().str.contains("inf", regex=False).to_numpy(dtype=bool)
        ok &= ~(np.isinf(parsed) & ~spelled_inf)
        return parsed, ok
    # Mixed objects (numbers, booleans, Decimals, text from a Python list): one at a time.
    parsed = np.full(len(present), np.nan)
    ok = np.zeros(len(present), dtype=bool)
    for i, value in enumerate(present.tolist()):
        if isinstance(value, str):
            number, good = _parse_numbers(pd.Series([value], dtype=object))
            parsed[i], ok[i] = number[0], good[0]
            continue
        with contextlib.suppress(
            TypeError, ValueError, OverflowError
        ):  # not a number: ok stays False
            parsed[i], ok[i] = float(value), True
    return parsed, ok


def _check(model: str, feature: Feature, s: pd.Series, bad: np.ndarray, why: str) -> None:
    if bad.any():
        _fail(model, feature, s, bad, why)


def to_double(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    values = _numeric(model, feature, s)
    return values, np.isnan(values)


def to_bigint(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if s.dtype.kind in "iu" and isinstance(s.dtype, np.dtype):
        return s.to_numpy(dtype=np.int64), np.zeros(len(s), dtype=bool)
    values = _numeric(model, feature, s)
    null = np.isnan(values)
    with np.errstate(invalid="ignore"):
        # > not >=: a bigint column with NULLs reaches pandas as float64, where values near
        # +-(2**63 - 1) round to exactly 2**63. They are valid bigints, approximated.
        _check(model, feature, s, ~null & (np.abs(values) > _INT64_LIMIT), "out of bigint range")
        _check(model, feature, s, ~null & (values != np.floor(values)), "not a whole number")
    if null.any():
        return values, null  # float64 keeps NaN; exact for |x| < 2**53
    return np.clip(values, -_INT64_LIMIT, _INT64_MAX).astype(np.int64), null


def to_boolean(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if s.dtype == np.bool_:
        return s.to_numpy(), np.zeros(len(s), dtype=bool)
    null = s.isna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        numbers = s.to_numpy(dtype=np.float64, na_value=np.nan)
        _check(model, feature, s, ~null & (numbers != 0) & (numbers != 1), "not 0 or 1")
        flags = numbers == 1
    else:
        words = s.astype(str).str.strip().str.lower().map(_BOOL_WORDS)
        _check(model, feature, s, ~null & words.isna().to_numpy(), "not a boolean")
        flags = words.eq(True).to_numpy(dtype=bool)
    if not null.any():
        return flags, null
    values = flags.astype(object)
    values[null] = np.nan
    return values, null


def to_string(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    null = s.isna().to_numpy()
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        values = s.to_numpy(dtype=object, na_value=np.nan)
    else:
        # Numbers and booleans are accepted as their text, as a SQL cast to text would.
        values = s.astype(str).to_numpy(dtype=object)
    if null.any():
        values = values.copy()
        values[null] = np.nan
    return values, null


COERCERS: dict[str, Callable[[str, Feature, pd.Series], tuple[np.ndarray, np.ndarray]]] = {
    "double": to_double,
    "bigint": to_bigint,
    "boolean": to_boolean,
    "string": to_string,
}


def coerce(model: str, feature: Feature, values: Column) -> tuple[np.ndarray, np.ndarray]:
    """Coerce one column to ``feature.type``; return the values and the NULL mask.

    >>> coerce("m", Feature("age", "double"), [1, None])[1].tolist()
    [False, True]
    """
    series = as_series(values)
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in _MAYBE_BINARY:
        # Binary values (a bytea column) are no feature type's text: refuse them by name
        # rather than decode them (b"12" is not 12, and b"\\xff" is not UTF-8).
        binary = series.map(_is_binary).to_numpy(dtype=bool)
        _check(model, feature, series, binary, "binary data (bytea) is not accepted: cast it")
    return COERCERS[feature.type](model, feature, series)


def _is_binary(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview)
