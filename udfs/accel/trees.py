"""A scoring plan's tree ensemble as PyTorch tensors, so that the GPU of a Spark task scores it.

There is one tree representation: the plan's ``trees`` node and arrays (:mod:`udfs.plan.trees`).
This backend reads them, never a pickled scikit-learn model. Everything before and after the trees
stays on the CPU, exactly as :class:`~udfs.plan.execute.PlanRunner` does it:

- the plan's transform (imputers, encoders, scalers, ColumnTransformer) runs in the runner itself,
  then the estimator's input is cast and checked as the runner casts and checks it;
- the device walks every tree at once, one gather per tree level over a (rows x trees) tensor of
  node indices, with the plan's own split rule: a float32 model compares float32 x with the float32
  threshold the compiler stored, a float64 model (HistGradientBoosting) compares float64 with
  float64, and NaN follows ``missing_left``;
- the leaf values are added to the initial score tree by tree, in model order, in float64, as the
  plan's C kernel adds them; the forest average, the link (sigmoid, softmax, exp) and the labels are
  computed on the CPU with the plan's own formulas. So the results equal the runner's bit for bit
  (float64 addition is the same on every IEEE device; the tests measure a difference of 0).

A batch the plan refuses (its transform raises, NaN where the model refuses it, infinity, a value
too large for float32, ...) is handed to the runner as is, so the user gets its error unchanged.
Categorical HistGradientBoosting splits are not run here: :func:`unsupported_reason` says so and the
caller keeps the CPU plan.

Importing this module never imports torch; :func:`convert_plan` does.

>>> fast = convert_plan(bundle.scorer, device="cuda:0")  # doctest: +SKIP
>>> scoring.predict_proba(fast, bundle.signature, columns)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.errors import ConfigError
from udfs.plan import tree_exec

log = logging.getLogger("udfs.accel")

INSTALL_HINT = "pip install 'udfs[gpu]'"
# Rows x trees per traversal chunk: bounds each index tensor to ~32 MiB whatever the batch size.
CHUNK_ELEMENTS = 1 << 22
# The "trees" node layout (udfs.plan.trees.TREES_NODE_VERSION) this backend reads.
NODE_VERSION = 1
_PROBA_LINKS = (None, "identity", "logit", "halflogit", "softmax")
_PREDICT_RULES = ("identity", "exp", "argmax", "ge0", "gt0")


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


def _spec(plan: Any) -> tuple[dict, dict]:
    """(the plan's estimator node, its trees node); empty dicts for anything else."""
    estimator = plan.spec.get("estimator") or {}
    trees = estimator.get("trees") if estimator.get("op") == "trees" else None
    return estimator, trees or {}


def _tree_arrays(plan: Any, estimator: dict) -> dict[str, np.ndarray]:
    prefix = estimator["prefix"]
    return {k[len(prefix) :]: v for k, v in plan.arrays.items() if k.startswith(prefix)}


def unsupported_reason(plan: Any) -> str | None:
    """Why the GPU backend cannot run ``plan`` (a Plan or a PlanRunner); None when it can.

    >>> unsupported_reason(udfs.load_model("churn").plan)  # doctest: +SKIP
    'LogisticRegression is not a tree ensemble'
    """
    plan = getattr(plan, "plan", plan)
    estimator, node = _spec(plan)
    what = estimator.get("where") or plan.spec.get("model_class", "the model")
    if not node:
        name = str(what).rsplit(": ", 1)[-1]
        return f"{name} is not a tree ensemble"
    if node.get("version") != NODE_VERSION or node.get("kind") not in (32, 64):
        return (
            f"{what}: trees node version {node.get('version')!r} (kind {node.get('kind')!r}) "
            f"is not the one this GPU backend reads ({NODE_VERSION})"
        )
    bitset = _tree_arrays(plan, estimator).get("bitset")
    if node.get("categorical") or (bitset is not None and bool(np.any(bitset >= 0))):
        return f"{what} has categorical splits, which the GPU backend does not run"
    if node.get("proba") not in _PROBA_LINKS or node.get("predict") not in _PREDICT_RULES:
        return f"{what}: link {node.get('proba')!r} / rule {node.get('predict')!r} is not known"
    return None


def gpu_candidate(plan: Any) -> bool:
    """True when :func:`convert_plan` accepts ``plan`` (libraries aside: see :func:`available`)."""
    return unsupported_reason(plan) is None


# The plan's own label and link helpers: the GPU path must rebuild labels and softmax exactly
# as the CPU plan does.
_classes = tree_exec.classes
_softmax = tree_exec.softmax


class PlanTrees:
    """A plan whose trees run on a torch device: a drop-in for its :class:`PlanRunner`.

    ``predict`` and ``predict_proba`` take the per-feature arrays ``udfs.scoring`` hands a plan
    (``is_plan``), so the object can serve as ``ModelBundle.scorer``.
    """

    #: How ``udfs.scoring`` tells a plan from a scikit-learn estimator.
    is_plan = True

    def __init__(self, runner: Any, device: str = "cpu") -> None:
        reason = unsupported_reason(runner.plan)
        if reason:
            raise ConfigError(f"cannot run this plan on the GPU: {reason}")
        torch = self._torch = _import_torch()
        self.device = _device(torch, device)
        self.runner = runner
        self.plan, self.signature = runner.plan, runner.signature
        self.has_proba = runner.has_proba
        estimator, node = _spec(runner.plan)
        arrays = _tree_arrays(runner.plan, estimator)
        self.kind = int(node["kind"])
        self.n_features = int(node["n_features"])
        self.n_outputs = int(node["n_outputs"])
        self.width = int(node["width"])
        self.n_trees = len(arrays["root"])
        self.depth = int(arrays["depth"].max()) if self.n_trees else 0
        self._cols = [int(c) for c in arrays["col"]]
        self._init = np.asarray(arrays["init"], np.float64) if node["has_init"] else None
        self._divisor = float(node["divisor"])
        # The estimator's cast and checks, then the kernel's: float32 models refuse infinity.
        self._cast = np.dtype(estimator["cast"])
        self._nan_ok = bool(estimator["nan_ok"]) and (
            self.kind == 64 or bool(node["input"]["allow_nan"])
        )
        self._inf_ok = bool(estimator["inf_ok"]) and self.kind == 64
        self._proba, self._predict = node.get("proba"), node["predict"]
        self._raw_order = node.get("raw_order", "C")
        self.classes = _classes(node)
        # What the kernel compares: float32(x) with float32 thresholds, or float64 with float64.
        self._real = np.dtype(np.float32 if self.kind == 32 else np.float64)
        n_nodes = len(arrays["feature"])
        host = {
            "root": arrays["root"].astype(np.int64),
            "feature": arrays["feature"].astype(np.int64),
            "threshold": arrays["threshold"].astype(self._real),
            "left": arrays["left"].astype(np.int64),
            "missing_left": arrays["missing_left"].astype(bool),
            "value": arrays["value"].astype(np.float64).reshape(n_nodes, self.width),
        }
        self._t = {k: torch.as_tensor(v, device=self.device) for k, v in host.items()}
        self._warned = False

    # ------------------------------------------------------------------ the scorer's surface

    def transform(self, columns: Sequence[np.ndarray]) -> Any:
        """The final estimator's input, from the runner (CPU)."""
        return self.runner.transform(columns)

    def predict(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """``model.predict`` on these rows, as the runner returns it."""
        raw = self._device_raw(columns)
        return self.runner.predict(columns) if raw is None else self._finish(raw, "predict")

    def predict_proba(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """``model.predict_proba`` on these rows, as the runner returns it."""
        raw = self._device_raw(columns) if self._proba is not None else None
        if raw is None:  # refused, or no predict_proba: the runner raises as it raises
            return self.runner.predict_proba(columns)
        return self._finish(raw, "predict_proba")

    def predict_both(self, columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predict(columns), predict_proba(columns))`` from one walk of the trees; the
        probabilities are None for a model without ``predict_proba``."""
        if not self.has_proba or self._proba is None:
            return self.predict(columns), None
        raw = self._device_raw(columns)
        if raw is None:
            both = getattr(self.runner, "predict_both", None)
            if both is not None:
                return both(columns)
            return self.runner.predict(columns), self.runner.predict_proba(columns)
        return self._finish(raw, "predict"), self._finish(raw, "predict_proba")

    def row_scorer(self) -> Any:
        """The plan's one-row program, on the CPU: one row is not worth a device round trip."""
        return self.runner.row_scorer()

    def row(self, values: Sequence[Any], method: str) -> Any:
        """``method`` on one row of Python values, by the runner (CPU)."""
        return self.runner.row(values, method)

    # ------------------------------------------------------------------ the work

    def _device_raw(self, columns: Sequence[np.ndarray]) -> np.ndarray | None:
        """The raw scores from the device; None when the runner must score (or refuse) the batch."""
        checked = self._values(columns)
        if checked is None:  # refused (or unusual): the runner says what it says
            return None
        try:
            return self.raw(*checked)
        except RuntimeError as exc:  # e.g. CUDA out of memory: the CPU plan is exact
            if not self._warned:
                self._warned = True
                log.warning(
                    "udfs: model '%s' scores a batch on the CPU: %s on %s (%s)",
                    self.signature.name,
                    type(exc).__name__,
                    self.device,
                    exc,
                )
            return None

    def _values(self, columns: Sequence[np.ndarray]) -> tuple[np.ndarray, bool] | None:
        """The estimator's input cast as the plan casts it; None when the runner must decide."""
        from udfs.plan.ops import Frame, Sparse, frame_values

        try:
            Xt = self.runner.transform(columns)
            with np.errstate(over="ignore", invalid="ignore"):  # too large becomes inf: refused
                if isinstance(Xt, Sparse):
                    values = Xt.values.astype(self._cast)
                elif isinstance(Xt, Frame):
                    values = frame_values(Xt, self._cast)
                elif isinstance(Xt, np.ndarray):
                    values = np.asarray(Xt, dtype=self._cast)
                else:
                    return None
                values = np.ascontiguousarray(values, dtype=self._real)
        except Exception:
            return None
        if values.ndim != 2 or values.shape[1] != self.n_features:
            return None
        has_nan = bool(np.isnan(values).any())
        if has_nan and not self._nan_ok:
            return None
        if not self._inf_ok and bool(np.isinf(values).any()):
            return None
        return values, has_nan

    def raw(self, values: np.ndarray, has_nan: bool = True) -> np.ndarray:
        """(rows, outputs) raw scores: the initial score plus every tree, forest-averaged."""
        torch = self._torch
        out = np.empty((len(values), self.n_outputs), dtype=np.float64)
        step = max(1, CHUNK_ELEMENTS // max(1, self.n_trees * self.width))
        with torch.inference_mode():
            for start in range(0, len(values), step):
                x = torch.from_numpy(values[start : start + step]).to(self.device)
                out[start : start + step] = self._walk(x, has_nan).cpu().numpy()
        if self._divisor:
            out /= self._divisor  # on the CPU: a device may multiply by the reciprocal
        return out

    def _walk(self, x: Any, has_nan: bool) -> Any:
        torch, t = self._torch, self._t
        rows = len(x)
        node = t["root"].expand(rows, -1)  # (rows, trees): every tree at its root
        for _ in range(self.depth):  # a leaf is its own left child: walking on stays there
            seen = x.gather(1, torch.take(t["feature"], node))
            left = seen <= torch.take(t["threshold"], node)
            if has_nan:
                left |= seen.isnan() & torch.take(t["missing_left"], node)
            node = torch.take(t["left"], node) + ~left  # the right child is left + 1
        leaves = t["value"].index_select(0, node.reshape(-1)).reshape(rows, -1, self.width)
        out = torch.empty((rows, self.n_outputs), dtype=torch.float64, device=self.device)
        first = 0
        if self._init is not None:
            out.copy_(torch.as_tensor(self._init, device=self.device).expand(rows, -1))
        elif self.n_trees:  # no initial score: the first tree fills every output
            out.copy_(leaves[:, 0])
            first = 1
        # Tree by tree, in model order: the plan's (and scikit-learn's) summation order.
        for i in range(first, self.n_trees):
            c = self._cols[i]
            out[:, c : c + self.width] += leaves[:, i]
        return out

    def _finish(self, raw: np.ndarray, method: str) -> np.ndarray:
        """The plan's link and decision rule (``udfs.plan.tree_exec``), on the CPU."""
        if method == "predict_proba":
            if self._proba == "identity":
                return raw
            if self._proba in ("logit", "halflogit"):
                from udfs.plan.estimators import expit  # C library exp, as the plan's kernel

                scale = 2.0 if self._proba == "halflogit" else 1.0
                out = np.empty((raw.shape[0], 2))
                out[:, 1] = expit(scale * raw.reshape(-1))
                out[:, 0] = 1 - out[:, 1]
                return out
            return _softmax(raw, self._raw_order)
        rule = self._predict
        if rule == "identity":
            return raw.reshape(-1)
        if rule == "exp":
            return np.exp(raw.reshape(-1))
        if rule == "argmax":
            encoded = np.argmax(raw, axis=1)
        elif rule == "ge0":
            encoded = (raw.reshape(-1) >= 0).astype(np.intp)
        else:
            encoded = (raw.reshape(-1) > 0).astype(np.intp)
        return self.classes.take(encoded)


def convert_plan(source: Any, signature: Any = None, device: str = "cpu") -> PlanTrees:
    """The plan's trees on ``device``, behind the plan's own transform and checks.

    ``source`` is a :class:`~udfs.plan.execute.PlanRunner` (e.g. ``ModelBundle.scorer``) or a
    :class:`~udfs.plan.format.Plan` with its ``signature``. Raises ConfigError for a plan the
    backend cannot run (:func:`unsupported_reason`), a missing torch or an unusable device.

    >>> convert_plan(plan, signature, "cuda:0").predict_proba(columns)  # doctest: +SKIP
    """
    runner = source
    if not getattr(source, "is_plan", False):
        if signature is None:
            raise ConfigError("convert_plan needs the signature to run a Plan")
        from udfs.plan.execute import PlanRunner

        runner = PlanRunner(source, signature)
    return PlanTrees(runner, device)
