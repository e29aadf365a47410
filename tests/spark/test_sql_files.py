"""The analyst SQL files under sql/spark/ run, and write what sklearn predicts."""

from pathlib import Path

import pytest

from tests.fixtures.models import as_records, expected
from tests.fixtures.spark import ARGS, FEATURE_SCHEMA
from udfs.demo.data import FEATURES, customers
from udfs.spark.script import run_script

pytestmark = pytest.mark.spark

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "spark"


@pytest.fixture(scope="module")
def table(spark):
    rows = customers(300, seed=11, null_fraction=0.05)[["id", *FEATURES]]
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).createOrReplaceTempView("customers")
    return rows


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_sql_file_runs(spark, table, path):
    lines = []
    results = run_script(spark, path.read_text(), echo=lines.append)
    assert results, f"{path.name} has no statements"
    assert all("->" in line for line in lines if line.startswith("    ->"))


def test_churn_scores_table_matches_sklearn(spark, table, trained):
    run_script(spark, (SQL_DIR / "churn_scores.sql").read_text(), echo=lambda _: None)
    saved = {r["id"]: r for r in spark.table("churn_scores").collect()}
    assert len(saved) == len(table)
    assert [saved[i]["churn"] for i in table["id"]] == expected(trained["churn"], table)
    assert [saved[i]["segment"] for i in table["id"]] == expected(trained["segment"], table)


def test_segment_probabilities_are_in_class_order(spark, table, trained):
    results = run_script(
        spark, (SQL_DIR / "segment_probabilities.sql").read_text(), echo=lambda _: None
    )
    first = results[-1].preview[0]
    proba = expected(trained["segment"], table.head(1), "predict_proba")[0]
    assert [first["p_core"], first["p_key"], first["p_loyal"]] == pytest.approx(proba, abs=1e-12)
    assert ARGS in (SQL_DIR / "segment_probabilities.sql").read_text()
