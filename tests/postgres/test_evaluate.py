"""ml.evaluate on a real cluster: sklearn.metrics' values, NULLs counted, label types, rights."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extras import execute_values

from tests.core.test_evaluate import LABELS, assert_metrics, labelled_rows, reference
from tests.fixtures.postgres import Db, python_rows, role_db

pytestmark = pytest.mark.postgres

COLUMNS = ["id", "age", "tenure", "plan", "active", "churned", "segment", "spend"]


@pytest.fixture(scope="module")
def rows():
    return labelled_rows(n=300)


@pytest.fixture(scope="module")
def labelled(db: Db, rows) -> str:
    """``labelled``: the rows with their labels, typed as a warehouse would type them, over
    several heap blocks; plus the churn label as text and as boolean."""
    db.run("DROP TABLE IF EXISTS labelled")
    db.run(
        "CREATE TABLE labelled (id bigint PRIMARY KEY, age double precision, tenure bigint, "
        "plan text, active boolean, churned bigint, segment text, spend double precision, "
        "pad char(500) DEFAULT 'x')"
    )
    with db.conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO labelled ({', '.join(COLUMNS)}) VALUES %s",
            python_rows(rows[COLUMNS]),
        )
    db.run(
        "ALTER TABLE labelled ADD COLUMN churned_text text, ADD COLUMN churned_flag boolean, "
        'ADD COLUMN "Churned Int" integer'
    )
    db.run(
        "UPDATE labelled SET churned_text = churned::text, churned_flag = churned = 1, "
        '"Churned Int" = churned'
    )
    db.run("ANALYZE labelled")
    return "labelled"


def evaluate(db: Db, model: str, label: str, table: str = "labelled") -> list[tuple]:
    return db.rows("SELECT metric, value FROM ml.evaluate(%s, %s, %s)", model, table, label)


@pytest.mark.parametrize("model", ["churn", "segment", "spend"])
def test_metrics_equal_sklearn_over_chunks(db: Db, labelled, rows, trained, model: str) -> None:
    with db.conn.cursor() as cur:
        cur.execute("SET udfs.batch_chunk_rows = 40")  # several chunks of a few blocks
        cur.execute("SELECT * FROM ml.evaluate(%s, 'labelled', %s)", (model, LABELS[model]))
        got = cur.fetchall()
        cur.execute("RESET udfs.batch_chunk_rows")
    assert db.one("SELECT pg_relation_size('labelled') / 8192") > 5
    assert_metrics(got, reference(trained[model], rows))
    counts = dict(got)
    assert (counts["rows"], counts["null_labels"]) == (len(rows), 3)
    assert counts["null_predictions"] == (0 if model == "segment" else 2)


def test_label_columns_of_other_types(db: Db, labelled) -> None:
    baseline = evaluate(db, "churn", "churned")
    assert evaluate(db, "churn", "churned_text") == baseline
    assert evaluate(db, "churn", "Churned Int") == baseline  # an odd name, quoted
    with pytest.raises(psycopg2.Error, match="model 'churn': label column 'churned_flag' holds"):
        evaluate(db, "churn", "churned_flag")
    with pytest.raises(psycopg2.Error, match="label_column 'churnd' is not a column of"):
        evaluate(db, "churn", "churnd")
    with pytest.raises(psycopg2.Error, match="label_column 'age' is a feature of model 'churn'"):
        evaluate(db, "churn", "age")
    with pytest.raises(psycopg2.Error, match="none of the labels in column 'churned_text'"):
        evaluate(db, "segment", "churned_text")


def test_views_and_empty_tables(db: Db, labelled) -> None:
    db.run("CREATE OR REPLACE VIEW labelled_view AS SELECT * FROM labelled WHERE id % 2 = 0")
    db.run("CREATE TABLE IF NOT EXISTS labelled_even AS SELECT * FROM labelled_view")
    assert evaluate(db, "spend", "spend", "labelled_view") == evaluate(
        db, "spend", "spend", "labelled_even"
    )
    db.run("CREATE TABLE IF NOT EXISTS labelled_empty (LIKE labelled)")
    got = dict(evaluate(db, "segment", "segment", "labelled_empty"))
    assert got["rows"] == 0 and got["accuracy"] is None


def test_runs_as_the_caller(ml_dsn: str, db: Db, labelled) -> None:
    """An ml_user evaluates only the tables it may read: the reader runs as the caller."""
    analyst = role_db(ml_dsn, db, "udfs_eval_analyst", "ml_user")
    try:
        db.run("REVOKE ALL ON labelled FROM udfs_eval_analyst")
        with pytest.raises(psycopg2.Error, match="permission denied for table labelled"):
            evaluate(analyst, "churn", "churned")
        db.run(sql.SQL("GRANT SELECT ON labelled TO udfs_eval_analyst"))
        assert evaluate(analyst, "churn", "churned") == evaluate(db, "churn", "churned")
    finally:
        analyst.close()
        db.run("REVOKE ALL ON labelled FROM udfs_eval_analyst")
    nobody = role_db(ml_dsn, db, "udfs_eval_nobody")
    try:
        with pytest.raises(psycopg2.Error, match="permission denied for"):
            evaluate(nobody, "churn", "churned")
    finally:
        nobody.close()
