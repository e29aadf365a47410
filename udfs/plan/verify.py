"""Prove a plan bit-identical to its scikit-learn model before anything uses it.

:func:`verify_plan` scores the sample and generated edge rows both ways, as ``udfs.scoring``
would hand them to the model (same coercion, same NULL policy), and requires:

- float outputs (regression values, probabilities) with the same dtype, shape and bytes;
- labels equal in value and type;
- the same failures: where sklearn raises on a batch, the plan raises on it too, and only there.

The sample is compared as one batch and in slices (1, 2 and 7 rows, which take other BLAS
paths); each edge row is compared as its own one-row batch, so a row sklearn rejects is checked
alone. There is no tolerance anywhere: the plan reproduces sklearn's operations on the same
batch, so even results BLAS makes batch-size dependent are expected to match exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs import scoring
from udfs.coercion import Column, as_series
from udfs.errors import UdfsError
from udfs.plan.base import PlanMismatch
from udfs.plan.execute import PlanRunner
from udfs.plan.format import Plan
from udfs.signature import Feature, Signature

_DOUBLE_EDGES = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-300,
    -1e-300,
    5e-324,
    1e300,
    -1e300,
    3.4028235e38,
    3.5e38,
    2.0**53 + 1,
    -(2.0**60),
    math.inf,
    -math.inf,
    math.nan,
)
_BIGINT_EDGES = (0, 1, -1, 2**24 + 1, 2**53 + 1, 2**62, -(2**62), 2**63 - 1, -(2**63))
_STRING_EDGES = ("udfs-unseen-level", "", " ", "x" * 300, "ünïcödé")
_SLICES = (1, 2, 7)


def verify_plan(
    plan: Plan, model: Any, signature: Signature, sample_columns: Sequence[Column]
) -> None:
    """Raise :class:`PlanMismatch` unless ``plan`` scores exactly like ``model``.

    ``sample_columns`` are the sample's feature columns in signature order, in any form
    ``udfs.scoring.prepare`` accepts (e.g. ``[sample[name] for name in signature.feature_names]``).
    """
    try:
        runner = PlanRunner(Plan.from_bytes(plan.to_bytes()), signature)
    except Exception as exc:
        raise PlanMismatch(
            f"model '{signature.name}': the plan cannot be loaded: {exc}", step="plan"
        ) from exc
    methods = ["predict", *(["predict_proba"] if signature.has_proba else [])]
    frame = pd.DataFrame(
        {
            f.name: as_series(c).reset_index(drop=True)
            for f, c in zip(signature.features, sample_columns, strict=True)
        }
    )
    checks = 0
    for label, batch in _batches(frame, signature):
        for method in methods:
            checks += _compare(runner, model, signature, batch, method, label)
    if checks == 0:
        raise PlanMismatch(
            f"model '{signature.name}': no sample row could be scored, nothing was verified",
            step="plan",
        )


def _batches(frame: pd.DataFrame, signature: Signature) -> Iterator[tuple[str, list[list]]]:
    """(label, columns) for the whole sample, its slices, then one-row edge batches."""
    rows = frame.astype(object).where(frame.notna(), None)
    columns = [rows[f.name].tolist() for f in signature.features]
    yield "the sample", columns
    for size in _SLICES:
        if len(rows) > size:
            yield f"the sample's first {size} rows", [c[:size] for c in columns]
    base = [c[0] for c in columns]
    for i, feature in enumerate(signature.features):
        for value in _edge_values(feature, columns[i]):
            row = list(base)
            row[i] = value
            yield f"an edge row ({feature.name}={value!r})", [[v] for v in row]


def _edge_values(feature: Feature, seen: list) -> list:
    present = [v for v in seen if v is not None]
    values: list = [None]
    if feature.type == "double":
        numbers = sorted({float(v) for v in present})
        values += list(_DOUBLE_EDGES) + numbers[:4] + numbers[-2:]
    elif feature.type == "bigint":
        numbers = sorted({int(v) for v in present})
        values += list(_BIGINT_EDGES) + numbers[:4] + numbers[-2:]
    elif feature.type == "boolean":
        values += [True, False]
    else:
        levels = list(feature.categories or ()) or sorted({str(v) for v in present})[:20]
        values += levels + list(_STRING_EDGES)
    return values


def _compare(
    runner: PlanRunner,
    model: Any,
    signature: Signature,
    columns: list[list],
    method: str,
    label: str,
) -> int:
    """Score one batch both ways; return 1 if rows were compared, 0 if none were valid."""
    try:
        batch = scoring.prepare(signature, columns)
    except UdfsError:
        return 0  # coercion refuses it before any model runs: nothing to compare
    if not len(batch.X):
        return 0
    plan_columns = _plan_columns(batch.X, signature)
    want, want_error = _run(lambda: getattr(model, method)(batch.X))
    got, got_error = _run(lambda: getattr(runner, method)(plan_columns))
    where = f"model '{signature.name}', {method} on {label}"
    if want_error or got_error:
        if bool(want_error) != bool(got_error):
            raise PlanMismatch(
                f"{where}: scikit-learn {'raised ' + want_error if want_error else 'returned'}"
                f" but the plan {'raised ' + got_error if got_error else 'returned'}",
                step="plan",
                output=method,
                expected=want_error or _show(want),
                got=got_error or _show(got),
            )
        return 1
    _same(np.asarray(want), np.asarray(got), where, method)
    return 1


def _plan_columns(X: pd.DataFrame | np.ndarray, signature: Signature) -> list[np.ndarray]:
    if isinstance(X, pd.DataFrame):
        return [X[name].to_numpy() for name in signature.feature_names]
    return [X[:, i] for i in range(X.shape[1])]


def _run(call: Any) -> tuple[Any, str]:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return call(), ""
    except Exception as exc:  # any failure counts; the plan must fail the same batches
        return None, f"{type(exc).__name__}: {exc}"


def _show(value: Any) -> str:
    return "" if value is None else repr(value)


def _same(want: np.ndarray, got: np.ndarray, where: str, method: str) -> None:
    if want.shape != got.shape or want.dtype.kind != got.dtype.kind:
        raise PlanMismatch(
            f"{where}: scikit-learn returned {want.dtype} {want.shape}, "
            f"the plan {got.dtype} {got.shape}",
            step="plan",
            output=method,
        )
    if want.dtype.kind == "f":
        if want.dtype != got.dtype:
            raise PlanMismatch(f"{where}: dtype {want.dtype} vs {got.dtype}", step="plan")
        a = np.ascontiguousarray(want).view(np.uint8).reshape(len(want), -1)
        b = np.ascontiguousarray(got).view(np.uint8).reshape(len(got), -1)
        differs = (a != b).any(axis=1)
    else:
        differs = np.array(
            [
                x != y or type(x) is not type(y)
                for x, y in zip(want.tolist(), got.tolist(), strict=True)
            ],
            dtype=bool,
        )
    if differs.any():
        row = int(np.flatnonzero(differs)[0])
        raise PlanMismatch(
            f"{where}: row {row} differs: scikit-learn {want[row]!r}, plan {got[row]!r} "
            f"({int(differs.sum())} of {len(differs)} rows differ)",
            step="plan",
            output=method,
            row=row,
            expected=repr(want[row]),
            got=repr(got[row]),
        )
