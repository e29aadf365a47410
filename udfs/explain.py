"""Exact explanations: a base value plus one contribution per input feature.

Imported only when an explanation is asked for (``predict`` never imports it, nor ``shap``).
Both engines call :meth:`Explainer.records`, so Spark and Postgres give the same numbers.

What is explained, per model family (``base_value + sum(contributions)`` equals it to 1e-9):

- linear models (``LogisticRegression`` binary, ``LinearRegression``, ``Ridge``, ``Lasso``,
  ``ElasticNet``, ``SGDClassifier`` binary, ``SGDRegressor``, ...): ``decision_function`` (the
  log-odds of ``classes[1]``) for classifiers, the prediction for regressors. Contribution of a
  transformed column: ``coef * (value - training mean)``; base: ``intercept + coef . mean``.
  The training means come from :func:`save_time_data`, computed on the sample at save time;
- ``GradientBoosting*``, ``HistGradientBoosting*``, ``XGB*``, ``LGBM*``: the raw score (the
  log-odds of ``classes[1]`` for binary classifiers, the prediction for regressors), by exact
  TreeSHAP (``shap.TreeExplainer``, ``feature_perturbation="tree_path_dependent"``);
- ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``, ``ExtraTrees*``: the prediction for
  regressors and ``P(classes[1])`` for binary classifiers (what their trees hold), by TreeSHAP.

Multiclass models are refused: one row has one margin per class, and no single number to split.
Contributions of the several columns a preprocessing step makes of one input (one-hot levels,
a missing-value indicator) are summed back to that input, in column order.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.coercion import Column
from udfs.errors import ScoringError, UdfsError
from udfs.scoring import prepare
from udfs.signature import Signature

FORMAT_VERSION = 1
# The companion file of a saved version that holds :func:`save_time_data` as JSON.
DATA_FILE = "explain.json"
LINEAR = frozenset(
    {"LogisticRegression", "LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDClassifier",
     "SGDRegressor", "RidgeClassifier", "LinearSVC", "LinearSVR"}
)  # fmt: skip
# TreeSHAP model families and whether the raw output is a probability (classifiers only).
TREES = {
    "DecisionTreeClassifier": "proba", "DecisionTreeRegressor": "",
    "ExtraTreeClassifier": "proba", "ExtraTreeRegressor": "",
    "RandomForestClassifier": "proba", "RandomForestRegressor": "",
    "ExtraTreesClassifier": "proba", "ExtraTreesRegressor": "",
    "GradientBoostingClassifier": "", "GradientBoostingRegressor": "",
    "HistGradientBoostingClassifier": "", "HistGradientBoostingRegressor": "",
    "XGBClassifier": "", "XGBRegressor": "", "LGBMClassifier": "", "LGBMRegressor": "",
}  # fmt: skip
# Libraries whose estimators sklearn's float32 tree test applies to: the input is rounded to
# float32 before TreeSHAP walks the trees, as the model does before it predicts.
_FLOAT32 = ("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "xgboost")
_IDENTITY_LOSSES = ("squared_error", "absolute_error", "quantile")
_INDICATOR = "missingindicator_"


class NoExactExplainerError(UdfsError, TypeError):
    """The model has no exact explainer (or lacks the data its explainer needs)."""


def _refuse(signature: Signature, estimator: Any, why: str) -> NoExactExplainerError:
    kind = type(estimator).__name__
    return NoExactExplainerError(
        f"model '{signature.name}' ({kind}) has no exact explainer: {why}",
        model=signature.name,
        value=kind,
    )


def _split(model: Any) -> tuple[list[Any], Any]:
    """The preprocessing steps (nested Pipelines flattened) and the final estimator."""
    steps: list[Any] = []
    while type(model).__name__ == "Pipeline" and hasattr(model, "steps"):
        steps += [step for _, step in model.steps[:-1]]
        model = model.steps[-1][1]
    return steps, model


def _family(signature: Signature, estimator: Any) -> str:
    """``linear`` or ``tree``, or raise :class:`NoExactExplainerError` saying why not."""
    kind = type(estimator).__name__
    root = type(estimator).__module__.split(".")[0]
    if root not in ("sklearn", "xgboost", "lightgbm") or (kind not in LINEAR and kind not in TREES):
        raise _refuse(
            signature,
            estimator,
            "exact explanations exist for linear models (coefficients) and tree ensembles "
            "(TreeSHAP); for other models only approximations (kernel or sampling SHAP) exist",
        )
    if signature.task == "multiclass":
        raise _refuse(
            signature,
            estimator,
            "it is a multiclass classifier: its rows have one score per class, not one number "
            "that the contributions add up to",
        )
    if kind in LINEAR:
        if np.ndim(estimator.coef_) > 1 and np.shape(estimator.coef_)[0] != 1:
            raise _refuse(signature, estimator, "it has several outputs")
        return "linear"
    params = estimator.get_params()
    if kind.startswith("HistGradientBoosting"):
        categorical = getattr(estimator, "is_categorical_", None)
        if categorical is not None and np.any(categorical):
            raise _refuse(signature, estimator, "TreeSHAP does not read its categorical splits")
        if kind.endswith("Regressor") and params.get("loss") not in _IDENTITY_LOSSES:
            raise _refuse(signature, estimator, f"its loss {params.get('loss')!r} has a link")
    if root == "xgboost" and params.get("booster") not in (None, "gbtree"):
        raise _refuse(signature, estimator, f"booster {params['booster']!r} is not a tree model")
    if root == "lightgbm" and (params.get("linear_tree") or params.get("boosting_type") == "dart"):
        raise _refuse(signature, estimator, "linear trees and DART are not plain tree ensembles")
    return "tree"


# --- preprocessed columns back to input features ---------------------------------------------


def _owners(steps: list[Any], signature: Signature, estimator: Any) -> list[int]:
    """For each column the estimator takes, the index of the input feature it comes from."""
    names = list(signature.feature_names)
    owners = list(range(len(names)))
    for step in steps:
        names, owners = _map(step, names, owners, signature)
    expected = getattr(estimator, "n_features_in_", len(owners))
    if expected != len(owners):
        raise _refuse(
            signature,
            estimator,
            f"its preprocessing makes {len(owners)} columns, but it takes {expected}",
        )
    return owners


def _map(step: Any, names: list, owners: list, sig: Signature) -> tuple[list, list]:
    """The names and owners of ``step``'s output columns from those of its input columns."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return names, owners
    kind = type(step).__name__
    if kind == "Pipeline":
        for _, inner in step.steps:
            names, owners = _map(inner, names, owners, sig)
        return names, owners
    if kind == "ColumnTransformer":
        return _map_columns(step, names, owners, sig)
    if kind == "OneHotEncoder":
        counts = step._n_features_outs  # per input column, after drop and infrequent levels
        out = [owner for owner, n in zip(owners, counts, strict=True) for _ in range(n)]
        return [f"{kind}{j}" for j in range(len(out))], out
    fitted = getattr(step, "feature_names_in_", None)
    inputs = list(fitted) if fitted is not None else list(names)
    try:
        produced = list(step.get_feature_names_out(None if fitted is not None else inputs))
    except Exception as exc:
        raise _refuse(sig, step, f"its output columns cannot be named ({exc})") from None
    index = {name: i for i, name in enumerate(inputs)}
    out = []
    for name in produced:
        source = index.get(name)
        if source is None and name.startswith(_INDICATOR):
            source = index.get(name[len(_INDICATOR) :])
        if source is None or len(index) != len(inputs) or len(inputs) != len(owners):
            raise _refuse(sig, step, f"its output column {name!r} is not one of its input columns")
        out.append(owners[source])
    return [str(n) for n in produced], out


