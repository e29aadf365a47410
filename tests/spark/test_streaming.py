"""The same SQL functions score a streaming query."""

import pytest

from tests.fixtures.models import as_records, expected
from tests.fixtures.spark import ARGS, FEATURE_SCHEMA
from udfs.demo.data import FEATURES, customers

pytestmark = pytest.mark.spark


def test_streaming_select_scores_like_sklearn(spark, tmp_path, trained):
    rows = customers(200, seed=21, null_fraction=0.05)[["id", *FEATURES]]
    for part in range(3):  # three files arriving in the landing folder
        chunk = rows.iloc[part::3]
        spark.createDataFrame(as_records(chunk), FEATURE_SCHEMA).write.parquet(
            str(tmp_path / "landing" / f"part={part}")
        )
    stream = spark.readStream.schema(FEATURE_SCHEMA).parquet(str(tmp_path / "landing" / "*"))
    stream.createOrReplaceTempView("incoming")
    scored = spark.sql(f"SELECT id, churn({ARGS}) AS churn, churn_proba({ARGS}) AS p FROM incoming")
    assert scored.isStreaming
    query = (
        scored.writeStream.format("memory")
        .queryName("scored_stream")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    got = {r["id"]: r for r in spark.table("scored_stream").collect()}
    assert len(got) == len(rows)
    assert [got[i]["churn"] for i in rows["id"]] == expected(trained["churn"], rows)
    want = expected(trained["churn"], rows, "predict_proba")
    for row_id, p in zip(rows["id"], want, strict=True):
        assert got[row_id]["p"] == (None if p is None else pytest.approx(p, abs=1e-12))
