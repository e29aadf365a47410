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
import pandas as pd  # noqa: E402

from udfs.bundle import load_bytes  # noqa: E402
from udfs.errors import ModelNotFoundError  # noqa: E402
from udfs.fastpath import BatchScorer, RowScorer  # noqa: E402
from udfs.signature import Signature  # noqa: E402

MODELS_KEY = "udfs.models"


@dataclass
class Loaded:
    """A model loaded in this backend, with its one-row and batch scorers."""

    name: str
    version: int
    sha256: str
    model: Any
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


def info() -> str:
    """Versions and paths seen inside the backend, as JSON (``ml.runtime_info()``)."""
    import sklearn

    import udfs

    return json.dumps(
        {
            "python": sys.version.split()[0],
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "udfs": udfs.__version__,
            "udfs_path": os.path.dirname(udfs.__file__),
            "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        }
    )


def load(plpy: Any, GD: dict, name: str, version: int, sha256: str) -> Loaded:
    """The model ``name`` at ``version``, from the cache or from ``ml.models``.

    The sha256 compared is the one embedded in the calling function at deploy time, not the
    one stored beside the artifact, so rewriting both in ``ml.models`` is still refused.
    """
    cache = GD.setdefault(MODELS_KEY, {})
    key = (name, version, sha256)
    loaded = cache.get(key)
    if loaded is not None:
        return loaded
    plan = GD.get("udfs.plan.artifact")
    if plan is None:
        query = "SELECT artifact, signature FROM ml._artifact($1, $2)"
        plan = GD["udfs.plan.artifact"] = plpy.prepare(query, ["text", "integer"])
    rows = plan.execute([name, version])
    if not rows:
        raise ModelNotFoundError(
            f"model '{name}' v{version} is not in ml.models; redeploy it with udfs pg deploy",
            model=name,
        )
    signature = Signature.from_json(rows[0]["signature"]).with_identity(
        version=version, sha256=sha256
    )
    model = load_bytes(bytes(rows[0]["artifact"]), signature)
    # Older versions of the same model are not called again by this backend: free them.
    for old in [k for k in cache if k[0] == name]:
        del cache[old]
    loaded = cache[key] = Loaded(
        name,
        version,
        sha256,
        model,
        signature,
        RowScorer(model, signature),
        BatchScorer(model, signature),
    )
    return loaded


def scalar(
    plpy: Any, GD: dict, name: str, version: int, sha256: str, method: str, args: list
) -> Any:
    """``ml.<name>(...)`` and ``ml.<name>_proba(...)``: one row through the lean path."""
    cache = GD.get(MODELS_KEY)
    loaded = cache.get((name, version, sha256)) if cache else None
    if loaded is None:
        loaded = _statement_version(plpy, GD, name, version, sha256)
    if method == "predict":
        return loaded.rows.predict(args)
    return loaded.rows.predict_proba(args)


def _statement_version(plpy: Any, GD: dict, name: str, version: int, sha256: str) -> Loaded:
    """The version the calling statement scores with, when ``version`` is not the cached one.

    A redeploy replaces the function's body, and a backend picks the new body up when it
    processes catalog invalidations: that can happen in the middle of a statement (at the SPI
    call that loads a model), while the statement's snapshot still predates the deploy. The
    statement then keeps the version live in its snapshot (the generated functions are STABLE,
    so this query uses it): it never mixes two versions, nor looks for an artifact its snapshot
    cannot see. A statement that starts after the deploy sees the new version in both.
    ``ml.deployments`` holds the sha256 ``ml.deploy`` recorded, which ``ml_admin`` cannot
    rewrite: a tampered artifact is still refused.
    """
    plan = GD.get("udfs.plan.live")
    if plan is None:
        query = "SELECT version, sha256 FROM ml._live($1)"
        plan = GD["udfs.plan.live"] = plpy.prepare(query, ["text"])
    rows = plan.execute([name])
    if rows:
        version, sha256 = rows[0]["version"], rows[0]["sha256"]
    return load(plpy, GD, name, version, sha256)


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
    loaded = _statement_version(plpy, GD, name, version, sha256)
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