def _map_columns(ct: Any, names: list, owners: list, sig: Signature) -> tuple[list, list]:
    fitted = getattr(ct, "feature_names_in_", None)
    inputs = list(fitted) if fitted is not None else list(names)
    width = sum(s.stop - s.start for s in ct.output_indices_.values())
    out: list[Any] = [None] * width
    for name, transformer, columns in ct.transformers_:
        where = ct.output_indices_[name]
        if where.stop == where.start:
            continue
        picked = _positions(columns, inputs, sig, ct)
        sub_names, sub_owners = [inputs[i] for i in picked], [owners[i] for i in picked]
        if not (isinstance(transformer, str) and transformer == "passthrough"):
            sub_names, sub_owners = _map(transformer, sub_names, sub_owners, sig)
        if len(sub_owners) != where.stop - where.start:
            raise _refuse(sig, transformer, "its output columns cannot be counted")
        out[where] = sub_owners
    return [f"column{j}" for j in range(width)], out


def _positions(columns: Any, inputs: list, sig: Signature, ct: Any) -> list[int]:
    if isinstance(columns, slice):
        columns = list(range(len(inputs)))[columns]
    values = np.atleast_1d(np.asarray(columns, dtype=object if isinstance(columns, str) else None))
    if values.dtype == bool:
        return np.flatnonzero(values).tolist()
    if values.dtype.kind in "iu":
        return [int(v) % len(inputs) for v in values]
    try:
        return [inputs.index(v) for v in values.tolist()]
    except ValueError:
        raise _refuse(sig, ct, f"its columns {values.tolist()} are not all known") from None


