"""The GPU tree backend, run on torch's CPU device: it reads the plan and must equal the plan."""

from __future__ import annotations

import logging
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
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

import udfs
from tests.fixtures.models import FEATURES, scoring_rows
from udfs import scoring
from udfs.accel import trees
from udfs.errors import ConfigError
from udfs.infer_signature import infer_signature
from udfs.plan.build import compile_verified, sample_columns
from udfs.plan.compile import compile_model
from udfs.plan.execute import PlanRunner

# The contract with scikit-learn (the plan is bit-identical to it; this backend to the plan).
BOUND = 1e-15
CLASSIFIERS = {
    "random_forest": lambda: RandomForestClassifier(n_estimators=30, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=30, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "gb_exponential": lambda: GradientBoostingClassifier(loss="exponential", random_state=0),
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


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """scikit-learn single-threaded, as the plan is (HGB's OpenMP crawls on busy machines)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the udfs[gpu] extra (PyTorch) is not installed")


# Converting needs PyTorch; refusing a plan, the missing-library error and imports do not.
needs_torch = pytest.mark.usefixtures("torch")


def _runner(model, sample, name: str = "m", verify: bool = True) -> PlanRunner:
    """The verified plan of ``model``, linked: what a Spark executor gets."""
    signature = infer_signature(model, sample, name)
    if not verify:
        return PlanRunner(compile_model(model, signature), signature)
    plan, entry = compile_verified(model, signature, sample_columns(sample, signature))
    assert plan is not None, entry
    return PlanRunner(plan, signature)


def _columns(X) -> list[np.ndarray]:
    """The arrays ``udfs.scoring.prepare`` hands a plan for a numeric matrix."""
    return [np.ascontiguousarray(X[:, i]) for i in range(X.shape[1])]


def _tensors_only(monkeypatch, fast):
    """Make a silent fallback to the CPU plan fail the test: the tensors must do the work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the GPU backend fell back to the CPU plan")

    for method in ("predict", "predict_proba"):
        monkeypatch.setattr(fast.runner, method, refuse)
    return fast


def _max_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b), initial=0.0))


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Bit for bit, dtype included (NaN equal to NaN)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f")


@needs_torch
@pytest.mark.parametrize(
    ("name", "n_classes"),
    [(name, k) for name in CLASSIFIERS for k in (2, 3) if (name, k) != ("gb_exponential", 3)],
)
def test_classifier_equals_the_plan_and_sklearn(monkeypatch, name, n_classes):
    X, y = make_classification(600, 8, n_informative=5, n_classes=n_classes, random_state=0)
    labels = np.array(["low", "mid", "high"])[y]  # string classes, as SQL users have them
    model = CLASSIFIERS[name]().fit(X[:400], labels[:400])
    runner, columns = _runner(model, X[:400]), _columns(X)
    want_proba, want = runner.predict_proba(columns), runner.predict(columns)
    fast = _tensors_only(monkeypatch, trees.convert_plan(runner, device="cpu"))
    _same(fast.predict_proba(columns), want_proba)
    _same(fast.predict(columns), want)
    labels, proba = fast.predict_both(columns)  # one walk of the trees for both
    _same(labels, want)
    _same(proba, want_proba)
    assert _max_diff(fast.predict_proba(columns), model.predict_proba(X)) <= BOUND
    assert (fast.predict(columns) == model.predict(X)).all()


@needs_torch
@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_equals_the_plan_and_sklearn(monkeypatch, name):
    X, y = make_regression(600, 8, noise=5.0, random_state=0)
    y = np.exp(y / 200) if name == "hist_poisson" else y  # a log link needs a positive target
    model = REGRESSORS[name]().fit(X[:400], y[:400])
    runner, columns = _runner(model, X[:400]), _columns(X)
    want = runner.predict(columns)
    fast = _tensors_only(monkeypatch, trees.convert_plan(runner, device="cpu"))
    _same(fast.predict(columns), want)
    assert _max_diff(fast.predict(columns), model.predict(X)) <= BOUND * np.abs(want).max()


def _frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "tenure": rng.integers(0, 60, n).astype(float),
            "plan": rng.choice(["basic", "pro", "enterprise"], n).astype(object),
            "active": rng.random(n) < 0.5,
        }
    )
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    noise = rng.normal(0, 1, n)
    target = (frame["age"].fillna(40) / 10 + (frame["plan"] == "pro") + noise > 5).map(
        {True: "churn", False: "stay"}
    )
    return frame, target


