"""ml.<name>_explain and ml.<name>_explain_batch: the core's numbers, exactly, in SQL."""

from __future__ import annotations

import json

import numpy as np
import psycopg2
import pytest

import udfs
from tests.fixtures.explain import explain_models, generated_rows
from tests.fixtures.postgres import Db, create_customers
from udfs.demo.data import FEATURES
from udfs.explain import DATA_FILE, explainer, save_time_data
from udfs.postgres.client.deploy import deploy, rollback
from udfs.postgres.client.install import install

NAMES = ("xforest", "xboost", "xlogit", "xridge")


@pytest.fixture(scope="module")
def setup(pg_db, trained, tmp_path_factory):
    store = tmp_path_factory.mktemp("explain_store")
    models = explain_models(trained)
    made = {}
    conn = psycopg2.connect(pg_db)
    try:
        install(conn, allow_pickles=True)
    finally:
        conn.close()
    db = Db(pg_db)
    for name, t in models.items():
        ref = udfs.save_model(t.model, name, sample=t.train[FEATURES], store=store)
        sig = ref.signature()
        data = json.loads((ref.path / DATA_FILE).read_text())  # written by save_model
        assert data == save_time_data(t.model, sig, t.train[FEATURES])
        deploy(db.conn, name, store=store)  # uploads it into ml.models.explain
        made[name] = explainer(t.model, sig, data)
    rows = generated_rows()
    rows.insert(0, "id", np.arange(1, len(rows) + 1))
    create_customers(db, "people", rows)
    yield db, store, made, rows
    db.close()


@pytest.mark.parametrize("name", NAMES)
def test_explain_equals_the_core_exactly(setup, name):
    db, _, made, rows = setup
    expected = made[name].records([rows[f] for f in FEATURES])
    query = f"SELECT ml.{name}_explain(age, tenure, plan, active) FROM people ORDER BY id"
    assert db.column(query) == expected
    batch = dict(db.rows(f"SELECT key, explanation FROM ml.{name}_explain_batch('people', 'id')"))
    assert [batch[str(i)] for i in rows["id"]] == expected
    raw = made[name].raw_output([rows[f] for f in FEATURES])
    for got, want in zip(expected, raw.tolist(), strict=True):
        if got is None:
            assert want != want
        else:
            assert got["base_value"] + sum(got["contributions"].values()) == pytest.approx(
                want, abs=1e-9, rel=0
            )


def test_batch_without_a_key_numbers_the_rows(setup):
    db, *_ = setup
    keys = db.column("SELECT key FROM ml.xlogit_explain_batch('people')")
    assert keys == [str(i) for i in range(1, len(keys) + 1)]
    nulls = db.one(
        "SELECT count(*) FROM ml.xlogit_explain_batch('people') WHERE explanation IS NULL"
    )
    assert nulls == db.one("SELECT count(*) FROM people WHERE active IS NULL") > 0


def test_the_explanation_reads_naturally_in_sql(setup):
    db, *_ = setup
    value = db.one(
        "SELECT (ml.xridge_explain(41.0, 12, 'pro', true) -> 'contributions' ->> 'plan')::float8"
    )
    assert isinstance(value, float)


def test_explain_needs_pickles_allowed(setup):
    db, *_ = setup
    db.run("UPDATE ml.settings SET value = 'off' WHERE key = 'allow_pickles'")
    other = Db(db.dsn)  # a new backend: nothing cached
    try:
        with pytest.raises(psycopg2.Error, match="does not load pickled models"):
            other.one("SELECT ml.xboost_explain(41.0, 12, 'pro', true)")
    finally:
        other.close()
        db.run("UPDATE ml.settings SET value = 'on' WHERE key = 'allow_pickles'")


def test_redeploy_and_rollback_replace_the_explain_functions(setup, trained):
    db, store, _, _ = setup
    t = explain_models(trained)["xridge"]
    ref = udfs.save_model(t.model, "xridge", sample=t.train[FEATURES], store=store)
    (ref.path / DATA_FILE).unlink()  # a version saved without explain data (an older udfs)
    deploy(db.conn, "xridge", store=store)  # version 2: no explain functions
    assert db.one("SELECT to_regproc('ml.xridge_explain') IS NULL")
    assert db.one("SELECT to_regproc('ml.xridge_explain_batch') IS NULL")
    assert db.one("SELECT to_regproc('ml.xridge') IS NOT NULL")
    assert rollback(db.conn, "xridge") == ref.version - 1
    assert db.one("SELECT ml.xridge_explain(41.0, 12, 'pro', true) IS NOT NULL")


def test_models_without_explain_data_get_no_explain_functions(setup):
    db, *_ = setup
    assert db.column("SELECT proname FROM pg_proc WHERE proname LIKE 'x%explain%' ORDER BY 1") == [
        f"{n}_explain{s}" for n in sorted(NAMES) for s in ("", "_batch")
    ]
