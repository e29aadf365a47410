"""XGBoost and LightGBM models inside PostgreSQL: deployed as plans, exactly the libraries' scores.

Per row (``ml.<name>``, ``ml.<name>_proba``) and vectorized (``ml.<name>_batch``), NULLs and
NaN-routed ages included, compared with the library's own predictions without tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from psycopg2 import sql

from tests.fixtures.boosting import (
    CLASSIFIERS,
    SPECS,
    library_input,
    save_all,
    scoring_frame,
)
from tests.fixtures.postgres import Db, create_customers
from udfs.postgres.client.deploy import deploy

pytestmark = pytest.mark.postgres
NAMES = list(SPECS)


@pytest.fixture(scope="module")
def deployed(db: Db, boosted, tmp_path_factory) -> Db:
    store = tmp_path_factory.mktemp("boosting-pg")
    save_all(boosted, store)
    for name in NAMES:
        assert deploy(db.conn, name, store=store) == 1
    for table, extremes in (("bx_rows", True), ("bx_rows_finite", False)):
        frame = scoring_frame(extremes=extremes)
        frame["tenure"] = [None if pd.isna(v) else int(v) for v in frame["tenure"]]
        create_customers(db, table, frame)
    return db


def _table(name: str) -> str:
    return "bx_rows" if SPECS[name][3] is None else "bx_rows_finite"


def _wanted(boosted, name: str) -> tuple[list, list | None]:
    m = boosted[name]
    X = library_input(m, scoring_frame(extremes=SPECS[name][3] is None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = np.asarray(m.model.predict(X)).tolist()
        proba = m.model.predict_proba(X)[:, 1].tolist() if name in CLASSIFIERS else None
    return labels, proba


def _args(name: str) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, SPECS[name][1]))


@pytest.mark.parametrize("name", NAMES)
def test_per_row_functions_equal_the_library(deployed: Db, boosted, name: str) -> None:
    labels, proba = _wanted(boosted, name)
    query = sql.SQL("SELECT ml.{}({}) FROM {} ORDER BY id").format(
        sql.Identifier(name), _args(name), sql.Identifier(_table(name))
    )
    assert deployed.column(query) == labels
    if proba is not None:
        query = sql.SQL("SELECT ml.{}({}) FROM {} ORDER BY id").format(
            sql.Identifier(f"{name}_proba"), _args(name), sql.Identifier(_table(name))
        )
        assert deployed.column(query) == proba


@pytest.mark.parametrize("name", NAMES)
def test_batch_function_equals_the_library(deployed: Db, boosted, name: str) -> None:
    labels, proba = _wanted(boosted, name)
    rows = deployed.rows(
        sql.SQL("SELECT * FROM ml.{}(%s, 'id') ORDER BY key::bigint").format(
            sql.Identifier(f"{name}_batch")
        ),
        _table(name),
    )
    assert [r[1] for r in rows] == labels
    if proba is not None:
        assert [r[2] for r in rows] == proba


def test_the_backend_runs_the_plans_without_the_libraries(deployed: Db) -> None:
    fresh = Db(deployed.dsn)
    try:
        for name in NAMES:
            fresh.one(
                sql.SQL("SELECT ml.{}({}) FROM bx_rows_finite LIMIT 1").format(
                    sql.Identifier(name), _args(name)
                )
            )
        fresh.run(
            "CREATE OR REPLACE FUNCTION pg_temp.bx_mods() RETURNS text[] LANGUAGE plpython3u "
            "AS $$\nimport sys\nreturn [m for m in ('xgboost', 'lightgbm', 'sklearn') "
            "if m in sys.modules]\n$$"
        )
        assert fresh.one("SELECT pg_temp.bx_mods()") == []
    finally:
        fresh.close()