def _prep(sparse: bool) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "tenure"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("flag", "passthrough", ["active"]),
        ],
        sparse_threshold=1.0 if sparse else 0.0,
    )


PIPELINE_ESTIMATORS = {
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
}


@needs_torch
@pytest.mark.parametrize(
    ("name", "sparse"),
    [
        ("hist_gradient_boosting", False),  # HistGradientBoosting takes dense input only
        ("random_forest", False),
        ("random_forest", True),
        ("gradient_boosting", False),
        ("gradient_boosting", True),
    ],
)
def test_pipeline_transform_runs_in_the_plan_then_trees_on_the_device(monkeypatch, name, sparse):
    frame, target = _frame(500)
    estimator = PIPELINE_ESTIMATORS[name]()
    model = Pipeline([("prep", _prep(sparse)), ("model", estimator)]).fit(frame, target)
    runner = _runner(model, frame)
    rows = scoring_rows()  # NULLs in every feature and an unseen category
    columns = [rows[c] for c in FEATURES]
    methods = ("predict", "predict_proba")
    wanted = [getattr(scoring, m)(runner, runner.signature, columns) for m in methods]
    fast = _tensors_only(monkeypatch, trees.convert_plan(runner))
    for method, want in zip(methods, wanted, strict=True):
        pd.testing.assert_series_equal(
            getattr(scoring, method)(fast, runner.signature, columns), want
        )
    if hasattr(scoring, "predict_with_proba"):  # both from one walk, through the core
        both = scoring.predict_with_proba(fast, runner.signature, columns)
        for got, want in zip(both, wanted, strict=True):
            pd.testing.assert_series_equal(got, want)


@needs_torch
@pytest.mark.parametrize("name", ["segment", "plain"])
def test_saved_models_score_as_their_plan(monkeypatch, model_store, name):
    bundle = udfs.load_model(name, store=model_store)  # ColumnTransformer + forest; bare GB
    rows = scoring_rows()
    columns = [rows[f] for f in bundle.signature.feature_names]
    methods = ("predict", "predict_proba") if bundle.signature.has_proba else ("predict",)
    wanted = [getattr(scoring, m)(bundle.scorer, bundle.signature, columns) for m in methods]
    fast = _tensors_only(monkeypatch, trees.convert_plan(bundle.plan, bundle.signature, "cpu"))
    for method, want in zip(methods, wanted, strict=True):
        pd.testing.assert_series_equal(
            getattr(scoring, method)(fast, bundle.signature, columns), want
        )


@needs_torch
@pytest.mark.parametrize(
    "make",
    [
        lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
        lambda: RandomForestClassifier(n_estimators=20, random_state=0),
        lambda: DecisionTreeClassifier(random_state=0),
    ],
    ids=["hist_gradient_boosting", "random_forest", "decision_tree"],
)
@pytest.mark.parametrize("nan_in_training", [True, False])
def test_missing_values_take_the_plans_branch(monkeypatch, make, nan_in_training):
    X, y = make_classification(500, 6, n_classes=3, n_informative=4, random_state=0)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    model = make().fit(holes if nan_in_training else X, y)
    runner, columns = _runner(model, holes[:100]), _columns(holes)
    want = runner.predict_proba(columns)
    fast = _tensors_only(monkeypatch, trees.convert_plan(runner))
    _same(fast.predict_proba(columns), want)
    assert _max_diff(want, model.predict_proba(holes)) == 0


@needs_torch
def test_values_at_the_thresholds_split_as_in_the_plan(monkeypatch):
    # float32 models: the plan stores the largest float32 <= each threshold; HGB compares float64.
    # Probe exactly at, just below and just above every threshold, and at zero.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)) * [1, 100, 1e-3, 1e6]
    y = (X[:, 0] + X[:, 1] / 100 > 0).astype(int)
    for model in (
        GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y),
        HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y),
        RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y),
    ):
        runner = _runner(model, X)
        prefix = runner.plan.spec["estimator"]["prefix"]
        thresholds = runner.plan.arrays[prefix + "threshold"].astype(np.float64)
        cuts = thresholds[np.isfinite(thresholds)]
        cuts = np.concatenate([cuts, np.nextafter(cuts, -np.inf), np.nextafter(cuts, np.inf)])
        probe = np.tile(np.append(cuts, 0.0)[:, None], (1, 4))
        columns = _columns(probe)
        want = runner.predict_proba(columns)
        fast = _tensors_only(monkeypatch, trees.convert_plan(runner))
        _same(fast.predict_proba(columns), want)
        monkeypatch.undo()


