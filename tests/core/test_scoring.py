import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import udfs
from tests.fixtures.models import FEATURES, expected, scoring_rows
from udfs import scoring
from udfs.errors import InputError, ScoringError


@pytest.fixture(scope="module")
def churn(model_store):
    return udfs.load_model("churn", store=model_store)


def _call(bundle, columns, method="predict"):
    return getattr(scoring, method)(bundle.model, bundle.signature, columns)


def test_plain_python_lists_score_like_dataframes(churn, trained):
    rows = scoring_rows()
    lists = [rows[c].tolist() for c in FEATURES]  # what PL/Python hands over
    got = _call(churn, lists)
    assert [None if v is pd.NA else v for v in got] == expected(trained["churn"], rows)


def test_null_in_feature_without_imputer_gives_null_others_predicted(churn):
    got = _call(churn, [[41.0, 30.0], [10, 20], ["pro", "basic"], [None, True]])
    assert got[0] is pd.NA
    assert got[1] in (0, 1)


def test_nan_counts_as_null(churn):
    got = _call(churn, [[np.nan], [10], ["pro"], [True]])
    assert got[0] in (0, 1)  # age is imputed
    assert _call(churn, [[41.0], [10], ["pro"], [np.nan]])[0] is pd.NA


def test_all_rows_null_predicts_nothing(churn):
    got = _call(churn, [[1.0, 2.0], [1, 2], ["pro", "pro"], [None, None]], "predict_proba")
    assert got.isna().all() and len(got) == 2


def test_empty_batch(churn):
    assert len(_call(churn, [[], [], [], []])) == 0
    assert len(_call(churn, [[], [], [], []], "predict_proba")) == 0


def test_types_are_coerced(churn):
    as_text = _call(churn, [["41.5"], ["10"], ["pro"], ["true"]])
    typed = _call(churn, [[41.5], [10], ["pro"], [True]])
    assert as_text.tolist() == typed.tolist()
    assert (
        _call(churn, [np.array([41.5]), np.array([10.0]), ["pro"], np.array([1])]).tolist()
        == typed.tolist()
    )


def test_numeric_input_to_string_feature_is_its_text(model_store):
    bundle = udfs.load_model("segment", store=model_store)
    got = _call(bundle, [[40.0], [10], [3], [True]])
    assert got[0] in ("core", "key", "loyal")


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (
            0,
            "abc",
            r"model 'churn': column 'age' expects double, got 'abc' \(str\) at row 1: not a number",
        ),
        (1, 2.5, r"column 'tenure' expects bigint, got 2.5 \(float\) at row 1: not a whole number"),
        (1, 1e300, r"column 'tenure' expects bigint, got 1e\+300 .*out of bigint range"),
        (
            3,
            "maybe",
            r"column 'active' expects boolean, got 'maybe' \(str\) at row 1: not a boolean",
        ),
        (3, 2, r"column 'active' expects boolean, got 2 \(int\) at row 1: not a boolean"),
    ],
)
def test_uncoercible_value_names_model_column_and_value(churn, position, value, message):
    columns = [[41.0, 42.0], [10, 11], ["pro", "basic"], [True, False]]
    columns[position] = [columns[position][0], value]
    with pytest.raises(InputError, match=message) as info:
        _call(churn, columns)
    assert info.value.model == "churn"
    assert info.value.column == FEATURES[position]


def test_wrong_arity(churn):
    with pytest.raises(
        InputError,
        match=r"model 'churn' takes 4 features \(age double, tenure bigint, plan string, active boolean\) but 3 were passed",
    ):
        _call(churn, [[1.0], [1], ["pro"]])


def test_columns_of_different_lengths(churn):
    with pytest.raises(InputError, match="different lengths"):
        _call(churn, [[1.0], [1, 2], ["pro"], [True]])


def test_missing_dataframe_column_suggests(churn):
    frame = scoring_rows().rename(columns={"tenure": "tenur"})
    with pytest.raises(InputError, match=r"needs column 'tenure'.*Did you mean 'tenur'\?"):
        churn.predict(frame)


def test_regression_has_no_proba(model_store):
    with pytest.raises(
        InputError, match="model 'spend' is a regression model without predict_proba"
    ):
        udfs.load_model("spend", store=model_store).predict_proba(scoring_rows())


def test_encoder_that_rejects_unknown_names_column_and_value(tmp_path, trained):
    train = trained["churn"].train
    strict = Pipeline(
        [
            ("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="error"), ["plan"])])),
            ("model", LogisticRegression()),
        ]
    ).fit(train[["plan"]], train["churned"])
    udfs.save_model(strict, "strict", sample=train[["plan"]], store=tmp_path)
    bundle = udfs.load_model("strict", store=tmp_path)
    assert not bundle.signature.features[0].accepts_missing
    assert _call(bundle, [["pro", None]])[1] is pd.NA
    with pytest.raises(
        ScoringError,
        match=r"model 'strict' failed in predict: column 'plan' has the value 'platinum', which the model did not see",
    ) as info:
        _call(bundle, [["pro", "platinum"]])
    assert info.value.column == "plan"


def test_infinity_names_the_column(model_store):
    bundle = udfs.load_model("plain", store=model_store)
    with pytest.raises(
        ScoringError, match=r"model 'plain' failed in predict: column 'tenure' has the value inf"
    ):
        _call(bundle, [[40.0], [np.inf]])


def test_result_types(model_store):
    rows = scoring_rows()
    assert str(udfs.load_model("spend", store=model_store).predict(rows).dtype) == "Float64"
    assert str(udfs.load_model("churn", store=model_store).predict(rows).dtype) == "Int64"
    assert udfs.load_model("segment", store=model_store).predict(rows).dtype == object
    proba = udfs.load_model("segment", store=model_store).predict_proba(rows)
    assert all(len(p) == 3 for p in proba)
