"""`udfs pg score`: ml.score_table driven from the client, one chunk at a time, with progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ


def score_table(
    conn: Any,
    model: str,
    source: str,
    target: str,
    keep_columns: list[str] | None = None,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int, int], None] | None = None,
) -> int:
    """Write ``target`` with the kept columns and predictions of ``source``; return the rows.

    Does what ``CALL ml.score_table(...)`` does, in one REPEATABLE READ transaction (every chunk
    sees the same snapshot), calling ``progress(chunks_done, chunks, rows)`` after each chunk.
    """
    previous = conn.isolation_level
    conn.set_isolation_level(ISOLATION_LEVEL_REPEATABLE_READ)
    try:
        return _score(conn, model, source, target, keep_columns, chunk_rows, progress)
    finally:
        if not conn.closed:  # a lost connection: let its own error through, not this one
            conn.set_isolation_level(previous)


def _score(conn: Any, model, source, target, keep_columns, chunk_rows, progress) -> int:
    total = 0
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT source_table::text, block_from, block_to "
                "FROM ml._score_plan(%s, %s, %s, %s, %s, pg_catalog.current_schema())",
                (model, source, target, keep_columns, chunk_rows),
            )
            chunks = cur.fetchall()
            for done, (table, lo, hi) in enumerate(chunks, start=1):
                cur.execute(
                    "SELECT ml._score_chunk(%s, %s, %s, %s, %s, %s, pg_catalog.current_schema())",
                    (model, table, target, keep_columns, lo, hi),
                )
                rows = cur.fetchone()[0]
                total += rows
                if progress is not None:
                    progress(done, len(chunks), rows)
        conn.commit()
    except BaseException:
        # Not `with conn`: its rollback on a lost connection would hide why it was lost.
        if not conn.closed:
            conn.rollback()
        raise
    return total
