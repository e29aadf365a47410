"""Tree ensembles as PyTorch tensors, so that the GPU of a Spark task can score them.

A converted model walks every tree at once: one gather per tree level over a (rows x trees)
tensor of node indices (the "tree traversal" strategy). Thresholds and leaf values stay float64
and inputs are rounded as scikit-learn rounds them (float32 for the ``sklearn.tree`` based
estimators, float64 for HistGradientBoosting), so each row takes the same path through each tree
as in scikit-learn; only the order of the final sums differs (about 1e-15). The link function
(sigmoid, softmax, exp) is scikit-learn's own, applied on the CPU to the small score matrix.

Pipeline steps before the ensemble stay on the CPU in scikit-learn. A batch scikit-learn would
reject (infinity, NaN for an estimator that refuses it, wrong columns) goes to scikit-learn as is,
so that its error reaches the user unchanged.

>>> fast = convert(model, "cuda:0")  # doctest: +SKIP
>>> fast.predict_proba(frame)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from udfs.errors import ConfigError

INSTALL_HINT = "pip install 'udfs[gpu]'"
# Rows x trees per traversal chunk: bounds each index tensor to ~32 MiB whatever the batch size.
CHUNK_ELEMENTS = 1 << 22
# What _sklearn_tree and _hist_tree return for each node, in this order.
NODE_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "value")


def _final(model: Any) -> tuple[Any | None, Any]:
    """Split a Pipeline into (steps before the estimator, estimator)."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return (model[:-1] if len(model.steps) > 1 else None), model.steps[-1][1]
    return None, model


