"""How a registered model's bytes reach the executors: a broadcast, or on Spark Connect the
UDF itself or a session artifact.

A classic session broadcasts them: each executor fetches them once. A Spark Connect session
(``SparkSession.builder.remote(...)``) has no SparkContext and so no broadcast. There a model
up to :data:`INLINE_LIMIT` travels inside the UDF (:class:`Inline`); a larger one is uploaded
once as a session artifact (``spark.addArtifacts(file=True)``, streamed in chunks) that each
worker reads with ``SparkFiles.get`` (:class:`SessionFile`). ``benchmarks/spark_connect.py``
measured both: inside the UDF, the bytes are one gRPC message (refused beyond 128 MiB), held
twice by the server (a 58 MB plan ran a 1 GB server out of memory) and re-sent with every task
(+1 s a query for that plan), while for small models the two are alike. But Spark Connect does
not hand session artifacts to streaming queries' tasks, so small models, the common case, stay
inline, where streaming works.

Either way the Python worker keeps the loaded model in its cache, keyed by sha256 (``cache``),
so it is linked once per worker, not once per batch.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from udfs.errors import ConfigError
from udfs.signature import Signature
from udfs.store import StorePath, ensure_plan, resolve

INLINE_LIMIT = 16 * 2**20  # bytes: larger models go as session artifacts on Spark Connect


class Inline:
    """The bytes themselves, with a broadcast's ``.value`` so the UDF reads both the same way."""

    __slots__ = ("value",)

    def __init__(self, value: dict) -> None:
        self.value = value

    def __reduce__(self) -> tuple:
        return (Inline, (self.value,))


class SessionFile:
    """A model's bytes uploaded as a Spark Connect session artifact, with a broadcast's
    ``.value`` (read on the worker) so that the UDF reads both the same way."""

    __slots__ = ("kind", "name")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name  # the file's name among the session's artifacts: its sha256
        self.kind = kind  # "plan" or "artifact"

    @property
    def value(self) -> dict:
        from pyspark import SparkFiles

        path = Path(SparkFiles.get(self.name))
        if not path.is_file():
            # A task without the session's artifact state (a streaming query's) looks in the
            # session folders below the root; they hold the file once this worker fetched it.
            found = sorted(path.parent.glob(f"*/{self.name}"))
            if not found:
                raise ConfigError(
                    f"the model's bytes ({self.name}, a Spark Connect session artifact) are "
                    "not visible to this task: Spark Connect does not hand session artifacts "
                    "to streaming queries. Stream with a model under "
                    f"{INLINE_LIMIT // 2**20} MiB (shipped inside the UDF) or from a classic "
                    "session"
                )
            path = found[0]
        data = path.read_bytes()  # verified against the signature's sha256 when loaded
        return {"plan": None, "artifact": None, self.kind: data}

    def __reduce__(self) -> tuple:
        return (SessionFile, (self.name, self.kind))


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (the thin client, without a JVM)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def ship(spark: Any, blobs: dict) -> Any:
    """What the UDFs carry to reach ``blobs``: a Broadcast, an :class:`Inline` or a
    :class:`SessionFile` (see the module's docstring)."""
    if not is_connect(spark):
        return spark.sparkContext.broadcast(blobs)
    kind = "plan" if blobs.get("plan") is not None else "artifact"
    data = blobs[kind]
    if len(data) <= INLINE_LIMIT:
        return Inline(blobs)
    name = f"udfs-{hashlib.sha256(data).hexdigest()}.{kind}"
    with tempfile.TemporaryDirectory(prefix="udfs-ship-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            spark.addArtifacts(str(path), file=True)
        except Exception as exc:  # the same bytes registered again in this session: reuse them
            if "already exists" not in str(exc).lower().replace("_", " "):
                raise
    return SessionFile(name, kind)


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
