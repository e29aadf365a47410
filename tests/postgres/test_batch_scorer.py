"""The batch lean path (udfs.fastpath.BatchScorer): the core's results from one pass of the trees.

Pure-Python checks against the core, and the same models deployed and scored in Postgres.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import psycopg2
import pytest
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

import udfs
from tests.postgres.conftest import Db, assert_same
from udfs import scoring
from udfs.fastpath import BatchScorer
from udfs.postgres.deploy import deploy

pytestmark = pytest.mark.postgres

NAMES = ["x0", "x1", "x2"]


def _fit(kind: str):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    if kind == "regressor":
        return GradientBoostingRegressor(n_estimators=15, random_state=0).fit(X, X[:, 0] * 3), X
    y = (X[:, 0] > 0).astype(int) + (2 * (X[:, 1] > 1) if kind == "multiclass" else 0)
    return GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0).fit(X, y), X


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    store = tmp_path_factory.mktemp("lean_store")
    out = {}
    for kind in ("binary", "multiclass", "regressor"):
        model, X = _fit(kind)
        udfs.save_model(model, f"lean_{kind}", sample=X, store=store, feature_names=NAMES)
        out[kind] = (model, X)
    return store, out


def _signature(store, name):
    return udfs.load_model(name, store=store).signature


def _core(model, signature, columns, proba):
    labels = scoring.predict(model, signature, columns)
    return labels, scoring.predict_proba(model, signature, columns) if proba else None


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regressor"])
def test_lean_batch_equals_the_core(models, kind: str) -> None:
    store, trained = models
    model, _ = trained[kind]
    signature = _signature(store, f"lean_{kind}")
    scorer = BatchScorer(model, signature)
    assert scorer.lean
    rng = np.random.default_rng(11)
    for _ in range(3):  # the first batch is verified against the core, the others are not
        batch = rng.normal(size=(257, 3)) * 2
        columns = [np.ascontiguousarray(batch[:, j]) for j in range(3)]
        got = scorer.score(columns, proba=True)
        want = _core(model, signature, columns, signature.has_proba)
        assert got[0].dtype == want[0].dtype and got[0].tolist() == want[0].tolist()
        if signature.has_proba:
            assert got[1].dtype == want[1].dtype and got[1].tolist() == want[1].tolist()
        else:
            assert got[1] is None
    assert scorer.lean and scorer._verified == {signature.has_proba}


def test_nulls_and_infinities_take_the_core_path(models) -> None:
    store, trained = models
    model, _ = trained["binary"]
    signature = _signature(store, "lean_binary")
    scorer = BatchScorer(model, signature)
    columns = [np.array([0.5, np.nan, 1.0]), np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])]
    got = scorer.score(columns, proba=True)
    want = _core(model, signature, columns, True)
    assert got[0].tolist() == want[0].tolist() and got[0].isna().tolist() == want[0].isna().tolist()
    assert scorer._verified == set()  # nothing went through the lean path
    columns[0][1] = np.inf
    with pytest.raises(udfs.UdfsError, match="inf"):
        scorer.score(columns, proba=False)


def test_a_disagreement_switches_the_lean_path_off(models, monkeypatch) -> None:
    store, trained = models
    model, X = trained["binary"]
    signature = _signature(store, "lean_binary")
    scorer = BatchScorer(model, signature)
    columns = [np.ascontiguousarray(X[:50, j]) for j in range(3)]
    wrong = (pd.Series([0] * 50).astype("Int64"), None)
    monkeypatch.setattr(scorer, "_lean_score", lambda *_: wrong)
    got = scorer.score(columns, proba=False)
    assert got[0].tolist() == _core(model, signature, columns, False)[0].tolist()
    assert not scorer.lean


@pytest.fixture(scope="module")
def lean_data(db: Db, models) -> np.ndarray:
    """lean_src: 40 rows of the three doubles, one of them with a NULL; the data in numpy."""
    store, _ = models
    conn = psycopg2.connect(db.dsn)
    try:
        for kind in ("binary", "multiclass", "regressor"):
            deploy(conn, f"lean_{kind}", store=store)
    finally:
        conn.close()
    rng = np.random.default_rng(5)
    data = rng.normal(size=(40, 3)) * 2
    data[7, 1] = np.nan  # a NULL: that chunk goes through the core, and stays right
    db.run("DROP TABLE IF EXISTS lean_src")
    db.run("CREATE TABLE lean_src (id int PRIMARY KEY, x0 float8, x1 float8, x2 float8, s float8)")
    with db.conn.cursor() as cur:
        for i, row in enumerate(data):
            values = [None if np.isnan(v) else float(v) for v in row]
            cur.execute(
                "INSERT INTO lean_src (id, x0, x1, x2) VALUES (%s, %s, %s, %s)", [i, *values]
            )
    db.run("DROP TABLE IF EXISTS lean_clean")
    db.run("CREATE TABLE lean_clean AS SELECT * FROM lean_src WHERE id <> 7")
    return data


def lean_state(db: Db, name: str) -> list:
    """[lean in use, verified kinds] of ``name``'s batch scorer in this backend."""
    db.run(
        "CREATE OR REPLACE FUNCTION pg_temp.lean_state(name text) RETURNS text "
        "LANGUAGE plpython3u AS $$\n"
        "for key, loaded in GD.get('udfs.models', {}).items():\n"
        "    if key[0] == name:\n"
        "        return repr([loaded.batch.lean, sorted(loaded.batch._verified)])\n"
        "$$"
    )
    return ast.literal_eval(db.one("SELECT pg_temp.lean_state(%s)", name))


