"""`udfs pg deploy` and `udfs pg rollback`: upload a bundle and make a version live."""

from __future__ import annotations

from typing import Any

import psycopg2

from udfs.errors import IntegrityError
from udfs.store import StorePath, ensure_plan, resolve


def deploy(conn: Any, name: str, version: int | None = None, store: StorePath = None) -> int:
    """Upload ``name`` (latest version unless given) from the store and make it live.

    An already uploaded version is not uploaded again, but its sha256 must match the store's.
    The version's scoring plan travels with it (compiled and verified now if it was saved
    before plans existed); without one, the database must allow pickles.

    >>> deploy(conn, "churn")  # doctest: +SKIP
    2
    """
    ref = resolve(name, version, store)
    signature = ensure_plan(ref)  # a version saved before plans existed gets one now
    artifact = ref.artifact_path.read_bytes()
    plan = ref.plan()
    blob = None if plan is None else psycopg2.Binary(plan.to_bytes())
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT sha256, plan_sha256 FROM ml.models WHERE name = %s AND version = %s",
            (name, ref.version),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO ml.models (name, version, sha256, artifact, signature, plan, "
                "plan_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    name,
                    ref.version,
                    ref.sha256,
                    psycopg2.Binary(artifact),
                    signature.to_json(),
                    blob,
                    signature.plan_sha256,
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
        cur.execute("SELECT ml.deploy(%s, %s)", (name, ref.version))
        return cur.fetchone()[0]


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
