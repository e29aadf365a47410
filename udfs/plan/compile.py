"""Compile a fitted scikit-learn model into a scoring :class:`~udfs.plan.format.Plan`.

``compile_model(model, signature)`` walks Pipelines and ColumnTransformers, compiles each step
(:mod:`udfs.plan.compile_steps`), the final linear estimator (here) or tree estimator
(:mod:`udfs.plan.trees`; XGBoost's and LightGBM's in :mod:`udfs.plan.boosters`), and raises :class:`PlanUnsupported` naming the first step it cannot
express (``step="model > prep > cat: TargetEncoder"``). A plan is only used after
:func:`udfs.plan.verify.verify_plan` has shown it bit-identical to the model.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import sklearn
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
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from udfs.plan import boosters, trees
from udfs.plan import compile_steps as cs
from udfs.plan.base import PLAN_FORMAT_VERSION, PlanUnsupported
from udfs.plan.compile_steps import Builder, unsupported
from udfs.plan.format import Plan
from udfs.signature import Signature

_REGRESSORS = (LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor)
_SGD_PROBA = {"log_loss": "sgd_log", "modified_huber": "sgd_huber"}


def compile_model(model: Any, signature: Signature) -> Plan:
    """Compile ``model`` (fitted) for ``signature``; raise PlanUnsupported if a step can't be."""
    if sklearn.get_config().get("transform_output", "default") != "default":
        raise PlanUnsupported("set_output(transform=...) is configured globally", step="config")
    b = Builder()
    transforms, final, final_path = _flatten(model, "model")
    kind = "frame" if signature.input_kind == "dataframe" else "dense"
    names: list[str] | None = list(signature.feature_names)
    nodes = []
    for path, step in transforms:
        node, kind, names = _compile_transform(step, b, kind, path, names)
        nodes.append(node)
    estimator = _compile_estimator(final, b, kind, final_path, signature)
    spec = {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": "udfs-scoring-plan",
        "features": [{"name": f.name, "type": f.type} for f in signature.features],
        "input_kind": signature.input_kind,
        "task": signature.task,
        "has_proba": bool(signature.has_proba),
        "transform": {"op": "pipeline", "steps": nodes},
        "estimator": estimator,
        "model_class": type(model).__name__,
        "sklearn_version": sklearn.__version__,
    }
    return Plan(spec=spec, arrays=b.arrays)


def _flatten(model: Any, path: str) -> tuple[list[tuple[str, Any]], Any, str]:
    """A (nested) Pipeline as its transform steps and its final estimator, with their paths."""
    if not isinstance(model, Pipeline):
        return [], model, f"{path}"
    if type(model) is not Pipeline:
        raise unsupported(path, model, "a Pipeline subclass")
    steps = [(f"{path} > {name}", est) for name, est in model.steps]
    *head, (last_path, last) = steps
    transforms = [(p, e) for p, e in head if e is not None and e != "passthrough"]
    inner, final, final_path = _flatten(last, last_path)
    return transforms + inner, final, final_path


def _check_output_config(est: Any, path: str) -> None:
    config = getattr(est, "_sklearn_output_config", {}) or {}
    if config.get("transform", "default") != "default":
        raise unsupported(path, est, "set_output(transform=...) is configured")


def _is_passthrough(est: Any) -> bool:
    if est is None or (isinstance(est, str) and est == "passthrough"):
        return True
    # ColumnTransformer stores 'passthrough' parts as this identity FunctionTransformer.
    return (
        type(est) is FunctionTransformer
        and est.func is None
        and not est.validate
        and (getattr(est, "_sklearn_output_config", {}) or {}).get("transform", "default")
        == "default"
    )


def _compile_transform(
    est: Any, b: Builder, kind: str, path: str, names: list[str] | None
) -> tuple[dict, str, list[str] | None]:
    """One transform step: its node, the kind of its output and its output column names."""
    if _is_passthrough(est):
        return {"op": "passthrough"}, kind, names
    _check_output_config(est, path)
    if type(est) is Pipeline:
        transforms, final, final_path = _flatten(est, path)
        nodes = []
        for p, step in [*transforms, (final_path, final)]:
            if _is_passthrough(step):
                continue
            node, kind, names = _compile_transform(step, b, kind, p, names)
            nodes.append(node)
        return {"op": "pipeline", "steps": nodes}, kind, names
    if type(est) is ColumnTransformer:
        node, kind = _compile_column_transformer(est, b, kind, path, names)
        return node, kind, None
    if type(est) is SimpleImputer:
        node, kind = cs.compile_imputer(est, b, kind, path)
        return node, kind, None
    if type(est) in cs._SCALERS:
        node, kind = cs.compile_scaler(est, b, kind, path)
        return node, kind, None
    if type(est) in cs.ENCODERS:
        node, kind = cs.compile_encoder(est, b, kind, path, names)
        return node, kind, None
    raise unsupported(path, est, "no plan for this step")


