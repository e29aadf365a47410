"""How a registered model's bytes reach the executors: a broadcast, or the UDF itself.

A classic session broadcasts them: each executor fetches them once. A Spark Connect session
(``SparkSession.builder.remote(...)``) has no SparkContext and so no broadcast; there the bytes
travel inside the UDF's own payload, which the server keeps once per registered function and
ships as part of each stage's task binary (Spark broadcasts large task binaries itself).
Either way the Python worker keeps the loaded model in its cache, keyed by sha256 (``cache``),
so it is linked once per worker, not once per batch. benchmarks/spark_connect.py compares this
with ``spark.addArtifacts``.
"""

from __future__ import annotations

from typing import Any

from udfs.signature import Signature
from udfs.store import StorePath, ensure_plan, resolve


class Inline:
    """The bytes themselves, with a broadcast's ``.value`` so the UDF reads both the same way."""

    __slots__ = ("value",)

    def __init__(self, value: dict) -> None:
        self.value = value

    def __reduce__(self) -> tuple:
        return (Inline, (self.value,))


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (the thin client, without a JVM)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def ship(spark: Any, blobs: dict) -> Any:
    """What the UDFs carry to reach ``blobs``: a Broadcast, or :class:`Inline` on Connect."""
    if is_connect(spark):
        return Inline(blobs)
    return spark.sparkContext.broadcast(blobs)


def checked_blobs(name: str, version: int | None, store: StorePath) -> tuple[Signature, dict]:
    """The model's signature and the bytes its functions carry: the verified plan, or for a
    model without one its pickled artifact, checked here on the driver (sha256, library
    versions, unpickling), so that a bad model fails at registration and not in a job."""
    ref = resolve(name, version, store)
    signature = ensure_plan(ref)
    plan = ref.plan()  # sha256-checked
    if plan is None:
        from udfs.bundle import load_bytes

        artifact = ref.artifact_path.read_bytes()
        load_bytes(artifact, signature)
        return signature, {"plan": None, "artifact": artifact}
    from udfs.plan.execute import PlanRunner

    PlanRunner(plan, signature)  # links: a plan this udfs cannot run fails here
    return signature, {"plan": plan.to_bytes(), "artifact": None}
