"""Run a scoring plan with numpy: :class:`PlanRunner` (no scikit-learn, scipy or pandas).

``PlanRunner(plan, signature)`` links the plan's nodes into Python closures once; ``predict`` and
``predict_proba`` then take the per-feature arrays ``udfs.scoring.prepare`` builds for the valid
rows (float64 doubles, int64 or float64 bigints, bool or object booleans, object strings with
``np.nan``) and return what ``model.predict(batch.X)`` / ``model.predict_proba(batch.X)``
return on the same rows, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from udfs.errors import InputError
from udfs.plan import steps
from udfs.plan.base import PlanUnsupported
from udfs.plan.estimators import Linear, Trees
from udfs.plan.format import Plan
from udfs.plan.ops import Frame
from udfs.signature import Signature

if TYPE_CHECKING:
    from udfs.plan.row import RowPlan

_STEP_BUILDERS: dict[str, Callable[[dict, dict], steps.Step]] = {
    "passthrough": steps.build_passthrough,
    "imputer": steps.build_imputer,
    "scaler": steps.build_scaler,
    "encoder": steps.build_encoder,
}


def _build_step(node: dict, arrays: dict[str, np.ndarray]) -> steps.Step:
    op = node["op"]
    if op == "pipeline":
        return steps.build_pipeline_steps([_build_step(s, arrays) for s in node["steps"]])
    if op == "column_transformer":
        parts = [_build_step(p["node"], arrays) for p in node["parts"]]
        return steps.build_column_transformer(node, arrays, parts)
    builder = _STEP_BUILDERS.get(op)
    if builder is None:
        raise PlanUnsupported(f"this udfs cannot run plan step {op!r}", step=op)
    return builder(node, arrays)


def _build_estimator(node: dict, arrays: dict[str, np.ndarray]) -> Linear | Trees:
    if node["op"] == "linear":
        return Linear(node, arrays)
    if node["op"] == "trees":
        prefix = node["prefix"]
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        return Trees(node, own)
    raise PlanUnsupported(f"this udfs cannot run plan estimator {node['op']!r}", step=node["op"])


class PlanRunner:
    """A plan linked for one signature; call :meth:`predict` / :meth:`predict_proba` per batch."""

    #: How ``udfs.scoring`` tells a plan from a scikit-learn estimator.
    is_plan = True

    def __init__(self, plan: Plan, signature: Signature) -> None:
        spec = plan.spec
        planned = [(f["name"], f["type"]) for f in spec["features"]]
        given = [(f.name, f.type) for f in signature.features]
        if planned != given:
            raise InputError(
                f"model '{signature.name}': the plan was compiled for features {planned}, "
                f"the signature has {given}",
                model=signature.name,
            )
        self.plan = plan
        self.signature = signature
        self.names = tuple(signature.feature_names)
        self.array_input = spec["input_kind"] == "array"
        self._transform = _build_step(spec["transform"], plan.arrays)
        self._estimator = _build_estimator(spec["estimator"], plan.arrays)
        self.has_proba = bool(spec["has_proba"])
        self._row: RowPlan | None = None

    def _input(self, columns: Sequence[np.ndarray]) -> Any:
        if len(columns) != len(self.names):
            raise InputError(
                f"model '{self.signature.name}': {len(columns)} columns for "
                f"{len(self.names)} features",
                model=self.signature.name,
            )
        if self.array_input:
            # udfs.scoring.prepare: np.column_stack of float64 columns (one copy, same values).
            n = len(columns[0]) if columns else 0
            X = np.empty((n, len(columns)), dtype=np.float64)
            for j, column in enumerate(columns):
                X[:, j] = np.asarray(column)
            return X
        return Frame(tuple(np.asarray(c) for c in columns), self.names)

    def transform(self, columns: Sequence[np.ndarray]) -> Any:
        """The final estimator's input (a Frame, an ndarray or ops.Sparse), for debugging."""
        return self._transform(self._input(columns))

    def predict(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """``model.predict`` on these rows: labels for classifiers, float64 for regressors."""
        return self._estimator.predict(self._transform(self._input(columns)))

    def predict_proba(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """``model.predict_proba`` on these rows: (rows, classes) float64."""
        if not self.has_proba:
            raise InputError(
                f"model '{self.signature.name}' has no predict_proba", model=self.signature.name
            )
        return self._estimator.predict_proba(self._transform(self._input(columns)))

    def predict_both(self, columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predict(columns), predict_proba(columns))`` with one transform and one decision
        function (one walk of the trees), each bit-identical to its own call.

        The probabilities are None for a model without ``predict_proba``.
        """
        X = self._transform(self._input(columns))
        if not self.has_proba:
            return self._estimator.predict(X), None
        return self._estimator.both(X)

    def row_scorer(self) -> RowPlan:
        """This plan fused for one row at a time (built once, then cached): see
        :class:`udfs.plan.row.RowPlan`. ``row_scorer().predict(values)`` equals
        ``predict(one_row_arrays)[0]`` for the arrays ``udfs.fastpath`` builds from ``values``."""
        row = self._row
        if row is None:
            from udfs.plan.row import RowPlan

            row = self._row = RowPlan(self)
        return row

    def row(self, values: Sequence[Any], method: str) -> Any:
        """``method`` ("predict" or "predict_proba") on one row of Python values, in signature
        order: ``float`` (double), ``int`` (bigint), ``bool``, ``str``, ``None`` (NULL)."""
        return self.row_scorer().score(values, method)
