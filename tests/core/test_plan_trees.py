"""Compiled tree plans (udfs.plan.trees + tree_exec) are bit-identical to scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)
from threadpoolctl import threadpool_limits

from udfs.plan import tree_exec, trees
from udfs.plan.base import PlanUnsupported

ROOT = Path(__file__).resolve().parents[2]
N_FEATURES = 5
FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """scikit-learn single-threaded, as the plan is (HGB's OpenMP also crawls on busy machines)."""
    with threadpool_limits(limits=1):
        yield


# ------------------------------------------------------------------ data and models


def _X(n: int, seed: int, nan_fraction: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) * [1, 10, 0.01, 1000, 1]
    if nan_fraction:
        X[rng.random(X.shape) < nan_fraction] = np.nan
    return X


def _labels(kind: str, n_classes: int, seed: int, n: int = 300) -> np.ndarray:
    y = np.random.default_rng(seed).integers(0, n_classes, size=n)
    if kind == "int":
        return y * 3 - 2
    if kind == "str":
        return np.array(["cat", "dog", "emu", "fox"])[y]
    if kind == "object":
        return np.array(["cat", "dog", "emu", "fox"], dtype=object)[y]
    assert kind == "bool" and n_classes == 2
    return y.astype(bool)


def _fit_classifier(factory, n_classes: int, label: str, seed: int = 0, nan: float = 0.0):
    X, y = make_classification(
        300, N_FEATURES, n_informative=4, n_redundant=0, n_classes=n_classes, random_state=seed
    )
    X = X * [1, 10, 0.01, 1000, 1]
    if nan:
        X[np.random.default_rng(seed).random(X.shape) < nan] = np.nan
    mapping = _labels(label, n_classes, seed, n=n_classes * 10)
    classes = np.unique(mapping)[:n_classes]
    return factory().fit(X, classes[y])


def _fit_regressor(factory, seed: int = 0, nan: float = 0.0, positive: bool = False):
    X, y = make_regression(300, N_FEATURES, noise=5.0, random_state=seed)
    X = X * [1, 10, 0.01, 1000, 1]
    if nan:
        X[np.random.default_rng(seed).random(X.shape) < nan] = np.nan
    return factory().fit(X, np.abs(y) + 1 if positive else y)


CLASSIFIERS = {
    "dt": lambda: DecisionTreeClassifier(random_state=0),
    "dt_shallow": lambda: DecisionTreeClassifier(max_depth=3, random_state=0),
    "extra_tree": lambda: ExtraTreeClassifier(random_state=0),
    "rf": lambda: RandomForestClassifier(n_estimators=15, random_state=0),
    "et": lambda: ExtraTreesClassifier(n_estimators=15, max_depth=6, random_state=0),
    "gb": lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
    "gb_zero_init": lambda: GradientBoostingClassifier(
        n_estimators=10, init="zero", random_state=0
    ),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
}
REGRESSORS = {
    "dt": lambda: DecisionTreeRegressor(random_state=0),
    "extra_tree": lambda: ExtraTreeRegressor(max_depth=8, random_state=0),
    "rf": lambda: RandomForestRegressor(n_estimators=15, max_depth=8, random_state=0),
    "et": lambda: ExtraTreesRegressor(n_estimators=10, random_state=0),
    "gb": lambda: GradientBoostingRegressor(n_estimators=15, random_state=0),
    "gb_absolute": lambda: GradientBoostingRegressor(
        n_estimators=10, loss="absolute_error", random_state=0
    ),
    "gb_huber": lambda: GradientBoostingRegressor(n_estimators=10, loss="huber", random_state=0),
    "gb_quantile": lambda: GradientBoostingRegressor(
        n_estimators=10, loss="quantile", alpha=0.8, random_state=0
    ),
    "hgb": lambda: HistGradientBoostingRegressor(max_iter=15, random_state=0),
    "hgb_absolute": lambda: HistGradientBoostingRegressor(
        max_iter=10, loss="absolute_error", random_state=0
    ),
    "hgb_quantile": lambda: HistGradientBoostingRegressor(
        max_iter=10, loss="quantile", quantile=0.3, random_state=0
    ),
}
# Estimators whose predict accepts NaN (scikit-learn's own rule, checked below).
ACCEPTS_NAN = {"dt", "dt_shallow", "extra_tree", "rf", "et", "hgb", "hgb_absolute", "hgb_quantile"}


def _methods(model) -> list[str]:
    return ["predict", "predict_proba"] if hasattr(model, "predict_proba") else ["predict"]


def _assert_same(model, X: np.ndarray, node=None, arrays=None) -> None:
    """The plan's predict/predict_proba equal scikit-learn's, bit for bit, or both raise."""
    if node is None:
        node, arrays = trees.compile_estimator(model)
    for method in _methods(model):
        try:
            # numpy warns on huge or infinite values inside scikit-learn (cast, reductions).
            with np.errstate(over="ignore", invalid="ignore"):
                want = getattr(model, method)(X)
        except ValueError:
            with pytest.raises(ValueError):
                tree_exec.run(node, arrays, X, method)
            continue
        got = tree_exec.run(node, arrays, X, method)
        assert got.shape == want.shape, method
        assert got.dtype == want.dtype, method
        assert np.array_equal(got, want), (method, X[~_rowwise_equal(got, want)][:3])


def _rowwise_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    eq = a == b
    return eq.all(axis=1) if eq.ndim == 2 else eq


def _edge_rows(model, arrays: dict[str, np.ndarray], n: int = 40, seed: int = 0) -> np.ndarray:
    """Rows placing one feature exactly on, and one float32/float64 step around, thresholds."""
    rng = np.random.default_rng(seed)
    thr = arrays["threshold"].astype(np.float64)
    feat = arrays["feature"]
    split = np.flatnonzero(np.isfinite(thr))
    if arrays["threshold"].dtype == np.float32:
        # The plan stores floor32(t); the model's own float64 thresholds are what matter.
        thr = _model_thresholds(model)
        feat = _model_features(model)
        split = np.flatnonzero(feat >= 0)
    picks = rng.choice(split, size=min(n, split.size), replace=False)
    rows = []
    for i in picks:
        t = thr[i]
        t32 = np.float32(t)
        candidates = [
            t,
            np.nextafter(t, np.inf),
            np.nextafter(t, -np.inf),
            float(t32),
            float(np.nextafter(t32, np.float32(np.inf))),
            float(np.nextafter(t32, np.float32(-np.inf))),
        ]
        for value in candidates:
            row = _X(1, int(rng.integers(1 << 30)))[0]
            row[feat[i]] = value
            rows.append(row)
    return np.array(rows)


def _trees_of(model) -> list:
    if hasattr(model, "tree_"):
        return [model.tree_]
    return [e.tree_ for e in np.asarray(model.estimators_, dtype=object).ravel()]


def _model_thresholds(model) -> np.ndarray:
    return np.concatenate([t.threshold for t in _trees_of(model)])


def _model_features(model) -> np.ndarray:
    return np.concatenate([t.feature for t in _trees_of(model)])


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_classifiers_match_sklearn(name: str, n_classes: int) -> None:
    model = _fit_classifier(CLASSIFIERS[name], n_classes, "int")
    node, arrays = trees.compile_estimator(model)
    _assert_same(model, _X(2000, 1), node, arrays)
    _assert_same(model, _edge_rows(model, arrays), node, arrays)


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressors_match_sklearn(name: str) -> None:
    model = _fit_regressor(REGRESSORS[name])
    node, arrays = trees.compile_estimator(model)
    _assert_same(model, _X(2000, 2), node, arrays)
    _assert_same(model, _edge_rows(model, arrays), node, arrays)


@pytest.mark.parametrize("loss", ["poisson", "gamma"])
def test_hgb_log_link_regressors(loss: str) -> None:
    model = _fit_regressor(
        lambda: HistGradientBoostingRegressor(max_iter=10, loss=loss), positive=True
    )
    _assert_same(model, _X(1000, 3))


def test_gb_exponential_loss() -> None:
    model = _fit_classifier(
        lambda: GradientBoostingClassifier(n_estimators=10, loss="exponential"), 2, "int"
    )
    _assert_same(model, _X(1000, 4))


@pytest.mark.parametrize("label", ["int", "str", "object", "bool"])
@pytest.mark.parametrize("name", ["dt", "rf", "gb", "hgb"])
def test_label_types(name: str, label: str) -> None:
    n_classes = 2 if label == "bool" else 3
    model = _fit_classifier(CLASSIFIERS[name], n_classes, label)
    node, arrays = trees.compile_estimator(model)
    got = tree_exec.run(node, arrays, _X(500, 5), "predict")
    want = model.predict(_X(500, 5))
    # Same dtype as scikit-learn's classes_ (object stays object, '<U3' stays '<U3').
    assert got.dtype == model.classes_.dtype
    assert np.array_equal(got, want)
    assert [type(v) for v in got[:5]] == [type(v) for v in want[:5]]


def test_tree_model_with_more_classes_than_labels_seen_by_some_trees() -> None:
    # A forest where bootstrap samples miss a class still keeps one column per class.
    X = _X(60, 7)
    y = np.array([0] * 57 + [1, 2, 3])
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    _assert_same(model, _X(500, 8))


# ------------------------------------------------------------------ NaN and extreme inputs


@pytest.mark.parametrize("name", ["dt", "extra_tree", "rf", "et", "hgb"])
def test_nan_routing_learned_from_training_nan(name: str) -> None:
    model = _fit_classifier(CLASSIFIERS[name], 3, "int", nan=0.2)
    X = _X(2000, 9, nan_fraction=0.3)
    X[:20] = np.nan  # all-missing rows
    _assert_same(model, X)
    reg = _fit_regressor(REGRESSORS[name], nan=0.2)
    _assert_same(reg, X)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_nan_at_predict_only(name: str) -> None:
    """Fitted without NaN: NaN follows scikit-learn's default routing, or both raise."""
    model = _fit_classifier(CLASSIFIERS[name], 2, "int")
    X = _X(300, 10, nan_fraction=0.2)
    node, arrays = trees.compile_estimator(model)
    assert node["input"]["allow_nan"] == (name in ACCEPTS_NAN)
    _assert_same(model, X, node, arrays)
    if name not in ACCEPTS_NAN:
        with pytest.raises(ValueError, match="NaN"):
            tree_exec.run(node, arrays, X, "predict")


EXTREMES = [
    1e300,
    -1e300,
    np.inf,
    -np.inf,
    FLT_MAX,
    -FLT_MAX,
    np.nextafter(FLT_MAX, np.inf),  # still rounds to FLT_MAX in float32
    3.4028236e38,  # rounds to float32 infinity
    -3.4028236e38,
    1e-300,
    -1e-300,
    5e-324,
    1e-40,  # float32 subnormal
    -0.0,
    0.0,
]


@pytest.mark.parametrize("value", EXTREMES, ids=repr)
@pytest.mark.parametrize("name", ["dt", "rf", "gb", "hgb"])
def test_extreme_values(name: str, value: float) -> None:
    """Huge values: float32 models raise like scikit-learn (never a number); HGB predicts."""
    model = _fit_classifier(CLASSIFIERS[name], 2, "int")
    node, arrays = trees.compile_estimator(model)
    for col in range(N_FEATURES):
        X = _X(4, 11)
        X[:, col] = value
        _assert_same(model, X, node, arrays)
    if node["input"]["dtype"] == "float32" and abs(value) > 3.4028235e38 * (1 + 2**-24):
        with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
            tree_exec.run(node, arrays, X, "predict")


def test_extreme_value_in_one_row_of_a_large_batch() -> None:
    model = _fit_classifier(CLASSIFIERS["rf"], 2, "int")
    X = _X(3000, 12)
    X[2999, 3] = 1e39
    _assert_same(model, X)


# ------------------------------------------------------------------ HistGradientBoosting categories


def _categorical_data(seed: int, n: int = 400, nan: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 1] = rng.integers(0, 6, size=n)  # integer-coded categories 0..5
    X[:, 3] = rng.choice([2.0, 7.0, 11.0, 40.0], size=n)  # sparse codes
    if nan:
        X[rng.random(n) < 0.1, 1] = np.nan
    y = ((X[:, 1] % 2 == 0) ^ (X[:, 3] > 8) ^ (X[:, 0] > 0.5)).astype(int)
    y[rng.random(n) < 0.05] = 2
    return X, y


def _categorical_probe(seed: int) -> np.ndarray:
    X, _ = _categorical_data(seed, n=200)
    odd = [-1.0, -0.0, 0.0, 2.5, 6.0, 8.0, 255.0, 256.0, 300.0, 1e10, 1e300, -1e300, np.nan]
    for i, v in enumerate(odd):
        X[i, 1] = v
        X[-1 - i, 3] = v
    return X


@pytest.mark.parametrize(
    "categorical", [[False, True, False, True], [1, 3], [3]], ids=["mask", "indices", "one"]
)
@pytest.mark.parametrize("nan", [False, True])
def test_hgb_categorical_splits(categorical, nan: bool) -> None:
    X, y = _categorical_data(0, nan=nan)
    model = HistGradientBoostingClassifier(
        max_iter=15, categorical_features=categorical, random_state=0
    ).fit(X, y)
    node, arrays = trees.compile_estimator(model)
    assert node["categorical"]
    _assert_same(model, _categorical_probe(1), node, arrays)
    # Infinity: the numeric columns accept it, the categorical encoder rejects it (both raise).
    for value, col in [(np.inf, 0), (-np.inf, 1), (np.inf, 3)]:
        X_inf = _categorical_probe(4)
        X_inf[5, col] = value
        _assert_same(model, X_inf, node, arrays)
    binary = HistGradientBoostingClassifier(
        max_iter=10, categorical_features=categorical, random_state=0
    ).fit(X, y % 2)
    _assert_same(binary, _categorical_probe(2))
    reg = HistGradientBoostingRegressor(
        max_iter=10, categorical_features=categorical, random_state=0
    ).fit(X, y + X[:, 0])
    _assert_same(reg, _categorical_probe(3))


# ------------------------------------------------------------------ property test


_FITTED: dict[str, object] = {}


def _fitted(name: str):
    if name not in _FITTED:
        if name.startswith("reg_"):
            _FITTED[name] = _fit_regressor(REGRESSORS[name[4:]], nan=0.1 if "hgb" in name else 0)
        else:
            _FITTED[name] = _fit_classifier(CLASSIFIERS[name], 3, "str")
    model = _FITTED[name]
    return model, *trees.compile_estimator(model)


@st.composite
def _rows(draw, thresholds: np.ndarray):
    near = st.sampled_from(list(thresholds)).flatmap(
        lambda t: st.sampled_from(
            [
                float(t),
                float(np.nextafter(t, np.inf)),
                float(np.nextafter(t, -np.inf)),
                float(np.nextafter(np.float32(t), np.float32(np.inf))),
                float(np.nextafter(np.float32(t), np.float32(-np.inf))),
            ]
        )
    )
    value = st.one_of(near, st.floats(allow_nan=True, allow_infinity=False, width=32))
    n = draw(st.integers(1, 6))
    return np.array(draw(st.lists(st.lists(value, min_size=N_FEATURES, max_size=N_FEATURES),
                                  min_size=n, max_size=n)))  # fmt: skip


@pytest.mark.parametrize("name", ["dt", "rf", "gb", "hgb", "reg_gb", "reg_hgb"])
def test_property_random_rows(name: str) -> None:
    model, node, arrays = _fitted(name)
    if hasattr(model, "_predictors"):
        thresholds = arrays["threshold"][np.isfinite(arrays["threshold"])]
    else:
        thresholds = _model_thresholds(model)[_model_features(model) >= 0]
    allow_nan = node["input"]["allow_nan"]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_rows(np.unique(thresholds)))
    def check(X):
        if not allow_nan:
            X = np.nan_to_num(X)
        _assert_same(model, X, node, arrays)

    check()