def _compile_column_transformer(
    ct: ColumnTransformer, b: Builder, kind: str, path: str, names: list[str] | None
) -> tuple[dict, str]:
    if kind == "sparse":
        raise unsupported(path, ct, "sparse input")
    by_label = hasattr(ct, "feature_names_in_") and kind == "frame"
    parts = []
    for name, trans, _ in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        indices = list(ct._transformer_to_input_indices.get(name, []))
        if not indices:
            continue  # sklearn skips empty column selections
        if by_label:
            # Fitted on a DataFrame, given a DataFrame: sklearn selects columns by name.
            wanted = [str(ct.feature_names_in_[i]) for i in indices]
            if names is None or any(w not in names for w in wanted):
                raise unsupported(path, ct, f"columns {wanted} are not in the input")
            indices = [names.index(w) for w in wanted]
            sub_names = wanted
        else:
            sub_names = [names[i] for i in indices] if names else None
        node, _, _ = _compile_transform(trans, b, kind, f"{path} > {name}", sub_names)
        parts.append({"node": node, "columns": [int(i) for i in indices]})
    node = {
        "op": "column_transformer",
        "where": f"{path}: ColumnTransformer",
        "parts": parts,
        "sparse": bool(ct.sparse_output_),
    }
    return node, "sparse" if ct.sparse_output_ else "dense"


def _classes(est: Any, b: Builder, path: str) -> tuple[str, bool]:
    classes = np.asarray(est.classes_)
    if classes.dtype.kind == "O":
        if not all(type(c) is str for c in classes.tolist()):
            raise unsupported(path, est, "class labels of mixed types")
        if any("\x00" in c for c in classes.tolist()):
            raise unsupported(path, est, "a class label containing NUL")
        return b.add("classes", np.array(classes.tolist(), dtype=str)), True
    return b.add("classes", classes), False


def _compile_estimator(est: Any, b: Builder, kind: str, path: str, signature: Signature) -> dict:
    name = type(est).__name__
    if name in trees.SUPPORTED or boosters.library(est) is not None:
        return _compile_trees(est, b, path)
    if type(est) in (LogisticRegression, SGDClassifier):
        coef = np.asarray(est.coef_)
        node = {
            "op": "linear",
            "where": f"{path}: {name}",
            "kind": "logistic" if type(est) is LogisticRegression else "classifier",
            "coef": b.add("coef", coef),
            "coef_order": _order(coef),
            "intercept": b.add("intercept", np.asarray(est.intercept_)),
        }
        if type(est) is SGDClassifier:
            node["kind"] = _SGD_PROBA.get(est.loss, "classifier")
        node["classes"], node["classes_object"] = _classes(est, b, path)
        return node
    if type(est) in _REGRESSORS:
        coef = np.asarray(est.coef_)
        if coef.ndim != 1:
            raise unsupported(path, est, "several targets")
        return {
            "op": "linear",
            "where": f"{path}: {name}",
            "kind": "regressor",
            "coef": b.add("coef", coef),
            "coef_order": _order(coef),
            # ElasticNet/Lasso multiply a sparse X without validating it (NaN passes).
            "sparse_check": type(est) not in (Lasso, ElasticNet),
            "intercept": b.add("intercept", np.asarray(est.intercept_, dtype=np.float64)),
            "ravel": type(est) is SGDRegressor,
        }
    raise unsupported(path, est, "no plan for this estimator")


def _order(array: np.ndarray) -> str:
    """The memory order of a coefficient array: BLAS sums differently for C and F operands."""
    return "F" if array.ndim == 2 and not array.flags.c_contiguous else "C"


def _compile_trees(est: Any, b: Builder, path: str) -> dict:
    """scikit-learn's tree models (udfs.plan.trees), XGBoost's and LightGBM's (udfs.plan.boosters)."""
    booster = boosters.library(est) is not None
    try:
        node, arrays = (boosters if booster else trees).compile_estimator(est)
    except PlanUnsupported as exc:
        raise PlanUnsupported(exc.message, step=f"{path}: {type(est).__name__}") from exc
    prefix = f"t{len(b.arrays)}_"
    for name, array in arrays.items():
        b.arrays[prefix + name] = array
    step = {
        "op": "trees",
        "where": f"{path}: {type(est).__name__}",
        "trees": node,
        "prefix": prefix,
    }
    if booster:  # both libraries predict on NaN and infinity
        return {**step, "cast": node["input"]["dtype"], "nan_ok": True, "inf_ok": True,
                "library": node["library"]}  # fmt: skip
    hist = type(est).__name__.startswith("HistGradientBoosting")
    return {
        **step,
        "cast": "float64" if hist else "float32",
        "nan_ok": _accepts(est, np.nan),
        "inf_ok": _accepts(est, np.inf),
    }


def _accepts(est: Any, value: float) -> bool:
    """Does the fitted estimator predict on a row holding ``value`` (NaN, inf)?"""
    X = np.zeros((1, int(est.n_features_in_)))
    X[0, 0] = value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.predict(X)
    except ValueError:
        return False
    return True
