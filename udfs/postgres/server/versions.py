"""Version switching: ``ml.deploy``, ``ml.rollback`` and regenerating live models' functions.

Runs inside ``ml.deploy()``/``ml.rollback()`` (SECURITY DEFINER, so ``ml_admin`` can deploy
although only a superuser may create plpython3u functions). The statements come from ``ddl``.
"""

from __future__ import annotations

import json
from typing import Any

from udfs.errors import ConfigError, IntegrityError, ModelNotFoundError, UdfsError
from udfs.naming import validate_name
from udfs.postgres.server import ddl
from udfs.postgres.server.models import pickles_allowed, pickles_refused
from udfs.signature import Signature


def make_live(plpy: Any, name: str, version: int, action: str) -> int:
    """Create the functions of ``name`` at ``version`` and record it as live."""
    signature, sha256, plan_sha256 = _checked_version(plpy, name, version)
    _create_functions(plpy, signature, version, sha256)
    record = plpy.prepare(
        "INSERT INTO ml.deployments (name, version, sha256, action, plan_sha256) "
        "VALUES ($1, $2, $3, $4, $5)",
        ["text", "integer", "text", "text", "text"],
    )
    record.execute([name, version, sha256, action, plan_sha256])
    return version


def regenerate(plpy: Any) -> list[str]:
    """Recreate the functions of every model's live version; return what was done, per model.

    What an upgrade runs: the history is kept (no deployment is recorded), the functions get
    the bodies this release generates, and triggers keep pointing at them (CREATE OR REPLACE
    keeps a function's identity). A version that would not deploy now (a tampered plan, a
    pickle where pickles are refused) keeps its functions, with a warning: one bad model must
    not stop the upgrade of the others.
    """
    done = []
    live = plpy.execute(
        "SELECT DISTINCT ON (name) name, version FROM ml.deployments ORDER BY name, id DESC"
    )
    for row in live:
        name, version = row["name"], row["version"]
        try:
            with plpy.subtransaction():
                signature, sha256, _ = _checked_version(plpy, name, version)
                _create_functions(plpy, signature, version, sha256)
        except UdfsError as exc:
            plpy.warning(
                f"udfs: the functions of model '{name}' v{version} were not regenerated: {exc}"
            )
            done.append(f"{name} v{version}: not regenerated: {exc}")
            continue
        done.append(f"{name} v{version}")
    return done


def _checked_version(plpy: Any, name: str, version: int) -> tuple[Signature, str, str | None]:
    """The signature, sha256 and plan sha256 of an uploaded version that may become live."""
    validate_name(name)
    query = plpy.prepare(
        "SELECT sha256, signature::text AS signature, plan, plan_sha256 FROM ml.models "
        "WHERE name = $1 AND version = $2",
        ["text", "integer"],
    )
    rows = query.execute([name, version])
    if not rows:
        raise ModelNotFoundError(
            f"model '{name}' v{version} is not in ml.models: upload it with udfs pg deploy",
            model=name,
        )
    row = rows[0]
    signature = Signature.from_json(row["signature"]).with_identity(name=name, version=version)
    plan_sha256 = _checked_plan(plpy, signature, row["plan"], row["plan_sha256"])
    others = [r["name"] for r in plpy.execute("SELECT DISTINCT name FROM ml.deployments")]
    ddl.check_deployable(signature, others)
    return signature, row["sha256"], plan_sha256


def _create_functions(plpy: Any, signature: Signature, version: int, sha256: str) -> None:
    _drop_changed(plpy, signature)
    for statement in ddl.model_statements(signature, version, sha256):
        plpy.execute(statement)
    _create_explain_functions(plpy, signature, version, sha256)


# The generated functions of ml with the given names: their arguments and result types.
_FUNCTIONS = (
    "SELECT p.oid::regprocedure::text AS proc, p.proname, "
    "pg_catalog.oidvectortypes(p.proargtypes) AS args, "
    "pg_catalog.pg_get_function_result(p.oid) AS returns "
    "FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'ml'::regnamespace "
    "AND p.proname = ANY($1)"
)


def _drop_changed(plpy: Any, signature: Signature) -> None:
    """Drop generated functions whose arguments or result type change (CREATE OR REPLACE can't)."""
    params = ", ".join(ddl.PG_TYPES[f.type] for f in signature.features)
    wanted = {
        signature.name: (params, ddl.PG_TYPES[signature.label_type]),
        signature.name + "_proba": (params, ddl.proba_type(signature)),
        signature.name + "_batch": ("regclass, text, bigint, bigint", _batch_returns(signature)),
    }
    plan = plpy.prepare(_FUNCTIONS, ["text[]"])
    for row in plan.execute([list(wanted)]):
        args, returns = wanted[row["proname"]]
        if returns is None or (row["args"], row["returns"]) != (args, returns):
            plpy.execute(f"DROP FUNCTION {row['proc']}")


