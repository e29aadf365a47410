"""The demo's Spark half: a local session, tables in its catalog, scoring with Spark SQL."""

from __future__ import annotations

import click
import pandas as pd
from pyspark.sql import SparkSession

from udfs.demo.data import FEATURES
from udfs.signature import Signature
from udfs.spark import register_all, session
from udfs.spark.script import run_script
from udfs.store import StorePath


def start(store: StorePath) -> SparkSession:
    spark = session("udfs demo")
    register_all(spark, store=store)
    return spark


def load(spark: SparkSession, frames: dict[str, pd.DataFrame]) -> None:
    """Save each frame as a table in the session's persistent catalog."""
    for name, frame in frames.items():
        spark.createDataFrame(frame).write.mode("overwrite").saveAsTable(name)


def score(spark: SparkSession, signature: Signature, table: str, target: str) -> pd.DataFrame:
    """``CREATE TABLE target AS SELECT id, model(...) ...`` and return what it wrote."""
    args = ", ".join(f"`{name}`" for name in signature.feature_names)
    proba = f", {signature.name}_proba({args}) AS probability" if signature.has_proba else ""
    script = (
        f"DROP TABLE IF EXISTS {target};\n"
        f"CREATE TABLE {target} USING parquet AS\n"
        f"SELECT id, {signature.name}({args}) AS prediction{proba} FROM {table};"
    )
    run_script(spark, script, echo=lambda line: click.echo(f"    spark: {line.strip()}"))
    return spark.table(target).toPandas()


def explain_one(spark: SparkSession, store: StorePath, model: str, table: str) -> tuple:
    """One row of ``table`` and its ``<model>_explain`` (base value and contributions)."""
    from udfs.spark.explain import register_explain

    register_explain(spark, model, store=store)
    args = ", ".join(f"`{f}`" for f in FEATURES)
    row = spark.sql(
        f"SELECT id, {args}, {model}_explain({args}) AS why FROM {table} ORDER BY id LIMIT 1"
    ).first()
    return row["id"], {f: row[f] for f in FEATURES}, row["why"]