# ------------------------------------------------------------------ interface and format


def test_plan_is_json_and_plain_arrays(tmp_path: Path) -> None:
    """The node round-trips through JSON; arrays through np.savez with allow_pickle=False."""
    X = _categorical_data(0)[0]
    y = (X[:, 0] > 0).astype(int)
    models = [
        _fit_classifier(CLASSIFIERS["rf"], 3, "object"),
        _fit_classifier(CLASSIFIERS["gb"], 2, "bool"),
        HistGradientBoostingClassifier(max_iter=5, categorical_features=[1]).fit(X, y),
    ]
    for i, model in enumerate(models):
        node, arrays = trees.compile_estimator(model)
        assert node["op"] == "trees"
        assert all(a.dtype.kind in "biuf" for a in arrays.values())
        np.savez(tmp_path / f"{i}.npz", **arrays)
        loaded_node = json.loads(json.dumps(node))
        with np.load(tmp_path / f"{i}.npz", allow_pickle=False) as f:
            loaded = {k: f[k] for k in f.files}
        probe = X if i == 2 else _X(300, 13)
        _assert_same(model, probe, loaded_node, loaded)


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression().fit(_X(50, 0), np.arange(50) % 2),
        RandomForestRegressor(n_estimators=3).fit(_X(50, 0), np.c_[np.arange(50), np.arange(50)]),
        DecisionTreeClassifier().fit(_X(50, 0), np.c_[np.arange(50) % 2, np.arange(50) % 3]),
        GradientBoostingRegressor(n_estimators=3, init=LinearRegression()).fit(
            _X(50, 0), np.arange(50.0)
        ),
        DecisionTreeClassifier(),  # not fitted
    ],
    ids=["logistic", "multioutput_rf", "multioutput_dt", "gb_custom_init", "unfitted"],
)
def test_unsupported_models_raise_plan_unsupported(model) -> None:
    with pytest.raises(PlanUnsupported) as err:
        trees.compile_estimator(model)
    assert err.value.details.get("step") == type(model).__name__


