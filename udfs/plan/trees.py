"""Compile fitted scikit-learn tree models into a plan node plus plain numeric arrays.

Save/deploy time only: this module imports scikit-learn. The run side is ``udfs.plan.tree_exec``.

Every tree becomes a sibling-adjacent node list (breadth-first; a node's right child is its left
child + 1; a leaf is its own left child, with threshold +inf and missing values going left, so a walk
that continues past it stays on it). The trees of a model are concatenated; ``root[t]`` is the
first node of tree t and child indices are absolute. Leaf values are stored per node, ``width``
values each, already multiplied by the learning rate where scikit-learn multiplies at predict time
(a float64 product is the same whether done now or then).

Exactness: scikit-learn's ``Tree`` compares float32(x) with a float64 threshold. We store the
largest float32 <= threshold instead, which gives the same answer for every float32 x.
HistGradientBoosting compares float64 x with float64 thresholds and is stored as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from udfs.plan.base import PlanUnsupported

SUPPORTED: tuple[str, ...] = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
)

# Version of the "trees" node layout; tree_exec refuses other versions.
TREES_NODE_VERSION = 1

_SINGLE_TREES = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
}
_FORESTS = {
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
}
# HistGradientBoostingRegressor losses and the inverse link its predict applies.
_HGB_REGRESSION_LINKS = {
    "squared_error": "identity",
    "absolute_error": "identity",
    "quantile": "identity",
    "poisson": "exp",
    "gamma": "exp",
}
_GB_REGRESSION_LOSSES = {"squared_error", "absolute_error", "huber", "quantile"}


def compile_estimator(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """Compile a fitted tree model into a ``{"op": "trees", ...}`` node and numeric arrays.

    Raises PlanUnsupported for any model, loss or option the executor cannot reproduce exactly.
    No data is needed: a model fitted on sparse input predicts the same on the dense rows the
    executor receives.
    """
    name = type(est).__name__
    if name not in SUPPORTED:
        raise PlanUnsupported(f"{name} has no tree plan", step=name)
    if name in _SINGLE_TREES:
        node, arrays = _compile_single_tree(est)
    elif name in _FORESTS:
        node, arrays = _compile_forest(est)
    elif name.startswith("Gradient"):
        node, arrays = _compile_gradient_boosting(est)
    else:
        node, arrays = _compile_hist_gradient_boosting(est)
    node = {"op": "trees", "version": TREES_NODE_VERSION, "estimator": name, **node}
    _self_check(est, node, arrays)
    return node, arrays


# ------------------------------------------------------------------ shared helpers


def _unsupported(est: Any, why: str) -> PlanUnsupported:
    name = type(est).__name__
    return PlanUnsupported(f"{name}: {why}", step=name)


def _require(est: Any, *attrs: str) -> None:
    for attr in attrs:
        if not hasattr(est, attr):
            raise _unsupported(est, f"not fitted (no {attr})")


def classes_of(est: Any) -> dict:
    """The class labels as JSON, with the dtype to rebuild them with."""
    classes = np.asarray(est.classes_)
    if classes.ndim != 1:
        raise _unsupported(est, "multi-output classifiers have no plan")
    if classes.dtype.kind not in "biufUO":
        raise _unsupported(est, f"class labels of dtype {classes.dtype} have no plan")
    labels = [c.item() if isinstance(c, np.generic) else c for c in classes.tolist()]
    for label in labels:
        # JSON keeps str, int, float and bool exactly (floats via repr); nothing else.
        if not isinstance(label, str | int | float | bool) or label != label:
            raise _unsupported(est, f"class label {label!r} cannot be stored in a plan")
    return {"classes": labels, "classes_dtype": classes.dtype.str}


def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold: float32(x) <= t  <=>  float32(x) <= floor32(t)."""
    with np.errstate(over="ignore"):
        rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _sibling_layout(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray):
    """Breadth-first order with siblings adjacent.

    Returns (perm, new_left, depth): perm[new] = old node id, new_left[new] = new id of the left
    child (its own id for a leaf), depth = number of levels below the root.
    """
    n = left.shape[0]
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[0] = 0
    levels = [np.zeros(1, dtype=np.int64)]
    next_id, depth = 1, 0
    frontier = levels[0]
    while True:
        internal = frontier[~is_leaf[frontier]]
        if internal.size == 0:
            break
        kids = np.empty(2 * internal.size, dtype=np.int64)
        kids[0::2] = left[internal]
        kids[1::2] = right[internal]
        new_id[kids] = next_id + np.arange(kids.size)
        next_id += kids.size
        levels.append(kids)
        frontier = kids
        depth += 1
    perm = np.concatenate(levels)
    if next_id != n or np.unique(perm).size != n:
        raise ValueError("tree nodes are not a single tree")
    old_leaf = is_leaf[perm]
    new_left = np.where(old_leaf, np.arange(n), new_id[np.where(old_leaf, 0, left[perm])])
    return perm, new_left, depth


