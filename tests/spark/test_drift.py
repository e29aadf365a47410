"""udfs.spark.drift: the shifted feature only, and the numbers of the core (so of ml.drift)."""

from __future__ import annotations

import pytest

from tests.core.test_drift import drift_rows, reference, verdicts
from tests.fixtures.postgres import python_rows
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs import spark as udfs_spark
from udfs.drift import COLUMNS
from udfs.profile import PREDICTION

pytestmark = pytest.mark.spark


def test_only_the_shifted_feature_drifts_and_numbers_equal_the_core(spark, model_store) -> None:
    """Counted per partition (four here), merged on the driver: the same rows as the core's one
    pass, which tests/postgres/test_drift.py checks ml.drift against on the same table."""
    rows = drift_rows()
    frame = spark.createDataFrame(python_rows(rows[FEATURE_SCHEMA.fieldNames()]), FEATURE_SCHEMA)
    frame.repartition(4).createOrReplaceTempView("drift_shifted")
    got = udfs_spark.drift(spark, "churn", "drift_shifted", store=model_store)
    assert list(got.columns) == list(COLUMNS)
    records = [
        tuple(None if v != v else v for v in record)  # NaN (a NULL) as None
        for record in got.astype(object).itertuples(index=False)
    ]
    assert records == reference(model_store, "churn", rows)
    assert {f for f, v in verdicts(records).items() if v != "stable"} - {PREDICTION} == {"age"}
    assert verdicts(records)["age"] == "drifted"


def test_spark_connect(connect, model_store) -> None:
    """On a Connect session (no SparkContext): the same rows."""
    rows = drift_rows(400, seed=3)
    frame = connect.createDataFrame(python_rows(rows[FEATURE_SCHEMA.fieldNames()]), FEATURE_SCHEMA)
    got = udfs_spark.drift(connect, "spend", frame, store=model_store)
    assert [tuple(r) for r in got.itertuples(index=False)] == reference(model_store, "spend", rows)