def test_supported_names_match_sklearn_classes() -> None:
    assert len(set(trees.SUPPORTED)) == 12
    for factory in [*CLASSIFIERS.values(), *REGRESSORS.values()]:
        assert type(factory()).__name__ in trees.SUPPORTED


def test_wrong_input_shape_and_method() -> None:
    model = _fit_classifier(CLASSIFIERS["gb"], 2, "int")
    node, arrays = trees.compile_estimator(model)
    with pytest.raises(ValueError, match="features"):
        tree_exec.run(node, arrays, np.zeros((2, N_FEATURES + 1)), "predict")
    with pytest.raises(ValueError, match="method"):
        tree_exec.run(node, arrays, np.zeros((2, N_FEATURES)), "transform")
    reg_node, reg_arrays = trees.compile_estimator(_fit_regressor(REGRESSORS["gb"]))
    with pytest.raises(ValueError, match="predict_proba"):
        tree_exec.run(reg_node, reg_arrays, np.zeros((2, N_FEATURES)), "predict_proba")
    # Non-contiguous and integer inputs are converted, as scikit-learn converts them.
    X = _X(50, 14)
    _assert_same(model, np.asfortranarray(X), node, arrays)
    assert np.array_equal(
        tree_exec.run(node, arrays, np.arange(10).reshape(2, 5), "predict"),
        model.predict(np.arange(10).reshape(2, 5)),
    )
    assert tree_exec.run(node, arrays, np.zeros((0, N_FEATURES)), "predict_proba").shape == (0, 2)


