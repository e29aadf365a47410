"""Vectorized coercion of one column of feature values to its portable type.

Each coercer returns ``(values, null_mask)``. Missing values are represented the way
scikit-learn's imputers and encoders expect by default: ``NaN`` in float columns and ``np.nan``
in object columns (``None`` would slip past ``SimpleImputer(missing_values=np.nan)``).

Text is read exactly as PostgreSQL 15 reads it (``float8in``, ``int8in``, ``boolin`` on glibc),
in every engine: ``tests/postgres/test_text_casts.py`` checks each rule below against the casts
of a real server.

- whitespace: the six ASCII characters C's ``isspace`` knows (space, ``\\t \\n \\v \\f \\r``),
  before and after the value; never inside it, never NBSP or other Unicode spaces;
- digits: ASCII ``0-9`` only (not ``'１２'``, not ``'١٢'``), no ``_`` separators;
- double: an optional sign, then decimal or scientific notation, a C99 hexadecimal float
  (``'0x1.8p3'``), ``inf``/``infinity`` or ``nan``/``nan(chars)`` in any ASCII case. A value
  that overflows (``'1e400'``) or that underflows to zero (``'1e-400'``) is out of range;
  subnormals are kept. Decimals are correctly rounded (as glibc's ``strtod`` rounds them);
- bigint: an optional sign and decimal digits only (PostgreSQL 15 takes no ``0x``/``0o``/``0b``
  prefix, no ``_``, no point or exponent); outside -2**63 .. 2**63-1 is out of range;
- boolean: ``t``/``true``, ``f``/``false``, ``y``/``yes``, ``n``/``no`` and every prefix of
  those words, ``on``, ``of``/``off``, ``1``, ``0``, in any ASCII case (not ``'1.0'``).

Spark's string columns go through the same coercers, so these rules hold there too (where
Spark's own ``CAST`` would read text differently, e.g. ``'１２'``). One intended difference
with PostgreSQL: ``'NaN'`` (any spelling, ``'nan(...)'``) is a value for ``float8in`` and a
NULL here, scikit-learn's missing value, as a NaN double is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs.errors import InputError
from udfs.signature import Feature

_INT64_LIMIT = float(2**63)
_INT64_MAX = float(np.nextafter(_INT64_LIMIT, 0))  # the largest float64 below 2**63
_INT64_RANGE = (-(2**63), 2**63 - 1)

# C's isspace() in the C and UTF-8 locales: what PostgreSQL skips around a number or a word.
_SPACE = " \t\n\v\f\r"
_S = "[ \t\n\v\f\r]*"
_DOUBLE_TEXT = re.compile(
    _S
    + r"(?P<number>[+-]?(?:"
    + r"(?P<hex>0[xX](?P<hexdigits>[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    + r"|(?P<decimal>(?P<digits>[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    + r"|(?P<inf>[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    + r"|(?P<nan>[nN][aA][nN](?:\([0-9A-Za-z_]*\))?)"
    + "))"
    + _S
)
_BIGINT_TEXT = re.compile(_S + r"(?P<sign>[+-]?)(?P<digits>[0-9]+)" + _S)
# Text made only of these characters is plain decimal notation (or not a number at all), which
# Python's float() and int() read as strtod and int8in do: the vectorized path.
# (str.translate tables that delete those characters: what is left is not plain.)
_NOT_DECIMAL = str.maketrans("", "", "0123456789+-.eE" + _SPACE)
_NOT_INTEGER = str.maketrans("", "", "0123456789+-" + _SPACE)
_NOT_ZERO = str.maketrans("", "", "0+-.eE" + _SPACE)

_NOT_ASCII = " (only ASCII digits, signs and whitespace count in a SQL cast)"


def _spellings(word: str) -> list[str]:
    """``word`` in every ASCII case: 'on' -> ['on', 'oN', 'On', 'ON']."""
    return ["".join(chars) for chars in itertools.product(*({c.lower(), c.upper()} for c in word))]


def _boolean_words() -> dict[str, bool]:
    """Every text PostgreSQL's boolin takes (after trimming whitespace), and its value."""
    words: dict[str, bool] = {"1": True, "0": False}
    for full, value in (("true", True), ("false", False), ("yes", True), ("no", False)):
        for end in range(1, len(full) + 1):
            words.update(dict.fromkeys(_spellings(full[:end]), value))
    for word, value in (("on", True), ("of", False), ("off", False)):  # 'o' alone is ambiguous
        words.update(dict.fromkeys(_spellings(word), value))
    return words


