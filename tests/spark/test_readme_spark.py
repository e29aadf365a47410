"""The README's Spark SQL examples run against the session with the test models."""

import pytest
from pyspark.sql.types import LongType, StructField, StructType

from tests.fixtures.models import as_records
from tests.fixtures.readme import blocks
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs import spark as udfs_spark
from udfs.demo.data import FEATURES, customers
from udfs.spark.script import run_script

pytestmark = pytest.mark.spark


def test_readme_spark_sql_runs(spark, model_store):
    rows = customers(500, seed=3)[["id", *FEATURES]]
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).createOrReplaceTempView("customers")
    history = customers(300, seed=5)  # labelled rows for the evaluation example
    labelled = StructType([*FEATURE_SCHEMA.fields, StructField("churned", LongType())])
    records = as_records(history[["id", *FEATURES]])
    data = [(*r, int(c)) for r, c in zip(records, history["churned"], strict=True)]
    spark.createDataFrame(data, labelled).createOrReplaceTempView("churn_history")
    udfs_spark.register_evaluate(spark, "churn", store=model_store)
    examples = [b for b in blocks("sql") if b.startswith("-- Spark SQL")]
    assert examples
    results = [r for sql in examples for r in run_script(spark, sql, echo=lambda _: None)]
    assert spark.table("churn_scores").count() == 500
    assert sum(r["customers"] for r in results[-2].preview) == 500
    metrics = {r["metric"]: r["value"] for r in results[-1].preview}
    assert metrics["rows"] == metrics["evaluated"] == 300
