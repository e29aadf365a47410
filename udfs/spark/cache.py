"""Per-Python-worker model cache.

Spark pickles a UDF's closure but imports modules, so this module-level cache lives as long as
the Python worker does and serves every batch and task it runs: each model is unpickled once
per worker, not once per batch.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

from udfs.bundle import ModelBundle, load_bytes
from udfs.signature import Signature

# Bounded so that a long-lived worker serving many redeployed versions doesn't grow forever.
MAX_MODELS = 16
# If set, each load appends "<pid> <sha256>" to this file: tests count loads per worker with it.
LOAD_LOG_ENV = "UDFS_SPARK_LOAD_LOG"

_models: OrderedDict[str, ModelBundle] = OrderedDict()


def get(signature: Signature, artifact: Callable[[], bytes]) -> ModelBundle:
    """The cached model for ``signature.sha256``, loading it from ``artifact()`` on a miss."""
    key = signature.sha256 or ""
    bundle = _models.get(key)
    if bundle is not None:
        _models.move_to_end(key)
        return bundle
    bundle = ModelBundle(load_bytes(artifact(), signature), signature)
    _models[key] = bundle
    while len(_models) > MAX_MODELS:
        _models.popitem(last=False)
    _record_load(key)
    return bundle


def _record_load(sha256: str) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a") as log:  # one short line per write: appends stay whole
            log.write(f"{os.getpid()} {sha256}\n")


def clear() -> None:
    """Forget every cached model (tests use it)."""
    _models.clear()
