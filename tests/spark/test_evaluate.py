"""udfs.spark.evaluate and <name>_evaluate: sklearn.metrics' values, NULLs counted."""

from __future__ import annotations

import pytest
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from tests.core.test_evaluate import assert_metrics, labelled_rows, reference
from tests.fixtures.postgres import python_rows
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs import spark as udfs_spark

pytestmark = pytest.mark.spark

SCHEMA = StructType(
    [
        *FEATURE_SCHEMA.fields,
        StructField("churned", LongType()),
        StructField("segment", StringType()),
        StructField("spend", DoubleType()),
    ]
)


@pytest.fixture(scope="module")
def rows():
    return labelled_rows()


@pytest.fixture(scope="module")
def labelled(spark, rows):
    frame = spark.createDataFrame(python_rows(rows[SCHEMA.fieldNames()]), SCHEMA)
    frame.createOrReplaceTempView("labelled")
    return frame


def test_python_api_equals_sklearn(spark, labelled, rows, trained, model_store) -> None:
    got = udfs_spark.evaluate(spark, "churn", labelled, "churned", store=model_store)
    assert list(got.columns) == ["metric", "value"]
    metrics = list(zip(got["metric"], got["value"].astype(object), strict=True))
    assert_metrics(metrics, reference(trained["churn"], rows))
    assert dict(metrics)["null_predictions"] == 2


def test_sql_table_function_equals_sklearn(spark, labelled, rows, trained, model_store) -> None:
    assert udfs_spark.register_evaluate(spark, "segment", store=model_store) == "segment_evaluate"
    got = spark.sql("SELECT * FROM segment_evaluate(TABLE(labelled), 'Segment')").collect()
    assert_metrics([tuple(r) for r in got], reference(trained["segment"], rows))
    with pytest.raises(Exception, match="label column 'segmnt' is not a column"):
        spark.sql("SELECT * FROM segment_evaluate(TABLE(labelled), 'segmnt')").collect()


def test_spark_connect(connect, rows, trained, model_store) -> None:
    """Both forms on a Connect session: no SparkContext, the model inside the UDTF."""
    frame = connect.createDataFrame(python_rows(rows[SCHEMA.fieldNames()]), SCHEMA)
    frame.createOrReplaceTempView("labelled")
    got = udfs_spark.evaluate(connect, "spend", frame, "spend", store=model_store)
    metrics = list(zip(got["metric"], got["value"].astype(object), strict=True))
    assert_metrics(metrics, reference(trained["spend"], rows))
    udfs_spark.register_evaluate(connect, "churn", store=model_store)
    got = connect.sql("SELECT * FROM churn_evaluate(TABLE(labelled), 'churned')").collect()
    assert_metrics([tuple(r) for r in got], reference(trained["churn"], rows))
