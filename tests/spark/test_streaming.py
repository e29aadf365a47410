"""The same SQL functions score a streaming query."""

import pytest

from tests.fixtures.models import expected
from tests.fixtures.spark import ARGS, score_stream
from udfs.demo.data import FEATURES, customers

pytestmark = pytest.mark.spark


def test_streaming_select_scores_like_sklearn(spark, tmp_path, trained):
    rows = customers(200, seed=21, null_fraction=0.05)[["id", *FEATURES]]
    select = f"SELECT id, churn({ARGS}) AS churn, churn_proba({ARGS}) AS p FROM incoming"
    got = score_stream(spark, tmp_path, rows, select, "scored_stream")
    assert len(got) == len(rows)
    assert [got[i]["churn"] for i in rows["id"]] == expected(trained["churn"], rows)
    want = expected(trained["churn"], rows, "predict_proba")
    for row_id, p in zip(rows["id"], want, strict=True):
        assert got[row_id]["p"] == (None if p is None else pytest.approx(p, abs=1e-12))
