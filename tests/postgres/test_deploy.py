"""Redeploy, rollback, integrity and roles, against a real cluster."""

from __future__ import annotations

import shutil

import numpy as np
import psycopg2
import pytest
from sklearn.ensemble import GradientBoostingRegressor

import udfs
from tests.fixtures.postgres import Db, role_db
from udfs.errors import ConfigError, IntegrityError
from udfs.postgres.client.deploy import deploy, live_versions, rollback
from udfs.postgres.client.install import install

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_store, trained):
    """A copy of the shared store with a version 2 of 'plain' that predicts something else."""
    copy = tmp_path_factory.mktemp("deploy") / "store"
    shutil.copytree(model_store, copy)
    train = trained["plain"].train
    X = train[["age", "tenure"]].to_numpy(dtype=np.float64)
    v2 = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, train["spend"] * 2)
    udfs.save_model(v2, "plain", sample=X, store=copy, feature_names=["age", "tenure"])
    return copy


def predicted(db: Db) -> float:
    return db.one("SELECT ml.plain(40, 3)")


def version_of(store, version: int) -> float:
    return float(udfs.load_model("plain", version, store=store).predict([[40.0], [3]])[0])


def test_redeploy_reaches_an_open_connection_and_rollback_returns(ml_dsn, db: Db, store) -> None:
    other = Db(ml_dsn)
    try:
        assert predicted(other) == version_of(store, 1)  # loads v1 in that backend
        assert deploy(db.conn, "plain", store=store) == 2
        assert predicted(other) == version_of(store, 2)
        assert rollback(db.conn, "plain") == 1
        assert predicted(other) == version_of(store, 1)
        assert live_versions(db.conn)["plain"] == 1
    finally:
        other.close()


def test_rollback_without_history_is_refused(db: Db) -> None:
    with pytest.raises(psycopg2.Error, match="model 'segment' has no earlier deployment"):
        db.run("SELECT ml.rollback('segment')")


def test_tampered_plan_is_refused(ml_dsn, db: Db) -> None:
    """Another valid plan put in place of spend's (its own sha256 updated too): still refused."""
    original = db.rows(
        "SELECT plan, plan_sha256 FROM ml.models WHERE name = 'spend' AND version = 1"
    )
    db.run(
        "UPDATE ml.models m SET plan = o.plan, plan_sha256 = o.plan_sha256 FROM ml.models o "
        "WHERE m.name = 'spend' AND o.name = 'churn' AND o.version = 1"
    )
    fresh = Db(ml_dsn)  # a new backend, so nothing is cached
    try:
        with pytest.raises(
            psycopg2.Error, match=r"model 'spend' v1: scoring plan sha256 is .* refusing"
        ):
            fresh.run("SELECT ml.spend(40, 3, 'pro', true)")
    finally:
        fresh.close()
        db.run(
            "UPDATE ml.models SET plan = %s, plan_sha256 = %s WHERE name = 'spend' AND version = 1",
            *original[0],
        )


def test_same_version_with_other_bytes_is_refused(db: Db, store, tmp_path) -> None:
    other = tmp_path / "store"
    shutil.copytree(store, other)
    shutil.rmtree(other / "churn" / "1")
    shutil.copytree(other / "spend" / "1", other / "churn" / "1")  # a different model as churn@1
    sig = (other / "churn" / "1" / "model.json").read_text().replace('"spend"', '"churn"')
    (other / "churn" / "1" / "model.json").write_text(sig)
    with pytest.raises(IntegrityError, match="different models with the same version"):
        deploy(db.conn, "churn", 1, store=other)


def test_roles(ml_dsn, db: Db, store) -> None:
    nobody = role_db(ml_dsn, db, "udfs_nobody")
    user = role_db(ml_dsn, db, "udfs_analyst", "ml_user")
    admin = role_db(ml_dsn, db, "udfs_admin", "ml_admin")
    try:
        with pytest.raises(psycopg2.Error, match="permission denied for schema ml"):
            nobody.run("SELECT ml.plain(40, 3)")
        assert user.one("SELECT ml.plain(40, 3)") == predicted(db)
        with pytest.raises(psycopg2.Error, match="permission denied for function deploy"):
            user.run("SELECT ml.deploy('plain', 2)")
        with pytest.raises(psycopg2.Error, match="permission denied for table models"):
            user.run("UPDATE ml.models SET version = version")
        with pytest.raises(psycopg2.Error, match="permission denied for table settings"):
            user.run("UPDATE ml.settings SET value = '[\"/tmp\"]'")
        assert admin.one("SELECT ml.deploy('plain', 2)") == 2  # ml_admin is not a superuser
        assert user.one("SELECT ml.plain(40, 3)") == version_of(store, 2)
    finally:
        for handle in (nobody, user, admin):
            handle.close()


def test_public_cannot_execute_generated_functions(db: Db) -> None:
    acl = db.one("SELECT proacl::text FROM pg_proc WHERE oid = 'ml.churn_proba'::regproc")
    grants = acl.strip("{}").split(",")
    assert "ml_user=X/postgres" in grants
    assert not [g for g in grants if g.startswith("=")]  # "=X/..." would be PUBLIC


def test_install_is_idempotent_and_refuses_unreadable_paths(db: Db, tmp_path) -> None:
    assert install(db.conn)["scikit-learn"] == __import__("sklearn").__version__
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    if __import__("os").geteuid() != 0:
        pytest.skip("only root's files are closed to the postgres user")
    with pytest.raises(ConfigError, match=r"cannot read .*hidden"):
        install(db.conn, paths=[str(hidden)])


def test_install_replaces_an_older_attach_signature(db: Db) -> None:
    """Installs before the fillfactor argument had a 5-argument attach: install replaces it."""
    db.run("DROP FUNCTION ml.attach_scoring_trigger(regclass, text, text, text, text, integer)")
    db.run(
        "CREATE FUNCTION ml.attach_scoring_trigger(tbl regclass, model text, target_column text, "
        "mode text DEFAULT 'row', on_error text DEFAULT 'raise') RETURNS text "
        "LANGUAGE sql AS $$SELECT 'old'$$"
    )
    install(db.conn)
    assert db.column(
        "SELECT pronargs FROM pg_proc WHERE proname = 'attach_scoring_trigger' "
        "AND pronamespace = 'ml'::regnamespace"
    ) == [6]
