"""Hypothesis: random supported pipelines on hostile data score bit for bit like scikit-learn."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
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

from udfs.infer_signature import infer_signature
from udfs.plan.compile import compile_model
from udfs.plan.verify import verify_plan

EXAMPLES = int(os.environ.get("UDFS_HYPOTHESIS_EXAMPLES", "30"))
LEVELS = ["a", "b", "c", "d", "e"]

numeric_step = st.sampled_from(
    [
        lambda: SimpleImputer(),
        lambda: make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
        ),
        lambda: make_pipeline(SimpleImputer(strategy="most_frequent"), MinMaxScaler(clip=True)),
        lambda: make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0), RobustScaler()),
        lambda: make_pipeline(SimpleImputer(), MaxAbsScaler()),
    ]
)
category_step = st.sampled_from(
    [
        lambda: OneHotEncoder(handle_unknown="ignore"),
        lambda: OneHotEncoder(handle_unknown="ignore", sparse_output=False, drop="if_binary"),
        lambda: OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=4),
        lambda: OneHotEncoder(handle_unknown="error"),
        lambda: OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
        ),
    ]
)
estimator = st.sampled_from(
    [
        (lambda: LogisticRegression(max_iter=300), "class"),
        (lambda: SGDClassifier(loss="log_loss", random_state=0), "class"),
        (lambda: SGDClassifier(loss="modified_huber", random_state=0), "class"),
        (lambda: Ridge(), "regression"),
    ]
)
magnitude = st.sampled_from([1.0, 1e-300, 1e-8, 1e8, 1e150])


@st.composite
def cases(draw):
    n = draw(st.integers(30, 80))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
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
    make_estimator, task = draw(estimator)
    parts = [
        ("num", draw(numeric_step)(), ["x", "k"]),
        ("cat", draw(category_step)(), ["s"]),
        ("flag", draw(st.sampled_from(["passthrough", "drop"])), ["b"]),
    ]
    ct = ColumnTransformer(
        parts,
        remainder="drop",
        sparse_threshold=draw(st.sampled_from([0.0, 0.3, 1.0])),
    )
    model = Pipeline([("prep", ct), ("model", make_estimator())])
    y = (np.nan_to_num(X["x"].to_numpy() / scale) + (X["s"] == "a").to_numpy()) > 0
    if task == "regression":
        y = rng.normal(0, 1, n) * draw(magnitude)
    elif draw(st.booleans()):
        y = np.digitize(rng.random(n), [0.3, 0.6]).astype(np.int64)  # three classes
    # Scoring rows: fresh rows, unseen levels, NULLs in every column, huge and tiny values.
    rows = pd.DataFrame(
        {
            "x": np.concatenate([rng.normal(0, 1, 10) * scale, [np.nan, 1e300, -5e-324, 0.0]]),
            "k": np.concatenate([rng.integers(-5, 2000, 10), [0, 2**62, -(2**40), 7]]),
            "s": [*rng.choice(LEVELS, 10).tolist(), "zz", None, "", "a"],
            "b": [*(rng.random(10) < 0.5).tolist(), True, False, None, True],
        }
    )
    return X, y, model, rows


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_random_pipelines_are_bit_identical(case) -> None:
    X, y, model, rows = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        signature = infer_signature(model, X, "m")
    plan = compile_model(model, signature)
    both = pd.concat([X, rows.astype({"b": object})], ignore_index=True)
    verify_plan(plan, model, signature, [both[c] for c in X.columns])
