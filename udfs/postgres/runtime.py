"""The server-side runtime: what PL/Python function bodies call inside a PostgreSQL backend.

This module and the backend modules it imports (``functions``, ``tables``, ``reader``,
``arrays``, ``triggers``) run inside the database with Debian's python3. They import the udfs core and numpy, never
psycopg2. ``plpy`` and ``GD`` are handed in by each function body, so nothing here depends on
being imported from PL/Python.

Loaded models are cached in ``GD`` keyed by (name, version, sha256). Each generated function
embeds the live version and sha256 as constants, so a redeploy (``CREATE OR REPLACE``) reaches
every backend on its next call without a lookup per call. Only when those constants are not
the cached version (and once per ``_score_arrays`` call) is the version live in the calling
statement's snapshot looked up, so that one statement never scores with two versions.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

# Before numpy is imported (the bootstrap sets them too, for an external server).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from udfs.errors import ConfigError, IntegrityError, ModelNotFoundError  # noqa: E402
from udfs.fastpath import BatchScorer, RowScorer  # noqa: E402
from udfs.signature import Signature  # noqa: E402

MODELS_KEY = "udfs.models"


@dataclass
class Loaded:
    """A model loaded in this backend, with its one-row and batch scorers."""

    name: str
    version: int
    sha256: str
    scorer: Any  # the plan's runner, or the unpickled estimator
    signature: Signature
    rows: RowScorer
    batch: BatchScorer


def start() -> None:
    """Once per backend: one BLAS/OpenMP thread, even if numpy was imported before us."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set above then do the job
        return
    threadpool_limits(1)