def _sklearn(model, data, method: str) -> list:
    out = []
    for row in data:
        if np.isnan(row).any():
            out.append(None)
            continue
        value = getattr(model, method)(row.reshape(1, -1).astype(np.float64))[0]
        if method == "predict_proba":
            value = float(value[1]) if len(value) == 2 else [float(v) for v in value]
        out.append(value.item() if isinstance(value, np.generic) else value)
    return out


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regressor"])
def test_lean_models_in_postgres(db: Db, lean_data, models, kind: str) -> None:
    lean_db, data = db, lean_data
    model = models[1][kind][0]
    name = f"lean_{kind}"
    lean_db.run(f"DROP TABLE IF EXISTS {name}_out")
    lean_db.run(f"CALL ml.score_table('{name}', 'lean_src', '{name}_out', ARRAY['id'])")
    got = lean_db.rows(f"SELECT * FROM {name}_out ORDER BY id")
    assert_same([r[1] for r in got], _sklearn(model, data, "predict"), one_row=True)
    if kind != "regressor":
        assert_same([r[2] for r in got], _sklearn(model, data, "predict_proba"), proba=True)
    assert lean_state(lean_db, name) == [True, []]  # the NULL sent the chunk to the core
    # Without the NULL row the chunk goes through the lean path (verified on this first one).
    clean = [r[1] for r in got if r[0] != 7]
    for _ in range(2):
        batch = lean_db.rows(
            f"SELECT key::int, prediction FROM ml.{name}_batch('lean_clean', 'id')"
        )
        assert_same([p for _, p in sorted(batch)], clean)
    assert lean_state(lean_db, name) == [True, [kind != "regressor"]]


def test_lean_statement_trigger(db: Db, lean_data, models) -> None:
    lean_db, model = db, models[1]["regressor"][0]
    lean_db.run("DROP TABLE IF EXISTS lean_dst")
    lean_db.run("CREATE TABLE lean_dst (LIKE lean_src INCLUDING ALL)")
    lean_db.run("SELECT ml.attach_scoring_trigger('lean_dst', 'lean_regressor', 's', 'statement')")
    lean_db.run("INSERT INTO lean_dst SELECT * FROM lean_src")
    got = lean_db.column("SELECT s FROM lean_dst ORDER BY id")
    assert_same(got, _sklearn(model, lean_data, "predict"), one_row=True)
    lean_db.run("INSERT INTO lean_dst SELECT id + 100, x0, x1, x2 FROM lean_src WHERE id <> 7")
    more = lean_db.column("SELECT s FROM lean_dst WHERE id >= 100 ORDER BY id")
    assert_same(more, [v for i, v in enumerate(got) if i != 7], one_row=True)
