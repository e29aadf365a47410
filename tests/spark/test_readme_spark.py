"""The README's Spark SQL examples run against the session with the test models."""

import pytest

from tests.fixtures.models import as_records
from tests.fixtures.readme import blocks
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs.demo.data import FEATURES, customers
from udfs.spark.script import run_script

pytestmark = pytest.mark.spark


def test_readme_spark_sql_runs(spark):
    rows = customers(500, seed=3)[["id", *FEATURES]]
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).createOrReplaceTempView("customers")
    examples = [b for b in blocks("sql") if b.startswith("-- Spark SQL")]
    assert examples
    for sql in examples:
        results = run_script(spark, sql, echo=lambda _: None)
    assert spark.table("churn_scores").count() == 500
    assert sum(r["customers"] for r in results[-1].preview) == 500
