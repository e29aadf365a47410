"""`udfs pg install`: create the ml schema and record where PL/Python finds udfs."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Any

import udfs
from udfs.errors import ConfigError
from udfs.postgres.cluster import postgres_can_read

INSTALL_SQL = Path(__file__).resolve().parents[2] / "postgres" / "install.sql"
_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")


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
    """Create or update the ml schema; return what the backend reports (``ml.runtime_info()``).

    Idempotent. Needs a superuser: plpython3u is an untrusted language. ``allow_pickles``:
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
        cur.execute(INSTALL_SQL.read_text())
        cur.execute(
            "INSERT INTO ml.settings (key, value) VALUES ('sys_path', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (json.dumps(paths),),
        )
        if allow_pickles is not None:
            cur.execute(
                "INSERT INTO ml.settings (key, value) VALUES ('allow_pickles', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                ("on" if allow_pickles else "off",),
            )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ml.runtime_info()")
        info = cur.fetchone()[0]  # jsonb arrives as a dict
    return info
