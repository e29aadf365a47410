"""Small helpers shared by the PostgreSQL reliability tests (tests/reliability/test_pg_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2

# Every connection a reliability test opens gives up instead of waiting forever on a lock.
TIMEOUTS = "-c statement_timeout=120000 -c lock_timeout=60000"


def connect(dsn: str, autocommit: bool = True) -> Any:
    """A psycopg2 connection (its own backend) whose statements time out instead of hanging."""
    conn = psycopg2.connect(dsn, options=TIMEOUTS)
    conn.autocommit = autocommit
    return conn


def alive(conn: Any) -> None:
    """The connection (and so its backend) still answers after an error."""
    if not conn.autocommit:
        conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,), "the backend did not survive"


def names(message: str, model: str, columns: set[str]) -> bool:
    """Whether an error message names the model and one of ``columns``."""
    return f"model '{model}'" in message and any(f"'{c}'" in message for c in columns)


def backend_rss_kib(conn: Any) -> int:
    """Resident memory of the connection's backend, from /proc (readable as root)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])