_BOOLEAN_TEXT = _boolean_words()

# What pandas infers for an object column that may hold bytes.
_MAYBE_BINARY = ("bytes", "mixed", "mixed-integer", "unknown-array")

Column = pd.Series | np.ndarray | Sequence[Any]


class TextRefused(ValueError):
    """A text value that the SQL cast to the feature's type refuses; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def double_from_text(text: str) -> float:
    """The double PostgreSQL's ``'<text>'::double precision`` gives, or :class:`TextRefused`.

    NaN comes back as NaN (the coercers count it as NULL).

    >>> double_from_text(" 0x1.8p1 "), double_from_text("-Infinity")
    (3.0, -inf)
    """
    match = _DOUBLE_TEXT.fullmatch(text)
    if match is None:
        raise TextRefused(_syntax("not a number", text))
    number = match["number"]
    if match["inf"] is not None:
        return -np.inf if number[0] == "-" else np.inf
    if match["nan"] is not None:
        return np.nan
    try:
        value = float.fromhex(number) if match["hex"] is not None else float(number)
    except OverflowError:  # float.fromhex('0x1p99999')
        value = np.inf
    if value in (np.inf, -np.inf):
        raise TextRefused("out of range for double precision")
    if value == 0 and _nonzero_mantissa(match):
        raise TextRefused("out of range for double precision (underflows to 0)")
    return value


def _nonzero_mantissa(match: re.Match) -> bool:
    digits = match["hexdigits"] if match["hex"] is not None else match["digits"]
    return digits.strip("0.") != ""


def bigint_from_text(text: str) -> int:
    """The integer PostgreSQL's ``'<text>'::bigint`` gives, or :class:`TextRefused`.

    >>> bigint_from_text(" -12 ")
    -12
    """
    match = _BIGINT_TEXT.fullmatch(text)
    if match is None:
        raise TextRefused(_syntax("not an integer", text))
    digits = match["digits"].lstrip("0") or "0"
    # More than 19 digits is out of range (and int() stops at 4300 digits).
    value = int(match["sign"] + digits) if len(digits) <= 19 else _INT64_RANGE[1] + 1
    if not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
        raise TextRefused("out of bigint range")
    return value


def boolean_from_text(text: str) -> bool:
    """The boolean PostgreSQL's ``'<text>'::boolean`` gives, or :class:`TextRefused`.

    >>> boolean_from_text(" Of "), boolean_from_text("tru")
    (False, True)
    """
    value = _BOOLEAN_TEXT.get(text.strip(_SPACE))
    if value is None:
        raise TextRefused(_syntax("not a boolean", text))
    return value


def _syntax(what: str, text: str) -> str:
    return what if text.isascii() else what + _NOT_ASCII


def as_series(values: Column) -> pd.Series:
    """View any column-like input as a pandas Series with a fresh 0..n-1 index."""
    if isinstance(values, pd.Series):
        return values  # only positional access follows, so the index does not matter
    if isinstance(values, np.ndarray):
        return pd.Series(values.ravel() if values.ndim > 1 else values)
    values = list(values)
    try:
        return pd.Series(values, dtype=object if len(values) == 0 else None)
    except OverflowError:  # an int beyond 64 bits: keep the objects, the coercer refuses it
        return pd.Series(values, dtype=object)


def _fail(
    model: str, feature: Feature, series: pd.Series, bad: np.ndarray, why: str | np.ndarray
) -> None:
    row = int(np.flatnonzero(bad)[0])
    value = series.iloc[row]
    if isinstance(value, np.generic):
        value = value.item()  # repr 2.5, not np.float64(2.5)
    if not isinstance(why, str):  # a reason per row: the first bad row's
        why = str(why[row])
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


def _check(
    model: str, feature: Feature, s: pd.Series, bad: np.ndarray, why: str | np.ndarray
) -> None:
    if bad.any():
        _fail(model, feature, s, bad, why)


def _objects(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A non-numeric column as an object array, and its NULL mask (None, NaN, pd.NA)."""
    values = s.to_numpy(dtype=object)
    return values, pd.isna(values)


