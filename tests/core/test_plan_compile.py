"""Scoring plans: each supported step compiles and verifies; the format round-trips."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC

from udfs.errors import InputError
from udfs.infer_signature import infer_signature
from udfs.plan.base import PLAN_FORMAT_VERSION, PlanMismatch, PlanUnsupported
from udfs.plan.compile import compile_model
from udfs.plan.execute import PlanRunner
from udfs.plan.format import Plan, PlanFormatError
from udfs.plan.verify import verify_plan

FEATURES = ["age", "tenure", "plan", "active"]
ROOT = Path(__file__).resolve().parents[2]


def frame(n: int = 160, seed: int = 0, nulls: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(1),
            "tenure": rng.integers(0, 120, n).astype(np.int64),
            "plan": rng.choice(["basic", "pro", "enterprise", "rare"], n, p=[0.5, 0.3, 0.17, 0.03]),
            "active": rng.random(n) < 0.7,
        }
    ).astype({"plan": object})
    if nulls:
        data.loc[rng.random(n) < 0.1, "age"] = np.nan
        data.loc[rng.random(n) < 0.1, "plan"] = np.nan
    return data


def target(X: pd.DataFrame, kind: str) -> np.ndarray:
    score = X["age"].fillna(40).to_numpy() / 10 - X["tenure"].to_numpy() / 40
    score = score + (X["plan"] == "pro").to_numpy() - X["active"].to_numpy()
    if kind == "regression":
        return score
    if kind == "binary":
        return np.where(score > np.median(score), "yes", "no").astype(object)
    return np.digitize(score, np.quantile(score, [0.33, 0.66])).astype(np.int64)


def prep(**ohe) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "tenure"]),
            ("cat", OneHotEncoder(**{"handle_unknown": "ignore", **ohe}), ["plan"]),
        ],
        remainder="passthrough",
    )


def fit_and_verify(model, kind: str = "binary", data: pd.DataFrame | None = None):
    X = frame() if data is None else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, target(X, kind))
        signature = infer_signature(model, X, "m")
    plan = compile_model(model, signature)
    verify_plan(plan, model, signature, [X[c] for c in X.columns])
    return plan, signature, X


ESTIMATORS = {
    "logistic": (LogisticRegression(max_iter=500), "binary"),
    "multinomial": (LogisticRegression(max_iter=500), "multiclass"),
    "linear": (LinearRegression(), "regression"),
    "ridge": (Ridge(alpha=0.3), "regression"),
    "lasso": (Lasso(alpha=0.01), "regression"),
    "elasticnet": (ElasticNet(alpha=0.01), "regression"),
    "sgd_log": (SGDClassifier(loss="log_loss", random_state=0), "binary"),
    "sgd_log_multi": (SGDClassifier(loss="log_loss", random_state=0), "multiclass"),
    "sgd_huber": (SGDClassifier(loss="modified_huber", random_state=0), "multiclass"),
    "sgd_huber_bin": (SGDClassifier(loss="modified_huber", random_state=0), "binary"),
    "sgd_hinge": (SGDClassifier(random_state=0), "binary"),
    "sgd_reg": (SGDRegressor(random_state=0), "regression"),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("sparse", [False, True])
def test_linear_estimators_dense_and_sparse(name: str, sparse: bool) -> None:
    estimator, kind = ESTIMATORS[name]
    ct = prep(sparse_output=sparse)
    ct.set_params(sparse_threshold=1.0 if sparse else 0.0)
    fit_and_verify(Pipeline([("prep", ct), ("model", estimator)]), kind)


@pytest.mark.parametrize(
    ("imputer", "scaler"),
    [
        (SimpleImputer(strategy="mean"), "passthrough"),
        (SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
        (SimpleImputer(strategy="most_frequent"), StandardScaler(with_mean=False)),
        (
            SimpleImputer(strategy="constant", fill_value=-1.5, add_indicator=True),
            MinMaxScaler(clip=True),
        ),
        (SimpleImputer(keep_empty_features=True), MinMaxScaler(feature_range=(-2, 3))),
        (SimpleImputer(), RobustScaler()),
        (SimpleImputer(strategy="median"), MaxAbsScaler()),
    ],
)
def test_numeric_steps(imputer, scaler) -> None:
    ct = ColumnTransformer(
        [
            ("num", make_pipeline(imputer, scaler), [0, 1]),
            ("flag", "passthrough", [False, False, False, True]),
        ]
    )
    fit_and_verify(Pipeline([("prep", ct), ("model", Ridge())]), "regression")


@pytest.mark.parametrize(
    "encoder",
    [
        OneHotEncoder(handle_unknown="ignore"),
        OneHotEncoder(handle_unknown="ignore", drop="first", sparse_output=False),
        OneHotEncoder(handle_unknown="ignore", drop="if_binary"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=2),
        OneHotEncoder(handle_unknown="error"),
        OneHotEncoder(drop=["pro"], handle_unknown="ignore"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=-2
        ),
        OrdinalEncoder(),
    ],
)
def test_encoders_on_strings_ints_and_bools(encoder) -> None:
    ct = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age"]),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), encoder),
                ["plan"],
            ),
            ("other", clone(encoder).set_params(**_one_drop(encoder)), ["tenure", "active"]),
        ]
    )
    X = frame()
    X["tenure"] = X["tenure"] % 5
    fit_and_verify(Pipeline([("prep", ct), ("model", LogisticRegression())]), "binary", X)


def _one_drop(encoder) -> dict:
    return {"drop": None} if isinstance(getattr(encoder, "drop", None), list) else {}


def test_missing_category_is_a_category() -> None:
    ct = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="drop"
    )
    plan, signature, _ = fit_and_verify(Pipeline([("prep", ct), ("m", LogisticRegression())]))
    runner = PlanRunner(plan, signature)
    nan_row = [np.array([1.0]), np.array([3]), np.array([np.nan], dtype=object), np.array([True])]
    assert runner.predict_proba(nan_row).shape == (1, 2)


def test_unknown_category_raises_naming_column_and_value() -> None:
    ct = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="error"), ["plan"])], remainder="passthrough"
    )
    plan, signature, _ = fit_and_verify(
        Pipeline([("prep", ct), ("m", LogisticRegression())]), data=frame(nulls=False)
    )
    runner = PlanRunner(plan, signature)
    row = [np.array([1.0]), np.array([3]), np.array(["platinum"], dtype=object), np.array([True])]
    with pytest.raises(InputError, match=r"column 'plan' has the value 'platinum'") as info:
        runner.predict(row)
    assert isinstance(info.value, ValueError)
    assert info.value.details["column"] == "plan"


def test_bare_estimator_on_a_numpy_array() -> None:
    X = frame(nulls=False)[["age", "tenure"]].to_numpy(dtype=np.float64)
    model = LogisticRegression().fit(X, target(frame(nulls=False), "binary"))
    signature = infer_signature(model, X, "m", feature_names=["a", "b"])
    plan = compile_model(model, signature)
    verify_plan(plan, model, signature, [X[:, 0], X[:, 1]])


def test_unsupported_steps_are_named() -> None:
    X = frame(nulls=False)
    model = Pipeline([("poly", PolynomialFeatures()), ("svm", SVC())])
    model.fit(X[["age", "tenure"]], target(X, "binary"))
    signature = infer_signature(model, X[["age", "tenure"]], "m")
    with pytest.raises(PlanUnsupported) as info:
        compile_model(model, signature)
    assert info.value.details["step"] == "model > poly: PolynomialFeatures"
    model = Pipeline([("prep", prep()), ("svm", SVC())]).fit(X, target(X, "binary"))
    with pytest.raises(PlanUnsupported, match="svm: SVC"):
        compile_model(model, infer_signature(model, X, "m"))


def test_verify_catches_a_one_ulp_change() -> None:
    plan, signature, X = fit_and_verify(Pipeline([("prep", prep()), ("m", LogisticRegression())]))
    model = Pipeline([("prep", prep()), ("m", LogisticRegression())])
    model.fit(X, target(X, "binary"))
    name = plan.spec["estimator"]["coef"]
    arrays = dict(plan.arrays)
    arrays[name] = np.nextafter(arrays[name], np.inf)
    with pytest.raises(PlanMismatch, match="row"):
        verify_plan(Plan(plan.spec, arrays), model, signature, [X[c] for c in X.columns])


def test_verify_catches_a_missing_error() -> None:
    X = frame(nulls=False)
    strict = Pipeline([("prep", prep(handle_unknown="error")), ("m", LogisticRegression())])
    strict.fit(X, target(X, "binary"))
    lenient = Pipeline([("prep", prep(handle_unknown="ignore")), ("m", LogisticRegression())])
    lenient.fit(X, target(X, "binary"))
    signature = infer_signature(strict, X, "m")
    with pytest.raises(PlanMismatch, match="raised"):
        verify_plan(compile_model(lenient, signature), strict, signature, [X[c] for c in X.columns])


def test_round_trips_and_sha(tmp_path: Path) -> None:
    plan, signature, X = fit_and_verify(Pipeline([("prep", prep()), ("m", LogisticRegression())]))
    again = Plan.load(plan.save(tmp_path / "p"))
    blob = Plan.from_bytes(plan.to_bytes())
    assert again.sha256 == blob.sha256 == plan.sha256
    assert plan.to_bytes() == blob.to_bytes()
    columns = [X[c].to_numpy() for c in X.columns]
    clean = [c[:20] for c in columns]
    expected = PlanRunner(plan, signature).predict_proba(clean)
    assert np.array_equal(PlanRunner(blob, signature).predict_proba(clean), expected)
    spec = json.loads((tmp_path / "p" / "plan.json").read_text())
    spec["spec"]["format_version"] = PLAN_FORMAT_VERSION + 1
    (tmp_path / "p" / "plan.json").write_text(json.dumps(spec))
    with pytest.raises(PlanFormatError, match="format version"):
        Plan.load(tmp_path / "p")
    with pytest.raises(PlanFormatError):
        Plan.from_bytes(b"not a plan")


def test_executor_imports_no_sklearn_scipy_pandas() -> None:
    # udfs/__init__ imports the store (pandas, sklearn): load udfs.plan without it.
    code = f"""
import sys, types
pkg = types.ModuleType("udfs"); pkg.__path__ = [{str(ROOT / "udfs")!r}]
sys.modules["udfs"] = pkg
import udfs.plan.execute, udfs.plan.format, udfs.plan.tree_exec
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "pandas"))
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_tree_pipelines(kind: str) -> None:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
    )

    model = {
        "binary": GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
        "multiclass": RandomForestClassifier(n_estimators=5, random_state=0),
        "regression": GradientBoostingRegressor(n_estimators=10, random_state=0),
    }[kind]
    fit_and_verify(Pipeline([("prep", prep()), ("model", model)]), kind)
