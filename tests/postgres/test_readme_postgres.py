"""The README's PostgreSQL examples run against a database with the test models deployed."""

import pytest

from tests.fixtures.models import expected
from tests.fixtures.postgres import Db, create_customers
from tests.fixtures.readme import blocks
from udfs.demo.data import customers

pytestmark = pytest.mark.postgres


def test_readme_postgres_sql_runs(db: Db, trained):
    rows = customers(200, seed=4)
    create_customers(db, "customers", rows)
    history = customers(300, seed=5)  # labelled rows for the evaluation example
    create_customers(db, "churn_history", history)
    db.run("ALTER TABLE churn_history ADD COLUMN churned bigint")
    with db.conn.cursor() as cur:
        cur.execute(
            "UPDATE churn_history h SET churned = l.churned "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS l(id, churned) WHERE h.id = l.id",
            [history["id"].tolist(), history["churned"].tolist()],
        )
    # The explanation example reads the fitted estimator: allowed in this test's own database.
    db.run("INSERT INTO ml.settings VALUES ('allow_pickles', 'on') ON CONFLICT DO NOTHING")
    examples = [b for b in blocks("sql") if b.startswith("-- PostgreSQL")]
    assert examples
    for sql in examples:
        db.run(sql)
    assert db.column("SELECT prediction FROM churn_scores ORDER BY id") == expected(
        trained["churn"], rows
    )
    labels = db.rows("SELECT id, label FROM customers WHERE id > 100000 ORDER BY id")
    assert labels[0][1] in (0, 1)
    assert labels[1] == (100002, None)  # active NULL: no imputer for it, so no score
    metrics = dict(
        db.rows("SELECT metric, value FROM ml.evaluate('churn', 'churn_history', 'churned')")
    )
    assert metrics["rows"] == metrics["evaluated"] == 300
    verdicts = dict(db.rows("SELECT feature, verdict FROM ml.drift('churn', 'churn_history')"))
    assert set(verdicts) == {"age", "tenure", "plan", "active", "<prediction>"}
