"""Postgres fixtures: a database per module with ml installed and every test model deployed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extras import execute_values

from udfs.postgres.deploy import deploy
from udfs.postgres.install import install

MODELS = ("spend", "churn", "segment", "plain")


class Db:
    """One connection (one backend: models load once) and one-line SQL checks."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def rows(self, query: str | sql.Composable, *params: Any) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    def one(self, query: str | sql.Composable, *params: Any) -> Any:
        return self.rows(query, *params)[0][0]

    def column(self, query: str | sql.Composable, *params: Any) -> list:
        return [row[0] for row in self.rows(query, *params)]

    def run(self, query: str | sql.Composable, *params: Any) -> None:
        self.rows(query, *params)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def ml_dsn(pg_db: str, model_store) -> str:
    """A database with ml installed and version 1 of every test model deployed."""
    conn = psycopg2.connect(pg_db)
    try:
        install(conn)
        for name in MODELS:
            deploy(conn, name, store=model_store)
    finally:
        conn.close()
    return pg_db


@pytest.fixture(scope="module")
def db(ml_dsn: str) -> Iterator[Db]:
    handle = Db(ml_dsn)
    yield handle
    handle.close()


def role_db(ml_dsn: str, db: Db, role: str, *grants: str) -> Db:
    """A connection as a new LOGIN ``role`` that is a member of ``grants``."""
    db.run(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    db.run(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    for grant in grants:
        db.run(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant), sql.Identifier(role)))
    return Db(ml_dsn.replace("postgres@", f"{role}@", 1))


def python_rows(frame: pd.DataFrame) -> list[tuple]:
    """DataFrame rows as Python values with None for every missing value."""
    out = []
    for record in frame.astype(object).itertuples(index=False):
        out.append(
            tuple(
                None
                if v is None or (isinstance(v, float) and np.isnan(v))
                else (v.item() if isinstance(v, np.generic) else v)
                for v in record
            )
        )
    return out


def create_customers(db: Db, table: str, frame: pd.DataFrame, primary_key: bool = True) -> None:
    """``table`` with the feature columns typed as the signatures say, filled from ``frame``."""
    name = sql.Identifier(*table.split(".")) if "." in table else sql.Identifier(table)
    pk = sql.SQL(" PRIMARY KEY" if primary_key else "")
    db.run(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
    db.run(
        sql.SQL(
            "CREATE TABLE {} (id bigint{}, age double precision, tenure bigint, plan text, "
            "active boolean, score double precision, label bigint)"
        ).format(name, pk)
    )
    with db.conn.cursor() as cur:
        execute_values(
            cur,
            sql.SQL("INSERT INTO {} (id, age, tenure, plan, active) VALUES %s")
            .format(name)
            .as_string(cur),
            python_rows(frame[["id", "age", "tenure", "plan", "active"]]),
        )


def assert_same(actual: list, wanted: list, proba: bool = False, one_row: bool = False) -> None:
    """Exact for labels and regression, 1e-12 for probabilities; None where NULL.

    ``one_row``: the values were computed one row at a time. scikit-learn itself gives a
    regression on one row and on a batch that differ in the last bit (BLAS sums in another
    order), so those are compared to 1e-12 too; labels stay exact.
    """
    assert len(actual) == len(wanted)
    for got, want in zip(actual, wanted, strict=True):
        if want is None or not (proba or (one_row and isinstance(want, float))):
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
