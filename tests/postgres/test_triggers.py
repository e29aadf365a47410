"""Scoring triggers: row and statement modes, on_error raise and null, COPY, refusals."""

from __future__ import annotations

import io

import psycopg2
import pytest

from tests.fixtures.models import expected, scoring_rows
from tests.postgres.conftest import Db, assert_same, create_customers, python_rows

pytestmark = pytest.mark.postgres

INSERT = "INSERT INTO {t} (id, age, tenure, plan, active) SELECT id, age, tenure, plan, active FROM source_rows"


@pytest.fixture(scope="module")
def rows():
    return scoring_rows()


@pytest.fixture(scope="module")
def source(db: Db, rows) -> None:
    create_customers(db, "source_rows", rows)


def fresh(db: Db, rows, table: str, primary_key: bool = True) -> None:
    create_customers(db, table, rows.iloc[:0], primary_key=primary_key)


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_trigger_scores_inserted_rows(db: Db, source, rows, trained, mode: str) -> None:
    fresh(db, rows, f"t_{mode}")
    db.run(f"SELECT ml.attach_scoring_trigger('t_{mode}', 'spend', 'score', mode => '{mode}')")
    db.run(INSERT.format(t=f"t_{mode}"))
    got = db.column(f"SELECT score FROM t_{mode} ORDER BY id")
    assert_same(got, expected(trained["spend"], rows), one_row=mode == "row")


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_trigger_scores_copy(db: Db, source, rows, trained, mode: str) -> None:
    table = f"copy_{mode}"
    fresh(db, rows, table)
    db.run(f"SELECT ml.attach_scoring_trigger('{table}', 'churn', 'label', '{mode}')")
    data = io.StringIO()
    for r in python_rows(rows[["id", "age", "tenure", "plan", "active"]]):
        r = (*r[:2], None if r[2] is None else int(r[2]), *r[3:])  # tenure is a bigint
        data.write("\t".join("\\N" if v is None else str(v) for v in r) + "\n")
    data.seek(0)
    with db.conn.cursor() as cur:
        cur.copy_from(data, table, columns=("id", "age", "tenure", "plan", "active"))
    assert db.column(f"SELECT label FROM {table} ORDER BY id") == expected(trained["churn"], rows)


def test_row_trigger_rescores_on_update_of_a_feature(db: Db, source, rows, trained) -> None:
    fresh(db, rows, "t_update")
    db.run("SELECT ml.attach_scoring_trigger('t_update', 'plain', 'score')")
    db.run(INSERT.format(t="t_update"))
    db.run("UPDATE t_update SET age = 30, tenure = 5 WHERE id = 1")
    want = trained["plain"].model.predict([[30.0, 5.0]])[0]
    assert db.one("SELECT score FROM t_update WHERE id = 1") == pytest.approx(want, rel=1e-12)


def test_statement_mode_refuses_a_table_without_primary_key(db: Db, rows) -> None:
    fresh(db, rows, "no_pk", primary_key=False)
    with pytest.raises(psycopg2.Error, match="has no primary key: statement mode"):
        db.run("SELECT ml.attach_scoring_trigger('no_pk', 'spend', 'score', 'statement')")


def test_attach_refuses_missing_feature_and_bad_mode(db: Db, rows) -> None:
    db.run(
        "DROP TABLE IF EXISTS thin; CREATE TABLE thin (id int PRIMARY KEY, age float8, s float8)"
    )
    with pytest.raises(psycopg2.Error, match="model 'plain' needs feature 'tenure'"):
        db.run("SELECT ml.attach_scoring_trigger('thin', 'plain', 's')")
    with pytest.raises(psycopg2.Error, match="mode must be one of row, statement, got 'rows'"):
        db.run("SELECT ml.attach_scoring_trigger('thin', 'plain', 's', 'rows')")


def bad_table(db: Db, name: str) -> None:
    """age is text here, so 'abc' is a value the model cannot take."""
    db.run(f"DROP TABLE IF EXISTS {name}")
    db.run(f"CREATE TABLE {name} (id int PRIMARY KEY, age text, tenure bigint, score float8)")


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_on_error_raise_names_model_column_and_value(db: Db, mode: str) -> None:
    bad_table(db, f"bad_raise_{mode}")
    db.run(f"SELECT ml.attach_scoring_trigger('bad_raise_{mode}', 'plain', 'score', '{mode}')")
    with pytest.raises(
        psycopg2.Error, match=r"model 'plain': column 'age' expects double, got 'abc'"
    ):
        db.run(f"INSERT INTO bad_raise_{mode} VALUES (1, '40', 3), (2, 'abc', 4)")
    assert db.one(f"SELECT count(*) FROM bad_raise_{mode}") == 0


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_on_error_null_keeps_every_row_and_records_each_error(db: Db, trained, mode: str) -> None:
    table = f"bad_null_{mode}"
    bad_table(db, table)
    db.run(f"SELECT ml.attach_scoring_trigger('{table}', 'plain', 'score', '{mode}', 'null')")
    db.run(f"INSERT INTO {table} VALUES (1, '40', 3), (2, 'abc', 4), (3, '51.5', 7), (4, 'x', 1)")
    scores = dict(db.rows(f"SELECT id, score FROM {table}"))
    assert sorted(scores) == [1, 2, 3, 4]
    assert scores[2] is None and scores[4] is None
    assert scores[1] == pytest.approx(trained["plain"].model.predict([[40.0, 3.0]])[0], rel=1e-12)
    errors = db.rows(
        "SELECT key, model, version, error FROM ml.scoring_errors WHERE table_name = %s ORDER BY id",
        f"public.{table}",
    )
    assert [e[0] for e in errors] == [{"id": 2}, {"id": 4}]
    assert {(e[1], e[2]) for e in errors} == {("plain", 1)}
    assert "column 'age' expects double, got 'abc'" in errors[0][3]


def test_detach_removes_the_trigger(db: Db, rows) -> None:
    fresh(db, rows, "t_detach")
    db.run("SELECT ml.attach_scoring_trigger('t_detach', 'plain', 'score')")
    db.run("SELECT ml.detach_scoring_trigger('t_detach', 'plain')")
    db.run("INSERT INTO t_detach (id, age, tenure) VALUES (1, 40, 3)")
    assert db.one("SELECT score FROM t_detach") is None
    with pytest.raises(psycopg2.Error, match="no scoring trigger for model 'plain'"):
        db.run("SELECT ml.detach_scoring_trigger('t_detach', 'plain')")
