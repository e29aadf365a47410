"""Per-Python-worker model cache.

Spark pickles a UDF's closure but imports modules, so this module-level cache lives as long as
the Python worker does and serves every batch and task it runs: each model is unpickled once
per worker (and device), not once per batch.
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
    unpickling, no scikit-learn. With a GPU and an artifact, tree ensembles are converted to the
    GPU backend when it is installed and a CUDA device answers, else the CPU runs them.
    """
    key = (signature.sha256 or "", gpu)
    bundle = _models.get(key)
    if bundle is not None:
        _models.move_to_end(key)
        return bundle
    blobs = shipped()
    backend = "cpu"
    if gpu is not None and blobs.get("artifact") is not None:
        model, backend = _on_gpu(load_bytes(blobs["artifact"], signature), signature, gpu)
        bundle = ModelBundle(model, signature) if backend == "gpu" else None
    else:
        bundle = None
    if bundle is None and blobs.get("plan") is not None:
        bundle = ModelBundle(None, signature, load_plan(Plan.from_bytes(blobs["plan"]), signature))
        backend = "plan" if backend == "cpu" else backend
    if bundle is None:
        bundle = ModelBundle(load_bytes(blobs["artifact"], signature), signature)
    _models[key] = bundle
    while len(_models) > MAX_MODELS:
        _models.popitem(last=False)
    _record_load(key[0], gpu, backend)
    return bundle


def _on_gpu(model: object, signature: Signature, gpu: str) -> tuple[object, str]:
    """The model converted for GPU ``gpu``, or the model itself with the reason it stays on CPU."""
    try:
        from udfs.accel import trees
        from udfs.spark.device import torch_device

        if trees.gpu_candidate(model):
            return trees.convert(model, torch_device(gpu)), "gpu"
        reason = f"{type(model).__name__} has no GPU backend"
    except Exception as exc:  # a GPU problem must never stop scoring: the CPU path is exact
        reason = f"{type(exc).__name__}: {exc}"
    log.warning(
        "udfs: model '%s' scores on the CPU although GPU %s is assigned (%s)",
        signature.name,
        gpu,
        reason,
    )
    return model, "cpu-fallback"


def _record_load(sha256: str, gpu: str | None, backend: str) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a") as out:  # one short line per write: appends stay whole
            out.write(f"{os.getpid()} {sha256} gpu={gpu} {backend}\n")


def clear() -> None:
    """Forget every cached model (tests use it)."""
    _models.clear()
