"""XGBoost and LightGBM estimators: compiled into scoring plans, bit-identical to the libraries.

Alone and as a Pipeline's last step, through ``udfs.load_model`` (the core's batch path) and
the one-row path the SQL functions take; NaN, zeros, infinities and NULLs included. Variants
the plan cannot reproduce keep their pickle and say why. Library versions are recorded when a
model uses the library, and another minor release is refused as scikit-learn's is.
"""

from __future__ import annotations

import json
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import sklearn
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

import udfs
from tests.fixtures.boosting import (
    CLASSIFIERS,
    SPECS,
    library_input,
    save_all,
    scoring_frame,
    training_frame,
)
from udfs import bundle as udfs_bundle
from udfs import scoring
from udfs.errors import VersionMismatchError, VersionMismatchWarning
from udfs.plan.row import row_arrays

NAMES = list(SPECS)


@pytest.fixture(scope="module")
def store(tmp_path_factory, boosted):
    path = tmp_path_factory.mktemp("boosting")
    save_all(boosted, path)
    return path


def same_bits(got, want) -> None:
    """Equal float64 bit patterns (NaN and -0.0 included), or equal labels."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if want.dtype.kind == "f":
        diff = np.flatnonzero(
            np.ascontiguousarray(got, dtype=np.float64).view(np.uint64)
            != np.ascontiguousarray(want, dtype=np.float64).view(np.uint64)
        )
        assert diff.size == 0, (
            f"{diff.size} rows differ, first {diff[0]}: {got[diff[0]]!r} vs {want[diff[0]]!r}"
        )
    else:
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_the_plan_is_used_and_nan_reaches_the_booster(store, boosted, name):
    signature = udfs.load_model(name, store=store).signature
    assert signature.scoring_path() == "plan"
    # Every feature predicts when NULL: the boosters route NaN themselves (age reaches them
    # as NaN even in the Pipelines, which impute only tenure).
    assert all(f.accepts_missing for f in signature.features), signature.features
    library = "xgboost" if "_xgb_" in name else "lightgbm"
    other = "lightgbm" if library == "xgboost" else "xgboost"
    assert signature.libraries[library] == (xgb if library == "xgboost" else lgb).__version__
    assert other not in signature.libraries


@pytest.mark.parametrize("name", NAMES)
def test_batch_scores_equal_the_library_bit_for_bit(store, boosted, name):
    m = boosted[name]
    bundle = udfs.load_model(name, store=store)
    assert bundle.plan is not None
    frame = scoring_frame(extremes=SPECS[name][3] is None)
    X = library_input(m, frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' own warnings are not under test
        want = m.model.predict(X)
        want_proba = m.model.predict_proba(X)[:, 1] if name in CLASSIFIERS else None
    got = bundle.predict(frame)
    assert not got.isna().any()
    same_bits(got.to_numpy(dtype=np.float64 if name not in CLASSIFIERS else np.int64), want)
    if want_proba is not None:
        same_bits(bundle.predict_proba(frame).to_numpy(dtype=np.float64), want_proba)
    # The core's scikit-learn path (the pickled model) agrees with the plan on the same batch.
    columns = [frame[f] for f in bundle.signature.feature_names]
    same_bits(scoring.predict(bundle.model, bundle.signature, columns), got)


@pytest.mark.parametrize("name", NAMES)
def test_one_row_at_a_time_equals_the_batch(store, name):
    """The per-row path of the SQL functions (``PlanRunner.row``) gives the batch's bits."""
    bundle = udfs.load_model(name, store=store)
    runner = bundle.scorer
    rows = runner.row_scorer()
    types = [f.type for f in bundle.signature.features]
    frame = scoring_frame(40, extremes=SPECS[name][3] is None)[bundle.signature.feature_names]
    values = [
        [None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v) for v in row]
        for row in frame.astype(object).itertuples(index=False)
    ]
    methods = ["predict", *(["predict_proba"] if bundle.signature.has_proba else [])]
    for method in methods:
        for row in values:
            want = getattr(runner, method)(row_arrays(row, types))[0]
            got = runner.row(row, method)
            same_bits(got, want)
    # Rows without NULLs take the fused row function; a NULL boolean makes the Pipeline's
    # output an object array, which only the batch path converts as the libraries do.
    null_flags = sum(row[-1] is None for row in values) if "active" in frame else 0
    assert rows.fused and rows.fallbacks <= null_flags * len(methods)


