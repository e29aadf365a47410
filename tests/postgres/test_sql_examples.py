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


@pytest.fixture(scope="module")
def ran(db: Db, prepared) -> None:
    """Every example, in its files' order (each builds on the one before, as an analyst would)."""
    for path in EXAMPLES:
        try:
            db.run(path.read_text())
        except Exception as exc:
            raise AssertionError(f"sql/postgres/{path.name} failed: {exc}") from exc


def test_examples_exist() -> None:
    assert [p.name[:2] for p in EXAMPLES] == ["01", "02", "03", "04"]


def test_select_into_a_new_table(db: Db, ran, rows, trained) -> None:
    want = expected(trained["churn"], rows)
    assert db.column("SELECT churn FROM churn_scores_ctas ORDER BY id") == want


def test_score_table(db: Db, ran, rows, trained) -> None:
    want = expected(trained["churn"], rows)
    assert db.column("SELECT prediction FROM churn_scores ORDER BY id") == want


def test_trigger_scores_every_inserted_row(db: Db, ran, rows) -> None:
    assert db.one("SELECT count(churn) FROM new_customers") == len(rows) + 1


def test_rollback_goes_back_to_version_1(db: Db, ran) -> None:
    assert db.one("SELECT version FROM ml.deployments ORDER BY id DESC LIMIT 1") == 1
