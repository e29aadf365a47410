"""Exact explanations in the core: base value + contributions = the model's raw output."""

from __future__ import annotations

import importlib
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.svm import SVR

from tests.fixtures.explain import explain_models, generated_rows
from tests.fixtures.models import Trained, preprocess
from udfs.demo.data import FEATURES, customers
from udfs.explain import NoExactExplainerError, explainer, save_time_data
from udfs.infer_signature import infer_signature


def raw_output(t: Trained, rows: pd.DataFrame) -> np.ndarray:
    """What each family explains, from scikit-learn directly."""
    X = rows.astype(object).where(rows.notna(), np.nan)
    model = t.model
    if t.name == "xforest":
        return model.predict_proba(X)[:, 1]
    if t.name in ("xboost", "xlogit"):
        return model.decision_function(X)
    return model.predict(X)


@pytest.fixture(scope="module")
def models(trained) -> dict[str, Trained]:
    return explain_models(trained)


def _made(t: Trained):
    sig = infer_signature(t.model, t.train[FEATURES], t.name)
    data = save_time_data(t.model, sig, t.train[FEATURES])
    assert data is not None and json.loads(json.dumps(data)) == data
    return explainer(t.model, sig, data)


@pytest.mark.parametrize("name", ["xforest", "xboost", "xlogit", "xridge"])
def test_base_plus_contributions_is_the_raw_output(models, name):
    rows = generated_rows()
    made = _made(models[name])
    base, contributions = made.explain([rows[f] for f in FEATURES])
    assert contributions.shape == (len(rows), len(FEATURES))
    null = np.isnan(base)
    blocked = [f.name for f in made.signature.features if not f.accepts_missing]
    assert (null == rows[blocked].isna().any(axis=1).to_numpy()).all()  # NULL as predict says
    assert np.isnan(contributions[null]).all()
    valid = ~null
    raw = raw_output(models[name], rows[valid])
    np.testing.assert_allclose(
        base[valid] + contributions[valid].sum(axis=1), raw, rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(made.raw_output([rows[f] for f in FEATURES])[valid], raw)


def test_one_hot_columns_sum_back_to_their_feature(models):
    t = models["xridge"]
    made = _made(t)
    assert made.owners.tolist() == [0, 1, 2, 2, 2, 3]  # age, tenure, plan x3, active
    rows = customers(20, seed=3)[FEATURES]
    _, contributions = made.explain([rows[f] for f in FEATURES])
    prep, ridge = t.model[:-1], t.model[-1]
    Z = prep.transform(rows)
    Z = Z.toarray() if hasattr(Z, "toarray") else Z
    means = np.asarray(made.means)
    by_hand = ridge.coef_ * (Z - means)
    plan = by_hand[:, 2] + by_hand[:, 3] + by_hand[:, 4]
    np.testing.assert_array_equal(contributions[:, 2], plan)
    np.testing.assert_array_equal(contributions[:, 0], by_hand[:, 0])


def test_tree_contributions_are_shap_values_summed(models):
    import shap

    t = models["xforest"]
    made = _made(t)
    rows = customers(10, seed=4)[FEATURES]
    Z = t.model[:-1].transform(rows).astype(np.float32).astype(np.float64)
    values = shap.TreeExplainer(t.model[-1]).shap_values(Z, check_additivity=False)[..., 1]
    _, contributions = made.explain([rows[f] for f in FEATURES])
    np.testing.assert_allclose(contributions[:, 2], values[:, 2:5].sum(axis=1), atol=1e-15)


def test_rows_alone_and_in_a_batch_agree_exactly(models):
    rows = generated_rows().iloc[140:]
    for name in ("xforest", "xlogit"):
        made = _made(models[name])
        batch = made.records([rows[f] for f in FEATURES])
        alone = [made.records([[v] for v in row])[0] for row in rows.itertuples(index=False)]
        assert batch == alone
        assert any(r is None for r in batch) == (name == "xlogit")


def test_records_shape(models):
    made = _made(models["xboost"])
    record = made.records([[41.0], [12], ["pro"], [True]])[0]
    assert list(record) == ["base_value", "contributions"]
    assert list(record["contributions"]) == FEATURES
    assert json.loads(made.json_texts([[41.0], [12], ["pro"], [True]])[0]) == record


def test_missing_indicator_maps_to_its_feature():
    train = customers(300, seed=5)
    train.loc[::7, "age"] = np.nan
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(add_indicator=True), ["age", "tenure"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = Pipeline([("p", prep), ("m", LinearRegression())]).fit(
        train[["age", "tenure", "plan"]], train["spend"]
    )
    sig = infer_signature(model, train[["age", "tenure", "plan"]], "ximp")
    made = explainer(model, sig, save_time_data(model, sig, train[["age", "tenure", "plan"]]))
    assert made.owners.tolist() == [0, 1, 0, 2, 2, 2]  # age, tenure, age's indicator, plan
    rows = train[["age", "tenure", "plan"]].head(30)
    base, contributions = made.explain([rows[c] for c in rows.columns])
    np.testing.assert_allclose(base + contributions.sum(axis=1), model.predict(rows), atol=1e-9)


def test_models_without_an_exact_explainer_are_refused(trained):
    segment = trained["segment"]
    sig = infer_signature(segment.model, segment.train[FEATURES], "segment")
    with pytest.raises(
        NoExactExplainerError, match=r"'segment' \(RandomForestClassifier\).*multiclass"
    ):
        explainer(segment.model, sig)
    assert save_time_data(segment.model, sig, segment.train[FEATURES]) is None

    X = segment.train[["age", "tenure"]]
    svr = SVR().fit(X, segment.train["spend"])
    sig = infer_signature(svr, X, "svr")
    with pytest.raises(
        NoExactExplainerError, match="'svr' \\(SVR\\) has no exact explainer"
    ) as caught:
        explainer(svr, sig)
    assert save_time_data(svr, sig, X) is None
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is NoExactExplainerError and again.model == "svr"


def test_a_linear_model_needs_its_training_means(models):
    t = models["xridge"]
    sig = infer_signature(t.model, t.train[FEATURES], "xridge")
    with pytest.raises(NoExactExplainerError, match="training means"):
        explainer(t.model, sig, None)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosters_at_the_end_of_a_pipeline(trained, library):
    """LightGBM sums in float64: 1e-9. XGBoost's own margin is float32, so the (float64)
    explanation matches it to float32 precision."""
    booster = importlib.import_module(library)  # the boost extra: installed by setup
    train = trained["churn"].train
    if library == "xgboost":
        estimator, atol = booster.XGBClassifier(n_estimators=20, max_depth=3), 1e-5
    else:
        estimator, atol = booster.LGBMClassifier(n_estimators=20, verbose=-1), 1e-9
    model = Pipeline([("p", preprocess()), ("m", estimator)]).fit(train[FEATURES], train["churned"])
    sig = infer_signature(model, train[FEATURES], "xbooster")
    made = explainer(model, sig, save_time_data(model, sig, train[FEATURES]))
    rows = customers(100, seed=9)[FEATURES]
    base, contributions = made.explain([rows[f] for f in FEATURES])
    raw = made.raw_output([rows[f] for f in FEATURES])
    np.testing.assert_allclose(base + contributions.sum(axis=1), raw, rtol=0, atol=atol)
