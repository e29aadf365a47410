"""Spark Connect: the thin client registers the models and scores them as the classic session
does, with the bytes shipped inside the UDF (no SparkContext, no broadcast on Connect)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from tests.fixtures.models import as_records, expected, scoring_rows
from tests.fixtures.spark import ARGS, FEATURE_SCHEMA, score_stream
from udfs import spark as udfs_spark
from udfs.demo.data import FEATURES, customers
from udfs.errors import InputError
from udfs.spark import shipping
from udfs.spark.script import run_script
from udfs.spark.shipping import is_connect

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return scoring_rows()


@pytest.fixture(scope="module")
def remote_customers(connect, rows):
    frame = connect.createDataFrame(as_records(rows), FEATURE_SCHEMA)
    frame.createOrReplaceTempView("customers")
    return frame


def _scores(session, query: str) -> dict:
    return {r["id"]: tuple(r)[1:] for r in session.sql(query).collect()}


def test_the_client_is_a_connect_session(connect, model_store):
    assert is_connect(connect)
    for _ in range(2):  # registering again uploads nothing new: the artifact is named by sha256
        assert udfs_spark.register(connect, "churn", store=model_store) == ["churn", "churn_proba"]
    assert {"churn", "churn_proba", "spend", "segment", "segment_proba"} <= {
        f.name for f in connect.catalog.listFunctions()
    }


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("spend", DoubleType()), ("churn", LongType()), ("segment", StringType())],
)
def test_predict_with_nulls_equals_sklearn(connect, remote_customers, rows, trained, name, dtype):
    got = connect.sql(f"SELECT id, {name}({ARGS}) AS score FROM customers")
    schema = StructType([StructField("id", LongType()), StructField("score", dtype)])
    values = expected(trained[name], rows)  # NULL where a feature the model cannot take is NULL
    want = connect.createDataFrame(list(zip(rows["id"].tolist(), values, strict=True)), schema)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    assert None in values or name == "segment"  # the rows do exercise the NULL policy


def test_proba_is_bit_identical_to_the_classic_session(
    connect, remote_customers, spark, model_store, rows, trained
):
    udfs_spark.register_all(spark, store=model_store)  # whatever another test registered since
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).createOrReplaceTempView("customers")
    query = f"SELECT id, churn_proba({ARGS}), segment_proba({ARGS}) FROM customers"
    remote = _scores(connect, query)
    assert remote == _scores(spark, query)
    want = expected(trained["churn"], rows, "predict_proba")
    assert [remote[i][0] for i in rows["id"]] == pytest.approx(want, abs=1e-12, nan_ok=False)


def test_ctas_persists_the_scores(connect, remote_customers, rows, trained):
    connect.sql("DROP TABLE IF EXISTS churn_scored")
    connect.sql(
        f"CREATE TABLE churn_scored USING parquet AS "
        f"SELECT id, churn({ARGS}) AS churn FROM customers"
    )
    got = {r["id"]: r["churn"] for r in connect.table("churn_scored").collect()}
    assert [got[i] for i in rows["id"]] == expected(trained["churn"], rows)


def test_bad_input_names_model_and_column(connect, remote_customers):
    query = "SELECT churn(plan, tenure, plan, active) FROM customers"
    with pytest.raises(
        InputError, match=r"model 'churn': column 'age' expects double, got '\w+' \(str\)"
    ):
        run_script(connect, query, ["churn"], echo=lambda _: None)


def test_streaming_select(connect, tmp_path, trained):
    data = customers(90, seed=23, null_fraction=0.05)[["id", *FEATURES]]
    select = f"SELECT id, churn({ARGS}) AS churn FROM incoming"
    got = {i: r["churn"] for i, r in score_stream(connect, tmp_path, data, select, "c").items()}
    assert [got[i] for i in data["id"]] == expected(trained["churn"], data)


def test_cli_runs_a_sql_file_on_the_remote_server(connect_url, model_store, tmp_path, trained):
    """`udfs spark sql --remote`: a client process without a JVM, the server scores."""
    rows = customers(40, seed=29)[["id", *FEATURES]]
    rows.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "scored"
    script = tmp_path / "score.sql"
    script.write_text(
        f"INSERT OVERWRITE DIRECTORY '{out}' USING parquet "
        f"SELECT id, churn({ARGS}) AS churn FROM parquet.`{tmp_path / 'rows.parquet'}`;\n"
    )
    udfs = Path(sys.executable).parent / "udfs"
    command = [udfs, "spark", "sql", script, "--remote", connect_url, "--model", "churn"]
    proc = subprocess.run(
        [*map(str, command), "--store", str(model_store)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"registered: churn, churn_proba (remote {connect_url})" in proc.stdout
    got = pd.read_parquet(out).set_index("id")["churn"]
    assert got.loc[rows["id"]].tolist() == expected(trained["churn"], rows)


def test_large_models_travel_as_session_artifacts(
    connect, remote_customers, rows, trained, model_store, monkeypatch
):
    """Above INLINE_LIMIT the bytes are uploaded once with addArtifacts and read on the worker
    with SparkFiles: same rows, same bits."""
    monkeypatch.setattr(shipping, "INLINE_LIMIT", 0)
    _, blobs = shipping.checked_blobs("segment", None, model_store)
    assert isinstance(shipping.ship(connect, blobs), shipping.SessionFile)
    assert udfs_spark.register(connect, "segment", store=model_store) == [
        "segment",
        "segment_proba",
    ]
    got = _scores(connect, f"SELECT id, segment({ARGS}) FROM customers")
    assert [got[i][0] for i in rows["id"]] == expected(trained["segment"], rows)