def test_corrupt_arrays_are_rejected_not_read_out_of_bounds() -> None:
    model = _fit_classifier(CLASSIFIERS["rf"], 2, "int")
    node, arrays = trees.compile_estimator(model)
    for key, bad in [("left", 10**6), ("feature", N_FEATURES), ("root", -1)]:
        broken = dict(arrays)
        broken[key] = arrays[key].copy()
        broken[key][-1] = bad
        with pytest.raises(ValueError):
            tree_exec.prepare(node, broken)
    broken = dict(arrays, threshold=arrays["threshold"].astype(np.float64))
    with pytest.raises(TypeError):
        tree_exec.prepare(node, broken)


def test_executor_imports_no_sklearn_scipy_or_pandas(tmp_path: Path) -> None:
    """tree_exec and _kernels alone (the udfs package's own __init__ is not this test's subject)."""
    model = _fit_classifier(CLASSIFIERS["gb"], 3, "str")
    node, arrays = trees.compile_estimator(model)
    X = _X(20, 15)
    (tmp_path / "node.json").write_text(json.dumps(node))
    np.savez(tmp_path / "arrays.npz", **arrays)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "want.npy", model.predict_proba(X))
    script = textwrap.dedent(
        f"""
        import importlib, json, sys, types
        import numpy as np
        # Stand-ins for the udfs packages, so only tree_exec and _kernels are imported.
        for name, path in [("udfs", {str(ROOT / "udfs")!r}), ("udfs.plan", {str(ROOT / "udfs/plan")!r})]:
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
        tree_exec = importlib.import_module("udfs.plan.tree_exec")
        node = json.load(open({str(tmp_path / "node.json")!r}))
        with np.load({str(tmp_path / "arrays.npz")!r}, allow_pickle=False) as f:
            arrays = {{k: f[k] for k in f.files}}
        got = tree_exec.run(node, arrays, np.load({str(tmp_path / "X.npy")!r}), "predict_proba")
        assert np.array_equal(got, np.load({str(tmp_path / "want.npy")!r}))
        heavy = sorted(m for m in ("sklearn", "scipy", "pandas") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