def _batch_returns(signature: Signature) -> str:
    """What ``pg_get_function_result`` says of ``ml.<name>_batch``."""
    proba = ddl.proba_type(signature)
    label = ddl.PG_TYPES[signature.label_type]
    return f"TABLE(key text, prediction {label}" + (f", probability {proba})" if proba else ")")


def _checked_plan(plpy: Any, signature: Signature, blob: Any, plan_sha256: str | None) -> Any:
    """The sha256 of the version's plan, checked now rather than at the first call.

    A plan must load and link (the kernels check every index) and carry the sha256 the
    signature and ``ml.models`` record. Without a plan the version runs its pickle, which is
    refused unless a superuser allowed pickles; then the server's scikit-learn must be able to
    load it.
    """
    if blob is None:
        from udfs.bundle import check_versions

        if not pickles_allowed(plpy):
            raise ConfigError(pickles_refused(signature.name, signature.version, signature.plan))
        check_versions(signature)
        return None
    from udfs.plan.execute import PlanRunner
    from udfs.plan.format import Plan

    plan = Plan.from_bytes(bytes(blob))
    if not plan.sha256 == plan_sha256 == signature.plan_sha256:
        raise IntegrityError(
            f"model '{signature.name}' v{signature.version}: its scoring plan has sha256 "
            f"{plan.sha256}, but ml.models records {plan_sha256} and its signature "
            f"{signature.plan_sha256}; refusing to deploy it",
            model=signature.name,
        )
    PlanRunner(plan, signature)
    return plan_sha256


def live_stack(plpy: Any, name: str) -> list[int]:
    """Replay the deployment history: a deploy pushes a version, a rollback pops one."""
    plan = plpy.prepare(
        "SELECT version, action FROM ml.deployments WHERE name = $1 ORDER BY id", ["text"]
    )
    stack: list[int] = []
    for row in plan.execute([name]):
        if row["action"] == "deploy":
            stack.append(row["version"])
        elif stack:
            stack.pop()
    return stack


def roll_back(plpy: Any, name: str) -> int:
    """Make the version that was live before the current one live again."""
    validate_name(name)
    stack = live_stack(plpy, name)
    if len(stack) < 2:
        raise ModelNotFoundError(
            f"model '{name}' has no earlier deployment to roll back to "
            f"(deployment stack: {json.dumps(stack)})",
            model=name,
        )
    previous = stack[-2]
    make_live(plpy, name, previous, "rollback")
    return previous


# --- explanations (DESIGN 5b) -----------------------------------------------------------------

# Postgres' identifier limit: the longest generated name must fit it.
_MAX_NAME = 63


def _create_explain_functions(plpy: Any, signature: Signature, version: int, sha256: str) -> None:
    """``ml.<name>_explain`` and ``_explain_batch`` for a version saved with explain data.

    A version without it (not explainable, or saved before explanations existed) has none:
    those of an earlier version are dropped.
    """
    from udfs.postgres.server.explain import checked_data

    data = checked_data(_explain_data(plpy, signature.name, version))
    name = signature.name
    fits = len((name + "_explain_batch").encode()) <= _MAX_NAME
    _drop_explain(plpy, signature, keep=data is not None and fits)
    if data is None:
        return
    if not fits:
        plpy.warning(
            f"udfs: model '{name}' gets no {name}_explain functions: the name is too long for "
            f"them (at most {_MAX_NAME - len('_explain_batch')} characters)"
        )
        return
    for statement in ddl.explain_statements(signature, version, sha256, data):
        plpy.execute(statement)


def _explain_data(plpy: Any, name: str, version: int) -> str | None:
    """The version's explain data (``ml.models.explain``, JSON text), or None."""
    column = plpy.execute(
        "SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = 'ml.models'::pg_catalog.regclass "
        "AND attname = 'explain' AND NOT attisdropped"
    )
    if not column:  # a schema from before explanations
        return None
    query = plpy.prepare(
        "SELECT explain::text AS data FROM ml.models WHERE name = $1 AND version = $2",
        ["text", "integer"],
    )
    rows = query.execute([name, version])
    return rows[0].get("data") if rows else None


def _drop_explain(plpy: Any, signature: Signature, keep: bool) -> None:
    """Drop the explain functions of ``signature.name`` unless kept with the same arguments."""
    params = ", ".join(ddl.PG_TYPES[f.type] for f in signature.features)
    wanted = {
        signature.name + "_explain": (params, "jsonb"),
        signature.name + "_explain_batch": ("regclass, text", ddl.EXPLAIN_BATCH_RESULT),
    }
    for row in plpy.prepare(_FUNCTIONS, ["text[]"]).execute([list(wanted)]):
        if row["proname"] not in wanted:
            continue
        if not keep or (row["args"], row["returns"]) != wanted[row["proname"]]:
            plpy.execute(f"DROP FUNCTION {row['proc']}")