def info(paths: bool = False) -> str:
    """Versions seen inside the backend, as JSON (``ml.runtime_info()``).

    ``paths``: also where udfs was imported from (shown to superusers only: server paths help
    an attacker more than a user).
    """
    from importlib.metadata import version

    import udfs

    # Versions from the installed metadata: reporting them must not import scikit-learn or
    # pandas into a backend that scores through plans and never needs them.
    seen = {
        "python": sys.version.split()[0],
        "scikit-learn": version("scikit-learn"),
        "numpy": np.__version__,
        "pandas": version("pandas"),
        "udfs": udfs.__version__,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    if paths:
        seen["udfs_path"] = os.path.dirname(udfs.__file__)
    return json.dumps(seen)


def _prepared(plpy: Any, GD: dict, key: str, query: str, types: list[str]) -> Any:
    plan = GD.get(key)
    if plan is None:
        plan = GD[key] = plpy.prepare(query, types)
    return plan


def load(plpy: Any, GD: dict, name: str, version: int, sha256: str) -> Loaded:
    """The model ``name`` at ``version``, from the cache or, while it is live, from ml.models.

    ``ml._live_plan``/``ml._live_artifact`` hand out bytes only while (version, sha256) is the
    version live in the calling statement's snapshot, so a version that was uploaded but never
    deployed is never loaded. A version with a scoring plan is loaded as data: its plan must
    have the sha256 ``ml.deploy`` recorded in ``ml.deployments`` (which nobody below a
    superuser can rewrite). Only a version without one unpickles its artifact, and only where a
    superuser allowed pickles; its sha256 is checked against the deployment record too.
    """
    cache = GD.setdefault(MODELS_KEY, {})
    key = (name, version, sha256)
    loaded = cache.get(key)
    if loaded is not None:
        return loaded
    live = _live_row(plpy, GD, name)
    if live is None or (live["version"], live["sha256"]) != (version, sha256):
        return load(plpy, GD, name, *_live_identity(name, live))
    signature = Signature.from_json(live["signature"]).with_identity(version=version, sha256=sha256)
    if live["plan_sha256"]:
        scorer = _plan_scorer(plpy, GD, signature, live["plan_sha256"])
    else:
        from udfs.bundle import load_bytes

        scorer = load_bytes(_live_bytes(plpy, GD, "artifact", signature), signature)
    # Older versions of the same model are not called again by this backend: free them.
    for old in [k for k in cache if k[0] == name]:
        del cache[old]
    loaded = cache[key] = Loaded(
        name,
        version,
        sha256,
        scorer,
        signature,
        RowScorer(scorer, signature),
        BatchScorer(scorer, signature),
    )
    return loaded


def _plan_scorer(plpy: Any, GD: dict, signature: Signature, plan_sha256: str) -> Any:
    from udfs.plan.execute import PlanRunner
    from udfs.plan.format import Plan

    plan = Plan.from_bytes(_live_bytes(plpy, GD, "plan", signature))
    if plan.sha256 != plan_sha256:
        raise IntegrityError(
            f"model '{signature.name}' v{signature.version}: scoring plan sha256 is "
            f"{plan.sha256}, but ml.deploy recorded {plan_sha256}; refusing a tampered plan",
            model=signature.name,
            expected=plan_sha256,
            value=plan.sha256,
        )
    return PlanRunner(plan, signature)


def _live_bytes(plpy: Any, GD: dict, what: str, signature: Signature) -> bytes:
    """The live version's plan or artifact; an artifact only where pickles are allowed."""
    name = signature.name
    if what == "artifact":
        allowed = plpy.execute("SELECT ml._allow_pickles() AS allowed")[0]["allowed"]
        if not allowed:
            raise ConfigError(pickles_refused(name, signature.version, signature.plan))
    query = f"SELECT ml._live_{what}($1, $2, $3) AS blob"
    plan = _prepared(plpy, GD, f"udfs.plan.{what}", query, ["text", "integer", "text"])
    blob = plan.execute([name, signature.version, signature.sha256])[0]["blob"]
    if blob is None:  # undeployed between the two queries: cannot happen in one snapshot
        raise ModelNotFoundError(f"model '{name}' v{signature.version} is not live", model=name)
    return bytes(blob)


def pickles_refused(name: str, version: int | None, plan: dict | None) -> str:
    """Why a version without a plan is not deployed nor loaded, and how a superuser allows it."""
    why = (plan or {}).get("unsupported", "it was uploaded without one")
    return (
        f"model '{name}' v{version} has no scoring plan ({why}), and this database does not "
        "load pickled models: unpickling runs the artifact's code as the server's OS user. A "
        "superuser can allow it with `udfs pg install --allow-pickles` (or INSERT INTO "
        "ml.settings VALUES ('allow_pickles', 'on')), which lets every ml_admin run code in the "
        "server"
    )


def _live_row(plpy: Any, GD: dict, name: str) -> dict | None:
    query = "SELECT version, sha256, signature, plan_sha256 FROM ml._live($1)"
    rows = _prepared(plpy, GD, "udfs.plan.live", query, ["text"]).execute([name])
    return rows[0] if rows else None


def _live_identity(name: str, live: dict | None) -> tuple[int, str]:
    if live is None:
        raise ModelNotFoundError(
            f"model '{name}' is not deployed in this database: deploy it with udfs pg deploy",
            model=name,
        )
    return live["version"], live["sha256"]


def scalar(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, method: str, args: list
) -> Any:
    """``ml.<name>(...)`` and ``ml.<name>_proba(...)``: one row through the lean path."""
    cache = GD.get(MODELS_KEY)
    loaded = cache.get((name, version, sha256)) if cache else None
    if loaded is None:
        loaded = _statement_version(plpy, GD, name)
    if method == "predict":
        return loaded.rows.predict(args)
    return loaded.rows.predict_proba(args)


def scalar_function(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, method: str
) -> tuple[Any, bool]:
    """The row scorer method a per-row function calls, and whether it is this version's own.

    Only a function's own version may be kept across calls (in its SD): one that a statement's
    older snapshot chose instead serves this statement only.
    """
    cache = GD.get(MODELS_KEY)
    loaded = cache.get((name, version, sha256)) if cache else None
    if loaded is None:
        loaded = _statement_version(plpy, GD, name)
    own = (loaded.version, loaded.sha256) == (version, sha256)
    return getattr(loaded.rows, method), own


def _statement_version(plpy: Any, GD: dict, name: str) -> Loaded:
    """The version the calling statement scores with: the one live in its snapshot.

    A redeploy replaces the function's body, and a backend picks the new body up when it
    processes catalog invalidations: that can happen in the middle of a statement (at the SPI
    call that loads a model), while the statement's snapshot still predates the deploy. The
    statement then keeps the version live in its snapshot (the generated functions are STABLE,
    so this query uses it): it never mixes two versions, nor looks for an artifact its snapshot
    cannot see. A statement that starts after the deploy sees the new version in both. The
    version and sha256 a function embeds (or a caller passes) only name the cache entry to try
    first: they never choose what is loaded.
    """
    return load(plpy, GD, name, *_live_identity(name, _live_row(plpy, GD, name)))


def deploy(plpy: Any, name: str, version: int) -> int:
    """``ml.deploy(name, version)``: make an uploaded version live."""
    from udfs.postgres import functions

    return functions.activate(plpy, name, version, "deploy")


def rollback(plpy: Any, name: str) -> int:
    """``ml.rollback(name)``: make the version live before the current one live again."""
    from udfs.postgres import functions

    return functions.rollback(plpy, name)


def score_arrays(plpy: Any, GD: dict, name: str, version: int, sha256: str, *args: Any) -> list:
    """``ml._score_arrays``: what ``ml.<name>_batch`` unnests, one row per chunk."""
    from udfs.postgres import tables

    # One query per call: the version live in the statement's snapshot (see _statement_version).
    loaded = _statement_version(plpy, GD, name)
    return tables.score_arrays(plpy, loaded, *args)


def batch(plpy: Any, GD: dict, name: str, version: int, sha256: str, *args: Any) -> list:
    """``ml.<name>_batch`` as deployed by earlier versions (a PL/Python function)."""
    from udfs.postgres import tables

    return tables.batch_rows(plpy, load(plpy, GD, name, version, sha256), *args)


def score_plan(plpy: Any, *args: Any) -> list:
    from udfs.postgres import tables

    return tables.score_plan(plpy, *args)


def score_chunk(plpy: Any, *args: Any) -> int:
    from udfs.postgres import tables

    return tables.score_chunk(plpy, *args)


def attach(plpy: Any, *args: Any) -> str:
    from udfs.postgres import triggers

    return triggers.attach(plpy, *args)


def detach(plpy: Any, *args: Any) -> None:
    from udfs.postgres import triggers

    triggers.detach(plpy, *args)


def row_trigger(plpy: Any, GD: dict, TD: dict, name: str, version: int, sha256: str) -> str:
    from udfs.postgres import triggers

    return triggers.on_row(plpy, TD, load(plpy, GD, name, version, sha256))


def statement_trigger(plpy: Any, GD: dict, TD: dict, name: str, version: int, sha256: str) -> None:
    from udfs.postgres import triggers

    triggers.on_statement(plpy, GD, TD, load(plpy, GD, name, version, sha256))
