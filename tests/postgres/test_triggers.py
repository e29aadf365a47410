"""Scoring triggers: row and statement modes, on_error raise and null, COPY, refusals."""

from __future__ import annotations

import io

import numpy as np
import psycopg2
import pytest

from tests.fixtures.models import expected, scoring_rows
from tests.fixtures.postgres import Db, assert_same, create_customers, python_rows, role_db

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
    # By default the rejected value is not kept: only what went wrong, and where.
    assert errors[0][3].startswith("InputError: model 'plain': column 'age' expects double")
    assert "abc" not in errors[0][3]
    db.run("INSERT INTO ml.settings VALUES ('errors_keep_values', 'on')")
    try:
        db.run(f"INSERT INTO {table} VALUES (5, 'secret', 1)")
    finally:
        db.run("DELETE FROM ml.settings WHERE key = 'errors_keep_values'")
    error, value = db.rows(
        "SELECT error, value FROM ml.scoring_errors WHERE table_name = %s ORDER BY id DESC LIMIT 1",
        f"public.{table}",
    )[0]
    assert "column 'age' expects double, got 'secret'" in error
    assert value == "'secret'"


def test_detach_removes_the_trigger(db: Db, rows) -> None:
    fresh(db, rows, "t_detach")
    db.run("SELECT ml.attach_scoring_trigger('t_detach', 'plain', 'score')")
    db.run("SELECT ml.detach_scoring_trigger('t_detach', 'plain')")
    db.run("INSERT INTO t_detach (id, age, tenure) VALUES (1, 40, 3)")
    assert db.one("SELECT score FROM t_detach") is None
    with pytest.raises(psycopg2.Error, match="no scoring trigger for model 'plain'"):
        db.run("SELECT ml.detach_scoring_trigger('t_detach', 'plain')")


def fillfactor(db: Db, table: str) -> int | None:
    return db.one(
        "SELECT (SELECT option_value::int FROM pg_options_to_table(reloptions) "
        "WHERE option_name = 'fillfactor') FROM pg_class WHERE oid = %s::regclass",
        table,
    )


MANY = 2_000  # rows enough to fill pages: a write-back on full pages cannot be HOT


def hot_updates_of_one_insert(db: Db, table: str) -> int:
    """HOT updates in the transaction of one INSERT of ``MANY`` rows (its write-back)."""
    with db.conn.cursor() as cur:
        # One simple query: one implicit transaction, whose own statistics are still readable.
        cur.execute(
            f"INSERT INTO {table} (id, age, tenure) SELECT g, 20 + g % 50, g % 90 "
            f"FROM generate_series(1, {MANY}) AS g; "
            f"SELECT pg_stat_get_xact_tuples_hot_updated('{table}'::regclass)"
        )
        return cur.fetchone()[0]


def test_statement_mode_leaves_room_for_hot_write_backs(db: Db, rows, trained) -> None:
    fresh(db, rows, "t_hot")
    said = db.one("SELECT ml.attach_scoring_trigger('t_hot', 'plain', 'score', 'statement')")
    assert said.endswith("fillfactor 45 (was 100) so write-backs are HOT updates")
    assert fillfactor(db, "t_hot") == 45
    assert hot_updates_of_one_insert(db, "t_hot") == MANY
    got = db.rows("SELECT age, tenure, score FROM t_hot ORDER BY id")
    want = trained["plain"].model.predict(np.array([r[:2] for r in got], dtype=np.float64))
    assert [r[2] for r in got] == pytest.approx(want.tolist(), rel=1e-12)

    fresh(db, rows, "t_cold")  # fillfactor => NULL: the table as it was, updates not HOT
    said = db.one(
        "SELECT ml.attach_scoring_trigger('t_cold', 'plain', 'score', 'statement', "
        "fillfactor => NULL)"
    )
    assert said.endswith("fillfactor left alone (fillfactor => NULL)")
    assert fillfactor(db, "t_cold") is None
    assert hot_updates_of_one_insert(db, "t_cold") < MANY // 2
    assert db.one("SELECT count(score) FROM t_cold") == MANY


def test_fillfactor_is_never_raised_and_not_set_where_it_cannot_help(db: Db, rows) -> None:
    fresh(db, rows, "t_ff30")
    db.run("ALTER TABLE t_ff30 SET (fillfactor = 30)")
    said = db.one("SELECT ml.attach_scoring_trigger('t_ff30', 'spend', 'score', 'statement')")
    assert said.endswith("fillfactor already 30") and fillfactor(db, "t_ff30") == 30

    fresh(db, rows, "t_indexed")
    db.run("CREATE INDEX ON t_indexed (score)")
    said = db.one("SELECT ml.attach_scoring_trigger('t_indexed', 'spend', 'score', 'statement')")
    assert said.endswith("write-backs are not HOT: score is indexed")
    assert fillfactor(db, "t_indexed") is None

    said = db.one("SELECT ml.attach_scoring_trigger('t_indexed', 'spend', 'score', 'row')")
    assert said == "row trigger ml_spend on public.t_indexed scores spend into score"
    with pytest.raises(psycopg2.Error, match=r"fillfactor must be between 10 and 100 .*got 5"):
        db.run(
            "SELECT ml.attach_scoring_trigger('t_ff30', 'spend', 'score', 'statement', 'raise', 5)"
        )


def test_only_the_owner_changes_the_fillfactor(ml_dsn: str, db: Db, rows) -> None:
    fresh(db, rows, "t_not_mine")
    db.run("GRANT TRIGGER ON t_not_mine TO ml_user")
    analyst = role_db(ml_dsn, db, "udfs_trigger_user", "ml_user")
    try:
        said = analyst.one(
            "SELECT ml.attach_scoring_trigger('t_not_mine', 'spend', 'score', 'statement')"
        )
    finally:
        analyst.close()
    assert said.endswith("fillfactor left at 100: only the table's owner can change it")
    assert fillfactor(db, "t_not_mine") is None
    assert db.one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 't_not_mine'::regclass") == 1
