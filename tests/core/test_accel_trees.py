"""The GPU tree backend, run on the CPU: converted models must agree with scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import udfs
from tests.fixtures.models import FEATURES, scoring_rows
from udfs import scoring
from udfs.accel import trees
from udfs.errors import ConfigError

TOLERANCE = 1e-6  # the contract; measured differences are about 1e-15
CLASSIFIERS = {
    "random_forest": lambda: RandomForestClassifier(n_estimators=30, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=30, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "decision_tree": lambda: DecisionTreeClassifier(random_state=0),
}
REGRESSORS = {
    "random_forest": lambda: RandomForestRegressor(n_estimators=30, random_state=0),
    "extra_trees": lambda: ExtraTreesRegressor(n_estimators=30, random_state=0),
    "gradient_boosting": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
    "gradient_boosting_huber": lambda: GradientBoostingRegressor(loss="huber", random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
    "hist_poisson": lambda: HistGradientBoostingRegressor(loss="poisson", random_state=0),
    "decision_tree": lambda: DecisionTreeRegressor(random_state=0),
}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the udfs[gpu] extra (PyTorch) is not installed")


# Conversion needs PyTorch; refusing a model, the missing-library error and imports do not.
needs_torch = pytest.mark.usefixtures("torch")


def _tensors_only(monkeypatch, fast):
    """Make a silent fallback to scikit-learn fail the test: the tensors must do the work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the converted model fell back to scikit-learn")

    for method in ("predict", "predict_proba"):
        monkeypatch.setattr(fast.estimator, method, refuse, raising=False)
    return fast


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@needs_torch
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_matches_sklearn(monkeypatch, name, n_classes):
    X, y = make_classification(600, 8, n_informative=5, n_classes=n_classes, random_state=0)
    labels = np.array(["low", "mid", "high"])[y]  # string classes, as SQL users have them
    model = CLASSIFIERS[name]().fit(X[:400], labels[:400])
    proba, predicted = model.predict_proba(X), model.predict(X)
    fast = _tensors_only(monkeypatch, trees.convert(model, "cpu"))
    assert _max_diff(fast.predict_proba(X), proba) <= TOLERANCE
    assert (fast.predict(X) == predicted).all()


@needs_torch
@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_matches_sklearn(monkeypatch, name):
    X, y = make_regression(600, 8, noise=5.0, random_state=0)
    y = np.exp(y / 200) if name == "hist_poisson" else y  # a log link needs a positive target
    model = REGRESSORS[name]().fit(X[:400], y[:400])
    want = model.predict(X)
    fast = _tensors_only(monkeypatch, trees.convert(model, "cpu"))
    assert _max_diff(fast.predict(X), want) <= TOLERANCE


@needs_torch
def test_pipeline_keeps_its_transformers_on_sklearn(monkeypatch):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 500),
            "plan": rng.choice(["basic", "pro", "team"], 500),
            "tenure": rng.integers(0, 60, 500).astype(float),
        }
    )
    target = (frame["age"] / 10 + (frame["plan"] == "pro") + rng.normal(0, 1, 500) > 5).map(
        {True: "churn", False: "stay"}
    )
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["age", "tenure"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    model = Pipeline([("prep", prep), ("model", HistGradientBoostingClassifier(max_iter=40))])
    model.fit(frame, target)
    assert trees.gpu_candidate(model)
    proba, predicted = model.predict_proba(frame), model.predict(frame)
    fast = _tensors_only(monkeypatch, trees.convert(model, "cpu"))
    assert fast.head is not None and fast.kind == "hgb"
    assert _max_diff(fast.predict_proba(frame), proba) <= TOLERANCE
    assert (fast.predict(frame) == predicted).all()


@needs_torch
def test_scoring_core_gives_the_same_results(monkeypatch, model_store):
    bundle = udfs.load_model("segment", store=model_store)  # ColumnTransformer + random forest
    rows = scoring_rows()  # NULLs in every feature and an unseen category
    columns = [rows[c] for c in FEATURES]
    methods = ("predict", "predict_proba")
    wanted = [getattr(scoring, m)(bundle.model, bundle.signature, columns) for m in methods]
    fast = _tensors_only(monkeypatch, trees.convert(bundle.model, "cpu"))
    for method, want in zip(methods, wanted, strict=True):
        got = getattr(scoring, method)(fast, bundle.signature, columns)
        assert want.isna().tolist() == got.isna().tolist()
        for a, b in zip(want.dropna(), got.dropna(), strict=True):
            assert a == b if method == "predict" else _max_diff(a, b) <= TOLERANCE


@needs_torch
@pytest.mark.parametrize(
    "model",
    [HistGradientBoostingClassifier(random_state=0), RandomForestClassifier(random_state=0)],
    ids=["hist_gradient_boosting", "random_forest"],
)
@pytest.mark.parametrize("nan_in_training", [True, False])
def test_missing_values_take_sklearns_branch(monkeypatch, model, nan_in_training):
    X, y = make_classification(500, 6, random_state=0)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    model.fit(holes if nan_in_training else X, y)
    want = model.predict_proba(holes)
    fast = _tensors_only(monkeypatch, trees.convert(model, "cpu"))
    assert _max_diff(fast.predict_proba(holes), want) <= TOLERANCE


@needs_torch
def test_split_at_zero_is_exact():
    # Hummingbird 0.4.12 turns a HistGradientBoosting threshold of 0.0 into -1 and misroutes
    # values in (-1, 0]; this backend must not.
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 1.0], size=(400, 3))
    y = (X[:, 0] > 0) ^ (rng.random(400) < 0.1)
    model = HistGradientBoostingClassifier(max_iter=20).fit(X, y)
    probe = np.array([[-0.5, 0, 0], [0.5, 0, 0], [0.0, -0.25, 1.0]])
    assert _max_diff(trees.convert(model).predict_proba(probe), model.predict_proba(probe)) < 1e-12