def _is_text(present: np.ndarray) -> bool:
    return pd.api.types.infer_dtype(present, skipna=False) == "string"


class _Parsed:
    """The non-NULL values of a column, parsed: the values, and per value why it was refused
    ('' when accepted)."""

    def __init__(self, values: np.ndarray, reasons: np.ndarray | None = None) -> None:
        self.values = values
        self.reasons = np.full(len(values), "", dtype=object) if reasons is None else reasons

    def refuse(self, i: Any, reason: str) -> None:
        self.reasons[i] = reason

    def read(self, items: list, rows: Sequence[int], parse: Callable[[Any], Any]) -> None:
        """``parse`` the items of ``rows``, one by one."""
        for i in rows:
            try:
                self.values[i] = parse(items[i])
            except TextRefused as refused:
                self.reasons[i] = refused.reason

    def scatter(
        self, null: np.ndarray, fill: Any, dtype: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full-length values (``fill`` at NULLs), refused rows and the reason per row."""
        values = np.full(len(null), fill, dtype=dtype)
        values[~null] = self.values
        reasons = np.full(len(null), "", dtype=object)
        reasons[~null] = self.reasons
        return values, reasons != "", reasons


def _plain_rows(texts: list[str], other: dict) -> np.ndarray:
    """The rows whose text holds nothing but the characters of plain notation."""
    if not "".join(texts).translate(other):  # the usual case: one pass in C
        return np.arange(len(texts))
    return np.flatnonzero([not text.translate(other) for text in texts])


def _parse_text(
    texts: list[str], parse: Callable[[str], Any], other: dict, dtype: Any
) -> tuple[_Parsed, np.ndarray]:
    """``parse`` over a list of str, and the rows numpy converted.

    Rows in plain notation are converted by numpy in one call (``float()`` and ``int()`` read
    plain notation as strtod and int8in do); the others one by one, and all of them when one
    is malformed (then no row counts as converted by numpy).
    """
    n = len(texts)
    parsed = _Parsed(np.zeros(n, dtype=dtype))
    plain = _plain_rows(texts, other)
    try:
        subset = texts if len(plain) == n else [texts[i] for i in plain.tolist()]
        parsed.values[plain] = np.array(subset, dtype=dtype)
    except (ValueError, OverflowError):  # '1e', '+-1', '', '99999999999999999999'
        plain = plain[:0]
    if len(plain) < n:
        others = np.ones(n, dtype=bool)
        others[plain] = False
        parsed.read(texts, np.flatnonzero(others).tolist(), parse)
    return parsed, plain


def _parse_doubles(texts: list[str]) -> _Parsed:
    """PostgreSQL's float8in over a list of str."""
    parsed, plain = _parse_text(texts, double_from_text, _NOT_DECIMAL, np.float64)
    # Plain notation spells no 'inf': infinity is overflow ('1e400'), and zero is underflow
    # ('1e-400') when a digit other than 0 was written.
    numbers = parsed.values[plain]
    parsed.refuse(plain[np.isinf(numbers)], "out of range for double precision")
    zero = plain[numbers == 0].tolist()
    parsed.read(texts, [i for i in zero if texts[i].translate(_NOT_ZERO)], double_from_text)
    return parsed


def _parse_bigints(texts: list[str]) -> _Parsed:
    """PostgreSQL's int8in over a list of str."""
    return _parse_text(texts, bigint_from_text, _NOT_INTEGER, np.int64)[0]


def _parse_booleans(texts: np.ndarray) -> _Parsed:
    """PostgreSQL's boolin over an array of str: each distinct text is read once."""
    codes, distinct = pd.factorize(texts)
    words = _Parsed(np.zeros(len(distinct), dtype=bool))
    words.read(distinct.tolist(), range(len(distinct)), boolean_from_text)
    return _Parsed(words.values[codes], words.reasons[codes])


def _double_of(value: Any) -> float:
    """One non-NULL value of a mixed column as a double, or :class:`TextRefused`."""
    if isinstance(value, str):
        return double_from_text(value)
    try:
        return float(value)
    except OverflowError:  # an int beyond the doubles
        raise TextRefused("out of range for double precision") from None
    except (TypeError, ValueError):
        raise TextRefused("not a number") from None


def _bigint_of(value: Any) -> float:
    """One non-NULL value of a mixed column as an exact integer (NaN for NaN), or refused."""
    if isinstance(value, str):
        return bigint_from_text(value)
    if isinstance(value, int | np.integer):  # bool included: True is 1
        if not _INT64_RANGE[0] <= int(value) <= _INT64_RANGE[1]:
            raise TextRefused("out of bigint range")
        return int(value)
    number = _double_of(value)
    if np.isnan(number):
        return number
    if abs(number) > _INT64_LIMIT:
        raise TextRefused("out of bigint range")
    if number != np.floor(number):
        raise TextRefused("not a whole number")
    return int(min(max(number, -_INT64_LIMIT), _INT64_MAX))


def _mixed(present: np.ndarray, convert: Callable[[Any], Any]) -> _Parsed:
    """Mixed objects (numbers, booleans, Decimals, text from a Python list): one at a time."""
    parsed = _Parsed(np.zeros(len(present), dtype=object))
    parsed.read(present.tolist(), range(len(present)), convert)
    return parsed


def to_double(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isnan(values)
    objects, null = _objects(s)
    values = np.full(len(s), np.nan)
    if null.all():
        return values, null
    present = objects[~null]
    parsed = _parse_doubles(present.tolist()) if _is_text(present) else _mixed(present, _double_of)
    values, bad, why = parsed.scatter(null, np.nan, np.float64)
    _check(model, feature, s, bad, why)
    return values, np.isnan(values)


def to_bigint(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if s.dtype.kind in "iu" and isinstance(s.dtype, np.dtype):
        if s.dtype.kind == "u":  # a Python list holding 2**63 becomes uint64
            _check(model, feature, s, s.to_numpy() > _INT64_RANGE[1], "out of bigint range")
        return s.to_numpy(dtype=np.int64), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return _float_bigints(model, feature, s, s.to_numpy(dtype=np.float64, na_value=np.nan))
    objects, null = _objects(s)
    if null.all():
        return np.full(len(s), np.nan), null
    present = objects[~null]
    if _is_text(present):
        parsed = _parse_bigints(present.tolist())
        numbers, bad, why = parsed.scatter(null, 0, np.int64)
    else:
        parsed = _mixed(present, _bigint_of)
        numbers, bad, why = parsed.scatter(null, np.nan, object)
    _check(model, feature, s, bad, why)
    if numbers.dtype == object:
        null = pd.isna(numbers)  # NaN among the objects is NULL too
        if not null.any():
            return np.array(numbers.tolist(), dtype=np.int64), null
        return numbers.astype(np.float64), null
    if null.any():
        return np.where(null, np.nan, numbers.astype(np.float64)), null
    return numbers, null


def _float_bigints(
    model: str, feature: Feature, s: pd.Series, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    null = np.isnan(values)
    with np.errstate(invalid="ignore"):
        # > not >=: a bigint column with NULLs reaches pandas as float64, where values near
        # +-(2**63 - 1) round to exactly 2**63. They are valid bigints, approximated.
        _check(model, feature, s, ~null & (np.abs(values) > _INT64_LIMIT), "out of bigint range")
        _check(model, feature, s, ~null & (values != np.floor(values)), "not a whole number")
    if null.any():
        return values, null  # float64 keeps NaN; exact for |x| < 2**53
    return np.clip(values, -_INT64_LIMIT, _INT64_MAX).astype(np.int64), null


def _boolean_of(value: Any) -> bool:
    if isinstance(value, str):
        return boolean_from_text(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.number) and value in (0, 1):
        return value == 1
    raise TextRefused("not a boolean")


def to_boolean(model: str, feature: Feature, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if s.dtype == np.bool_:
        return s.to_numpy(), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        null = s.isna().to_numpy()
        numbers = s.to_numpy(dtype=np.float64, na_value=np.nan)
        _check(model, feature, s, ~null & (numbers != 0) & (numbers != 1), "not 0 or 1")
        flags = numbers == 1
    else:
        objects, null = _objects(s)
        present = objects[~null]
        kind = pd.api.types.infer_dtype(present, skipna=False)
        if kind == "boolean":
            parsed = _Parsed(present.astype(bool))
        elif kind == "string":
            parsed = _parse_booleans(present)
        else:
            parsed = _mixed(present, _boolean_of)
        flags, bad, why = parsed.scatter(null, False, bool)
        _check(model, feature, s, bad, why)
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