class TreeBuilder:
    """Concatenates trees into the flat arrays the kernel reads."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("feature", "threshold", "left", "missing_left", "value", "bitset")
        }
        self.root: list[int] = []
        self.depth: list[int] = []
        self.col: list[int] = []
        self.n_nodes = 0

    def add(self, *, left, right, is_leaf, feature, threshold, missing_left, value, col,
            bitset=None) -> None:  # fmt: skip
        perm, new_left, depth = _sibling_layout(left, right, is_leaf)
        leaf = is_leaf[perm]
        self.root.append(self.n_nodes)
        self.depth.append(depth)
        self.col.append(col)
        p = self.parts
        p["feature"].append(np.where(leaf, 0, feature[perm]).astype(np.int32))
        p["threshold"].append(np.where(leaf, np.inf, threshold[perm]).astype(threshold.dtype))
        p["left"].append((new_left + self.n_nodes).astype(np.int32))
        p["missing_left"].append(np.where(leaf, 1, missing_left[perm]).astype(np.uint8))
        p["value"].append(np.ascontiguousarray(value[perm], dtype=np.float64).reshape(-1))
        if bitset is not None:
            p["bitset"].append(np.where(leaf, -1, bitset[perm]).astype(np.int32))
        self.n_nodes += perm.size
        if self.n_nodes >= 2**31 - 1:
            raise PlanUnsupported("tree model too large for a plan (over 2**31 nodes)")

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.concatenate(v) for k, v in self.parts.items() if v}
        out["root"] = np.asarray(self.root, dtype=np.int32)
        out["depth"] = np.asarray(self.depth, dtype=np.int32)
        out["col"] = np.asarray(self.col, dtype=np.int32)
        return out


def _add_sklearn_tree(builder: TreeBuilder, tree: Any, col: int, scale: float | None) -> None:
    """Adds one fitted ``sklearn.tree._tree.Tree`` (float32 compare)."""
    if tree.n_outputs != 1:
        raise PlanUnsupported("multi-output trees have no plan")
    left = np.asarray(tree.children_left, dtype=np.int64)
    value = np.asarray(tree.value)[:, 0, :]
    if scale is not None:
        value = scale * value[:, :1]
    if value.shape[1] != builder.width:
        raise PlanUnsupported("tree value width does not match the model's classes")
    missing = getattr(tree, "missing_go_to_left", None)
    if missing is None:
        missing = np.zeros(left.shape[0], dtype=np.uint8)
    builder.add(
        left=left,
        right=np.asarray(tree.children_right, dtype=np.int64),
        is_leaf=left == -1,
        feature=np.asarray(tree.feature),
        threshold=_float32_floor(np.asarray(tree.threshold, dtype=np.float64)),
        missing_left=np.asarray(missing),
        value=value,
        col=col,
    )


def _allow_nan(est: Any) -> bool:
    from sklearn.utils import get_tags

    return bool(get_tags(est).input_tags.allow_nan)


def _base_node(est: Any, kind: int, n_outputs: int, width: int) -> dict:
    return {
        "kind": kind,
        "n_features": int(est.n_features_in_),
        "n_outputs": n_outputs,
        "width": width,
        "divisor": 0.0,
        "has_init": True,
        "raw_order": "C",
        "categorical": [],
    }


def _f32_input(allow_nan: bool) -> dict:
    return {"dtype": "float32", "allow_nan": allow_nan, "allow_inf": False}


# ------------------------------------------------------------------ single trees and forests


def _check_tree_model(est: Any) -> None:
    _require(est, "n_features_in_", "n_outputs_")
    if est.n_outputs_ != 1:
        raise _unsupported(est, "multi-output models have no plan")


def _classifier_node(est: Any, node: dict) -> None:
    node.update(classes_of(est))
    node["proba"] = "identity"
    node["predict"] = "argmax"


def _compile_single_tree(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    _check_tree_model(est)
    _require(est, "tree_")
    classifier = hasattr(est, "classes_")
    width = int(est.n_classes_) if classifier else 1
    builder = TreeBuilder(width)
    _add_sklearn_tree(builder, est.tree_, 0, None)
    node = _base_node(est, 32, width, width)
    node["has_init"] = False  # scikit-learn returns the leaf values themselves
    node["input"] = _f32_input(_allow_nan(est))
    if classifier:
        _classifier_node(est, node)
    else:
        node.update(proba=None, predict="identity")
    return node, builder.arrays()


def _compile_forest(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    _check_tree_model(est)
    _require(est, "estimators_")
    classifier = hasattr(est, "classes_")
    width = int(est.n_classes_) if classifier else 1
    builder = TreeBuilder(width)
    for tree in est.estimators_:
        _add_sklearn_tree(builder, tree.tree_, 0, None)
    node = _base_node(est, 32, width, width)
    # scikit-learn sums each tree's output into zeros, in order, then divides by the tree count.
    node["divisor"] = float(len(est.estimators_))
    # The forest validates X with its first tree's missing-value support.
    node["input"] = _f32_input(_allow_nan(est.estimators_[0]))
    if classifier:
        _classifier_node(est, node)
    else:
        node.update(proba=None, predict="identity")
    arrays = builder.arrays()
    arrays["init"] = np.zeros(width, dtype=np.float64)
    return node, arrays


# ------------------------------------------------------------------ gradient boosting


def _gb_init_raw(est: Any, n_outputs: int, classifier: bool) -> np.ndarray:
    """The initial raw score, computed as sklearn's ``_init_raw_predictions`` does.

    Only constant initial estimators (the default Dummy* ones, or "zero") are supported, so one
    probe row gives the value for every row.
    """
    from scipy.special import logit
    from scipy.stats import gmean
    from sklearn.dummy import DummyClassifier, DummyRegressor

    init = est.init_
    if isinstance(init, str) and init == "zero":
        return np.zeros(n_outputs, dtype=np.float64)
    if not isinstance(init, DummyClassifier | DummyRegressor):
        raise _unsupported(est, f"init estimator {type(init).__name__} has no plan")
    probe = np.zeros((1, int(est.n_features_in_)))
    if not classifier:
        raw = init.predict(probe).astype(np.float64)  # identity link
        return np.asarray(raw, dtype=np.float64).reshape(-1)
    proba = init.predict_proba(probe)
    if n_outputs == 1:
        proba = proba[:, 1]
    eps = np.finfo(np.float64).eps
    proba = np.clip(proba, eps, 1 - eps, dtype=np.float64)
    if est.loss == "exponential":
        raw = 0.5 * logit(proba)  # HalfLogitLink
    elif n_outputs == 1:
        raw = logit(proba)  # LogitLink
    else:
        raw = np.log(proba / gmean(proba, axis=1)[:, None])  # MultinomialLogit
    return np.asarray(raw, dtype=np.float64).reshape(-1)


def _compile_gradient_boosting(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    _require(est, "estimators_", "init_", "n_features_in_")
    classifier = hasattr(est, "classes_")
    if not classifier and est.loss not in _GB_REGRESSION_LOSSES:
        raise _unsupported(est, f"loss {est.loss!r} has no plan")
    if classifier and est.loss not in ("log_loss", "exponential"):
        raise _unsupported(est, f"loss {est.loss!r} has no plan")
    stages = np.asarray(est.estimators_, dtype=object)
    n_outputs = int(stages.shape[1])
    builder = TreeBuilder(1)
    lr = float(est.learning_rate)
    # Stage by stage, class by class: the order predict_stages adds them in.
    for i in range(stages.shape[0]):
        for k in range(n_outputs):
            _add_sklearn_tree(builder, stages[i, k].tree_, k, lr)
    node = _base_node(est, 32, n_outputs, 1)
    node["input"] = _f32_input(False)  # GradientBoosting* validate X with finite values only
    if classifier:
        node.update(classes_of(est))
        if n_outputs == 1:
            node["proba"] = "halflogit" if est.loss == "exponential" else "logit"
            node["predict"] = "ge0"
        else:
            node["proba"] = "softmax"
            node["predict"] = "argmax"
    else:
        node.update(proba=None, predict="identity")
    arrays = builder.arrays()
    arrays["init"] = _gb_init_raw(est, n_outputs, classifier)
    return node, arrays


# ------------------------------------------------------------------ HistGradientBoosting


def _hgb_internals(est: Any) -> dict:
    """The fitted private attributes HGB predicts with (compile time only, guarded)."""
    try:
        baseline = np.asarray(est._baseline_prediction, dtype=np.float64)
        predictors = est._predictors
        known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        preprocessor = est._preprocessor
        is_categorical = est.is_categorical_
        n_features = int(est.n_features_in_)
        for predictor in predictors[0]:
            _ = predictor.nodes["is_leaf"], predictor.raw_left_cat_bitsets
    except (AttributeError, IndexError, KeyError, ValueError, TypeError) as exc:
        raise _unsupported(est, f"HistGradientBoosting internals not recognized ({exc})") from exc
    return {
        "baseline": baseline,
        "predictors": predictors,
        "known": np.asarray(known, dtype=np.uint32),
        "f_idx_map": np.asarray(f_idx_map, dtype=np.int64),
        "preprocessor": preprocessor,
        "is_categorical": is_categorical,
        "n_features": n_features,
    }


def _hgb_columns(est: Any, parts: dict) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Map from the predictors' feature index to the input column, and the categories to encode.

    With categorical features, HGB runs X through an OrdinalEncoder (unknown and missing -> NaN)
    in a ColumnTransformer that puts the categorical columns first.
    """
    n = parts["n_features"]
    if parts["preprocessor"] is None:
        return np.arange(n), []
    pre = parts["preprocessor"]
    try:
        is_cat = np.asarray(parts["is_categorical"], dtype=bool)
        encoder = pre.named_transformers_["encoder"]
        names = [name for name, _, _ in pre.transformers_ if name != "remainder"]
        categories = list(encoder.categories_)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _unsupported(est, f"HistGradientBoosting internals not recognized ({exc})") from exc
    if names != ["encoder", "numerical"] or is_cat.shape != (n,):
        raise _unsupported(est, "HistGradientBoosting internals not recognized (preprocessor)")
    unknown = getattr(encoder, "unknown_value", None)
    missing = getattr(encoder, "encoded_missing_value", None)
    if not (isinstance(unknown, float) and np.isnan(unknown)) or not (
        isinstance(missing, float) and np.isnan(missing)
    ):
        raise _unsupported(est, "HistGradientBoosting internals not recognized (encoder)")
    cat_cols = np.flatnonzero(is_cat)
    order = np.concatenate([cat_cols, np.flatnonzero(~is_cat)])
    encoded = []
    for col, cats in zip(cat_cols, categories, strict=True):
        cats = np.asarray(cats)
        if cats.dtype.kind not in "biuf":
            raise _unsupported(est, f"non-numeric categories in column {col} have no plan")
        cats = cats.astype(np.float64)
        cats = cats[~np.isnan(cats)]
        if np.any(np.diff(cats) <= 0):
            raise _unsupported(est, "HistGradientBoosting categories are not sorted")
        encoded.append((int(col), cats))
    return order, encoded


