"""The analyst examples in sql/postgres run, in order, and give what they promise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import udfs
from tests.fixtures.models import FEATURES, expected
from tests.fixtures.postgres import Db, create_customers
from udfs.demo.data import customers
from udfs.postgres.client.deploy import deploy

pytestmark = pytest.mark.postgres

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "sql" / "postgres").glob("*.sql"))


@pytest.fixture(scope="module")
def rows():
    return customers(300, seed=5)


@pytest.fixture(scope="module")
def prepared(db: Db, rows, model_store, trained, tmp_path_factory):
    create_customers(db, "customers", rows)
    # A second version of churn, so that the rollback example has somewhere to go back to.
    store = tmp_path_factory.mktemp("examples") / "store"
    shutil.copytree(model_store, store)
    udfs.save_model(
        trained["churn"].model, "churn", sample=trained["churn"].train[FEATURES], store=store
    )
    deploy(db.conn, "churn", 2, store=store)


def test_examples_exist() -> None:
    assert [p.name[:2] for p in EXAMPLES] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(db: Db, prepared, path: Path) -> None:
    db.run(path.read_text())


def test_examples_results(db: Db, prepared, rows, trained) -> None:
    want = expected(trained["churn"], rows)
    assert db.column("SELECT churn FROM churn_scores_ctas ORDER BY id") == want
    assert db.column("SELECT prediction FROM churn_scores ORDER BY id") == want
    assert db.one("SELECT count(churn) FROM new_customers") == len(rows) + 1
    assert db.one("SELECT version FROM ml.deployments ORDER BY id DESC LIMIT 1") == 1
