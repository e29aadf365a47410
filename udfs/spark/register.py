"""Register saved models as Spark SQL functions."""

from __future__ import annotations

from pyspark.sql import SparkSession

from udfs.bundle import load_bytes
from udfs.spark.shipping import ship
from udfs.spark.udf import make_udf
from udfs.store import StorePath, ensure_plan, model_names, resolve


def register(
    spark: SparkSession, name: str, version: int | None = None, store: StorePath = None
) -> list[str]:
    """Register ``<name>`` (predict) and, for classifiers, ``<name>_proba`` as SQL functions.

    A model with a scoring plan ships the plan (data: executors never unpickle it, nor import
    scikit-learn); one without ships its pickled artifact. Either is checked on the driver first
    (sha256; for a pickle also library versions and unpickling), so a bad model fails here and
    not in the middle of a job. The bytes travel as a broadcast, or on a Spark Connect session
    inside the UDF (see ``shipping``). On a session whose tasks get GPUs nothing more travels: the GPU
    backend reads the plan's trees, so GPU executors never unpickle anything either.

    >>> register(spark, "churn")  # doctest: +SKIP
    ['churn', 'churn_proba']
    """
    ref = resolve(name, version, store)
    signature = ensure_plan(ref)
    plan = ref.plan()
    artifact = None
    if plan is None:
        artifact = ref.artifact_path.read_bytes()
        load_bytes(artifact, signature)
    else:
        from udfs.plan.execute import PlanRunner

        PlanRunner(plan, signature)  # links: a plan this udfs cannot run fails here
    # The bytes, not a driver-local path: executors on other machines get them too.
    shipped = ship(spark, {"plan": None if plan is None else plan.to_bytes(), "artifact": artifact})
    spark.udf.register(name, make_udf(signature, shipped, "predict"))
    registered = [name]
    if signature.has_proba:
        spark.udf.register(f"{name}_proba", make_udf(signature, shipped, "predict_proba"))
        registered.append(f"{name}_proba")
    return registered


def register_all(spark: SparkSession, store: StorePath = None) -> list[str]:
    """Register the latest version of every model in the store; returns the function names."""
    return [fn for name in model_names(store) for fn in register(spark, name, store=store)]