def _raised(call) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def _outcome(call) -> tuple:
    try:
        return ("returned", call().tolist())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


@needs_torch
def test_refused_inputs_raise_as_the_plan_does():
    X, y = make_classification(300, 4, random_state=0)
    gb = _runner(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y), X)
    forest = _runner(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X)
    cases = [
        (gb, np.array([[np.inf, 0, 0, 0]])),  # infinity
        (gb, np.array([[np.nan, 0, 0, 0]])),  # NaN for a model that refuses it
        (forest, np.array([[1e39, 0, 0, 0]])),  # too large for float32
        (forest, np.array([[0, -np.inf, 0, 0]])),
    ]
    for runner, bad in cases:
        fast = trees.convert_plan(runner)
        for method in ("predict", "predict_proba"):
            want = _raised(lambda m=method, r=runner, b=bad: getattr(r, m)(_columns(b)))
            got = _raised(lambda m=method, f=fast, b=bad: getattr(f, m)(_columns(b)))
            assert (type(got), str(got)) == (type(want), str(want))
        # Through the core too: the same ScoringError naming the column (or NULL for NaN).
        frame = pd.DataFrame(bad, columns=runner.signature.feature_names)
        columns = [frame[c] for c in runner.signature.feature_names]
        want = _outcome(lambda r=runner, c=columns: scoring.predict(r, r.signature, c))
        assert _outcome(lambda f=fast, c=columns: scoring.predict(f, f.signature, c)) == want
    # Wrong number of columns and a transform that refuses an unknown category.
    fast = trees.convert_plan(gb)
    want = _raised(lambda: gb.predict(_columns(X[:3, :3])))
    assert str(_raised(lambda: fast.predict(_columns(X[:3, :3])))) == str(want)
    frame, target = _frame(200)
    strict = Pipeline(
        [
            ("prep", ColumnTransformer([("cat", OneHotEncoder(), ["plan"])], remainder="drop")),
            ("model", RandomForestClassifier(n_estimators=5, random_state=0)),
        ]
    ).fit(frame, target)
    runner = _runner(strict, frame)
    unknown = [
        np.array([v], dtype=object if v == "platinum" else None)
        for v in (41.0, 3.0, "platinum", True)
    ]
    want = _raised(lambda: runner.predict(unknown))
    got = _raised(lambda: trees.convert_plan(runner).predict(unknown))
    assert (type(got), str(got)) == (type(want), str(want))


@needs_torch
def test_infinity_is_scored_where_the_plan_scores_it(monkeypatch):
    X, y = make_classification(300, 4, random_state=0)
    runner = _runner(HistGradientBoostingClassifier(max_iter=10).fit(X, y), X)
    probe = _columns(np.array([[np.inf, -np.inf, 0, np.nan], [0, 0, 0, 0]]))
    want = runner.predict_proba(probe)
    _same(_tensors_only(monkeypatch, trees.convert_plan(runner)).predict_proba(probe), want)


@needs_torch
def test_regressor_has_no_predict_proba_as_the_plan(monkeypatch):
    X, y = make_regression(100, 3, random_state=0)
    runner = _runner(RandomForestRegressor(n_estimators=3, random_state=0).fit(X, y), X)
    want = _raised(lambda: runner.predict_proba(_columns(X)))
    fast = trees.convert_plan(runner)
    got = _raised(lambda: fast.predict_proba(_columns(X)))
    assert (type(got), str(got)) == (type(want), str(want))
    labels, proba = fast.predict_both(_columns(X))
    assert proba is None
    _same(labels, runner.predict(_columns(X)))


@needs_torch
def test_single_rows_go_to_the_plans_row_program():
    X, y = make_classification(100, 4, random_state=0)
    runner = _runner(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), X)
    fast = trees.convert_plan(runner)
    assert fast.row_scorer() is runner.row_scorer()
    row = [float(v) for v in X[0]]
    assert fast.row(row, "predict_proba").tolist() == runner.row(row, "predict_proba").tolist()