def _add_hgb_predictor(builder: TreeBuilder, predictor: Any, col: int, order: np.ndarray,
                       bitset_offset: int) -> None:  # fmt: skip
    nodes = predictor.nodes
    is_leaf = nodes["is_leaf"].astype(bool)
    feature = np.where(is_leaf, 0, nodes["feature_idx"]).astype(np.int64)
    is_cat = nodes["is_categorical"].astype(bool) & ~is_leaf
    builder.add(
        left=nodes["left"].astype(np.int64),
        right=nodes["right"].astype(np.int64),
        is_leaf=is_leaf,
        feature=order[feature],
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"],
        value=nodes["value"].astype(np.float64).reshape(-1, 1),
        col=col,
        bitset=np.where(is_cat, nodes["bitset_idx"].astype(np.int64) + bitset_offset, -1),
    )


def _compile_hist_gradient_boosting(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    parts = _hgb_internals(est)
    classifier = hasattr(est, "classes_")
    loss = getattr(est, "loss", None)
    if not classifier and loss not in _HGB_REGRESSION_LINKS:
        raise _unsupported(est, f"loss {loss!r} has no plan")
    if classifier and loss != "log_loss":
        raise _unsupported(est, f"loss {loss!r} has no plan")
    order, categorical = _hgb_columns(est, parts)
    n_outputs = int(parts["baseline"].size)
    builder = TreeBuilder(1)
    bitsets = []
    offset = 0
    for iteration in parts["predictors"]:
        if len(iteration) != n_outputs:
            raise _unsupported(est, "HistGradientBoosting internals not recognized (predictors)")
        for k, predictor in enumerate(iteration):
            raw_bits = np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8)
            _add_hgb_predictor(builder, predictor, k, order, offset)
            bitsets.append(raw_bits)
            offset += raw_bits.shape[0]
    n = parts["n_features"]
    known = np.zeros((n, 8), dtype=np.uint32)
    if parts["is_categorical"] is not None:
        for f in range(n):
            if order[f] in {c for c, _ in categorical}:
                known[order[f]] = parts["known"][parts["f_idx_map"][f]]
    node = _base_node(est, 64, n_outputs, 1)
    node["input"] = {"dtype": "float64", "allow_nan": True, "allow_inf": True}
    # HGB keeps raw predictions in a Fortran-ordered array, and numpy's row sums depend on it.
    node["raw_order"] = "F"
    arrays = builder.arrays()
    arrays["init"] = np.zeros(n_outputs) + parts["baseline"].reshape(-1)
    arrays["cat_bitsets"] = (
        np.concatenate(bitsets).reshape(-1) if bitsets else np.zeros(0, dtype=np.uint32)
    )
    arrays["known_bitsets"] = known.reshape(-1)
    for j, (col, cats) in enumerate(categorical):
        node["categorical"].append({"column": col, "values": f"categories_{j}"})
        arrays[f"categories_{j}"] = cats
    if classifier:
        node.update(classes_of(est))
        node["proba"] = "logit" if n_outputs == 1 else "softmax"
        node["predict"] = "gt0" if n_outputs == 1 else "argmax"
    else:
        node.update(proba=None, predict=_HGB_REGRESSION_LINKS[loss])
    return node, arrays


