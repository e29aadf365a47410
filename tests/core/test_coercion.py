"""Text, mixed and NULL input to the coercers: PostgreSQL's cast rules (tests/postgres/
test_text_casts.py checks them against a real server), and the right column blamed when a
model refuses an extreme value."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import udfs
from udfs import scoring
from udfs.coercion import TextRefused, coerce, double_from_text
from udfs.errors import InputError, ScoringError
from udfs.signature import Feature, Signature

X1, N1, B1 = Feature("x1", "double"), Feature("n1", "bigint"), Feature("b1", "boolean")


def _refused(feature: Feature, column: list, value: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        coerce("m", feature, column)
    message = str(info.value)
    assert message.startswith(f"model 'm': column '{feature.name}' expects {feature.type}")
    assert repr(value) in message and reason in message, message
    assert info.value.details["model"] == "m"
    assert info.value.details["column"] == feature.name
    assert info.value.details["value"] == repr(value)


@pytest.mark.parametrize("value", ["１２", "١٢", "\xa01.5\xa0", "1_000", "1 000", "−1", "１"])
def test_unicode_digits_and_spaces_are_not_numbers(value):
    """The issue's first example: each of them alone, and among good values."""
    _refused(X1, [value], value, "not a number")
    _refused(X1, ["1", value, "2"], value, "not a number")


def test_the_issues_double_column_names_its_first_bad_value():
    _refused(X1, ["１２", "١٢", "\xa01.5\xa0"], "１２", "3 such values in the batch")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9223372036854775808", "out of bigint range"),
        ("-9223372036854775809", "out of bigint range"),
        ("99999999999999999999999", "out of bigint range"),
        ("1" * 5000, "out of bigint range"),
        ("1e3", "not an integer"),
        ("1.0", "not an integer"),
        ("0x10", "not an integer"),
        ("１２", "not an integer (only ASCII"),
    ],
)
def test_bigint_text_out_of_range_or_malformed(value, reason):
    """The issue's bigint examples: no clamping, no rounding through a double."""
    _refused(N1, [value], value, reason)
    _refused(N1, ["1", value], value, reason)


def test_bigint_text_is_exact_up_to_the_limits():
    texts = ["9223372036854775807", "-9223372036854775808", " +12\t", "0" * 5000 + "7"]
    values, null = coerce("m", N1, texts)
    assert values.dtype == np.int64 and not null.any()
    assert values.tolist() == [2**63 - 1, -(2**63), 12, 7]
    values, null = coerce("m", N1, ["9007199254740993", None])  # a NULL: float64, as before
    assert null.tolist() == [False, True] and values[0] == 9007199254740992.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [("1e400", "out of range"), ("-1e400", "out of range"), ("1e-400", "underflows")],
)
def test_double_text_out_of_range(value, reason):
    _refused(X1, [value], value, reason)
    _refused(X1, ["0", "1.5", value], value, reason)


def test_double_text_follows_float8in():
    texts = ["\t1.5\n", "\v-2e3\f", "0x1.8p1", "-Infinity", "inf", "+INFINITY", "5e-324", "-0"]
    values, null = coerce("m", X1, texts)
    assert values.tolist() == [1.5, -2000.0, 3.0, -math.inf, math.inf, math.inf, 5e-324, -0.0]
    assert math.copysign(1, values[-1]) == -1 and not null.any()
    for text in ("infinit", "nan(", "1e", ".", "", " ", "+-1", "0x", "1.5.", "e5"):
        _refused(X1, [text], text, "not a number")


def test_boolean_text_follows_boolin():
    texts = ["t", "TRU", " yes\t", "Y", "on", "1", "f", "fAlS", "no", "N", "of", "OFF", "0"]
    values, null = coerce("m", B1, texts)
    assert values.tolist() == [True] * 6 + [False] * 7 and not null.any()
    for text in ("o", "1.0", "0.0", "truex", "ｔrue", "\xa0true", "yes!", ""):
        _refused(B1, [text], text, "not a boolean")


