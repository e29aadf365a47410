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
