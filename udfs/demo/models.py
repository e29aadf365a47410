"""The demo models: churn (binary), segment (multiclass) and diabetes progression (regression)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from udfs.demo.data import FEATURES, customers
from udfs.store import ModelRef, StorePath, model_names, resolve, save_model

TRAIN_ROWS = 20_000
DEMO_MODELS = ("churn", "segment", "progression")


def _customer_features() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["age", "tenure"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("active", "passthrough", ["active"]),
        ]
    )


def patients() -> pd.DataFrame:
    """scikit-learn's diabetes data set (it ships with the library) with an id column."""
    data = load_diabetes(as_frame=True).data
    return pd.concat([pd.Series(np.arange(1, len(data) + 1), name="id"), data], axis=1)


def train_demo_models(seed: int = 42) -> dict[str, tuple[Any, pd.DataFrame]]:
    """Fit the demo models; returns name -> (model, training features)."""
    train = customers(TRAIN_ROWS, seed=seed, null_fraction=0.02)
    X = train[FEATURES]
    churn = Pipeline(
        [
            ("features", _customer_features()),
            ("model", GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)),
        ]
    ).fit(X, train["churned"])
    segment = Pipeline(
        [
            ("features", _customer_features()),
            ("model", RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0)),
        ]
    ).fit(X, train["segment"])
    diabetes = load_diabetes(as_frame=True)
    progression = Ridge(alpha=0.5).fit(diabetes.data, diabetes.target)
    return {
        "churn": (churn, X),
        "segment": (segment, X),
        "progression": (progression, diabetes.data),
    }


def save_demo_models(store: StorePath = None, seed: int = 42) -> list[ModelRef]:
    """Train the demo models and save each as a new version."""
    return [
        save_model(model, name, sample=sample, store=store)
        for name, (model, sample) in train_demo_models(seed).items()
    ]


def _complete(store: StorePath) -> bool:
    """Whether the latest demo models have a training profile (a store from an older udfs has
    none: its models are saved again, as new versions)."""
    from udfs.profile import PROFILE

    return all((resolve(name, store=store).path / PROFILE).is_file() for name in DEMO_MODELS)


def ensure_demo_models(store: StorePath = None, retrain: bool = False) -> list[ModelRef]:
    """The latest saved demo models, training them first if any is missing (or ``retrain``)."""
    if retrain or not set(DEMO_MODELS) <= set(model_names(store)) or not _complete(store):
        save_demo_models(store)
    return [resolve(name, store=store) for name in DEMO_MODELS]