def test_mixed_object_columns():
    values, null = coerce("m", X1, [1, "2.5", None, Decimal("3"), True, np.nan, " 4 ", pd.NA])
    assert null.tolist() == [False, False, True, False, False, True, False, True]
    assert values[~null].tolist() == [1.0, 2.5, 3.0, 1.0, 4.0]
    _refused(X1, [1, "１２", None], "１２", "not a number")
    _refused(X1, [1, 10**400], 10**400, "out of range")
    _refused(X1, [1, object], object, "not a number")

    values, null = coerce("m", N1, [1, "2", 3.0, True, 2**63 - 1])
    assert values.dtype == np.int64 and values.tolist() == [1, 2, 3, 1, 2**63 - 1]
    values, null = coerce("m", N1, [1, "2", None, np.nan])
    assert null.tolist() == [False, False, True, True] and values[:2].tolist() == [1.0, 2.0]
    _refused(N1, [1, 2**63], 2**63, "out of bigint range")
    _refused(N1, [1, "2", 2.5], 2.5, "not a whole number")
    _refused(N1, [1, "9223372036854775808"], "9223372036854775808", "out of bigint range")

    values, null = coerce("m", B1, [True, "yes", 0, None, "of", 1.0])
    assert null.tolist() == [False, False, False, True, False, False]
    assert values[~null].tolist() == [True, True, False, False, True]
    _refused(B1, [True, "maybe"], "maybe", "not a boolean")
    _refused(B1, [True, 2], 2, "not a boolean")


def test_null_handling_is_unchanged():
    values, null = coerce("m", X1, ["1.5", None, np.nan, pd.NA, "NaN", "-nan", "nan(1)"])
    assert null.tolist() == [False] + [True] * 6 and values[0] == 1.5 and np.isnan(values[1:]).all()
    _refused(N1, ["1", "NaN"], "NaN", "not an integer")  # NaN is no bigint, as in SQL
    for feature in (X1, N1, B1):
        values, null = coerce("m", feature, [None, None])
        assert null.all() and len(values) == 2
        values, null = coerce("m", feature, pd.Series(["1", None], dtype="string"))
        assert null.tolist() == [False, True]
    values, null = coerce("m", B1, ["true", None])
    assert values.dtype == object and values[0] is True and null.tolist() == [False, True]
    assert coerce("m", B1, ["true", "f"])[0].dtype == bool


_PLAIN = st.text(alphabet="0123456789+-.eE \t\n\v\f\r", max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PLAIN, st.floats().map(repr), st.integers().map(str)), max_size=20))
def test_the_vectorized_path_is_the_one_by_one_parser(texts):
    """numpy's conversion of plain notation, with its overflow and underflow checks, takes
    exactly what double_from_text takes, and gives the same doubles."""
    want = []
    for text in texts:
        try:
            want.append(double_from_text(text))
        except TextRefused:
            want.append(None)
    if None in want:
        with pytest.raises(InputError) as info:
            coerce("m", X1, texts)
        assert info.value.details["row"] == want.index(None)
        return
    values, null = coerce("m", X1, texts)
    assert [None if n else v for v, n in zip(values.tolist(), null, strict=True)] == [
        None if math.isnan(w) else w for w in want
    ]


# The issue's second example: float32 rounds f3 = 3.4028235677973362e38 down to its largest
# value, which the model takes; f4 = 3.5e38 overflows float32 and is the cause.
BELOW_OVERFLOW, ABOVE_OVERFLOW = 3.4028235677973362e38, 3.5e38


