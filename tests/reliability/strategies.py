"""Hypothesis strategies for hostile feature values, by portable type."""

from __future__ import annotations

from hypothesis import strategies as st

from udfs.demo.data import PLANS

_finite = st.floats(allow_nan=False, allow_infinity=False)
_junk_text = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["NaN", "-nan", "Infinity", "-inf", " 12 ", "1e400", "0x1p3", "1_000"]),
)

DOUBLE = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN, +-inf, huge and tiny values
    st.none(),
    st.integers(-(10**6), 10**6),
    _finite.map(repr),  # numbers as text, as a CAST(x AS STRING) gives
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
    _junk_text,
)
BOOLEAN = st.one_of(
    st.booleans(),
    st.booleans(),
    st.none(),
    st.sampled_from(["true", "FALSE", " yes ", "0", "1", "t", "maybe", ""]),
    st.integers(-1, 2),
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


def batches(signature, max_rows: int = 8):
    """Lists of columns (one list per feature), all of one random length."""
    return st.integers(1, max_rows).flatmap(
        lambda n: st.tuples(
            *[st.lists(BY_TYPE[f.type], min_size=n, max_size=n) for f in signature.features]
        ).map(list)
    )
