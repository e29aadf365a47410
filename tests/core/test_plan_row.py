"""The single-row path (udfs.plan.row) equals PlanRunner on one-row batches, bit for bit."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier

from udfs.demo.data import FEATURES, customers
from udfs.infer_signature import infer_signature
from udfs.plan.compile import compile_model
from udfs.plan.execute import PlanRunner

EXAMPLES = int(os.environ.get("UDFS_HYPOTHESIS_EXAMPLES", "30"))
ROOT = Path(__file__).resolve().parents[2]
LEVELS = ["a", "b", "c", "d", "e"]


# ------------------------------------------------------------------ helpers


def one_row_arrays(values: list, types: list[str]) -> list[np.ndarray]:
    """The one-row arrays udfs.fastpath builds (its _LEAN / _NULL), for the batch path."""
    arrays = []
    for v, t in zip(values, types, strict=True):
        if v is None or (type(v) is float and math.isnan(v)):
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


def _outcome(call) -> tuple[Any, bool]:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return call(), False
    except Exception as exc:  # any failure: both paths must fail on the same rows
        return type(exc).__name__, True


def assert_same(want: Any, got: Any, where: str) -> None:
    assert type(got) is type(want), f"{where}: {type(want)} vs {type(got)}"
    if isinstance(want, np.ndarray):
        assert want.dtype == got.dtype and want.shape == got.shape, where
        assert want.tobytes() == got.tobytes(), f"{where}: {want!r} vs {got!r}"
    elif isinstance(want, np.floating | float):
        assert np.float64(want).tobytes() == np.float64(got).tobytes(), f"{where}: {want} {got}"
    else:
        assert want == got, f"{where}: {want!r} vs {got!r}"


def check_rows(runner: PlanRunner, rows: list[list]) -> int:
    """Every row through both paths, both methods; returns how many rows were compared."""
    row = runner.row_scorer()
    types = [f.type for f in runner.signature.features]
    methods = ["predict", *(["predict_proba"] if runner.has_proba else [])]
    for values in rows:
        for method in methods:
            want, want_raised = _outcome(
                lambda: getattr(runner, method)(one_row_arrays(values, types))[0]  # noqa: B023
            )
            got, got_raised = _outcome(lambda: row.score(list(values), method))  # noqa: B023
            where = f"{method} on {values!r}"
            assert want_raised == got_raised, f"{where}: batch {want!r}, row {got!r}"
            if not want_raised:
                assert_same(want, got, where)
    return len(rows)


def fit(model, X: pd.DataFrame | np.ndarray, y, **kw) -> PlanRunner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        signature = infer_signature(model, X, "m", **kw)
        plan = compile_model(model, signature)
    return PlanRunner(plan, signature)


# ------------------------------------------------------------------ random pipelines

numeric_step = st.sampled_from(
    [
        lambda: SimpleImputer(),
        lambda: SimpleImputer(strategy="median", add_indicator=True),
        lambda: make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
        ),
        lambda: make_pipeline(SimpleImputer(strategy="most_frequent"), MinMaxScaler(clip=True)),
        lambda: make_pipeline(SimpleImputer(strategy="constant", fill_value=0.5), RobustScaler()),
        lambda: make_pipeline(SimpleImputer(), MaxAbsScaler()),
        lambda: make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler()),
    ]
)
category_step = st.sampled_from(
    [
        lambda: OneHotEncoder(handle_unknown="ignore"),
        lambda: OneHotEncoder(handle_unknown="ignore", sparse_output=False, drop="if_binary"),
        lambda: OneHotEncoder(handle_unknown="ignore", drop="first", sparse_output=False),
        lambda: OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=4),
        lambda: OneHotEncoder(handle_unknown="error"),
        lambda: OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
        ),
        lambda: make_pipeline(
            SimpleImputer(strategy="constant", fill_value="none"),
            OneHotEncoder(handle_unknown="ignore"),
        ),
        lambda: make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()),
    ]
)
flag_step = st.sampled_from(
    [
        "passthrough",
        "drop",
        lambda: OneHotEncoder(handle_unknown="ignore"),
        lambda: OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    ]
)
estimators = st.sampled_from(
    [
        (lambda: GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0), "class"),
        (lambda: GradientBoostingRegressor(n_estimators=8, random_state=0), "regression"),
        (lambda: RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0), "class"),
        (lambda: DecisionTreeClassifier(max_depth=5, random_state=0), "class"),
        (lambda: HistGradientBoostingClassifier(max_iter=8, random_state=0), "class"),
        (lambda: HistGradientBoostingRegressor(max_iter=8, random_state=0), "regression"),
        (lambda: LogisticRegression(max_iter=300), "class"),
        (lambda: Ridge(), "regression"),
        (lambda: SGDClassifier(loss="modified_huber", random_state=0), "class"),
    ]
)
magnitude = st.sampled_from([1.0, 1e-8, 1e8, 1e150])


@st.composite
def cases(draw):
    n = draw(st.integers(40, 90))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(magnitude)
    X = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n) * scale,
            "k": rng.integers(-3, 1000, n).astype(np.int64),
            "s": rng.choice(LEVELS, n).astype(object),
            "b": rng.random(n) < 0.5,
        }
    )
    X.loc[rng.random(n) < draw(st.sampled_from([0.0, 0.2])), "x"] = np.nan
    X.loc[rng.random(n) < draw(st.sampled_from([0.0, 0.2])), "s"] = np.nan
    make_estimator, task = draw(estimators)
    flag = draw(flag_step)
    parts = [
        ("num", draw(numeric_step)(), ["x", "k"]),
        ("cat", draw(category_step)(), ["s"]),
        ("flag", flag if isinstance(flag, str) else flag(), ["b"]),
    ]
    remainder = draw(st.sampled_from(["drop", "passthrough"]))
    if remainder == "passthrough":
        parts = [p for p in parts if p[0] != "flag"]
    ct = ColumnTransformer(
        parts,
        remainder=remainder,
        sparse_threshold=draw(st.sampled_from([0.0, 0.3, 1.0])),
    )
    model = Pipeline([("prep", ct), ("model", make_estimator())])
    y = (np.nan_to_num(X["x"].to_numpy() / scale) + (X["s"] == "a").to_numpy()) > 0
    if task == "regression":
        y = rng.normal(0, 1, n) * draw(magnitude)
    elif draw(st.booleans()):
        y = np.digitize(rng.random(n), [0.3, 0.6]).astype(np.int64)  # three classes
    elif draw(st.booleans()):
        y = np.where(y, "yes", "no").astype(object)
    # Scoring rows: fresh values, NULLs and NaN, unseen levels, huge, tiny and signed zeros.
    xs = [*(rng.normal(0, 1, 6) * scale).tolist(), None, math.nan, 1e300, -5e-324, 0.0, -0.0]
    xs += [math.inf, 3.5e38, 2.0**53 + 1, 1e-300]
    ks = [*rng.integers(-5, 2000, 6).tolist(), None, 0, -(2**40), 2**53, 2**62, 7]
    ss = [*rng.choice(LEVELS, 5).tolist(), "zz", None, "", "a"]
    bs = [True, False, None]
    rows = [
        [xs[i % len(xs)], ks[(3 * i) % len(ks)], ss[(5 * i) % len(ss)], bs[(7 * i) % 3]]
        for i in range(48)
    ]
    return X, y, model, rows


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_random_pipelines_row_equals_batch(case) -> None:
    X, y, model, rows = case
    try:
        runner = fit(model, X, y)
    except (TypeError, ValueError) as exc:
        # Models scikit-learn cannot fit: HistGradientBoosting on sparse input, or training
        # values a float32 tree cannot hold (the generated magnitudes reach 1e150).
        assert any(s in str(exc) for s in ("sparse", "Sparse data", "too large")), exc
        reject()
    row = runner.row_scorer()
    assert row.fused, row.source()
    check_rows(runner, rows)
    # Only bigints beyond 2**53 take the batch path.
    huge = sum(1 for r in rows if type(r[1]) is int and abs(r[1]) > 2**53)
    methods = 2 if runner.has_proba else 1
    assert row.fallbacks <= huge * methods


# ------------------------------------------------------------------ the demo and bare models


def demo(estimator, label: str = "churned") -> tuple[PlanRunner, pd.DataFrame]:
    train = customers(3000, seed=42, null_fraction=0.02)
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["age", "tenure"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("active", "passthrough", ["active"]),
        ]
    )
    runner = fit(Pipeline([("prep", prep), ("model", estimator)]), train[FEATURES], train[label])
    return runner, customers(400, seed=7, null_fraction=0.1)


def records(frame: pd.DataFrame) -> list[list]:
    out = []
    for rec in frame[FEATURES].astype(object).itertuples(index=False):
        out.append([None if (v is None or (isinstance(v, float) and v != v)) else v for v in rec])
    for r in out:
        r[1] = int(r[1])
        r[3] = bool(r[3])
    return out


EDGE_ROWS = [
    [None, 0, None, True],
    [math.nan, 5, "basic", False],
    [1e300, 5, "pro", True],
    [-1e300, 5, "pro", True],
    [math.inf, 1, "basic", True],
    [3.4028235e38, 1, "basic", True],
    [-0.0, -(2**53), "enterprise", False],
    [40.0, 2**62, "basic", True],
    [40.0, None, "unseen", False],
    [40.0, 3, "", True],
    [12, 3, "pro", True],
]


@pytest.mark.parametrize(
    ("estimator", "label"),
    [
        (GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0), "churned"),
        (RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0), "segment"),
        (LogisticRegression(max_iter=500), "churned"),
        (LogisticRegression(max_iter=500), "segment"),
        (HistGradientBoostingClassifier(max_iter=20, random_state=0), "segment"),
        (GradientBoostingRegressor(n_estimators=30, random_state=0), "spend"),
        (Ridge(), "spend"),
    ],
    ids=["gbc", "rf", "logistic", "multinomial", "hgb", "gbr", "ridge"],
)
def test_demo_pipeline(estimator, label: str) -> None:
    runner, rows = demo(estimator, label)
    row = runner.row_scorer()
    assert row.fused
    check_rows(runner, records(rows) + EDGE_ROWS)
    methods = 2 if runner.has_proba else 1
    assert row.fallbacks == methods  # the bigint 2**62 only


def test_bare_trees_on_doubles_use_the_direct_path() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    for model in (
        GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0),
        DecisionTreeClassifier(max_depth=6, random_state=0),  # accepts NaN
        HistGradientBoostingClassifier(max_iter=10, random_state=0),
    ):
        runner = fit(model, X, y, feature_names=[f"f{i}" for i in range(20)])
        row = runner.row_scorer()
        assert row.fused and row._direct
        rows = rng.normal(size=(60, 20)).tolist()
        base = rows[0]
        for value in (None, math.nan, math.inf, -math.inf, 1e300, 3.5e38, -0.0, 5e-324, 3):
            rows.append([value, *base[1:]])
        check_rows(runner, rows)
        assert row.fallbacks == 0
        with pytest.raises(TypeError):
            row.predict([True, *base[1:]])
        with pytest.raises(TypeError):
            row.predict(["1.5", *base[1:]])


def test_hgb_categorical_columns() -> None:
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.integers(0, 6, 400).astype(float), rng.normal(size=400)])
    X[rng.random(400) < 0.1, 0] = np.nan
    y = (X[:, 1] + (np.nan_to_num(X[:, 0]) % 2) > 0.5).astype(np.int64)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0], random_state=0)
    runner = fit(model, X, y, feature_names=["c", "x"])
    row = runner.row_scorer()
    assert row.fused
    rows = [[c, x] for c in (0.0, 1.0, 3.0, 5.0, 7.0, -1.0, -0.0, None, math.inf, 2.5, 300.0)
            for x in (-1.0, 0.0, 0.7, None)]  # fmt: skip
    check_rows(runner, rows)
    assert row.fallbacks == 0


def test_frame_of_mixed_dtypes_without_transform() -> None:
    """A bare model on a DataFrame with bool and bigint columns: object interleaving."""
    rng = np.random.default_rng(2)
    X = pd.DataFrame(
        {
            "x": rng.normal(size=300),
            "k": rng.integers(0, 50, 300).astype(np.int64),
            "b": rng.random(300) < 0.5,
        }
    )
    y = (X["x"] + X["b"] > 0.5).astype(np.int64)
    for model in (
        GradientBoostingClassifier(n_estimators=10, random_state=0),
        DecisionTreeClassifier(max_depth=4, random_state=0),
    ):
        runner = fit(model, X, y)
        rows = [[x, k, b] for x in (0.1, -2.0, None, 1e300) for k in (0, 17, None, 2**60)
                for b in (True, False, None)]  # fmt: skip
        check_rows(runner, rows)


def test_predict_both_equals_both_calls() -> None:
    for estimator, label in [
        (GradientBoostingClassifier(n_estimators=20, random_state=0), "churned"),
        (RandomForestClassifier(n_estimators=10, random_state=0), "segment"),
        (HistGradientBoostingClassifier(max_iter=10, random_state=0), "segment"),
        (LogisticRegression(max_iter=500), "churned"),
        (LogisticRegression(max_iter=500), "segment"),
        (SGDClassifier(loss="modified_huber", random_state=0), "segment"),
        (Ridge(), "spend"),
    ]:
        runner, rows = demo(estimator, label)
        columns = [rows[c].to_numpy() for c in FEATURES]
        columns[3] = columns[3].astype(bool)
        columns[1] = columns[1].astype(np.int64)
        for size in (1, 2, 7, len(rows)):
            part = [c[:size] for c in columns]
            labels, proba = runner.predict_both(part)
            want = runner.predict(part)
            assert labels.dtype == want.dtype and labels.tolist() == want.tolist()
            assert [type(v) for v in labels.tolist()] == [type(v) for v in want.tolist()]
            if runner.has_proba:
                expected = runner.predict_proba(part)
                assert proba.dtype == expected.dtype and proba.tobytes() == expected.tobytes()
            else:
                assert proba is None


def test_row_api_and_errors() -> None:
    runner, _ = demo(GradientBoostingClassifier(n_estimators=10, random_state=0))
    values = [41.5, 12, "pro", True]
    arrays = one_row_arrays(values, [f.type for f in runner.signature.features])
    assert runner.row(values, "predict") == runner.predict(arrays)[0]
    assert (
        runner.row(values, "predict_proba").tobytes() == runner.predict_proba(arrays)[0].tobytes()
    )
    assert runner.row_scorer() is runner.row_scorer()
    with pytest.raises(ValueError, match="unknown method"):
        runner.row(values, "decision_function")
    with pytest.raises(TypeError):
        runner.row([41.5, 12.0, "pro", True], "predict")  # a float for a bigint
    with pytest.raises(TypeError):
        runner.row([41.5, 12, "pro", 1], "predict")  # an int for a boolean
    with pytest.raises(Exception, match="values"):
        runner.row([41.5, 12], "predict")
    assert "return" in runner.row_scorer().source()


def test_row_module_imports_no_sklearn_scipy_pandas() -> None:
    code = f"""
import sys, types
pkg = types.ModuleType("udfs"); pkg.__path__ = [{str(ROOT / "udfs")!r}]
sys.modules["udfs"] = pkg
import udfs.plan.execute, udfs.plan.row, udfs.plan.tree_exec
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "pandas"))
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
