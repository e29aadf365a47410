"""Register saved models as Spark SQL functions."""

from __future__ import annotations

from pyspark.sql import SparkSession

from udfs.bundle import load_bytes
from udfs.spark.udf import make_udf
from udfs.store import StorePath, model_names, read_bundle_bytes, resolve


def register(
    spark: SparkSession, name: str, version: int | None = None, store: StorePath = None
) -> list[str]:
    """Register ``<name>`` (predict) and, for classifiers, ``<name>_proba`` as SQL functions.

    The model is checked on the driver first (sha256, library versions, unpickling), so a bad
    artifact fails here and not in the middle of a job.

    >>> register(spark, "churn")  # doctest: +SKIP
    ['churn', 'churn_proba']
    """
    artifact, signature = read_bundle_bytes(resolve(name, version, store))
    load_bytes(artifact, signature)
    # Broadcast, not a driver-local path: executors on other machines get the bytes too.
    shipped = spark.sparkContext.broadcast(artifact)
    spark.udf.register(name, make_udf(signature, shipped, "predict"))
    registered = [name]
    if signature.has_proba:
        spark.udf.register(f"{name}_proba", make_udf(signature, shipped, "predict_proba"))
        registered.append(f"{name}_proba")
    return registered


def register_all(spark: SparkSession, store: StorePath = None) -> list[str]:
    """Register the latest version of every model in the store; returns the function names."""
    return [fn for name in model_names(store) for fn in register(spark, name, store=store)]
