"""`udfs pg install`: create the ml schema, or upgrade it in place, and record where PL/Python
finds udfs.

The schema carries its version (``ml.settings`` key ``schema_version``; schemas from before
versions were recorded count as 1). Installing over any earlier schema migrates it in the same
transaction: ``install.sql`` only adds (``IF NOT EXISTS``) and drops what earlier schemas had in
another form, the entry points are recreated, and so are the functions of every live model,
through the same generator ``ml.deploy`` uses. Models, deployment history, triggers (which
point at functions that keep their identity), settings and recorded errors are kept.
"""

from __future__ import annotations

import json
import sysconfig
from importlib import resources
from pathlib import Path
from typing import Any

import udfs
from udfs.errors import ConfigError
from udfs.postgres.client.cluster import postgres_can_read
from udfs.postgres.server.ddl import entry_point_statements

_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
# The version of the ml schema this release installs. 2: the server side split from the client,
# ml._score_arrays without version arguments, ml._regenerate. 3: ml.models.profile (the training
# profile), ml._live_profile and ml.drift.
SCHEMA_VERSION = 3


def install_sql() -> str:
    """The text of ``install.sql``, read from inside the installed package."""
    return resources.files("udfs.postgres").joinpath("sql", "install.sql").read_text()


def python_paths() -> list[str]:
    """What the backend's sys.path needs: this environment's site-packages and udfs itself.

    The project root is listed explicitly because an editable install's .pth file is only read
    for site directories, and PL/Python does not treat ours as one.
    """
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    paths.append(str(Path(udfs.__file__).resolve().parents[1]))
    return list(dict.fromkeys(paths))


def _is_local(conn: Any) -> bool:
    host = conn.get_dsn_parameters().get("host", "")
    return host in _LOCAL_HOSTS or host.startswith("/")


def install(conn: Any, paths: list[str] | None = None, allow_pickles: bool | None = None) -> dict:
    """Create or upgrade the ml schema; return what the backend reports (``ml.runtime_info()``).

    Idempotent; over an earlier schema, an upgrade in place (see the module's docstring). Use a
    connection that has not called udfs's functions yet: a backend keeps the udfs it imported. Needs a superuser: plpython3u is an untrusted language. ``allow_pickles``:
    True lets versions without a scoring plan run their pickled artifact in the server (so every
    ``ml_admin`` can run code there), False forbids it, None leaves the setting as it is (off in
    a new install).

    >>> install(psycopg2.connect(dsn))["scikit-learn"]  # doctest: +SKIP
    '1.9.1'
    """
    paths = paths if paths is not None else python_paths()
    if _is_local(conn):
        unreadable = [p for p in paths if not postgres_can_read(Path(p))]
        if unreadable:
            raise ConfigError(
                f"the PostgreSQL server's OS user cannot read {', '.join(unreadable)}: PL/Python "
                "could not import udfs and scikit-learn. Make these directories readable "
                "(e.g. chmod o+rx on them and their parents) and run udfs pg install again"
            )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            raise ConfigError("udfs pg install needs a superuser (plpython3u is untrusted)")
        before = _schema_version(cur)
        cur.execute(install_sql())
        for statement in entry_point_statements():
            cur.execute(statement)
        _set(cur, "sys_path", json.dumps(paths))
        if allow_pickles is not None:
            _set(cur, "allow_pickles", "on" if allow_pickles else "off")
        if before is not None:  # live models get this release's functions
            cur.execute("SELECT ml._regenerate()")
        _set(cur, "schema_version", str(SCHEMA_VERSION))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ml.runtime_info()")
        info = cur.fetchone()[0]  # jsonb arrives as a dict
    info["schema_version"] = SCHEMA_VERSION
    info["upgraded_from"] = before
    return info


def _schema_version(cur: Any) -> int | None:
    """The installed schema's version; None where there is none (1: before versions existed)."""
    cur.execute("SELECT pg_catalog.to_regclass('ml.settings') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT value FROM ml.settings WHERE key = 'schema_version'")
    row = cur.fetchone()
    if row is None:
        return 1
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"the ml schema in this database is version {version}, newer than this udfs "
            f"(version {SCHEMA_VERSION}): upgrade udfs instead of installing an older one over it"
        )
    return version


def _set(cur: Any, key: str, value: str) -> None:
    cur.execute(
        "INSERT INTO ml.settings (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )
