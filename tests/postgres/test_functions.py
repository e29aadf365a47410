"""ml.<name>, ml.<name>_proba, ml.<name>_batch and ml.score_table equal in-process sklearn."""

from __future__ import annotations

import psycopg2
import pytest

from tests.fixtures.models import expected, scoring_rows
from tests.fixtures.postgres import Db, assert_same, create_customers

pytestmark = pytest.mark.postgres

ARGS = {"plain": "age, tenure", None: "age, tenure, plan, active"}
CLASSIFIERS = ("churn", "segment")


@pytest.fixture(scope="module")
def rows():
    return scoring_rows()


@pytest.fixture(scope="module")
def customers(db: Db, rows) -> str:
    create_customers(db, "customers", rows)
    return "customers"


def args(model: str) -> str:
    return ARGS.get(model, ARGS[None])


@pytest.mark.parametrize("model", ["spend", "churn", "segment", "plain"])
def test_scalar_predict_equals_sklearn(db: Db, customers, rows, trained, model: str) -> None:
    got = db.column(f"SELECT ml.{model}({args(model)}) FROM customers ORDER BY id")
    assert_same(got, expected(trained[model], rows), one_row=True)


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_scalar_proba_equals_sklearn(db: Db, customers, rows, trained, model: str) -> None:
    got = db.column(f"SELECT ml.{model}_proba({args(model)}) FROM customers ORDER BY id")
    assert_same(got, expected(trained[model], rows, "predict_proba"), proba=True)


@pytest.mark.parametrize("model", ["spend", "churn", "segment", "plain"])
def test_batch_form_equals_sklearn(db: Db, customers, rows, trained, model: str) -> None:
    got = db.rows(f"SELECT key::bigint, * FROM ml.{model}_batch('customers', 'id') ORDER BY 1")
    assert [r[0] for r in got] == rows["id"].tolist()
    assert_same([r[2] for r in got], expected(trained[model], rows))
    if model in CLASSIFIERS:
        assert_same([r[3] for r in got], expected(trained[model], rows, "predict_proba"), True)


def test_batch_form_in_create_table_as(db: Db, customers, rows, trained) -> None:
    db.run("DROP TABLE IF EXISTS churn_ctas")
    db.run(
        "CREATE TABLE churn_ctas AS SELECT c.id, b.prediction FROM customers c "
        "JOIN ml.churn_batch('customers', 'id') b ON b.key = c.id::text"
    )
    got = db.column("SELECT prediction FROM churn_ctas ORDER BY id")
    assert_same(got, expected(trained["churn"], rows))


@pytest.mark.parametrize("model", ["spend", "churn", "segment"])
def test_score_table_equals_sklearn(db: Db, customers, rows, trained, model: str) -> None:
    db.run(f"DROP TABLE IF EXISTS scored_{model}")
    # chunk_rows 5 makes several chunks out of the 24 rows.
    db.run(f"CALL ml.score_table('{model}', 'customers', 'scored_{model}', ARRAY['id'], 5)")
    got = db.rows(f"SELECT * FROM scored_{model} ORDER BY id")
    assert [r[0] for r in got] == rows["id"].tolist()
    assert_same([r[1] for r in got], expected(trained[model], rows))
    if model in CLASSIFIERS:
        assert_same([r[2] for r in got], expected(trained[model], rows, "predict_proba"), True)


def test_score_table_keeps_primary_key_by_default(db: Db, customers) -> None:
    db.run("DROP TABLE IF EXISTS scored_default")
    db.run("CALL ml.score_table('churn', 'customers', 'scored_default')")
    assert db.column(
        "SELECT column_name::text FROM information_schema.columns "
        "WHERE table_name = 'scored_default' ORDER BY ordinal_position"
    ) == ["id", "prediction", "probability"]


def test_score_table_reads_a_view(db: Db, customers, rows, trained) -> None:
    db.run("CREATE OR REPLACE VIEW customers_view AS SELECT * FROM customers")
    db.run("DROP TABLE IF EXISTS scored_view")
    db.run("CALL ml.score_table('spend', 'customers_view', 'scored_view', ARRAY['id'])")
    got = db.column("SELECT prediction FROM scored_view ORDER BY id")
    assert_same(got, expected(trained["spend"], rows))


def test_bad_value_names_model_column_and_value(db: Db) -> None:
    with pytest.raises(psycopg2.Error, match=r"model 'churn'.*column 'age' has the value inf"):
        db.run("SELECT ml.churn('Infinity', 12, 'pro', true)")


def test_unknown_model_in_score_table(db: Db, customers) -> None:
    with pytest.raises(psycopg2.Error, match="model 'chrun' is not deployed"):
        db.run("CALL ml.score_table('chrun', 'customers', 'nowhere')")


def test_unknown_keep_column_suggests(db: Db, customers) -> None:
    with pytest.raises(psycopg2.Error, match=r"keep column 'idd'.*Did you mean 'id'"):
        db.run("CALL ml.score_table('churn', 'customers', 'nowhere', ARRAY['idd'])")


HOSTILE = 'odd "table"; drop'


def test_hostile_identifiers_are_quoted(db: Db, customers, rows, trained) -> None:
    db.run(f'DROP TABLE IF EXISTS "{HOSTILE.replace(chr(34), chr(34) * 2)}"')
    db.run("""CREATE TABLE "odd ""table""; drop" AS SELECT id AS "it's id", * FROM customers""")
    source = '"odd ""table""; drop"'
    target = '"scored ""x""; drop"'
    db.run("CALL ml.score_table('spend', %s, %s, ARRAY['it''s id'])", source, target)
    got = db.rows('SELECT * FROM "scored ""x""; drop" ORDER BY 1')
    assert [r[0] for r in got] == rows["id"].tolist()
    assert_same([r[1] for r in got], expected(trained["spend"], rows))
    db.run(f"""ALTER TABLE {source} ADD PRIMARY KEY ("it's id")""")
    db.run("SELECT ml.attach_scoring_trigger(%s, 'spend', 'score', 'statement')", source)
    db.run(
        f"""INSERT INTO {source} ("it's id", id, age, tenure, plan, active) VALUES (-1, -1, 40, 3, 'pro', true)"""
    )
    assert db.one(f"""SELECT score FROM {source} WHERE "it's id" = -1""") is not None
    assert db.one("SELECT count(*) FROM ml.spend_batch(%s, 'it''s id')", source) == len(rows) + 1


def test_unquoted_hostile_target_is_refused(db: Db, customers) -> None:
    with pytest.raises(psycopg2.Error, match="string is not a valid identifier"):
        db.run("CALL ml.score_table('spend', 'customers', 'x; drop table customers')")
