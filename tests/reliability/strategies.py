"""Hypothesis strategies for hostile feature values, by portable type, and the suite's depth.

``UDFS_DEEP=1`` is the deep mode: every generated test runs enough examples for at least
10,000 generated rows per engine (core, Postgres, Spark). Without it (CI), the quick mode.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

from udfs.demo.data import PLANS

DEEP = os.environ.get("UDFS_DEEP") == "1"
# Rows each engine runs at least in the deep mode, over all of its generated tests.
DEEP_ROWS = 10_000


def depth(quick: int, deep: int) -> int:
    """``quick`` normally, ``deep`` in the deep mode (UDFS_DEEP=1)."""
    return deep if DEEP else quick


# Doubles that infinity or float32 refuse, or that float32 rounds down and takes: the largest
# double, float32's rounding threshold (2 - 2**-24) * 2**127, the double just below it, 3.5e38.
EXTREME_DOUBLES = st.sampled_from(
    [
        float("inf"),
        float("-inf"),
        1.7976931348623157e308,
        -1e300,
        3.5e38,
        -3.5e38,
        3.4028235677973366e38,
        3.4028235677973362e38,
        -3.4028235677973362e38,
        3.4028234663852886e38,
    ]
)
_UNICODE_DIGITS = "０１２３４５６７８９٠١٢٣٤٥٦٧٨٩०१२३४५६७८९𝟎𝟏𝟐"
_UNICODE_SPACES = "\xa0\u1680\u2000\u2003\u2009\u200b\u2028\u2029\u202f\u205f\u3000\ufeff\x85\x1c"
_ASCII_SPACES = " \t\n\v\f\r"
# Numbers written with Unicode digits or wrapped in Unicode spaces (which SQL casts refuse),
# and ASCII whitespace around them (which they skip).
UNICODE_NUMBERS = st.one_of(
    st.text(alphabet=_UNICODE_DIGITS + "0123456789.-", min_size=1, max_size=6),
    st.tuples(
        st.text(alphabet=_UNICODE_SPACES + _ASCII_SPACES, max_size=2),
        st.sampled_from(["12", "1.5", "-3", "1e5", "true", "inf", "0"]),
        st.text(alphabet=_UNICODE_SPACES + _ASCII_SPACES, max_size=2),
    ).map("".join),
)
# Integer text beyond bigint, at its limits, and with many digits.
OUT_OF_RANGE_INTEGERS = st.one_of(
    st.integers(2**63, 2**70).map(str),
    st.integers(-(2**70), -(2**63) - 1).map(str),
    st.sampled_from(
        [
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "0" * 30 + "1",
            "9" * 400,
        ]
    ),
)
_junk_text = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(
        [
            *("NaN", "-nan", "nan(1)", "Infinity", "-inf", " 12 ", "1e400", "1e-400", "0x1p3"),
            *("1_000", "0x10", "0b1", "", "\t1\n", "o", "of", "tru", "1.0"),
        ]
    ),
    UNICODE_NUMBERS,
)

DOUBLE = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN, +-inf, huge and tiny values
    EXTREME_DOUBLES,
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # as CAST(x AS STRING) gives
    _junk_text,
    st.booleans(),
)
BIGINT = st.one_of(
    st.integers(0, 200),
    st.integers(0, 200),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1000, 1000).map(str),
    OUT_OF_RANGE_INTEGERS,
    _junk_text,
)
BOOLEAN = st.one_of(
    st.booleans(),
    st.booleans(),
    st.none(),
    st.sampled_from(["true", "FALSE", " yes ", "0", "1", "t", "maybe", "", "Of", "o", "1.0"]),
    st.integers(-1, 2),
    UNICODE_NUMBERS,
)
STRING = st.one_of(
    st.sampled_from(PLANS),
    st.sampled_from(PLANS),
    st.none(),
    st.sampled_from(["platinum", "", " basic", "PRO"]),  # unseen levels
    st.text(min_size=0, max_size=300),  # unicode, empty, long
    st.integers(-5, 5),
    st.booleans(),
)
BY_TYPE = {"double": DOUBLE, "bigint": BIGINT, "boolean": BOOLEAN, "string": STRING}

# Text primary keys that are awkward in SQL, JSON, CSV and array literals.
TEXT_KEYS = st.one_of(
    st.text(max_size=30).filter(lambda k: "\x00" not in k),
    st.sampled_from(
        [
            *("", " ", "NULL", "null", "\\N", "{}", "{a,b}", '"', "'", "\\", "a,b", "(1,2)"),
            *("\t", "\n", "\r\n", "é", "🙂", "１２", "\xa0", "'; DROP TABLE t; --", "x" * 500),
        ]
    ),
)


def with_extreme_row(signature, columns: list[list], extremes: list) -> list[list]:
    """``columns`` with row 0's double features set to ``extremes`` (several in one row)."""
    columns = [list(column) for column in columns]
    doubles = [i for i, f in enumerate(signature.features) if f.type == "double"]
    for i, value in zip(doubles, extremes, strict=False):
        columns[i][0] = value
    return columns


def batches(signature, max_rows: int = 8):
    """Lists of columns (one list per feature), all of one random length; in some, the first
    row holds an extreme value in every double feature."""
    columns = st.integers(1, max_rows).flatmap(
        lambda n: st.tuples(
            *[st.lists(BY_TYPE[f.type], min_size=n, max_size=n) for f in signature.features]
        ).map(list)
    )
    extremes = st.lists(EXTREME_DOUBLES, min_size=len(signature.features))
    return st.one_of(
        columns,
        st.tuples(columns, extremes).map(lambda c: with_extreme_row(signature, *c)),
    )