@pytest.mark.parametrize(
    ("label", "make", "target"),
    [
        ("lgb zero_as_missing", lambda: lgb.LGBMClassifier(n_estimators=20, zero_as_missing=True, verbose=-1, n_jobs=1), "churned"),
        ("lgb rf", lambda: lgb.LGBMRegressor(boosting_type="rf", n_estimators=15, bagging_freq=1, bagging_fraction=0.7, verbose=-1, n_jobs=1), "spend"),
        ("lgb poisson", lambda: lgb.LGBMRegressor(objective="poisson", n_estimators=20, verbose=-1, n_jobs=1), "spend"),
        ("lgb deep", lambda: lgb.LGBMRegressor(n_estimators=5, num_leaves=100, min_child_samples=2, verbose=-1, n_jobs=1), "spend"),
        ("xgb poisson", lambda: xgb.XGBRegressor(objective="count:poisson", n_estimators=20, n_jobs=1), "spend"),
        ("xgb reg:logistic", lambda: xgb.XGBRegressor(objective="reg:logistic", n_estimators=20, n_jobs=1), "churned"),
        ("xgb deep", lambda: xgb.XGBRegressor(n_estimators=4, max_depth=14, min_child_weight=0, n_jobs=1), "spend"),
        ("xgb pruned", lambda: xgb.XGBClassifier(n_estimators=15, gamma=1.0, max_depth=6, n_jobs=1), "churned"),
        ("xgb rf", lambda: xgb.XGBRFClassifier(n_estimators=8, n_jobs=1), "churned"),
    ],
)  # fmt: skip
def test_variants_compile_exactly(tmp_path, label, make, target):
    train_rows = training_frame()
    X = train_rows[["age", "tenure"]]
    model = make().fit(X, train_rows[target])
    ref = udfs.save_model(model, "variant", sample=X, store=tmp_path)
    assert ref.signature().scoring_path() == "plan", label
    frame = scoring_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = model.predict(frame[["age", "tenure"]].astype(np.float64))
    got = udfs.load_model("variant", store=tmp_path).predict(frame)
    same_bits(got.to_numpy(dtype=np.asarray(want).dtype), want)


def test_early_stopping_scores_the_best_iteration(tmp_path):
    train_rows = training_frame(400)
    X, y = train_rows[["age", "tenure"]], train_rows["churned"]
    model = xgb.XGBClassifier(
        n_estimators=300, learning_rate=0.6, early_stopping_rounds=2, n_jobs=1
    )
    model.fit(X[:300], y[:300], eval_set=[(X[300:], y[300:])], verbose=False)
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()
    udfs.save_model(model, "stopped", sample=X, store=tmp_path)
    bundle = udfs.load_model("stopped", store=tmp_path)
    assert bundle.signature.scoring_path() == "plan"
    frame = scoring_frame()
    same_bits(
        bundle.predict_proba(frame).to_numpy(dtype=np.float64),
        model.predict_proba(frame[["age", "tenure"]].astype(np.float64))[:, 1],
    )


def _categorical_lgb():
    encode = ColumnTransformer([("plan", OrdinalEncoder(), ["plan"])], remainder="passthrough")
    model = lgb.LGBMClassifier(n_estimators=10, min_child_samples=5, verbose=-1, n_jobs=1)
    return Pipeline([("encode", encode), ("model", model)]), {"model__categorical_feature": [0]}