@pytest.fixture(scope="module")
def float32_model():
    """A GradientBoostingRegressor (it casts its input to float32) on five features."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    model = GradientBoostingRegressor(n_estimators=5, random_state=0)
    return model.fit(X, X @ np.arange(5.0)), X


def _signature(name: str) -> Signature:
    features = tuple(Feature(f"f{i}", "double") for i in range(5))
    return Signature(name, features, "regression", input_kind="array")


def _row(**values: float) -> list[list[float]]:
    return [[values.get(f"f{i}", 0.0)] for i in range(5)]


def test_float32_boundary_is_the_rounding_threshold(float32_model):
    assert scoring.FLOAT32_OVERFLOW == 3.4028235677973366e38
    assert np.float32(np.nextafter(scoring.FLOAT32_OVERFLOW, 0)) == np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(scoring.FLOAT32_OVERFLOW))
    model, _ = float32_model
    assert len(scoring.predict(model, _signature("gbr"), _row(f3=BELOW_OVERFLOW))) == 1


@pytest.mark.parametrize("through", ["estimator", "plan"])
def test_the_model_names_the_column_that_is_the_cause(float32_model, tmp_path, through):
    model, X = float32_model
    sig = _signature("gbr")
    if through == "plan":
        udfs.save_model(model, "gbr", sample=X, store=tmp_path, feature_names=sig.feature_names)
        bundle = udfs.load_model("gbr", store=tmp_path)
        assert bundle.plan is not None
        model, sig = bundle.scorer, bundle.signature
    cases = [
        (_row(f3=BELOW_OVERFLOW, f4=ABOVE_OVERFLOW), "f4", ABOVE_OVERFLOW),
        (_row(f0=BELOW_OVERFLOW, f2=-math.inf, f4=ABOVE_OVERFLOW), "f2", -math.inf),
        (_row(f1=-ABOVE_OVERFLOW, f3=math.inf), "f1", -ABOVE_OVERFLOW),
    ]
    for columns, name, value in cases:
        with pytest.raises(ScoringError) as info:
            scoring.predict(model, sig, columns)
        assert info.value.details["column"] == name, (str(info.value), name)
        assert f"column '{name}' has the value {value!r}" in str(info.value)
    # Two rows: the first row's extreme value is harmless, the second row's is not.
    columns = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [BELOW_OVERFLOW, 0.0], [0.0, math.inf]]
    with pytest.raises(ScoringError, match="column 'f4' has the value inf"):
        scoring.predict(model, sig, columns)


def test_a_float64_model_is_not_blamed_on_what_it_takes():
    """LinearRegression takes 3.5e38 (it stays float64) and refuses infinity."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 5))
    model = LinearRegression().fit(X, X.sum(axis=1))
    sig = _signature("linear")
    assert len(scoring.predict(model, sig, _row(f0=ABOVE_OVERFLOW))) == 1
    with pytest.raises(ScoringError) as info:
        scoring.predict(model, sig, _row(f0=ABOVE_OVERFLOW, f1=-1e300, f2=math.inf))
    assert info.value.details["column"] == "f2"


def test_boolean_column_without_nulls_after_filtering_is_bool(model_store):
    """A NULL-holding boolean column reaches the model as bool once its NULL rows are left out:
    XGBoost and LightGBM refuse object columns."""
    churn = udfs.load_model("churn", store=model_store)
    active = churn.signature.features[3]
    assert active.type == "boolean" and not active.accepts_missing
    batch = scoring.prepare(churn.signature, [[40.0, 41.0], [1, 2], ["pro", "pro"], [None, True]])
    assert batch.arrays[3].dtype == bool and batch.arrays[3].tolist() == [True]
    assert batch.X["active"].dtype == bool


def test_the_largest_value_is_probed_where_a_pipeline_scales_the_input():
    """A scaler brings -3.5e38 into float32's range but not 1.7e46: the latter is named."""
    rng = np.random.default_rng(2)
    X = rng.normal(scale=1000.0, size=(100, 5))
    model = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=3))
    model.fit(X, X[:, 0])
    sig = _signature("scaled")
    assert len(scoring.predict(model, sig, _row(f0=-ABOVE_OVERFLOW))) == 1
    columns = [[-ABOVE_OVERFLOW, 1.7e46], *([[0.0, 0.0]] * 4)]
    with pytest.raises(ScoringError, match=r"column 'f0' has the value 1\.7e\+46"):
        scoring.predict(model, sig, columns)