# ------------------------------------------------------------------ self check


def _probe_rows(node: dict, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A few rows near the model's own thresholds, to catch a compile error early."""
    rng = np.random.default_rng(0)
    n_features = node["n_features"]
    thr = arrays["threshold"]
    feat = arrays["feature"]
    split = np.isfinite(thr)
    rows = np.zeros((32, n_features))
    if split.any():
        picks = rng.integers(0, int(split.sum()), size=rows.shape)
        rows = thr[split][picks].astype(np.float64) + rng.normal(0, 1e-3, rows.shape)
        rows[:, feat[split][0]] = thr[split][0]
    for spec in node["categorical"]:
        cats = arrays[spec["values"]]
        if cats.size:
            rows[:, spec["column"]] = cats[rng.integers(0, cats.size, size=rows.shape[0])]
    return np.ascontiguousarray(rows[np.all(np.isfinite(rows), axis=1)])


def _self_check(est: Any, node: dict, arrays: dict[str, np.ndarray]) -> None:
    from udfs.plan import tree_exec

    rows = _probe_rows(node, arrays)
    methods = ["predict"] + (["predict_proba"] if node.get("proba") else [])
    for method in methods:
        want = getattr(est, method)(rows)
        got = tree_exec.prepare(node, arrays).run(rows, method)
        if not np.array_equal(np.asarray(want), got):
            raise _unsupported(est, f"the compiled plan's {method} differs from scikit-learn")
