"""8 connections write into scored tables at once: nothing is lost, nothing is scored wrong.

Two tables carry a scoring trigger of ``plain`` with ``on_error => 'null'``: one a row trigger,
one a statement trigger. Each of 8 threads (its own connection, so its own backend) writes
ROWS_PER_CONNECTION rows, a quarter to each table by single-row INSERTs and a quarter by COPY.
About 2% of the rows have an infinite age, which the model refuses: they must be kept with a
NULL score and recorded in ml.scoring_errors. Rows with a NULL tenure (about 1%) get NULL by
the NULL policy, without an error, whatever their age.
"""

import io
import threading
import time

import numpy as np
import pandas as pd
import pytest
from psycopg2 import sql

from tests.fixtures.models import expected
from tests.fixtures.postgres import Db
from tests.reliability.pg_support import connect

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.slow]

CONNECTIONS = 8
ROWS_PER_CONNECTION = 10_000
COPY_ROWS = 500  # rows per COPY statement
TABLES = {"scored_by_row": "row", "scored_by_statement": "statement"}
DEADLINE = 240  # seconds: a thread still running by then is stuck (a deadlock or a hang)


def _rows(connection: int) -> pd.DataFrame:
    rng = np.random.default_rng(connection)
    n = ROWS_PER_CONNECTION
    frame = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) + connection * n,
            "age": rng.uniform(18, 80, n).round(6),
            "tenure": rng.integers(0, 120, n).astype(object),
        }
    )
    bad = rng.random(n) < 0.02
    frame.loc[bad, "age"] = np.where(rng.random(bad.sum()) < 0.5, np.inf, -np.inf)
    frame.loc[rng.random(n) < 0.01, "tenure"] = None
    # Quarters: INSERT into one table, COPY into it, INSERT into the other, COPY into it.
    tables = list(TABLES) if connection % 2 else list(reversed(TABLES))
    quarter = np.arange(n) * 4 // n
    frame["table"] = np.where(quarter < 2, tables[0], tables[1])
    frame["copy"] = quarter % 2 == 1
    return frame


def _copy_text(part: pd.DataFrame) -> str:
    lines = []
    for row in part.itertuples(index=False):
        age = (
            "Infinity"
            if row.age == np.inf
            else "-Infinity"
            if row.age == -np.inf
            else repr(row.age)
        )
        tenure = "\\N" if row.tenure is None else str(row.tenure)
        lines.append(f"{row.id}\t{age}\t{tenure}\n")
    return "".join(lines)


def _write(dsn: str, connection: int, errors: list) -> None:
    """One connection's share: per table, a quarter by INSERT and a quarter by COPY."""
    try:
        conn = connect(dsn)
        frame = _rows(connection)
        with conn.cursor() as cur:
            for table in dict.fromkeys(frame["table"]):
                mine = frame[frame["table"] == table]
                name = sql.Identifier(table)
                insert = sql.SQL("INSERT INTO {} (id, age, tenure) VALUES (%s, %s, %s)")
                for row in mine[~mine["copy"]].itertuples(index=False):
                    cur.execute(insert.format(name), (int(row.id), float(row.age), row.tenure))
                copy = sql.SQL("COPY {} (id, age, tenure) FROM STDIN").format(name)
                copied = mine[mine["copy"]]
                for start in range(0, len(copied), COPY_ROWS):
                    part = copied.iloc[start : start + COPY_ROWS]
                    cur.copy_expert(copy, io.StringIO(_copy_text(part)))
        conn.close()
    except Exception as exc:  # reported by the main thread
        errors.append((connection, exc))


@pytest.fixture(scope="module")
def tables(db: Db) -> None:
    for table, mode in TABLES.items():
        name = sql.Identifier(table)
        db.run(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        db.run(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, age double precision, tenure bigint, "
                "score double precision)"
            ).format(name)
        )
        db.run(
            "SELECT ml.attach_scoring_trigger(%s, 'plain', 'score', %s, on_error => 'null')",
            table,
            mode,
        )
    db.run("TRUNCATE ml.scoring_errors")


def test_concurrent_writers_lose_nothing(ml_dsn, db: Db, tables, trained) -> None:
    errors: list = []
    threads = [
        threading.Thread(target=_write, args=(ml_dsn, i, errors), daemon=True)
        for i in range(CONNECTIONS)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1, DEADLINE - (time.perf_counter() - started)))
    elapsed = time.perf_counter() - started
    assert not [t for t in threads if t.is_alive()], f"writers still running after {DEADLINE} s"
    assert not errors, errors
    frame = pd.concat([_rows(i) for i in range(CONNECTIONS)], ignore_index=True)
    # A NULL tenure makes the score NULL by the NULL policy before the model sees the age.
    invalid = ~np.isfinite(frame["age"].to_numpy(dtype=np.float64)) & frame["tenure"].notna()
    valid = frame[np.isfinite(frame["age"].to_numpy(dtype=np.float64))]
    want = dict(zip(valid["id"], expected(trained["plain"], valid), strict=True))
    want.update((i, None) for i in frame.loc[~frame["id"].isin(valid["id"]), "id"])
    lost = 0
    for table in TABLES:
        mine = frame["table"] == table
        ids = set(frame.loc[mine, "id"])
        got = dict(db.rows(sql.SQL("SELECT id, score FROM {}").format(sql.Identifier(table))))
        lost += len(ids - set(got))
        assert set(got) == ids, f"{table}: {len(ids - set(got))} rows lost"
        wrong = [i for i in ids if got[i] != want[i]]
        assert not wrong, f"{table}: {len(wrong)} rows scored wrong, e.g. {wrong[:3]}"
        recorded = db.column(
            "SELECT (key->>'id')::bigint FROM ml.scoring_errors WHERE table_name = %s",
            f"public.{table}",
        )
        assert sorted(recorded) == sorted(frame.loc[mine & invalid, "id"]), table
    print(
        f"concurrency: {CONNECTIONS} connections wrote {len(frame)} rows "
        f"({invalid.sum()} invalid) in {elapsed:.1f} s; rows lost: {lost}"
    )
