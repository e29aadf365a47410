"""Register saved models as Spark SQL functions."""

from __future__ import annotations

from pyspark.sql import SparkSession

from udfs.spark.shipping import checked_blobs, ship
from udfs.spark.udf import make_udf
from udfs.store import StorePath, model_names


def register(
    spark: SparkSession, name: str, version: int | None = None, store: StorePath = None
) -> list[str]:
    """Register ``<name>`` (predict) and, for classifiers, ``<name>_proba`` as SQL functions.

    A model with a scoring plan ships the plan (data: executors never unpickle it, nor import
    scikit-learn); one without ships its pickled artifact. Either is checked on the driver first
    (sha256; for a pickle also library versions and unpickling), so a bad model fails here and
    not in the middle of a job. The bytes travel as a broadcast, or on a Spark Connect session
    inside the UDF (see ``shipping``). On a session whose tasks get GPUs nothing more travels:
    the GPU backend reads the plan's trees, so GPU executors never unpickle anything either.

    >>> register(spark, "churn")  # doctest: +SKIP
    ['churn', 'churn_proba']
    """
    signature, blobs = checked_blobs(name, version, store)
    # The bytes, not a driver-local path: executors on other machines get them too.
    shipped = ship(spark, blobs)
    spark.udf.register(name, make_udf(signature, shipped, "predict"))
    registered = [name]
    if signature.has_proba:
        spark.udf.register(f"{name}_proba", make_udf(signature, shipped, "predict_proba"))
        registered.append(f"{name}_proba")
    return registered


def register_all(spark: SparkSession, store: StorePath = None) -> list[str]:
    """Register the latest version of every model in the store; returns the function names."""
    return [fn for name in model_names(store) for fn in register(spark, name, store=store)]