@needs_torch
def test_batches_are_chunked_and_may_be_empty(monkeypatch):
    X, y = make_classification(300, 5, n_classes=3, n_informative=3, random_state=0)
    runner = _runner(RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y), X)
    columns = _columns(X)
    want = runner.predict_proba(columns)
    empty = [runner.predict_proba(_columns(X[:0])), runner.predict(_columns(X[:0]))]
    monkeypatch.setattr(trees, "CHUNK_ELEMENTS", 210)  # 10 trees x 3 classes: 7 rows per chunk
    fast = trees.convert_plan(runner)
    walked = []
    original = fast._walk
    monkeypatch.setattr(fast, "_walk", lambda x, nan: walked.append(len(x)) or original(x, nan))
    fast = _tensors_only(monkeypatch, fast)
    _same(fast.predict_proba(columns), want)
    assert walked == [7] * 42 + [6]
    _same(fast.predict_proba(_columns(X[:0])), empty[0])
    _same(fast.predict(_columns(X[:0])), empty[1])


@needs_torch
def test_a_device_failure_scores_the_batch_on_the_cpu(monkeypatch, caplog):
    X, y = make_classification(200, 4, random_state=0)
    runner = _runner(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y), X)
    fast = trees.convert_plan(runner)

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(fast, "_walk", out_of_memory)
    with caplog.at_level(logging.WARNING, logger="udfs.accel"):
        for _ in range(2):
            _same(fast.predict_proba(_columns(X)), runner.predict_proba(_columns(X)))
    assert [r.getMessage() for r in caplog.records] == [
        "udfs: model 'm' scores a batch on the CPU: RuntimeError on cpu (CUDA out of memory)"
    ]


def test_plans_without_trees_or_with_categorical_splits_are_refused():
    X, y = make_classification(200, 4, random_state=0)
    linear = _runner(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X)
    Xc = X.copy()
    Xc[:, 0] = np.random.default_rng(0).integers(0, 4, len(X))
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0])
    # Compiled but not verified: today the verifier refuses this model (infinity in column 1).
    cat = _runner(categorical.fit(Xc, y), Xc, verify=False)
    for runner, reason in [
        (linear, "LogisticRegression is not a tree ensemble"),
        (cat, "HistGradientBoostingClassifier has categorical splits"),
    ]:
        assert not trees.gpu_candidate(runner.plan)
        assert reason in trees.unsupported_reason(runner)
        with pytest.raises(ConfigError, match=reason):
            trees.convert_plan(runner)


def test_a_plan_needs_its_signature():
    X, y = make_classification(100, 4, random_state=0)
    runner = _runner(RandomForestClassifier(n_estimators=2).fit(X, y), X)
    with pytest.raises(ConfigError, match="needs the signature"):
        trees.convert_plan(runner.plan)


def test_missing_torch_is_a_config_error(monkeypatch):
    X, y = make_classification(100, 4, random_state=0)
    runner = _runner(RandomForestClassifier(n_estimators=2).fit(X, y), X)
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    assert not trees.available()
    with pytest.raises(ConfigError, match=r"needs PyTorch.*udfs\[gpu\]"):
        trees.convert_plan(runner)


def test_import_does_not_load_torch():
    code = "import sys, udfs.accel.trees; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_or_absent_device_is_a_config_error(torch):
    X, y = make_classification(100, 4, random_state=0)
    runner = _runner(RandomForestClassifier(n_estimators=2).fit(X, y), X)
    with pytest.raises(ConfigError, match="device must be like"):
        trees.convert_plan(runner, device="gpu-please")
    if torch.cuda.is_available():
        return
    with pytest.raises(ConfigError, match="sees 0 CUDA devices"):
        trees.convert_plan(runner, device="cuda:0")


def test_cuda_equals_the_plan(torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: GPU execution is only checked on a machine with one")
    X, y = make_classification(2000, 8, n_classes=3, n_informative=5, random_state=0)
    X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan
    for model in (
        HistGradientBoostingClassifier(max_iter=50, random_state=0),
        RandomForestClassifier(n_estimators=50, random_state=0),
    ):
        runner, columns = _runner(model.fit(X, y), X), _columns(X)
        fast = trees.convert_plan(runner, device="cuda:0")
        assert fast.device.type == "cuda"
        # IEEE float64 additions in the plan's order: the same bits on any device.
        _same(fast.predict_proba(columns), runner.predict_proba(columns))
        _same(fast.predict(columns), runner.predict(columns))
