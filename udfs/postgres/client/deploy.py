"""`udfs pg deploy` and `udfs pg rollback`: upload a bundle and make a version live."""

from __future__ import annotations

import json
from typing import Any

import psycopg2
from psycopg2 import sql

from udfs.errors import IntegrityError
from udfs.store import ModelRef, StorePath, ensure_plan, resolve


def deploy(conn: Any, name: str, version: int | None = None, store: StorePath = None) -> int:
    """Upload ``name`` (latest version unless given) from the store and make it live.

    An already uploaded version is not uploaded again, but its sha256 must match the store's.
    The version's scoring plan travels with it (compiled and verified now if it was saved
    before plans existed); without one, the database must allow pickles. So does its training
    profile (``ml.drift``), checked against the artifact first; a version uploaded without
    one gets it when it is deployed again from a store that has it.

    >>> deploy(conn, "churn")  # doctest: +SKIP
    2
    """
    ref = resolve(name, version, store)
    signature = ensure_plan(ref)  # a version saved before plans existed gets one now
    artifact = ref.artifact_path.read_bytes()
    plan = ref.plan()
    blob = None if plan is None else psycopg2.Binary(plan.to_bytes())
    companions = _companions(ref)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT sha256, plan_sha256 FROM ml.models WHERE name = %s AND version = %s",
            (name, ref.version),
        )
        row = cur.fetchone()
        # A schema older than 3 lacks these columns: upload without them; `udfs pg install`
        # upgrades the schema, and a redeploy then adds them.
        columns = _model_columns(cur)
        extra = {c: v for c, v in companions.items() if c in columns}
        if row is None:
            cur.execute(
                sql.SQL(
                    "INSERT INTO ml.models (name, version, sha256, artifact, signature, plan, "
                    "plan_sha256{}) VALUES (%s, %s, %s, %s, %s, %s, %s{})"
                ).format(
                    sql.SQL("").join(sql.SQL(", ") + sql.Identifier(c) for c in extra),
                    sql.SQL(", %s" * len(extra)),
                ),
                (
                    name,
                    ref.version,
                    ref.sha256,
                    psycopg2.Binary(artifact),
                    signature.to_json(),
                    blob,
                    signature.plan_sha256,
                    *extra.values(),
                ),
            )
        elif row[1] is None and plan is not None and row[0] == ref.sha256:
            # Uploaded before plans existed: add the plan the store now has.
            cur.execute(
                "UPDATE ml.models SET plan = %s, plan_sha256 = %s, signature = %s "
                "WHERE name = %s AND version = %s",
                (blob, signature.plan_sha256, signature.to_json(), name, ref.version),
            )
        elif row[0] != ref.sha256:
            raise IntegrityError(
                f"model '{name}' v{ref.version} in the database has sha256 {row[0]}, but the "
                f"store's is {ref.sha256}: they are different models with the same version",
                model=name,
                expected=ref.sha256,
                value=row[0],
            )
        if row is not None and row[0] == ref.sha256:
            # Uploaded before these existed (or without them): add the store's.
            for column, value in extra.items():
                update = sql.SQL(
                    "UPDATE ml.models SET {0} = %s WHERE name = %s AND version = %s AND {0} IS NULL"
                ).format(sql.Identifier(column))
                cur.execute(update, (value, name, ref.version))
        cur.execute("SELECT ml.deploy(%s, %s)", (name, ref.version))
        return cur.fetchone()[0]


# ml.models column -> the companion file of a version (udfs.store.companions) it holds.
COMPANION_COLUMNS = {"profile": "profile.json", "explain": "explain.json"}


def _companions(ref: ModelRef) -> dict[str, str]:
    """The version's companion files as JSON text, by ml.models column; the training profile
    checked against the artifact. A version saved before one existed simply lacks it (it
    deploys; ``ml.drift`` or ``ml.<name>_explain`` then say why they cannot run)."""
    found = {}
    for column, file_name in COMPANION_COLUMNS.items():
        if not (ref.path / file_name).is_file():
            continue
        data = (
            ref.profile()
            if column == "profile"
            else json.loads(ref.path.joinpath(file_name).read_text())
        )
        found[column] = json.dumps(data, allow_nan=False)
    return found


def _model_columns(cur: Any) -> set[str]:
    cur.execute(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = "
        "'ml.models'::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped"
    )
    return {row[0] for row in cur.fetchall()}


def rollback(conn: Any, name: str) -> int:
    """Make the version that was live before the current one live again; return it."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ml.rollback(%s)", (name,))
        return cur.fetchone()[0]


def live_versions(conn: Any) -> dict[str, int]:
    """The live version of every deployed model."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (name) name, version FROM ml.deployments ORDER BY name, id DESC"
        )
        return dict(cur.fetchall())
