"""Per-Python-worker model cache.

Spark pickles a UDF's closure but imports modules, so this module-level cache lives as long as
the Python worker does and serves every batch and task it runs: each model is loaded (its plan
linked, or its pickle unpickled when it has no plan) once per worker and device, not once per batch.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable

from udfs.bundle import ModelBundle, load_bytes, load_plan
from udfs.plan.format import Plan
from udfs.signature import Signature

log = logging.getLogger("udfs.spark")

# Bounded so that a long-lived worker serving many redeployed versions doesn't grow forever.
MAX_MODELS = 16
# If set, each load appends "<pid> <sha256> <device> <backend>" to this file (tests count loads).
LOAD_LOG_ENV = "UDFS_SPARK_LOAD_LOG"

_models: OrderedDict[tuple[str, str | None], ModelBundle] = OrderedDict()


def get(signature: Signature, shipped: Callable[[], dict], gpu: str | None = None) -> ModelBundle:
    """The cached model for ``signature.sha256`` on ``gpu`` (an address, or None for the CPU).

    ``shipped()`` gives what ``register`` broadcast: ``{"plan": bytes | None, "artifact":
    bytes | None}``. On a miss, the plan (when there is one) is verified and linked: no
    unpickling, no scikit-learn. With a GPU, a plan's tree ensemble runs on it through the GPU
    backend when that is installed and a CUDA device answers; otherwise, and for models without
    a plan (their pickle runs in scikit-learn), the CPU scores, with one log line saying why.
    """
    key = (signature.sha256 or "", gpu)
    bundle = _models.get(key)
    if bundle is not None:
        _models.move_to_end(key)
        return bundle
    blobs = shipped()
    if blobs.get("plan") is not None:
        bundle = ModelBundle(None, signature, load_plan(Plan.from_bytes(blobs["plan"]), signature))
        backend = "plan"
        if gpu is not None:
            bundle, backend = _on_gpu(bundle, gpu)
    else:
        bundle = ModelBundle(load_bytes(blobs["artifact"], signature), signature)
        backend = "cpu"
        if gpu is not None:
            _log_cpu(signature, gpu, "it has no scoring plan, which the GPU backend runs")
            backend = "cpu-fallback"
    _models[key] = bundle
    while len(_models) > MAX_MODELS:
        _models.popitem(last=False)
    _record_load(key[0], gpu, backend)
    return bundle


def _on_gpu(bundle: ModelBundle, gpu: str) -> tuple[ModelBundle, str]:
    """The bundle scoring its plan's trees on GPU ``gpu``, or itself with a log line saying why not."""
    try:
        from udfs.accel import trees
        from udfs.spark.device import torch_device

        reason = trees.unsupported_reason(bundle.plan)
        if reason is None:
            fast = trees.convert_plan(bundle.scorer, device=torch_device(gpu))
            return ModelBundle(fast, bundle.signature), "gpu"
    except Exception as exc:  # a GPU problem must never stop scoring: the CPU plan is exact
        reason = f"{type(exc).__name__}: {exc}"
    _log_cpu(bundle.signature, gpu, reason)
    return bundle, "cpu-fallback"


def _log_cpu(signature: Signature, gpu: str, reason: str) -> None:
    log.warning(
        "udfs: model '%s' scores on the CPU although GPU %s is assigned (%s)",
        signature.name,
        gpu,
        reason,
    )


def _record_load(sha256: str, gpu: str | None, backend: str) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a") as out:  # one short line per write: appends stay whole
            out.write(f"{os.getpid()} {sha256} gpu={gpu} {backend}\n")


def clear() -> None:
    """Forget every cached model (tests use it)."""
    _models.clear()
