"""Which server a `udfs pg` command talks to: --dsn, else the PG* variables, else the embedded one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from udfs.errors import ConfigError
from udfs.paths import home
from udfs.postgres.client.cluster import LocalCluster


def default_root() -> Path:
    """The embedded cluster's directory: ``<udfs home>/pg`` (``$UDFS_HOME``, else ``.udfs``)."""
    return home() / "pg"


# Any of these set means the user points libpq at a server of their own.
PG_ENV = ("PGHOST", "PGPORT", "PGDATABASE")


def resolve_dsn(dsn: str | None = None, root: Path | None = None) -> str:
    """The DSN to use; ``""`` lets libpq read the ``PG*`` environment variables.

    >>> resolve_dsn("postgresql://me@db/prod")
    'postgresql://me@db/prod'
    """
    if dsn:
        return dsn
    if any(os.environ.get(name) for name in PG_ENV):
        return ""
    root = root or default_root()
    status = LocalCluster(root).status()
    if not status["running"]:
        raise ConfigError(
            f"no PostgreSQL to talk to: the embedded cluster in {root} is not running. "
            "Start it with `udfs pg up`, or pass --dsn (or set PGHOST/PGPORT/PGDATABASE)"
        )
    return status["dsn"]


def connect(dsn: str | None = None, root: Path | None = None) -> Any:
    """A psycopg2 connection to the resolved server."""
    import psycopg2

    return psycopg2.connect(resolve_dsn(dsn, root))