def _kind(estimator: Any) -> tuple[str | None, str]:
    """("forest" | "gb" | "hgb", "") for a convertible estimator, else (None, why not)."""
    from sklearn import ensemble as ens
    from sklearn import tree

    families = {
        "forest": (
            ens.RandomForestClassifier,
            ens.RandomForestRegressor,
            ens.ExtraTreesClassifier,
            ens.ExtraTreesRegressor,
            tree.DecisionTreeClassifier,
            tree.DecisionTreeRegressor,
        ),
        "gb": (ens.GradientBoostingClassifier, ens.GradientBoostingRegressor),
        "hgb": (ens.HistGradientBoostingClassifier, ens.HistGradientBoostingRegressor),
    }
    name = type(estimator).__name__
    kind = next((k for k, types in families.items() if isinstance(estimator, types)), None)
    if kind is None:
        known = ", ".join(t.__name__ for types in families.values() for t in types)
        return None, f"{name} is not a supported tree ensemble (supported: {known})"
    if not any(hasattr(estimator, a) for a in ("estimators_", "tree_", "_predictors")):
        return None, f"{name} is not fitted"
    if getattr(estimator, "n_outputs_", 1) != 1:
        return None, f"{name} has {estimator.n_outputs_} outputs; only one is supported"
    # A custom init estimator gives each row its own baseline, which no tensor holds.
    if kind == "gb" and not (estimator.init is None or isinstance(estimator.init, str)):
        return None, f"{name} has a custom init estimator"
    # Categorical splits test bitsets, not thresholds: not converted.
    categorical = getattr(estimator, "is_categorical_", None)
    if kind == "hgb" and categorical is not None and np.any(categorical):
        return None, f"{name} has categorical features"
    return kind, ""


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` (or its Pipeline's last step) cannot be converted; None when it can."""
    return _kind(_final(model)[1])[1] or None


def gpu_candidate(model: Any) -> bool:
    """True when :func:`convert` accepts ``model`` (libraries aside: see :func:`available`).

    >>> gpu_candidate(make_pipeline(StandardScaler(), RandomForestClassifier().fit(X, y)))
    True
    """
    return unsupported_reason(model) is None


def available() -> bool:
    """True when PyTorch, the backend's only dependency, is installed."""
    return importlib.util.find_spec("torch") is not None


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        message = f"the GPU tree backend needs PyTorch, which is not installed: {INSTALL_HINT}"
        raise ConfigError(message, expected="torch") from exc
    return torch


def _device(torch: Any, device: str) -> Any:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be like 'cpu' or 'cuda:0', got {device!r}") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            message = f"device {device!r} was asked for but torch {torch.__version__} ({build})"
            raise ConfigError(f"{message} sees {count} CUDA devices", expected=device, value=count)
    return dev


def _sklearn_tree(estimator: Any, normalize: bool, scale: float) -> tuple[np.ndarray, ...]:
    """One ``sklearn.tree`` tree as (feature, threshold, left, right, missing_left, value)."""
    tree = estimator.tree_
    leaf = tree.children_left < 0
    own = np.arange(tree.node_count)
    value = tree.value[:, 0, :].astype(np.float64)
    if normalize:  # as DecisionTreeClassifier.predict_proba does, before forests average
        total = value.sum(axis=1, keepdims=True)
        value = value / np.where(total == 0, 1.0, total)
    return (
        np.where(leaf, 0, tree.feature),
        tree.threshold,
        np.where(leaf, own, tree.children_left),  # a leaf points at itself: deeper steps stay
        np.where(leaf, own, tree.children_right),
        tree.missing_go_to_left.astype(bool),
        value * scale,  # sklearn's predict_stages adds learning_rate * value per leaf
    )


def _hist_tree(predictor: Any) -> tuple[np.ndarray, ...]:
    """One HistGradientBoosting predictor in the same layout (values already shrunk)."""
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    own = np.arange(len(nodes))
    return (
        np.where(leaf, 0, nodes["feature_idx"]),
        nodes["num_threshold"],
        np.where(leaf, own, nodes["left"]),
        np.where(leaf, own, nodes["right"]),
        nodes["missing_go_to_left"].astype(bool),
        nodes["value"].astype(np.float64)[:, None],
    )


def _pack(trees: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    """Pad every tree to one node count and flatten; child links become global indices."""
    count, width = len(trees), max(len(t[0]) for t in trees)
    roots = np.arange(count, dtype=np.int64)[:, None] * width
    own = np.tile(np.arange(width, dtype=np.int64), (count, 1))
    # Padding nodes are self-pointing leaves with zero value that no path reaches.
    empty = (np.zeros((count, width), np.int64), np.zeros((count, width)), own, own.copy())
    empty += (np.zeros((count, width), bool), np.zeros((count, width, trees[0][5].shape[1])))
    packed = dict(zip(NODE_ARRAYS, empty, strict=True))
    for i, tree in enumerate(trees):
        for key, part in zip(NODE_ARRAYS, tree, strict=True):
            packed[key][i, : len(part)] = part
    packed["left"] += roots
    packed["right"] += roots
    flat = {k: v.reshape(count * width, *v.shape[2:]) for k, v in packed.items()}
    return {**flat, "roots": roots.T}


def _structure(kind: str, est: Any) -> tuple[dict[str, np.ndarray], int]:
    """The packed trees of ``est`` and its depth; boosting adds tree->output weights, baseline."""
    from sklearn.base import is_classifier

    if kind == "forest":
        members = list(est.estimators_) if hasattr(est, "estimators_") else [est]
        trees = [_sklearn_tree(t, is_classifier(est), 1.0) for t in members]
        return _pack(trees), max(t.tree_.max_depth for t in members)
    if kind == "gb":
        stages = est.estimators_  # (iterations, outputs) regression trees
        grid = [(t, k) for row in stages for k, t in enumerate(row)]
        trees = [_sklearn_tree(t, False, est.learning_rate) for t, _ in grid]
        depth = max(t.tree_.max_depth for t, _ in grid)
        # The init estimator is constant here (checked by _kind): one row gives its value.
        sample = np.zeros((1, est.n_features_in_), np.float32)
        baseline = est._raw_predict_init(sample)[0]
    else:
        grid = [(p, k) for row in est._predictors for k, p in enumerate(row)]
        trees = [_hist_tree(p) for p, _ in grid]
        depth = max(int(p.nodes["depth"].max()) for p, _ in grid)
        baseline = np.asarray(est._baseline_prediction, np.float64).ravel()
    packed = _pack(trees)
    weights = np.zeros((len(grid), len(baseline)))
    weights[np.arange(len(grid)), [k for _, k in grid]] = 1.0
    packed.update(weights=weights, baseline=np.asarray(baseline, np.float64))
    return packed, depth


class TreeModel:
    """A converted tree ensemble with scikit-learn's ``predict`` and ``predict_proba``."""

    def __init__(self, model: Any, device: str = "cpu") -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ConfigError(f"cannot convert this model for the GPU: {reason}")
        torch = self._torch = _import_torch()
        self.device = _device(torch, device)
        self.head, self.estimator = _final(model)
        self.kind = _kind(self.estimator)[0] or ""
        packed, self.depth = _structure(self.kind, self.estimator)
        self.n_trees = packed["roots"].shape[1]
        self.classes_ = getattr(self.estimator, "classes_", None)
        self.is_classifier = self.classes_ is not None
        self._t = {k: torch.as_tensor(v, device=self.device) for k, v in packed.items()}
        # sklearn.tree predicts on float32 inputs; HistGradientBoosting on float64.
        self._float32 = self.kind != "hgb"
        self._allow_nan = self.estimator.__sklearn_tags__().input_tags.allow_nan
        names = getattr(self.estimator, "feature_names_in_", None)
        self._names = list(names) if names is not None and self.head is None else None

    def _inputs(self, X: Any) -> tuple[Any, np.ndarray | None]:
        """(what scikit-learn would get, float64 features; None if scikit-learn must run)."""
        Xt = self.head.transform(X) if self.head is not None else X
        if self._names is not None and list(getattr(X, "columns", [])) != self._names:
            return Xt, None  # sklearn names the missing or reordered columns
        try:
            values = np.asarray(Xt.toarray() if hasattr(Xt, "toarray") else Xt, np.float64)
        except (TypeError, ValueError):
            return Xt, None
        if values.ndim != 2 or values.shape[1] != self.estimator.n_features_in_:
            return Xt, None
        if self._float32:
            with np.errstate(over="ignore"):  # too large for float32 becomes inf: sklearn's error
                values = values.astype(np.float32).astype(np.float64)
        if not np.isfinite(values).all() and (np.isinf(values).any() or not self._allow_nan):
            return Xt, None
        return Xt, values

    def _scores(self, values: np.ndarray) -> np.ndarray:
        """Class probabilities (forests) or raw scores (boosting), chunk by chunk."""
        torch, step = self._torch, max(1, CHUNK_ELEMENTS // self.n_trees)
        width = self._t["value"].shape[1] if "weights" not in self._t else len(self._t["baseline"])
        parts = [np.empty((0, width))]
        with torch.inference_mode():
            for start in range(0, len(values), step):
                x = torch.as_tensor(values[start : start + step], device=self.device)
                parts.append(self._walk(x).cpu().numpy())
        return np.concatenate(parts)

    def _walk(self, x: Any) -> Any:
        t, torch = self._t, self._torch
        node = t["roots"].expand(len(x), -1)  # (rows, trees), every tree at its root
        for _ in range(self.depth):
            seen = x.gather(1, t["feature"][node])
            # sklearn's rule: NaN follows missing_go_to_left, else value <= threshold goes left.
            left = torch.where(seen.isnan(), t["missing_left"][node], seen <= t["threshold"][node])
            node = torch.where(left, t["left"][node], t["right"][node])
        leaves = t["value"][node]  # (rows, trees, outputs)
        if "weights" not in t:
            return leaves.sum(dim=1) / self.n_trees
        return leaves[..., 0] @ t["weights"] + t["baseline"]

    def predict(self, X: Any) -> np.ndarray:
        """Labels for classifiers, values for regressors, as the estimator's own predict."""
        Xt, values = self._inputs(X)
        if values is None:
            return self.estimator.predict(Xt)
        scores, est = self._scores(values), self.estimator
        if not self.is_classifier:  # HistGradientBoosting may have a link (poisson: exp)
            return est._loss.link.inverse(scores[:, 0]) if self.kind == "hgb" else scores[:, 0]
        if self.kind == "forest" or scores.shape[1] > 1:
            return est.classes_.take(scores.argmax(axis=1))
        # Ties at 0 differ between the two estimators; follow each one's own rule.
        positive = scores[:, 0] > 0 if self.kind == "hgb" else scores[:, 0] >= 0
        return est.classes_.take(positive.astype(int))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities in ``classes_`` order."""
        if not self.is_classifier:
            raise AttributeError(f"{type(self.estimator).__name__} has no predict_proba")
        Xt, values = self._inputs(X)
        if values is None:
            return self.estimator.predict_proba(Xt)
        scores = self._scores(values)
        if self.kind == "forest":
            return scores
        raw = scores.ravel() if self.kind == "gb" and scores.shape[1] == 1 else scores
        return self.estimator._loss.predict_proba(raw)


def convert(model: Any, device: str = "cpu") -> TreeModel:
    """Convert a fitted tree ensemble (or a Pipeline ending in one) to run on ``device``.

    >>> convert(pipeline, "cuda:0").predict_proba(frame)  # doctest: +SKIP
    """
    return TreeModel(model, device)
