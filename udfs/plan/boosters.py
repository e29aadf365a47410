"""Compile XGBoost's and LightGBM's scikit-learn estimators into a trees node (save time only).

``XGBClassifier``, ``XGBRegressor``, ``LGBMClassifier`` and ``LGBMRegressor`` are read through
their public model dumps only: XGBoost's ``Booster.save_raw("json")``, LightGBM's
``Booster.dump_model()``. The node runs on the same kernels as scikit-learn's trees
(``udfs.plan.tree_exec``), with each library's own arithmetic:

- XGBoost casts every input to float32 and goes left when ``x < split_condition`` (float32), NaN
  (and, for sparse input, every absent entry) its node's default way. For float32 ``x``,
  ``x < t`` is ``x <= the largest float32 below t``, which the float32 kernel tests. The margin
  starts from the base score (in margin space, computed as XGBoost does in float32) and adds
  each tree's float32 leaf in order, rounded to float32 after every addition (``acc32``). The
  objective's transform (sigmoid, exp) runs in float32 with the C library's ``expf``, as in
  XGBoost; ``predict_proba`` is float32.
- LightGBM compares float64 ``x <= threshold``; a NaN goes the default way when the node's
  missing type is NaN, is read as 0.0 when it is None, and with missing type Zero, values within
  +-1e-35 go the default way too. Trees are summed in float64 from 0.0 in order; the binary
  sigmoid is ``1 / (1 + exp(-x))`` with the C library's exp, as scipy's expit.

Not compiled (the model keeps its pickle, the signature says why): multiclass and multi-output
models, categorical splits, DART and linear boosters, linear trees, custom objectives, and
objectives whose transform is not reproduced here.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

import numpy as np

from udfs.plan.base import PlanUnsupported
from udfs.plan.trees import TreeBuilder, classes_of

# The trees node layout for booster models: tree_exec refuses it before it knew these options
# (acc32, allow_inf, zero-as-missing nodes, the libraries' output rules).
BOOSTER_NODE_VERSION = 2

XGBOOST = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor")
LIGHTGBM = ("LGBMClassifier", "LGBMRegressor")

# XGBoost objectives: (transform of predict for regressors, base score -> margin).
_XGB_REGRESSION = {
    "reg:squarederror": ("identity32", None),
    "reg:squaredlogerror": ("identity32", None),
    "reg:pseudohubererror": ("identity32", None),
    "reg:absoluteerror": ("identity32", None),
    "reg:quantileerror": ("identity32", None),
    "reg:logistic": ("sigmoid32", 2),
    "count:poisson": ("exp32", 3),
    "reg:gamma": ("exp32", 3),
    "reg:tweedie": ("exp32", 3),
}
_LGB_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
_LGB_EXP = {"poisson", "gamma", "tweedie"}
_ZERO_MISSING = 2  # udfs.plan._kernels.ZERO_MISSING (a Node64 flag)


def library(est: Any) -> str | None:
    """``"xgboost"`` or ``"lightgbm"`` for an estimator this module compiles, else None."""
    name = type(est).__name__
    module = type(est).__module__.split(".")[0]
    if module == "xgboost" and name in XGBOOST:
        return "xgboost"
    if module == "lightgbm" and name in LIGHTGBM:
        return "lightgbm"
    return None


def compile_estimator(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """A ``{"op": "trees", ...}`` node and its arrays, checked against the library on probe rows.

    Raises PlanUnsupported for anything the executor cannot reproduce exactly.
    """
    lib = library(est)
    if lib == "xgboost":
        node, arrays = _compile_xgboost(est)
    elif lib == "lightgbm":
        node, arrays = _compile_lightgbm(est)
    else:
        raise _unsupported(est, "no plan for this estimator")
    node = {
        "op": "trees",
        "version": BOOSTER_NODE_VERSION,
        "estimator": type(est).__name__,
        "library": lib,
        "raw_order": "C",
        "categorical": [],
        **node,
    }
    _self_check(est, lib, node, arrays)
    return node, arrays


def _unsupported(est: Any, why: str) -> PlanUnsupported:
    name = type(est).__name__
    return PlanUnsupported(f"{name}: {why}", step=name)


def _reachable(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The node ids reachable from the root, in id order (pruned nodes stay in XGBoost's dump)."""
    seen = np.zeros(left.shape[0], dtype=bool)
    stack = [0]
    while stack:
        i = stack.pop()
        if seen[i]:
            raise ValueError("a node is reached twice: not a tree")
        seen[i] = True
        if left[i] >= 0:
            stack += [int(left[i]), int(right[i])]
    return np.flatnonzero(seen)


