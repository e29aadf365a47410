"""The red-team findings of issue #11, each performed as an attack that must fail.

Roles: ``appowner`` owns a database but is not a superuser; ``bob`` is in ``ml_admin``;
``alice`` is in ``ml_user``. After every attack, no attacking role may be a superuser.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner
from psycopg2 import sql

from tests.fixtures.postgres import Db, role_db
from tests.reliability import traps
from udfs.cli import cli
from udfs.postgres.client.cluster import LocalCluster
from udfs.postgres.client.deploy import deploy
from udfs.postgres.client.install import install

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]
ATTACKERS = ("appowner", "bob", "alice")
HOSTILE_PATH = "-c search_path=public,pg_catalog"


def as_role(dsn: str, role: str) -> str:
    return dsn.replace("postgres@", f"{role}@", 1)


def owned_database(ml_dsn: str, db: Db, name: str, owner: str) -> str:
    """A new database ``name`` owned by a new LOGIN role ``owner`` (no superuser); its DSN."""
    drop_database(db, name)
    db.run(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
    db.run(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
    db.run(sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (name, owner))))
    return ml_dsn.rsplit("/", 1)[0] + "/" + name


def drop_database(db: Db, name: str) -> None:
    db.run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def assert_no_superuser(db: Db) -> None:
    supers = db.column(
        "SELECT rolname FROM pg_roles WHERE rolsuper AND rolname = ANY(%s)", list(ATTACKERS)
    )
    assert supers == [], f"escalated to superuser: {supers}"


@pytest.fixture(scope="module")
def roles(ml_dsn: str, db: Db) -> Iterator[dict[str, Db]]:
    """alice (ml_user), bob (ml_admin) and appowner (no udfs role), each with a connection."""
    handles = {
        "alice": role_db(ml_dsn, db, "alice", "ml_user"),
        "bob": role_db(ml_dsn, db, "bob", "ml_admin"),
    }
    db.run("GRANT CREATE ON SCHEMA public TO alice, bob")
    yield handles
    for handle in handles.values():
        handle.close()
    assert_no_superuser(db)


# Finding 1 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owned_db(ml_dsn: str, db: Db, model_store) -> Iterator[str]:
    """A database owned by appowner (may create in public), with ml installed by a superuser."""
    dsn = owned_database(ml_dsn, db, "udfs_attack_owned", "appowner")
    conn = psycopg2.connect(dsn)
    try:
        install(conn)
        for model in ("plain", "churn"):
            deploy(conn, model, store=model_store)
    finally:
        conn.close()
    owner = Db(as_role(dsn, "appowner"))
    owner.run("CREATE TABLE t (id bigint PRIMARY KEY, age float8, tenure bigint, score float8)")
    owner.run("INSERT INTO t SELECT i, 30 + i % 40, i % 12 FROM generate_series(1, 200) i")
    owner.run("CREATE TABLE r (LIKE t INCLUDING ALL)")
    owner.close()
    yield dsn
    drop_database(db, "udfs_attack_owned")


def test_lookalike_functions_never_run_in_a_superusers_scoring(db: Db, owned_db: str) -> None:
    planted = traps.plant(as_role(owned_db, "appowner"), "appowner")
    # The reproduction is only as good as its traps: the ones the review named must exist.
    for name in ("array_position", "pg_relation_size", "unnest", "array_agg", "string_agg"):
        assert f"public.{name}" in planted, planted
    victim = psycopg2.connect(owned_db, options=HOSTILE_PATH)
    victim.autocommit = True
    try:
        with victim.cursor() as cur:
            # The traps work: an unqualified call in this session is hijacked...
            cur.execute("SELECT array_position('1 2'::int2vector, 2::smallint)")
            assert traps.hits(cur)[0] == 1
            traps.reset(cur)
            cur.execute("ALTER ROLE appowner NOSUPERUSER")
            # ...but none of udfs's entry points calls one.
            for statement in (
                "SELECT ml.runtime_info()",
                "SELECT ml.plain(40, 3), ml.churn_proba(40, 3, 'pro', true)",
                "SELECT * FROM ml.plain_batch('t', 'id')",
                "SELECT * FROM ml.plain_batch('t')",
                "CALL ml.score_table('plain', 't', 'scored')",
                "SELECT ml.attach_scoring_trigger('t', 'plain', 'score', 'statement', 'null')",
                "INSERT INTO t VALUES (1001, 41, 3), (1002, 'infinity', 4)",
                "SELECT ml.attach_scoring_trigger('r', 'plain', 'score', 'row', 'null')",
                "INSERT INTO r VALUES (1, 41, 3), (2, 'infinity', 4)",
                "SELECT ml.detach_scoring_trigger('r', 'plain')",
                "SELECT ml.deploy('plain', 1)",
            ):
                cur.execute(statement)
            cur.execute("RESET search_path")
            assert traps.hits(cur) == (0, [])
            cur.execute("DELETE FROM t WHERE age = 'infinity'")  # scored NULL, recorded
            assert db.one("SELECT count(*) FROM pg_roles WHERE rolname = 'appowner'") == 1
    finally:
        victim.close()
    # The client-side command, on a connection with the same search_path.
    dsn = f"{owned_db}?options={HOSTILE_PATH.replace(' ', '%20').replace('=', '%3D')}"
    result = CliRunner().invoke(
        cli, ["pg", "score", "plain", "--table", "t", "--into", "scored_cli", "--dsn", dsn]
    )
    assert result.exit_code == 0, result.output
    with psycopg2.connect(owned_db) as check, check.cursor() as cur:
        assert traps.hits(cur) == (0, [])
        cur.execute("SELECT count(*) FROM scored_cli")
        assert cur.fetchone()[0] == 201
    check.close()
    assert_no_superuser(db)


def test_every_function_in_ml_pins_its_search_path(db: Db) -> None:
    """Structural guard: installed, generated and trigger functions alike."""
    unpinned = db.column(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'ml'::regnamespace "
        "AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)"
    )
    assert unpinned == []
    assert db.one("SELECT count(*) FROM pg_proc WHERE pronamespace = 'ml'::regnamespace") > 25


def test_install_pins_functions_deployed_by_older_versions(db: Db) -> None:
    db.run("ALTER FUNCTION ml.plain RESET search_path")
    install(db.conn)
    config = db.one("SELECT proconfig FROM pg_proc WHERE oid = 'ml.plain'::regproc")
    assert "search_path=pg_catalog, pg_temp" in config


# Finding 2 ---------------------------------------------------------------------------------


def test_ml_admin_cannot_point_the_backend_at_its_own_code(
    ml_dsn: str, db: Db, roles: dict[str, Db]
) -> None:
    bob = roles["bob"]
    for statement in (
        "UPDATE ml.settings SET value = '[\"/tmp/bob\"]' WHERE key = 'sys_path'",
        "INSERT INTO ml.settings VALUES ('sys_path_extra', '[\"/tmp/bob\"]')",
        "DELETE FROM ml.settings",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            bob.run(statement)
    result = CliRunner().invoke(cli, ["pg", "install", "--dsn", as_role(ml_dsn, "bob")])
    assert result.exit_code != 0 and "needs a superuser" in str(result.exception)
    assert "/tmp/bob" not in db.one("SELECT value FROM ml.settings WHERE key = 'sys_path'")
    assert_no_superuser(db)


# Findings 3 and 5 --------------------------------------------------------------------------


def _crafted_model(db: Db, name: str, marker: Path) -> str:
    """Upload (as a superuser) a pickle that creates ``marker`` when unpickled; never deploy it."""
    payload = pickle.dumps(_Payload(str(marker)))
    digest = hashlib.sha256(payload).hexdigest()
    signature = {
        "name": name,
        "features": [{"name": "age", "type": "double"}],
        "task": "regression",
        "sha256": digest,
    }
    db.run("DELETE FROM ml.models WHERE name = %s", name)
    db.run(
        "INSERT INTO ml.models (name, version, sha256, artifact, signature) "
        "VALUES (%s, 1, %s, %s, %s)",
        name,
        digest,
        psycopg2.Binary(payload),
        json.dumps(signature),
    )
    return digest


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_users_never_reach_an_undeployed_artifact(
    db: Db, roles: dict[str, Db], tmp_path: Path
) -> None:
    marker = Path("/tmp") / f"udfs-pwned-{tmp_path.name}"
    marker.unlink(missing_ok=True)
    digest = _crafted_model(db, "staged", marker)
    alice = roles["alice"]
    alice.run("CREATE TABLE IF NOT EXISTS alice_t (id bigint, age float8)")
    alice.run("INSERT INTO alice_t VALUES (1, 40)")
    with pytest.raises(psycopg2.Error, match="model 'staged' is not deployed"):
        alice.run("SELECT * FROM ml._score_arrays('staged', 'alice_t', 'id', NULL, NULL)")
    assert alice.one("SELECT ml._live_artifact('staged', 1, %s)", digest) is None
    with pytest.raises(psycopg2.errors.UndefinedFunction):
        alice.run("SELECT * FROM ml._artifact('staged', 1)")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        alice.run("SELECT artifact FROM ml.models")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        alice.run("SELECT ml.deploy('staged', 1)")
    # A version that is no longer live is not handed out either.
    v1 = db.one("SELECT sha256 FROM ml.models WHERE name = 'plain' AND version = 1")
    live = db.rows("SELECT version, sha256 FROM ml._live('plain')")[0]
    if live != (1, v1):
        assert alice.one("SELECT ml._live_artifact('plain', 1, %s)", v1) is None
    assert not marker.exists(), "the crafted pickle was unpickled"
    db.run("DELETE FROM ml.models WHERE name = 'staged'")
    assert_no_superuser(db)


# Findings 4 and 6 --------------------------------------------------------------------------


@pytest.fixture
def hr(db: Db) -> Iterator[None]:
    """A table alice may not read, whose trigger records rejected rows."""
    db.run("DROP TABLE IF EXISTS hr")
    db.run("CREATE TABLE hr (email text PRIMARY KEY, age text, tenure bigint, score float8)")
    db.run("SELECT ml.attach_scoring_trigger('hr', 'plain', 'score', 'row', 'null')")
    db.run("INSERT INTO hr VALUES ('ceo@corp.example', 'salary=950000', 3)")
    yield
    db.run("DROP TABLE hr")
    db.run("SELECT ml.purge_scoring_errors()")


def test_scoring_errors_show_readers_only_their_tables_and_no_values(
    db: Db, roles: dict[str, Db], hr
) -> None:
    alice = roles["alice"]
    assert alice.one("SELECT count(*) FROM ml.scoring_errors") == 0
    key, error, value = db.rows("SELECT key, error, value FROM ml.scoring_errors")[0]
    assert key == {"email": "ceo@corp.example"} and value is None
    assert "salary" not in error and "950000" not in error
    db.run("GRANT SELECT ON hr TO alice")
    assert alice.column("SELECT key->>'email' FROM ml.scoring_errors") == ["ceo@corp.example"]
    db.run("REVOKE SELECT ON hr FROM alice")
    for statement in ("DELETE FROM ml.scoring_errors", "SELECT ml.purge_scoring_errors()"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            alice.run(statement)
    assert roles["bob"].one("SELECT ml.purge_scoring_errors('hr')") == 1
    assert db.one("SELECT count(*) FROM ml.scoring_errors") == 0


def test_errors_cannot_be_forged_nor_grow_without_bound(db: Db, roles: dict[str, Db], hr) -> None:
    alice = roles["alice"]
    with pytest.raises(psycopg2.errors.UndefinedFunction):
        alice.run("SELECT ml._record_error('hr', '{}', 'plain', 1, 'forged')")
    forged = (
        "INSERT INTO ml.scoring_errors (table_oid, key, model, version, error) "
        "VALUES (%s::regclass, '{}', 'plain', 1, 'forged')"
    )
    alice.run(
        "CREATE TABLE IF NOT EXISTS mine (id bigint PRIMARY KEY, age text, tenure bigint, score float8)"
    )
    for table in ("hr", "mine"):  # outside a trigger, and hr is not alice's to write
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
            alice.run(forged, table)
    # Errors of her own table's trigger: kept, but only the newest few.
    alice.run("SELECT ml.attach_scoring_trigger('mine', 'plain', 'score', 'statement', 'null')")
    db.run("INSERT INTO ml.settings VALUES ('errors_max_rows_per_table', '5')")
    try:
        for _ in range(3):
            alice.run(
                "INSERT INTO mine SELECT i, 'x' || i, 1 FROM generate_series(1, 4) i "
                "ON CONFLICT (id) DO NOTHING"
            )
            alice.run("DELETE FROM mine")
        kept = alice.column("SELECT error FROM ml.scoring_errors WHERE table_name = 'public.mine'")
        assert len(kept) == 5
        assert all("forged" not in e for e in kept)
    finally:
        db.run("DELETE FROM ml.settings WHERE key = 'errors_max_rows_per_table'")
        alice.run("DROP TABLE mine")
    assert db.one("SELECT count(*) FROM ml.scoring_errors WHERE error = 'forged'") == 0
    assert_no_superuser(db)


# Finding 7 ---------------------------------------------------------------------------------


def test_install_refuses_a_schema_made_by_someone_else(ml_dsn: str, db: Db) -> None:
    dsn = owned_database(ml_dsn, db, "udfs_attack_schema", "appowner2")
    try:
        squatter = Db(as_role(dsn, "appowner2"))
        squatter.run("CREATE SCHEMA ml")
        squatter.run("CREATE TABLE ml.settings (key text PRIMARY KEY, value text NOT NULL)")
        squatter.close()
        conn = psycopg2.connect(dsn)
        try:
            with pytest.raises(psycopg2.Error, match="schema ml is owned by appowner2"):
                install(conn)
        finally:
            conn.close()
        check = Db(dsn)
        assert (
            check.column("SELECT proname FROM pg_proc WHERE pronamespace = 'ml'::regnamespace")
            == []
        )
        check.close()
        assert not db.one("SELECT rolsuper FROM pg_roles WHERE rolname = 'appowner2'")
    finally:
        drop_database(db, "udfs_attack_schema")
        db.run("DROP ROLE IF EXISTS appowner2")


# Finding 8 ---------------------------------------------------------------------------------


def test_users_see_no_server_paths(db: Db, roles: dict[str, Db]) -> None:
    alice = roles["alice"]
    assert "udfs_path" not in alice.one("SELECT ml.runtime_info()")
    assert "udfs_path" in db.one("SELECT ml.runtime_info()")
    with pytest.raises(psycopg2.errors.UndefinedFunction):
        alice.run("SELECT ml._sys_path()")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        alice.run("SELECT * FROM ml.settings")


def test_a_bytea_feature_is_refused_by_name(db: Db) -> None:
    db.run("DROP TABLE IF EXISTS binary_features")
    db.run("CREATE TABLE binary_features (id bigint, age bytea, tenure bigint)")
    db.run("INSERT INTO binary_features VALUES (1, '\\xff00'::bytea, 3)")
    with pytest.raises(
        psycopg2.Error, match=r"column 'age' expects double, got b'\\xff\\x00' \(bytes\).*bytea"
    ):
        db.run("SELECT * FROM ml.plain_batch('binary_features')")


def test_password_authentication_for_the_embedded_cluster(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "pg", auth="password")
    try:
        dsn = cluster.up()
        assert "passfile=" in dsn and (tmp_path / "pg" / "pgpass").stat().st_mode & 0o077 == 0
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW password_encryption")
            assert cur.fetchone()[0] == "scram-sha-256"
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(dsn.split("?")[0], passfile="/dev/null")
        with pytest.raises(Exception, match="created with password authentication"):
            LocalCluster(tmp_path / "pg", auth="trust").up()
    finally:
        cluster.destroy()
