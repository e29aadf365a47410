"""Models loaded in a backend: from ml.models, only while live, cached in ``GD``.

Loaded models are cached in ``GD`` keyed by (name, version, sha256). Each generated function
embeds the live version and sha256 as constants, so a redeploy (``CREATE OR REPLACE``) reaches
every backend on its next call without a lookup per call. Only when those constants are not
the cached version (and once per vectorized call) is the version live in the calling
statement's snapshot looked up, so that one statement never scores with two versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from udfs.errors import ConfigError, IntegrityError, ModelNotFoundError
from udfs.fastpath import BatchScorer, RowScorer
from udfs.signature import Signature

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


def prepared(plpy: Any, GD: dict, key: str, query: str, types: list[str]) -> Any:
    """``plpy.prepare(query, types)``, once per backend."""
    plan = GD.get(key)
    if plan is None:
        plan = GD[key] = plpy.prepare(query, types)
    return plan


def cached(GD: dict, name: str, version: int, sha256: str) -> Loaded | None:
    """The model if this backend has already loaded that version."""
    cache = GD.get(MODELS_KEY)
    return cache.get((name, version, sha256)) if cache else None


def load(plpy: Any, GD: dict, name: str, version: int, sha256: str) -> Loaded:
    """The model ``name`` at ``version``, from the cache or, while it is live, from ml.models.

    ``ml._live_plan``/``ml._live_artifact`` hand out bytes only while (version, sha256) is the
    version live in the calling statement's snapshot, so a version that was uploaded but never
    deployed is never loaded. A version with a scoring plan is loaded as data: its plan must
    have the sha256 ``ml.deploy`` recorded in ``ml.deployments`` (which nobody below a
    superuser can rewrite). Only a version without one unpickles its artifact, and only where a
    superuser allowed pickles; its sha256 is checked against the deployment record too.
    """
    loaded = cached(GD, name, version, sha256)
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
    cache = GD.setdefault(MODELS_KEY, {})
    # Older versions of the same model are not called again by this backend: free them.
    for old in [k for k in cache if k[0] == name]:
        del cache[old]
    loaded = cache[(name, version, sha256)] = Loaded(
        name,
        version,
        sha256,
        scorer,
        signature,
        RowScorer(scorer, signature),
        BatchScorer(scorer, signature),
    )
    return loaded


def statement_version(plpy: Any, GD: dict, name: str) -> Loaded:
    """The version the calling statement scores with: the one live in its snapshot.

    A redeploy replaces the function's body, and a backend picks the new body up when it
    processes catalog invalidations: that can happen in the middle of a statement (at the SPI
    call that loads a model), while the statement's snapshot still predates the deploy. The
    statement then keeps the version live in its snapshot (the generated functions are STABLE,
    so this query uses it): it never mixes two versions, nor looks for an artifact its snapshot
    cannot see. A statement that starts after the deploy sees the new version in both. The
    version and sha256 a function embeds only name the cache entry to try first: they never
    choose what is loaded.
    """
    return load(plpy, GD, name, *_live_identity(name, _live_row(plpy, GD, name)))


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


def pickles_allowed(plpy: Any) -> bool:
    return bool(plpy.execute("SELECT ml._allow_pickles() AS allowed")[0]["allowed"])


def _live_bytes(plpy: Any, GD: dict, what: str, signature: Signature) -> bytes:
    """The live version's plan or artifact; an artifact only where pickles are allowed."""
    name = signature.name
    if what == "artifact" and not pickles_allowed(plpy):
        raise ConfigError(pickles_refused(name, signature.version, signature.plan))
    query = f"SELECT ml._live_{what}($1, $2, $3) AS blob"
    plan = prepared(plpy, GD, f"udfs.plan.{what}", query, ["text", "integer", "text"])
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
    rows = prepared(plpy, GD, "udfs.plan.live", query, ["text"]).execute([name])
    return rows[0] if rows else None


def _live_identity(name: str, live: dict | None) -> tuple[int, str]:
    if live is None:
        raise ModelNotFoundError(
            f"model '{name}' is not deployed in this database: deploy it with udfs pg deploy",
            model=name,
        )
    return live["version"], live["sha256"]


def live_signature(plpy: Any, GD: dict, name: str) -> Signature:
    """The signature of the version of ``name`` live in the statement's snapshot."""
    from udfs.naming import validate_name

    validate_name(name)
    live = _live_row(plpy, GD, name)
    version, sha256 = _live_identity(name, live)
    return Signature.from_json(live["signature"]).with_identity(
        name=name, version=version, sha256=sha256
    )