@needs_torch
def test_inputs_sklearn_rejects_get_sklearns_error():
    X, y = make_classification(200, 4, random_state=0)
    fast = trees.convert(GradientBoostingClassifier(n_estimators=5).fit(X, y))
    with pytest.raises(ValueError, match="infinity"):
        fast.predict(np.array([[np.inf, 0, 0, 0]]))
    frame = pd.DataFrame(X, columns=list("abcd"))
    named = trees.convert(RandomForestClassifier(n_estimators=5).fit(frame, y))
    with pytest.raises(ValueError, match="feature names"):
        named.predict(frame[list("dcba")])


@needs_torch
def test_batches_are_chunked_and_may_be_empty(monkeypatch):
    X, y = make_classification(300, 5, n_classes=3, n_informative=3, random_state=0)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    want = model.predict_proba(X)
    monkeypatch.setattr(trees, "CHUNK_ELEMENTS", 70)  # 7 rows per chunk
    fast = _tensors_only(monkeypatch, trees.convert(model))
    assert _max_diff(fast.predict_proba(X), want) <= TOLERANCE
    assert fast.predict_proba(X[:0]).shape == (0, 3)
    assert fast.predict(X[:0]).shape == (0,)


def _fitted(estimator):
    X, y = make_classification(100, 4, random_state=0)
    return estimator.fit(X, y)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _fitted(LogisticRegression()), "LogisticRegression is not a supported"),
        (lambda: make_pipeline(StandardScaler(), _fitted(LinearRegression())), "not a supported"),
        (lambda: RandomForestClassifier(), "not fitted"),
        (
            lambda: _fitted(GradientBoostingClassifier(init=LogisticRegression())),
            "custom init",
        ),
        (
            lambda: _fitted(HistGradientBoostingClassifier(categorical_features=[0])),
            "categorical",
        ),
        (
            lambda: RandomForestRegressor(n_estimators=3).fit(np.eye(4), np.eye(4)[:, :2]),
            "2 outputs",
        ),
    ],
    ids=["linear", "pipeline_of_linear", "unfitted", "custom_init", "categorical", "multioutput"],
)
def test_unsupported_models_are_refused(make, reason):
    model = make()
    assert not trees.gpu_candidate(model)
    assert reason in trees.unsupported_reason(model)
    with pytest.raises(ConfigError, match=reason):
        trees.convert(model)


def test_missing_torch_is_a_config_error(monkeypatch):
    model = _fitted(RandomForestClassifier(n_estimators=2))  # before torch disappears: scipy looks
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    assert not trees.available()
    with pytest.raises(ConfigError, match=r"needs PyTorch.*udfs\[gpu\]"):
        trees.convert(model)


def test_import_does_not_load_torch():
    code = "import sys, udfs.accel.trees; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_or_absent_device_is_a_config_error(torch):
    model = _fitted(RandomForestClassifier(n_estimators=2))
    with pytest.raises(ConfigError, match="device must be like"):
        trees.convert(model, "gpu-please")
    if torch.cuda.is_available():
        return
    with pytest.raises(ConfigError, match="sees 0 CUDA devices"):
        trees.convert(model, "cuda:0")


def test_cuda_matches_cpu(torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: GPU execution is only checked on a machine with one")
    X, y = make_classification(2000, 8, n_classes=3, n_informative=5, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=50).fit(X, y)
    fast = trees.convert(model, "cuda:0")
    assert fast.device.type == "cuda"
    assert _max_diff(fast.predict_proba(X), model.predict_proba(X)) <= TOLERANCE