def _add_tree(builder: TreeBuilder, arrays: dict[str, np.ndarray], col: int) -> None:
    """Adds a tree given as node arrays (children -1 at leaves), dropping unreachable nodes."""
    keep = _reachable(arrays["left"], arrays["right"])
    new = np.full(arrays["left"].shape[0], -1, dtype=np.int64)
    new[keep] = np.arange(keep.size)
    left, right = arrays["left"][keep], arrays["right"][keep]
    is_leaf = left < 0
    builder.add(
        left=np.where(is_leaf, -1, new[np.where(is_leaf, 0, left)]),
        right=np.where(is_leaf, -1, new[np.where(is_leaf, 0, right)]),
        is_leaf=is_leaf,
        feature=arrays["feature"][keep],
        threshold=arrays["threshold"][keep],
        missing_left=arrays["missing_left"][keep],
        value=arrays["value"][keep].reshape(-1, 1),
        col=col,
        bitset=np.full(keep.size, -1, dtype=np.int64) if "bitset" in arrays else None,
    )


# ------------------------------------------------------------------ XGBoost


def _f32_unary(op: int, value: np.float32) -> np.float32:
    from udfs.plan import _kernels

    out = np.empty(1, dtype=np.float32)
    _kernels.f32_unary(op, np.array([value], dtype=np.float32), out)
    return out[0]


def _xgb_iterations(est: Any, n_iterations: int) -> int:
    """How many boosting rounds ``predict`` uses: ``best_iteration + 1`` after early stopping."""
    try:
        best = est.best_iteration
    except AttributeError:
        return n_iterations
    if best is None:
        return n_iterations
    return min(int(best) + 1, n_iterations)


