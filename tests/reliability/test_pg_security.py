"""Roles, PUBLIC and hostile names, against a real cluster.

Already covered in tests/postgres and not repeated here: a role without ml_user is stopped at
the schema, ml_user cannot deploy nor write ml.models or ml.settings, ml_admin deploys without
being a superuser (test_deploy.py::test_roles); hostile quoted table, column and target names
in ml.score_table, statement triggers and _batch (test_functions.py::
test_hostile_identifiers_are_quoted) and an unquoted hostile target (::
test_unquoted_hostile_target_is_refused).
"""

import psycopg2
import pytest
from click.testing import CliRunner
from psycopg2 import sql

from tests.fixtures.postgres import Db, role_db
from udfs.cli import cli

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

PLAIN = "ml.plain(double precision,bigint)"
# Every way in: scalar, proba, batch, the internal scorer, score_table, triggers, deploy.
CALLS = [
    "SELECT ml.plain(40, 3)",
    "SELECT ml.churn_proba(40, 3, 'pro', true)",
    "SELECT * FROM ml.plain_batch('canary')",
    "SELECT * FROM ml._score_arrays('plain', 'canary', NULL, NULL, NULL)",
    "CALL ml.score_table('plain', 'canary', 'stolen')",
    "SELECT ml.attach_scoring_trigger('canary', 'plain', 'score')",
    "SELECT ml.deploy('plain', 1)",
    "SELECT ml.rollback('plain')",
]
HOSTILE = ["x; drop table canary", "x'); drop table canary; --", 'x" ; drop table canary; --']


@pytest.fixture(autouse=True)
def canary(db: Db) -> None:
    """A table every hostile name tries to drop; it must still be there after each test."""
    db.run("CREATE TABLE IF NOT EXISTS canary (id bigint PRIMARY KEY, age float8, tenure bigint)")
    db.run("INSERT INTO canary VALUES (1, 40, 3) ON CONFLICT DO NOTHING")
    db.run("GRANT SELECT ON canary TO PUBLIC")
    yield
    assert db.one("SELECT count(*) FROM canary") >= 1


def test_schema_usage_alone_executes_nothing(ml_dsn, db: Db) -> None:
    """USAGE on ml given directly (not through ml_user): every function is still closed."""
    outsider = role_db(ml_dsn, db, "udfs_outsider")
    db.run("GRANT USAGE ON SCHEMA ml TO udfs_outsider")
    try:
        for call in CALLS:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
                outsider.run(call)
    finally:
        outsider.close()
        db.run("REVOKE USAGE ON SCHEMA ml FROM udfs_outsider")


def test_only_the_owner_replaces_functions_and_writes_history(ml_dsn, db: Db) -> None:
    user = role_db(ml_dsn, db, "udfs_user2", "ml_user")
    admin = role_db(ml_dsn, db, "udfs_admin2", "ml_admin")
    replace = (
        f"CREATE OR REPLACE FUNCTION {PLAIN.replace('(', '(a ').replace(',', ', b ')} "
        "RETURNS double precision LANGUAGE sql AS 'SELECT 42.0'"
    )
    try:
        for role in (user, admin):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                role.run(replace)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                role.run("CREATE FUNCTION ml.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                role.run(
                    "INSERT INTO ml.deployments (name, version, sha256, action) "
                    "SELECT name, version, sha256, 'deploy' FROM ml.models LIMIT 1"
                )
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                role.run("DELETE FROM ml.scoring_errors")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            user.run("INSERT INTO ml.settings VALUES ('other', '[]')")
        assert db.one("SELECT ml.plain(40, 3)") != 42.0
    finally:
        user.close()
        admin.close()


def test_install_leaves_nothing_executable_by_public(db: Db) -> None:
    db.run("DROP ROLE IF EXISTS udfs_fresh")
    db.run("CREATE ROLE udfs_fresh")
    executable = db.column(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'ml'::regnamespace "
        "AND has_function_privilege('udfs_fresh', p.oid, 'EXECUTE')"
    )
    assert executable == []
    total = db.one("SELECT count(*) FROM pg_proc WHERE pronamespace = 'ml'::regnamespace")
    assert total > 20  # the install's functions and every deployed model's
    print(f"security: 0 of {total} functions and procedures in ml executable by PUBLIC")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_model_names_in_sql(db: Db, name: str) -> None:
    for call in (
        "SELECT ml.deploy(%s, 1)",
        "SELECT ml.rollback(%s)",
        "CALL ml.score_table(%s, 'canary', 'out')",
        "SELECT ml.attach_scoring_trigger('canary', %s, 'age')",
    ):
        with pytest.raises(psycopg2.Error, match="invalid model name"):
            db.run(call, name)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_trigger_columns_and_tables(db: Db, trained, name: str) -> None:
    """Hostile table and target column names, quoted or not, in both trigger modes."""
    table, column = sql.Identifier(name), sql.Identifier(name + " score")
    db.run(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    db.run(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, age float8, tenure bigint, {} float8)"
        ).format(table, column)
    )
    quoted = db.one("SELECT quote_ident(%s)", name)
    for mode in ("row", "statement"):
        db.run(
            "SELECT ml.attach_scoring_trigger(%s, 'plain', %s, %s)", quoted, name + " score", mode
        )
        db.run(sql.SQL("INSERT INTO {} (id, age, tenure) VALUES (1, 40, 3)").format(table))
        got = db.one(sql.SQL("SELECT {} FROM {}").format(column, table))
        assert got == db.one("SELECT ml.plain(40, 3)")
        db.run(sql.SQL("DELETE FROM {}").format(table))
    with pytest.raises(psycopg2.Error):  # unquoted, the name is not a table: refused
        db.run("SELECT ml.attach_scoring_trigger(%s, 'plain', 'score')", name)


def _udfs_pg(*args: str):
    return CliRunner().invoke(cli, ["pg", *args])


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_in_the_cli(ml_dsn, db: Db, model_store, name: str) -> None:
    for args in (
        ["deploy", name, "--store", str(model_store)],
        ["deploy", f"{name}@1", "--store", str(model_store)],
        ["rollback", name],
        ["score", name, "--table", "canary", "--into", "out"],
        ["score", "plain", "--table", name, "--into", "out"],
        ["score", "plain", "--table", "canary", "--into", name],
        ["score", "plain", "--table", "canary", "--into", "out", "--keep", name],
    ):
        result = _udfs_pg(*args, "--dsn", ml_dsn)
        assert result.exit_code != 0, (args, result.output)
        if args[1] == name:  # the model name is refused before any SQL is sent
            assert "invalid model name" in str(result.exception) + result.output, args
        alive = db.one("SELECT count(*) FROM canary")
        assert alive >= 1, args
    assert db.one("SELECT to_regclass('out')") is None