@pytest.mark.parametrize(
    ("make", "target", "why"),
    [
        (lambda: (xgb.XGBClassifier(n_estimators=5, n_jobs=1), {}), "segment", "multiclass"),
        (lambda: (lgb.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1), {}), "segment", "multiclass"),
        (_categorical_lgb, "churned", "categorical splits"),
        (lambda: (xgb.XGBClassifier(booster="dart", n_estimators=5, n_jobs=1), {}), "churned", "dart"),
    ],
)  # fmt: skip
def test_what_has_no_plan_keeps_its_pickle_and_says_why(tmp_path, make, target, why):
    train_rows = training_frame().dropna(subset=["plan"])
    features = ["age", "tenure"] if why != "categorical splits" else ["plan", "age", "tenure"]
    model, fit_params = make()
    y = train_rows[target]
    if target == "segment":  # XGBoost wants labels 0..k-1
        y = y.map({"core": 0, "key": 1, "loyal": 2})
    model.fit(train_rows[features], y, **fit_params)
    ref = udfs.save_model(model, "fallback", sample=train_rows[features], store=tmp_path)
    path = ref.signature().scoring_path()
    assert path.startswith("sklearn: ") and why in path, path
    bundle = udfs.load_model("fallback", store=tmp_path)
    assert bundle.plan is None
    rows = train_rows[features].head(20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same_bits(bundle.predict(rows).to_numpy(), np.asarray(model.predict(rows)))


def test_a_null_the_booster_refuses_gives_null(tmp_path):
    """A bare booster fitted on a boolean column refuses an object column (a NULL boolean):
    that feature does not accept missing values, and its NULL predicts NULL, never a number.

    In a batch that also holds other rows, those reach the booster as a bool column once the
    NULL rows are set aside, and score exactly."""
    train_rows = training_frame()
    features = ["age", "tenure", "active"]
    for name, model in {
        "xgb_bool": xgb.XGBClassifier(n_estimators=10, n_jobs=1),
        "lgb_bool": lgb.LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1),
    }.items():
        model.fit(train_rows[features], train_rows["churned"])
        udfs.save_model(model, name, sample=train_rows[features], store=tmp_path)
        bundle = udfs.load_model(name, store=tmp_path)
        assert bundle.signature.scoring_path() == "plan"
        assert [f.accepts_missing for f in bundle.signature.features] == [True, True, False]
        null = pd.DataFrame({"age": [30.0], "tenure": [4], "active": [None]})
        assert bundle.predict_proba(null).isna().tolist() == [True]
        assert bundle.predict(null).isna().tolist() == [True]
        row = pd.DataFrame({"age": [np.nan], "tenure": [3], "active": [True]})
        same_bits(
            bundle.predict_proba(row).to_numpy(dtype=np.float64),
            model.predict_proba(row)[:, 1],
        )
        # Both in one batch: the NULL row is set aside, the others reach the booster as bool.
        both = bundle.predict_proba(pd.concat([null, row], ignore_index=True))
        assert both.isna().tolist() == [True, False]
        same_bits(both.to_numpy(dtype=np.float64)[1:], model.predict_proba(row)[:, 1])


def _rewrite_library(ref, library: str, version: str | None) -> None:
    path = ref.path / "model.json"
    signature = json.loads(path.read_text())
    signature["libraries"][library] = version
    path.write_text(json.dumps(signature))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_another_minor_release_is_refused_unless_allowed(tmp_path, boosted, library, monkeypatch):
    name = "bx_xgb_clf" if library == "xgboost" else "bx_lgb_clf"
    m = boosted[name]
    ref = udfs.save_model(m.model, name, sample=training_frame()[m.features], store=tmp_path)
    installed = (xgb if library == "xgboost" else lgb).__version__
    major, minor = installed.split(".")[:2]
    _rewrite_library(ref, library, f"{major}.{int(minor) + 1}.0")
    with pytest.raises(
        VersionMismatchError, match=rf"saved with {library} {major}\.{int(minor) + 1}\.0, but"
    ):
        udfs.load_model(name, store=tmp_path)
    monkeypatch.setenv("UDFS_ALLOW_VERSION_MISMATCH", "1")
    with pytest.warns(VersionMismatchWarning, match="loading it anyway"):
        udfs.load_model(name, store=tmp_path)
    monkeypatch.delenv("UDFS_ALLOW_VERSION_MISMATCH")
    _rewrite_library(ref, library, f"{major}.{minor}.999")  # another patch release: a warning
    with pytest.warns(VersionMismatchWarning, match=rf"{major}\.{minor}\.999"):
        bundle = udfs.load_model(name, store=tmp_path)
    assert bundle.signature.scoring_path() == "plan"


def test_a_missing_library_is_refused(tmp_path, boosted, monkeypatch):
    m = boosted["bx_lgb_reg"]
    udfs.save_model(m.model, "gone", sample=training_frame()[m.features], store=tmp_path)
    real = udfs_bundle.installed_version
    monkeypatch.setattr(
        udfs_bundle, "installed_version", lambda lib: None if lib == "lightgbm" else real(lib)
    )
    with pytest.raises(VersionMismatchError, match="lightgbm is not installed"):
        udfs.load_model("gone", store=tmp_path)


def test_versions_are_recorded_only_for_libraries_the_model_uses(tmp_path):
    train_rows = training_frame().dropna()
    X = train_rows[["age", "tenure"]]
    ref = udfs.save_model(
        LogisticRegression().fit(X, train_rows["churned"]), "plainlr", sample=X, store=tmp_path
    )
    libraries = ref.signature().libraries
    assert libraries["scikit-learn"] == sklearn.__version__
    assert "xgboost" not in libraries and "lightgbm" not in libraries
