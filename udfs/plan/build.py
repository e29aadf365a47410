"""Compile a fitted model into a plan and prove it exact, or say why it has none (save time only).

Imports scikit-learn through ``compile``/``verify``: it runs where models are saved, deployed or
registered, never where they are scored.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from udfs.plan.base import PLAN_FORMAT_VERSION, PlanUnsupported
from udfs.plan.format import Plan
from udfs.signature import Signature

# Rows generated for a model saved before plans existed, whose training sample is not kept.
SYNTHETIC_ROWS = 64


def compile_verified(
    model: Any, signature: Signature, sample_columns: Sequence[Any]
) -> tuple[Plan | None, dict[str, Any]]:
    """The verified plan of ``model`` and the signature's ``plan`` entry, or (None, why not).

    Any failure, including a bug in a compiler, leaves the model on scikit-learn: a plan is an
    optimisation that must never stop a model from being saved.
    """
    try:
        from udfs.plan.compile import compile_model  # a scikit-learn release may break it
        from udfs.plan.verify import verify_plan

        # Compiling probes the fitted steps with arrays; what scikit-learn warns about then
        # (e.g. "X does not have valid feature names") says nothing about the user's model.
        # Verification makes hundreds of one-row calls: OpenMP pools (XGBoost, LightGBM, HGB)
        # would wake their threads for each, which on a busy machine costs ~30 ms a call.
        with warnings.catch_warnings(), _one_openmp_thread():
            warnings.simplefilter("ignore")
            plan = compile_model(model, signature)
            verify_plan(plan, model, signature, sample_columns)
    except PlanUnsupported as exc:
        return None, {"unsupported": exc.message}
    except Exception as exc:
        return None, {"unsupported": f"the plan compiler failed: {type(exc).__name__}: {exc}"}
    return plan, {"sha256": plan.sha256, "format_version": PLAN_FORMAT_VERSION}


def _one_openmp_thread() -> Any:
    """One OpenMP thread in every loaded runtime while verifying (results are per row)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on it; without it, just slower
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="openmp")


def sample_columns(sample: Any, signature: Signature) -> list[Any]:
    """The columns of a training sample (DataFrame or 2-D array) in signature order."""
    if hasattr(sample, "columns") and signature.input_kind == "dataframe":
        return [sample[name] for name in signature.feature_names]
    values = np.asarray(sample)
    return [values[:, i] for i in range(values.shape[1])]


def synthetic_columns(signature: Signature, rows: int = SYNTHETIC_ROWS) -> list[Any]:
    """Plausible columns for a model whose sample is gone: every known level, varied numbers.

    Verification adds its own edge rows (NULLs, extremes, unseen levels) to these.
    """
    rng = np.random.default_rng(0)
    columns: list[Any] = []
    for feature in signature.features:
        if feature.type == "double":
            values = rng.normal(0, 1, rows) * 10.0 ** rng.integers(-2, 4, rows)
            columns.append(np.round(values, int(rng.integers(0, 4))))
        elif feature.type == "bigint":
            columns.append(rng.integers(-5, 100, rows))
        elif feature.type == "boolean":
            columns.append(rng.integers(0, 2, rows).astype(bool))
        else:
            levels = list(feature.categories or ("a", "b", "c"))
            columns.append(np.array([levels[i % len(levels)] for i in range(rows)], dtype=object))
    return columns