# --- the explainer ----------------------------------------------------------------------------


def _transform(steps: list[Any], X: Any, unstored: float = 0.0) -> np.ndarray:
    """The matrix the final estimator takes, dense; ``unstored``: what a sparse matrix's
    unstored entries are to it (XGBoost reads them as missing: NaN)."""
    for step in steps:
        if step is not None and not (isinstance(step, str) and step == "passthrough"):
            X = step.transform(X)
    if hasattr(X, "tocoo"):
        coo = X.tocoo()
        dense = np.full(coo.shape, unstored, dtype=np.float64)
        dense[coo.row, coo.col] = coo.data
        return dense
    return np.ascontiguousarray(np.asarray(X, dtype=np.float64))


def _shap() -> Any:
    """The ``shap`` package (the optional extra ``udfs[explain]``), imported on first use.

    Its import warns about its plotting dependencies (matplotlib deprecations), which say
    nothing about explanations: they are silenced for the import only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import shap
        except ImportError as exc:
            raise NoExactExplainerError(
                "tree models are explained with the shap package: pip install 'udfs[explain]'"
            ) from exc
    return shap


def save_time_data(model: Any, signature: Signature, sample: Any) -> dict | None:
    """What the explainer needs from training time, as JSON-ready data, or None.

    None when the model has no exact explainer. Linear models get the mean of each transformed
    column over ``sample`` (rows the NULL policy leaves out are left out here too); tree models
    need nothing but the record of their explainer.

    >>> save_time_data(ridge_pipeline, signature, X_train)["means"][:2]  # doctest: +SKIP
    [41.2, 0.31]
    """
    steps, estimator = _split(model)
    try:
        family = _family(signature, estimator)
        _owners(steps, signature, estimator)
    except NoExactExplainerError:
        return None
    data: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "explainer": family,
        "estimator": type(estimator).__name__,
    }
    if family == "linear":
        if hasattr(sample, "columns") and signature.input_kind == "dataframe":
            columns = [sample[name] for name in signature.feature_names]
        else:
            values = np.asarray(sample)
            columns = [values[:, i] for i in range(values.shape[1])]
        batch = prepare(signature, columns)
        data["means"] = [float(m) for m in _transform(steps, batch.X).mean(axis=0)]
    return data


def explainer(model: Any, signature: Signature, data: dict | None = None) -> Explainer:
    """The exact explainer of ``model``; ``data`` is what :func:`save_time_data` returned.

    Raises :class:`NoExactExplainerError` for a model without one.

    >>> base, contributions = explainer(model, sig, data).explain(columns)  # doctest: +SKIP
    """
    steps, estimator = _split(model)
    family = _family(signature, estimator)
    owners = _owners(steps, signature, estimator)
    if family == "linear":
        return LinearExplainer(model, signature, owners, data)
    return TreeExplainer(model, signature, owners)


class Explainer:
    """Explains batches of feature columns (in signature order) as the core scores them."""

    output: str = ""
    unstored = 0.0

    def __init__(self, model: Any, signature: Signature, owners: list) -> None:
        self.model = model
        self.steps, self.estimator = _split(model)
        self.signature = signature
        self.owners = np.asarray(owners, dtype=np.int64)

    def _columns(self, Z: np.ndarray) -> tuple[float, np.ndarray]:
        """The base value and the contribution of each transformed column."""
        raise NotImplementedError

    def _raw(self, X: Any) -> np.ndarray:
        """The model's raw output on its own input (the whole pipeline)."""
        method = "decision_function" if self.signature.is_classifier else "predict"
        return np.ravel(getattr(self.model, method)(X)).astype(np.float64)

    def _run(self, columns: Sequence[Column], what: str) -> tuple[np.ndarray, Any]:
        batch = prepare(self.signature, columns)
        if not batch.rows:
            return batch.valid, None
        try:
            if what == "raw":
                return batch.valid, self._raw(batch.X)
            return batch.valid, self._columns(_transform(self.steps, batch.X, self.unstored))
        except UdfsError:
            raise
        except Exception as exc:
            raise ScoringError(
                f"model '{self.signature.name}' failed in explain: {type(exc).__name__}: {exc}",
                model=self.signature.name,
            ) from exc

    def explain(self, columns: Sequence[Column]) -> tuple[np.ndarray, np.ndarray]:
        """(base values, contributions per input feature), NaN on rows whose prediction is NULL."""
        valid, result = self._run(columns, "explain")
        k = len(self.signature.features)
        base = np.full(len(valid), np.nan)
        contributions = np.full((len(valid), k), np.nan)
        if result is not None:
            value, per_column = result
            summed = np.zeros((per_column.shape[0], k))
            for j, owner in enumerate(self.owners.tolist()):  # column order, whatever the batch
                summed[:, owner] += per_column[:, j]
            base[valid] = value
            contributions[valid] = summed
        return base, contributions

    def raw_output(self, columns: Sequence[Column]) -> np.ndarray:
        """The output the contributions add up to (see the module doc), NaN where NULL."""
        valid, result = self._run(columns, "raw")
        out = np.full(len(valid), np.nan)
        if result is not None:
            out[valid] = result
        return out

    def records(self, columns: Sequence[Column]) -> list[dict | None]:
        """``{"base_value": b, "contributions": {feature: c, ...}}`` per row, None where NULL."""
        base, contributions = self.explain(columns)
        names = self.signature.feature_names
        out: list[dict | None] = []
        for b, row in zip(base.tolist(), contributions.tolist(), strict=True):
            if b != b:
                out.append(None)
                continue
            if not np.isfinite([b, *row]).all():
                raise ScoringError(
                    f"model '{self.signature.name}': explanation is not finite for a row "
                    "(an infinite or overflowing input)",
                    model=self.signature.name,
                )
            out.append({"base_value": b, "contributions": dict(zip(names, row, strict=True))})
        return out

    def json_texts(self, columns: Sequence[Column]) -> list[str | None]:
        """:meth:`records` as JSON texts (floats as their shortest round-tripping text)."""
        return [None if r is None else json.dumps(r) for r in self.records(columns)]


