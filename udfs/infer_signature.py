"""Infer a model's signature from the fitted estimator and a sample of its training features."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor

from udfs import scoring
from udfs.errors import SignatureError, UdfsError
from udfs.signature import Feature, Signature

# Enough rows to exercise the model; the probes run once per feature at save time.
_PROBE_ROWS = 8
# String features remember their levels (for naming an unknown one) up to this many.
_MAX_CATEGORIES = 1000


def portable_type(series: pd.Series, column: str) -> str:
    """Map a pandas column to ``double | bigint | boolean | string``."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        mapping = {
            "string": "string",
            "boolean": "boolean",
            "integer": "bigint",
            "floating": "double",
        }
        mapping["mixed-integer-float"] = "double"
        if kind in mapping:
            return mapping[kind]
        if kind == "empty":
            raise SignatureError(
                f"sample column '{column}' has only missing values: its type is unknown"
            )
    raise SignatureError(
        f"sample column '{column}' has unsupported type {dtype} "
        f"({pd.api.types.infer_dtype(series, skipna=True)}); "
        "supported: floats (double), integers (bigint), booleans (boolean), strings (string)"
    )


def _sample_frame(
    model: Any, sample: Any, feature_names: Sequence[str] | None
) -> tuple[pd.DataFrame, str]:
    """The sample as a DataFrame of exactly the model's features, and the model's input kind."""
    fitted_names = getattr(model, "feature_names_in_", None)
    if isinstance(sample, pd.DataFrame):
        if fitted_names is None:
            names = list(feature_names) if feature_names is not None else list(sample.columns)
            frame = sample[names] if feature_names is not None else sample
            return frame.rename(columns=str), "array"
        missing = [str(n) for n in fitted_names if n not in sample.columns]
        if missing:
            raise SignatureError(
                f"the sample lacks column(s) {missing} that the model was fitted on "
                f"(sample has {list(map(str, sample.columns))})"
            )
        return sample[list(fitted_names)], "dataframe"
    array = np.asarray(sample)
    if array.ndim != 2:
        raise SignatureError(f"sample must be a DataFrame or a 2-D array, got shape {array.shape}")
    n = array.shape[1]
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(n)]
    if len(names) != n:
        raise SignatureError(f"{len(names)} feature names given for a sample with {n} columns")
    return pd.DataFrame({name: array[:, i] for i, name in enumerate(names)}), "array"


def _task(model: Any) -> tuple[str, tuple | None, str]:
    if is_classifier(model):
        classes = getattr(model, "classes_", None)
        if classes is None:
            raise SignatureError("the classifier has no classes_: is it fitted?")
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) < 2:
            raise SignatureError(
                f"unsupported classes_ {classes!r}: expected one list of >= 2 labels"
            )
        label_type = portable_type(pd.Series(classes, dtype=classes.dtype), "classes_")
        if label_type == "double" and np.all(np.mod(classes.astype(float), 1) == 0):
            label_type = "bigint"
        task = "binary" if len(classes) == 2 else "multiclass"
        values = tuple(
            classes.astype(np.int64).tolist() if label_type == "bigint" else classes.tolist()
        )
        return task, values, label_type
    if is_regressor(model):
        return "regression", None, "double"
    raise SignatureError(
        f"{type(model).__name__} is neither a classifier nor a regressor; udfs serves predictions "
        "from fitted scikit-learn estimators and Pipelines"
    )


def _accepts_missing(model: Any, signature: Signature, probe: pd.DataFrame, column: str) -> bool:
    """Ask the model itself: does it predict when this feature is missing?"""
    columns = [
        probe[name] if name != column else pd.Series([None] * len(probe), dtype=object)
        for name in signature.feature_names
    ]
    trial = signature.with_identity(
        features=tuple(
            Feature(f.name, f.type, accepts_missing=True, categories=f.categories)
            for f in signature.features
        )
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scoring.predict(model, trial, columns)
    except UdfsError:
        return False
    return True


def infer_signature(
    model: Any,
    sample: Any,
    name: str,
    *,
    feature_names: Sequence[str] | None = None,
    accepts_missing: bool | None = None,
) -> Signature:
    """Build the signature of a fitted ``model`` from ``sample`` (its training features).

    ``accepts_missing=None`` asks the model, feature by feature, whether it predicts when that
    feature is missing (an imputer, or an estimator that takes NaN); True or False overrides.
    """
    if not hasattr(model, "predict"):
        raise SignatureError(f"{type(model).__name__} has no predict method")
    frame, input_kind = _sample_frame(model, sample, feature_names)
    if len(frame) == 0:
        raise SignatureError(
            "the sample has no rows: udfs needs a few to infer types and check the model"
        )
    features = []
    for column in frame.columns:
        ptype = portable_type(frame[column], str(column))
        levels = None
        if ptype == "string":
            unique = frame[column].dropna().unique()
            levels = tuple(sorted(map(str, unique))) if len(unique) <= _MAX_CATEGORIES else None
        features.append(Feature(str(column), ptype, accepts_missing=False, categories=levels))
    task, classes, label_type = _task(model)
    signature = Signature(
        name=name,
        features=tuple(features),
        task=task,
        classes=classes,
        label_type=label_type,
        input_kind=input_kind,
        has_proba=task != "regression" and hasattr(model, "predict_proba"),
    )
    probe = frame.head(_PROBE_ROWS).reset_index(drop=True)
    columns = [probe[c] for c in signature.feature_names]
    scoring.predict(model, signature, columns)  # the model must work through the core as saved
    if signature.has_proba:
        scoring.predict_proba(model, signature, columns)
    decided = [
        accepts_missing
        if accepts_missing is not None
        else _accepts_missing(model, signature, probe, f.name)
        for f in signature.features
    ]
    return signature.with_identity(
        features=tuple(
            Feature(f.name, f.type, accepts_missing=ok, categories=f.categories)
            for f, ok in zip(signature.features, decided, strict=True)
        )
    )
