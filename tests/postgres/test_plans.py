"""Scoring plans inside PostgreSQL: models load as data, pickles only where a superuser allows them."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

import udfs
from tests.fixtures.postgres import Db, role_db
from udfs.postgres.client.deploy import deploy

pytestmark = pytest.mark.postgres
ALLOW = "INSERT INTO ml.settings VALUES ('allow_pickles', 'on')"
DENY = "DELETE FROM ml.settings WHERE key = 'allow_pickles'"


def backend_state(db: Db) -> dict:
    """What this backend has imported, and how it holds each loaded model."""
    db.run(
        "CREATE OR REPLACE FUNCTION pg_temp.udfs_state() RETURNS text LANGUAGE plpython3u AS $$\n"
        "import json, sys\n"
        "loaded = {k[0]: type(v.scorer).__name__ for k, v in GD.get('udfs.models', {}).items()}\n"
        "mods = [m for m in ('sklearn', 'scipy', 'joblib') if m in sys.modules]\n"
        "return json.dumps({'loaded': loaded, 'imported': mods})\n$$"
    )
    return json.loads(db.one("SELECT pg_temp.udfs_state()"))


def test_plan_models_load_without_scikit_learn(ml_dsn: str) -> None:
    fresh = Db(ml_dsn)
    try:
        fresh.one("SELECT ml.churn_proba(40, 3, 'pro', true)")
        fresh.one("SELECT ml.spend(40, 3, 'pro', NULL)")
        state = backend_state(fresh)
    finally:
        fresh.close()
    assert state == {"loaded": {"churn": "PlanRunner", "spend": "PlanRunner"}, "imported": []}


@pytest.fixture(scope="module")
def svr_store(tmp_path_factory) -> Path:
    """A model no plan covers (an SVR): it can only run as a pickle."""
    store = tmp_path_factory.mktemp("svr")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(40, 10, 200), "tenure": rng.integers(0, 30, 200)})
    model = make_pipeline(StandardScaler(), SVR()).fit(X, X["age"] * 2)
    ref = udfs.save_model(model, "svr", sample=X, store=store)
    assert ref.signature().scoring_path().startswith("sklearn: ")
    return store


def test_a_model_without_plan_needs_pickles_allowed(db: Db, svr_store: Path) -> None:
    with pytest.raises(psycopg2.Error) as refused:
        deploy(db.conn, "svr", store=svr_store)
    message = str(refused.value)
    assert "model 'svr' v1 has no scoring plan" in message
    assert "SVR" in message and "udfs pg install --allow-pickles" in message
    db.run(ALLOW)
    try:
        assert deploy(db.conn, "svr", store=svr_store) == 1
        model = udfs.load_model("svr", store=svr_store).model
        want = model.predict(pd.DataFrame({"age": [40.0], "tenure": [3]}))[0]
        assert db.one("SELECT ml.svr(40, 3)") == want
    finally:
        db.run(DENY)
    fresh = Db(db.dsn)  # turned off again: a new backend refuses to unpickle it
    try:
        with pytest.raises(psycopg2.Error, match="does not load pickled models"):
            fresh.one("SELECT ml.svr(40, 3)")
    finally:
        fresh.close()


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_ml_admin_cannot_run_a_crafted_pickle(ml_dsn: str, db: Db, tmp_path: Path) -> None:
    """A member of ml_admin (not a superuser) uploads a pickle with a correct sha256."""
    bob = role_db(ml_dsn, db, "udfs_bob_pickle", "ml_admin")
    marker = Path("/tmp") / f"udfs-payload-{tmp_path.name}"
    marker.unlink(missing_ok=True)
    payload = pickle.dumps(_Payload(str(marker)))
    digest = hashlib.sha256(payload).hexdigest()
    signature = {
        "name": "evil",
        "features": [{"name": "age", "type": "double"}],
        "task": "regression",
        "sha256": digest,
        # Claiming a plan does not help: there are no plan bytes, so it is a pickle.
        "plan": {"sha256": "0" * 64, "format_version": 1},
    }
    try:
        bob.run(
            "INSERT INTO ml.models (name, version, sha256, artifact, signature) "
            "VALUES ('evil', 1, %s, %s, %s)",
            digest,
            psycopg2.Binary(payload),
            json.dumps(signature),
        )
        with pytest.raises(psycopg2.Error, match="model 'evil' v1 has no scoring plan"):
            bob.run("SELECT ml.deploy('evil', 1)")
        with pytest.raises(psycopg2.errors.UndefinedFunction):
            bob.run("SELECT ml.evil(1.0)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            bob.run("UPDATE ml.settings SET value = 'on' WHERE key = 'allow_pickles'")
        assert not marker.exists(), "the crafted pickle ran"
        assert not db.one("SELECT rolsuper FROM pg_roles WHERE rolname = 'udfs_bob_pickle'")
    finally:
        bob.close()
        db.run("DELETE FROM ml.models WHERE name = 'evil'")


def test_a_version_saved_before_plans_gets_one_at_deploy(db: Db, model_store, tmp_path) -> None:
    store = tmp_path / "store"
    shutil.copytree(model_store / "churn", store / "oldchurn")
    version = store / "oldchurn" / "1"
    for name in ("plan.json", "plan.npz"):
        (version / name).unlink()
    signature = json.loads((version / "model.json").read_text())
    signature.pop("plan")
    signature["name"] = "oldchurn"
    (version / "model.json").write_text(json.dumps(signature))
    assert udfs.load_model("oldchurn", store=store).plan is None
    deploy(db.conn, "oldchurn", store=store)
    assert (version / "plan.npz").is_file()
    assert udfs.load_model("oldchurn", store=store).signature.scoring_path() == "plan"
    assert db.one("SELECT ml.oldchurn_proba(40, 3, 'pro', true)") == db.one(
        "SELECT ml.churn_proba(40, 3, 'pro', true)"
    )
    assert backend_state(db)["loaded"]["oldchurn"] == "PlanRunner"