class LinearExplainer(Explainer):
    def __init__(self, model: Any, signature: Signature, owners: list, data: Any) -> None:
        super().__init__(model, signature, owners)
        estimator = self.estimator
        means = (data or {}).get("means")
        if means is None or len(means) != len(owners):
            raise _refuse(
                signature,
                estimator,
                "the training means of its transformed columns were not saved with it "
                f"(expected {len(owners)}, found {0 if means is None else len(means)}): "
                "save the model again to explain it",
            )
        self.means = np.asarray(means, dtype=np.float64)
        self.coef = np.ravel(estimator.coef_).astype(np.float64)
        intercept = float(np.ravel(estimator.intercept_)[0])
        self.base = intercept + float(np.sum(self.coef * self.means))
        is_classifier = signature.is_classifier
        self.output = "decision_function (log-odds)" if is_classifier else "prediction"

    def _columns(self, Z: np.ndarray) -> tuple[float, np.ndarray]:
        return self.base, self.coef * (Z - self.means)


class TreeExplainer(Explainer):
    def __init__(self, model: Any, signature: Signature, owners: list) -> None:
        super().__init__(model, signature, owners)
        estimator = self.estimator
        self.shap = _shap().TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
        kind = type(estimator).__name__
        self.proba = TREES[kind] == "proba" and signature.is_classifier
        self.float32 = type(estimator).__module__.startswith(_FLOAT32)
        if type(estimator).__module__.startswith("xgboost"):
            self.unstored = np.nan
        if self.proba:
            self.output = "probability of classes[1]"
        else:
            self.output = "raw score (log-odds)" if signature.is_classifier else "prediction"

    def _input(self, Z: np.ndarray) -> np.ndarray:
        return Z.astype(np.float32).astype(np.float64) if self.float32 else Z

    def _columns(self, Z: np.ndarray) -> tuple[float, np.ndarray]:
        with warnings.catch_warnings():  # LightGBM's "output has changed to a list" notice
            warnings.simplefilter("ignore", UserWarning)
            values = self.shap.shap_values(self._input(Z), check_additivity=False)
        if isinstance(values, list):
            values = np.stack(values, axis=-1)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 3:
            values = values[..., 1 if values.shape[-1] > 1 else 0]
        # Read after shap_values: for XGBoost, shap sets expected_value there.
        expected = np.ravel(np.asarray(self.shap.expected_value, dtype=np.float64))
        return float(expected[1] if len(expected) > 1 else expected[0]), values

    def _raw(self, X: Any) -> np.ndarray:
        root = type(self.estimator).__module__.split(".")[0]
        if self.proba:
            return self.model.predict_proba(X)[:, 1].astype(np.float64)
        if root == "xgboost":
            return np.ravel(self.model.predict(X, output_margin=True)).astype(np.float64)
        if root == "lightgbm":
            return np.ravel(self.model.predict(X, raw_score=True)).astype(np.float64)
        return super()._raw(X)
