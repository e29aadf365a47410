"""The demo's PostgreSQL half: the embedded cluster, loading tables, scoring with SQL, a trigger."""

from __future__ import annotations

import io
from typing import Any

import click
import pandas as pd
import psycopg2
from psycopg2 import sql

from udfs.paths import home
from udfs.postgres.client.cluster import LocalCluster
from udfs.postgres.client.deploy import deploy
from udfs.postgres.client.install import install
from udfs.postgres.client.score import score_table
from udfs.signature import Signature
from udfs.store import ModelRef, StorePath

_PG_TYPES = {"f": "double precision", "i": "bigint", "b": "boolean", "O": "text"}


def start(refs: list[ModelRef], store: StorePath) -> tuple[Any, str]:
    """Start (or reuse) the embedded cluster, install ml and deploy the demo models."""
    dsn = LocalCluster(home() / "pg").up()
    conn = psycopg2.connect(dsn)
    install(conn)
    for ref in refs:
        deploy(conn, ref.name, ref.version, store=store)
    return conn, dsn


def _create(cur: Any, name: str, frame: pd.DataFrame) -> None:
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_PG_TYPES[frame[c].dtype.kind]))
        for c in frame.columns
    ]
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    cur.execute(
        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY (id))").format(
            sql.Identifier(name), sql.SQL(", ").join(columns)
        )
    )


def copy_in(cur: Any, name: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame into an existing table; empty fields are NULL."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    buffer.seek(0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '')").format(
        sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    cur.copy_expert(statement.as_string(cur), buffer)


def load(conn: Any, frames: dict[str, pd.DataFrame]) -> None:
    """Create one table per frame (primary key ``id``) and COPY the rows in."""
    with conn, conn.cursor() as cur:
        for name, frame in frames.items():
            _create(cur, name, frame)
            copy_in(cur, name, frame)
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))


def score(conn: Any, signature: Signature, table: str, target: str) -> pd.DataFrame:
    """Score ``table`` into ``target`` with ml.score_table, chunk by chunk with a progress bar."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(target)))
    with click.progressbar(length=1, label=f"    postgres: {signature.name}", width=30) as bar:

        def progress(done: int, chunks: int, _rows: int) -> None:
            bar.length = chunks
            bar.update(1)

        score_table(conn, signature.name, table, target, ["id"], progress=progress)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(target)))
        names = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def trigger_demo(conn: Any, rows: pd.DataFrame) -> tuple[int, int]:
    """COPY new customers into a table with a statement trigger; return (rows, rows scored)."""
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS new_customers")
        cur.execute("CREATE TABLE new_customers (LIKE customers INCLUDING ALL)")
        cur.execute("ALTER TABLE new_customers ADD COLUMN churn bigint")
        cur.execute(
            "SELECT ml.attach_scoring_trigger('new_customers', 'churn', 'churn', "
            "mode => 'statement', on_error => 'null')"
        )
        copy_in(cur, "new_customers", rows)
        cur.execute("SELECT count(*), count(churn) FROM new_customers")
        return cur.fetchone()


def drift(conn: Any, model: str, table: str) -> list[tuple]:
    """``ml.drift`` of ``table`` against the model's training profile: (feature, psi, verdict)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT feature, psi, verdict FROM ml.drift(%s, %s::regclass)", (model, table))
        return cur.fetchall()
