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