def _compile_xgboost(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    if not hasattr(est, "n_features_in_"):
        raise _unsupported(est, "not fitted")
    try:
        booster = est.get_booster()
        model = json.loads(booster.save_raw(raw_format="json"))
        learner = model["learner"]
        booster_name = learner["gradient_booster"]["name"]
        objective = learner["objective"]["name"]
        param = learner["learner_model_param"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _unsupported(est, f"XGBoost model dump not recognized ({exc})") from exc
    missing = est.get_params().get("missing", np.nan)
    if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
        raise _unsupported(est, f"missing={missing!r} has no plan (only NaN)")
    if booster_name != "gbtree":
        raise _unsupported(est, f"booster {booster_name!r} has no plan (only gbtree)")
    gbtree = learner["gradient_booster"]["model"]
    n_features = int(est.n_features_in_)
    if int(param.get("num_feature", n_features)) != n_features:
        raise _unsupported(est, "the booster's feature count differs from the estimator's")
    if int(param.get("num_class", 0)) > 1:
        raise _unsupported(est, "multiclass models have no plan")
    if int(param.get("num_target", 1)) != 1:
        raise _unsupported(est, "multi-output models have no plan")
    if learner.get("feature_types") and any(t == "c" for t in learner["feature_types"]):
        raise _unsupported(est, "categorical features have no plan")
    classifier = type(est).__name__ in ("XGBClassifier", "XGBRFClassifier")
    if classifier:
        if objective != "binary:logistic":
            raise _unsupported(est, f"objective {objective!r} has no plan (binary:logistic)")
        if int(getattr(est, "n_classes_", 2)) != 2:
            raise _unsupported(est, "multiclass models have no plan")
        rule, margin_op = "gt05", 2
    elif objective in _XGB_REGRESSION:
        rule, margin_op = _XGB_REGRESSION[objective]
    else:
        raise _unsupported(est, f"objective {objective!r} has no plan")
    scores = str(param["base_score"]).strip("[]").split(",")
    if len(scores) != 1:
        raise _unsupported(est, "a vector base_score has no plan")
    base = np.float32(float(scores[0]))
    margin = base if margin_op is None else _f32_unary(margin_op, base)

    trees = gbtree["trees"]
    indptr = [int(i) for i in gbtree.get("iteration_indptr", range(len(trees) + 1))]
    n_trees = indptr[_xgb_iterations(est, len(indptr) - 1)]
    builder = TreeBuilder(1)
    for tree in trees[:n_trees]:
        _add_tree(builder, _xgb_tree_arrays(est, tree, n_features), 0)
    node = {
        "kind": 32,
        "n_features": n_features,
        "n_outputs": 1,
        "width": 1,
        "divisor": 0.0,
        "has_init": True,
        "acc32": True,
        "allow_inf": True,
        "input": {"dtype": "float32", "allow_nan": True, "allow_inf": True},
        "predict": rule,
        "proba": "sigmoid32" if classifier else None,
    }
    if classifier:
        node.update(classes_of(est))
    arrays = builder.arrays() if n_trees else _constant_tree(builder, n_features)
    arrays["init"] = np.array([margin], dtype=np.float32).astype(np.float64)
    return node, arrays


def _constant_tree(builder: TreeBuilder, n_features: int) -> dict[str, np.ndarray]:
    """A model without trees: one leaf worth 0 (adding +0.0 to the margin changes nothing...
    except -0.0, which XGBoost never starts from)."""
    builder.add(
        left=np.array([-1]),
        right=np.array([-1]),
        is_leaf=np.array([True]),
        feature=np.zeros(1, dtype=np.int64),
        threshold=np.zeros(1, dtype=np.float32),
        missing_left=np.ones(1, dtype=np.uint8),
        value=np.zeros((1, 1)),
        col=0,
    )
    return builder.arrays()


def _xgb_tree_arrays(est: Any, tree: dict, n_features: int) -> dict[str, np.ndarray]:
    try:
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        feature = np.asarray(tree["split_indices"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float64)
        default_left = np.asarray(tree["default_left"], dtype=np.uint8)
        split_type = np.asarray(tree.get("split_type") or np.zeros(left.size), dtype=np.int64)
        leaf_size = int(tree.get("tree_param", {}).get("size_leaf_vector", "1") or 1)
    except (KeyError, TypeError, ValueError) as exc:
        raise _unsupported(est, f"XGBoost tree dump not recognized ({exc})") from exc
    if leaf_size > 1:
        raise _unsupported(est, "vector leaves (multi-output trees) have no plan")
    if tree.get("categories_nodes") or np.any(split_type != 0):
        raise _unsupported(est, "categorical splits have no plan")
    if not (left.size == right.size == feature.size == cond.size == default_left.size):
        raise _unsupported(est, "XGBoost tree dump not recognized (array sizes differ)")
    internal = left >= 0
    if np.any((feature[internal] < 0) | (feature[internal] >= n_features)):
        raise _unsupported(est, "a split on a feature the estimator does not have")
    # The dump prints float32 values; parse them as float32 (exact for XGBoost's shortest
    # round-trip output; the self check and verification prove it on rows).
    with np.errstate(over="ignore"):
        cond32 = cond.astype(np.float32)
    # x < t  <=>  x <= (the largest float32 below t), for every float32 x that is not NaN.
    below = np.nextafter(cond32, np.float32(-np.inf))
    return {
        "left": left,
        "right": right,
        "feature": np.where(internal, feature, 0),
        "threshold": np.where(internal, below, np.float32(np.inf)).astype(np.float32),
        "missing_left": np.where(internal, default_left != 0, 1).astype(np.uint8),
        "value": np.where(internal, 0.0, cond32.astype(np.float64)),
    }


# ------------------------------------------------------------------ LightGBM


def _compile_lightgbm(est: Any) -> tuple[dict, dict[str, np.ndarray]]:
    if not hasattr(est, "n_features_in_"):
        raise _unsupported(est, "not fitted")
    params = est.get_params()
    if callable(params.get("objective")):
        raise _unsupported(est, "a custom objective has no plan")
    if params.get("linear_tree"):
        raise _unsupported(est, "linear trees have no plan")
    try:
        dump = est.booster_.dump_model()
        n_per_iteration = int(dump["num_tree_per_iteration"])
        objective = str(dump["objective"]).split()
        trees = dump["tree_info"]
        n_features = int(dump["max_feature_idx"]) + 1
        average = bool(dump.get("average_output", False))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _unsupported(est, f"LightGBM model dump not recognized ({exc})") from exc
    if n_per_iteration != 1 or int(dump.get("num_class", 1)) != 1:
        raise _unsupported(est, "multiclass models have no plan")
    if n_features != int(est.n_features_in_):
        raise _unsupported(est, "the booster's feature count differs from the estimator's")
    if not objective:
        raise _unsupported(est, "no objective in the model dump")
    name, options = objective[0], objective[1:]
    classifier = type(est).__name__ == "LGBMClassifier"
    if classifier:
        sigmoid = [o.split(":", 1)[1] for o in options if o.startswith("sigmoid:")]
        if name != "binary" or len(sigmoid) != 1 or float(sigmoid[0]) != 1.0:
            raise _unsupported(est, f"objective {' '.join(objective)!r} has no plan")
        rule, proba = "proba_argmax", "logit"
    elif name in _LGB_IDENTITY and "sqrt" not in options:
        rule, proba = "identity", None
    elif name in _LGB_EXP:
        rule, proba = "cexp", None
    else:
        raise _unsupported(est, f"objective {' '.join(objective)!r} has no plan")
    builder = TreeBuilder(1)
    for tree in trees:
        _add_tree(builder, _lgb_tree_arrays(est, tree, n_features), 0)
    if not trees:
        raise _unsupported(est, "a model without trees has no plan")
    node = {
        "kind": 64,
        "n_features": n_features,
        "n_outputs": 1,
        "width": 1,
        # rf boosting averages the trees: sum, then divide by the number of iterations.
        "divisor": float(len(trees)) if average else 0.0,
        "has_init": True,
        "acc32": False,
        "allow_inf": True,
        "input": {"dtype": "float64", "allow_nan": True, "allow_inf": True},
        "predict": rule,
        "proba": proba,
    }
    if classifier:
        node.update(classes_of(est))
    arrays = builder.arrays()
    arrays["init"] = np.zeros(1, dtype=np.float64)  # LightGBM sums into 0.0
    arrays["cat_bitsets"] = np.zeros(0, dtype=np.uint32)
    arrays["known_bitsets"] = np.zeros(n_features * 8, dtype=np.uint32)
    return node, arrays


def _lgb_tree_arrays(est: Any, tree: dict, n_features: int) -> dict[str, np.ndarray]:
    """One tree's nested dump as breadth-first node arrays."""
    rows: list[dict] = []
    queue = deque([tree.get("tree_structure")])
    left: list[int] = []
    right: list[int] = []
    while queue:
        item = queue.popleft()
        if not isinstance(item, dict):
            raise _unsupported(est, "LightGBM tree dump not recognized")
        rows.append(item)
        if "leaf_value" in item or "split_feature" not in item:
            left.append(-1)
            right.append(-1)
            continue
        base = len(rows) + len(queue)
        left.append(base)
        right.append(base + 1)
        queue.extend((item["left_child"], item["right_child"]))
    feature, threshold, missing, value = [], [], [], []
    for item in rows:
        if "split_feature" not in item:
            if "leaf_coeff" in item or "leaf_features" in item:
                raise _unsupported(est, "linear trees have no plan")
            feature.append(0)
            threshold.append(math.inf)
            missing.append(1)
            value.append(float(item["leaf_value"]))
            continue
        if item.get("decision_type") != "<=":
            raise _unsupported(est, "categorical splits have no plan")
        f, t = int(item["split_feature"]), float(item["threshold"])
        if not 0 <= f < n_features:
            raise _unsupported(est, "a split on a feature the estimator does not have")
        if not math.isfinite(t) or abs(t) >= 1e300:
            # The dump writes an infinite threshold as +-1e300: which one it was is lost.
            raise _unsupported(est, "a threshold at +-1e300 (infinite) has no plan")
        kind = item.get("missing_type")
        default_left = bool(item.get("default_left"))
        if kind == "NaN":
            flags = int(default_left)
        elif kind == "None":
            flags = int(t >= 0.0)  # NaN is read as 0.0: 0.0 <= t
        elif kind == "Zero":
            flags = int(default_left) | _ZERO_MISSING
        else:
            raise _unsupported(est, f"missing type {kind!r} has no plan")
        feature.append(f)
        threshold.append(t)
        missing.append(flags)
        value.append(0.0)
    return {
        "left": np.asarray(left, dtype=np.int64),
        "right": np.asarray(right, dtype=np.int64),
        "feature": np.asarray(feature, dtype=np.int64),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "missing_left": np.asarray(missing, dtype=np.uint8),
        "value": np.asarray(value, dtype=np.float64),
        "bitset": np.full(len(rows), -1, dtype=np.int64),
    }


# ------------------------------------------------------------------ self check


def _probe_rows(arrays: dict[str, np.ndarray], n_features: int, lib: str) -> np.ndarray:
    """Rows at and next to the model's own thresholds, plus NaN, zeros and infinities."""
    rng = np.random.default_rng(0)
    thr = arrays["threshold"].astype(np.float64)
    split = np.isfinite(thr)
    n = 64
    rows = rng.normal(0, 1, (n, n_features))
    if split.any():
        values = thr[split]
        if lib == "xgboost":
            values = np.nextafter(values.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        picks = rng.integers(0, values.size, size=rows.shape)
        rows = values[picks]
        rows[: n // 2] += rng.normal(0, 1e-3, (n // 2, n_features))
        rows[-8:] = np.nextafter(rows[-8:], np.inf)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[rng.random(rows.shape) < 0.05] = 0.0
    rows[0] = np.inf
    rows[1] = -np.inf
    rows[2] = 1e300
    return rows


def _self_check(est: Any, lib: str, node: dict, arrays: dict[str, np.ndarray]) -> None:
    """The plan's margins and outputs equal the library's own booster on probe rows."""
    from udfs.plan import tree_exec
    from udfs.plan.estimators import library_input

    rows = _probe_rows(arrays, node["n_features"], lib)
    prepared = tree_exec.prepare(node, arrays)
    inputs = library_input(lib, rows, type(est).__name__)
    raw = prepared.raw(inputs)[:, 0]
    if lib == "xgboost":
        booster = est.get_booster()
        n_iter = _xgb_iterations(est, booster.num_boosted_rounds())
        kwargs = {"validate_features": False, "iteration_range": (0, n_iter)}
        want_raw = booster.inplace_predict(rows, predict_type="margin", **kwargs)
        want = booster.inplace_predict(rows, predict_type="value", **kwargs)
        got_raw = raw.astype(np.float32)
        value = prepared.run(inputs, "predict_proba")[:, 1] if node["proba"] else None
        got = value if value is not None else prepared.run(inputs, "predict")
    else:
        want_raw = est.booster_.predict(rows, raw_score=True)
        want = est.booster_.predict(rows)
        got_raw = raw
        got = (
            prepared.run(inputs, "predict_proba")[:, 1]
            if node["proba"]
            else prepared.run(inputs, "predict")
        )
    # LightGBM's raw scores of an averaged (rf) model are the sum, before the division.
    if not node["divisor"] and not _same_bits(want_raw, got_raw):
        raise _unsupported(est, "the compiled plan's raw scores differ from the library's")
    if not _same_bits(want, got):
        raise _unsupported(est, "the compiled plan's outputs differ from the library's")


def _same_bits(want: Any, got: np.ndarray) -> bool:
    want = np.asarray(want)
    return (
        want.shape == got.shape
        and want.dtype == got.dtype
        and np.ascontiguousarray(want).tobytes() == np.ascontiguousarray(got).tobytes()
    )
