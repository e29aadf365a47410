"""Server side of deploy and rollback: generate the typed functions of one model version.

Runs inside ``ml.deploy()``/``ml.rollback()`` (SECURITY DEFINER, so ``ml_admin`` can deploy
although only a superuser may create plpython3u functions). Every identifier is quoted with
``plpy.quote_ident`` and every literal with ``plpy.quote_literal``. The Python bodies embed
only a validated model name, an integer and a hex digest.
"""

from __future__ import annotations

import json
from typing import Any

from udfs.errors import (
    ConfigError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    SignatureError,
)
from udfs.naming import validate_name
from udfs.signature import Signature

# Portable type -> Postgres type of arguments and results.
PG_TYPES = {
    "double": "double precision",
    "bigint": "bigint",
    "boolean": "boolean",
    "string": "text",
}
# Function name suffixes per model: two models must never share a generated name.
SUFFIXES = ("", "_proba", "_batch", "_trgr", "_trgs")
# Names PL/Python binds in a function's globals: an argument with one of them would shadow it.
RESERVED_ARGUMENTS = frozenset({"GD", "SD", "TD", "plpy", "args"})
# Objects udfs itself defines in schema ml.
RESERVED_NAMES = frozenset(
    {
        "settings",
        "models",
        "deployments",
        "scoring_errors",
        "deploy",
        "rollback",
        "score_table",
        "attach_scoring_trigger",
        "detach_scoring_trigger",
        "runtime_info",
    }
)

# Every function in ml runs with this search_path, whatever its caller's: a look-alike function
# or operator in a schema the caller can write to must never be what udfs's SQL calls.
PINNED = "SET search_path = pg_catalog, pg_temp"

PREAMBLE = """\
rt = GD.get("udfs.runtime")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.runtime"]
"""


def unnest_each(arrays: list[str]) -> str:
    """``unnest(a, b)`` in a FROM clause, spelled out so each call is schema-qualified."""
    return ", ".join(f"pg_catalog.unnest({a})" for a in arrays)


def proba_type(signature: Signature) -> str | None:
    """The SQL type of ``<name>_proba``, or None when the model has no probabilities."""
    if not signature.has_proba:
        return None
    return "double precision" if signature.task == "binary" else "double precision[]"


def batch_sql(signature: Signature, arrays: str, key: bool = True) -> str:
    """The rows of ``ml.<name>_batch`` from ``arrays``, rows of ``ml._score_arrays``.

    Without ``key``, the first column is ``ml_rn``, the row's position (bigint) instead.
    """
    label = PG_TYPES[signature.label_type]
    proba = proba_type(signature)
    names = ["key", "prediction"] + (["probability"] if proba else [])
    position = "c.base + u.ml_n"
    # Without a key column (keys IS NULL) the key is the position; a NULL key stays NULL.
    by_position = f"CASE WHEN c.keys IS NULL THEN ({position})::text ELSE u.key END"
    first = f"{by_position} AS key" if key else f"{position} AS ml_rn"
    selects = [first, "u.prediction"]
    arrays_sql = ["c.keys::text[]", f"c.predictions::{label}[]"]
    if proba == "double precision[]":  # one array literal per row
        selects.append("u.probability::double precision[]")
        arrays_sql.append("c.probabilities::text[]")
    elif proba:
        selects.append("u.probability")
        arrays_sql.append(f"c.probabilities::{proba}[]")
    return (
        f"SELECT {', '.join([selects[0]] + [f'{e} AS {n}' for e, n in zip(selects[1:], names[1:], strict=True)])} "
        f"FROM {arrays} c CROSS JOIN LATERAL ROWS FROM ({unnest_each(arrays_sql)}) "
        f"WITH ORDINALITY AS u({', '.join(names)}, ml_n)"
    )


def check_deployable(signature: Signature, other_models: list[str]) -> None:
    """Refuse names and features that cannot become SQL functions, before creating any."""
    name = validate_name(signature.name)
    if name in RESERVED_NAMES:
        raise InvalidNameError(f"model name '{name}' is reserved by udfs in schema ml", name=name)
    mine = {name + s for s in SUFFIXES}
    for other in other_models:
        if other != name and mine & {other + s for s in SUFFIXES}:
            raise InvalidNameError(
                f"model '{name}' would clash with the functions of deployed model '{other}' "
                f"(generated names: {', '.join(sorted(mine))})",
                name=name,
            )
    for feature in signature.features:
        if feature.name in RESERVED_ARGUMENTS:
            raise SignatureError(
                f"model '{name}': feature '{feature.name}' is a name PL/Python reserves; "
                "rename the column before saving the model",
                model=name,
                column=feature.name,
            )
        if len(feature.name.encode()) > 63:
            raise SignatureError(
                f"model '{name}': feature '{feature.name}' is longer than Postgres' 63-byte "
                "identifiers",
                model=name,
                column=feature.name,
            )


def _batch_body(signature: Signature, version: int, sha256: str) -> str:
    """SQL: the arrays of ``ml._score_arrays`` unnested, with this version's identity."""
    arrays = (
        f"ml._score_arrays({signature.name!r}, {int(version)}, {sha256!r}, "
        "source, key_column, block_from, block_to)"
    )
    return batch_sql(signature, arrays)


def _body(call: str, signature: Signature, version: int, sha256: str, extra: str) -> str:
    head = "plpy, GD, TD" if call.endswith("trigger") else "plpy, GD"
    constants = f"{signature.name!r}, {int(version)}, {sha256!r}"
    if call == "scalar":
        # Per-row calls keep the row scorer of their own version in SD (this function's own
        # dict, new whenever a redeploy replaces the body): a call then costs one lookup.
        method = extra.split(",")[1].strip()
        return (
            'score = SD.get("score")\nif score is not None:\n    return score(args)\n'
            + PREAMBLE
            + f"score, own = rt.scalar_function(plpy, GD, {constants}, {method})\n"
            + 'if own:\n    SD["score"] = score\nreturn score(args)\n'
        )
    return PREAMBLE + f"return rt.{call}({head}, {constants}{extra})\n"


def statements(plpy: Any, signature: Signature, version: int, sha256: str) -> list[str]:
    """CREATE OR REPLACE FUNCTION statements and grants for one model version."""
    q, lit = plpy.quote_ident, plpy.quote_literal
    name = signature.name
    features = [(q(f.name), PG_TYPES[f.type], "") for f in signature.features]
    label = PG_TYPES[signature.label_type]
    proba = proba_type(signature)
    outputs = f"key text, prediction {label}" + (f", probability {proba}" if proba else "")
    batch_args = [
        ("source", "regclass", ""),
        ("key_column", "text", " DEFAULT NULL"),
        ("block_from", "bigint", " DEFAULT NULL"),
        ("block_to", "bigint", " DEFAULT NULL"),
    ]
    # (suffix, arguments, result, volatility, runtime call, extra call arguments)
    made = [("", features, label, "STABLE", "scalar", ', "predict", args')]
    if proba:
        made.append(("_proba", features, proba, "STABLE", "scalar", ', "predict_proba", args'))
    made += [
        # STABLE: its reads share the calling statement's snapshot (see tables.py).
        ("_batch", batch_args, f"TABLE ({outputs})", "STABLE", None, ""),
        ("_trgr", [], "trigger", "VOLATILE", "row_trigger", ""),
        # Its queries cost enough to be JIT-compiled, which takes longer than running them.
        ("_trgs", [], "trigger", "VOLATILE SET jit = off", "statement_trigger", ""),
    ]
    out = []
    for suffix, arguments, returns, volatility, call, extra in made:
        function = f"ml.{q(name + suffix)}"
        definition = ", ".join(f"{n} {t}{d}" for n, t, d in arguments)
        if call is None:
            language, body = "sql", _batch_body(signature, version, sha256)
        else:
            language, body = "plpython3u", _body(call, signature, version, sha256, extra)
        # Not PARALLEL SAFE: the first call loads the model through SPI.
        out.append(
            f"CREATE OR REPLACE FUNCTION {function}({definition}) RETURNS {returns} "
            f"LANGUAGE {language} {volatility} PARALLEL UNSAFE {PINNED} AS {lit(body)}"
        )
        procedure = f"{function}({', '.join(t for _, t, _ in arguments)})"
        out.append(f"REVOKE ALL ON FUNCTION {procedure} FROM PUBLIC")
        out.append(f"GRANT EXECUTE ON FUNCTION {procedure} TO ml_user")
    return out


def _drop_changed(plpy: Any, signature: Signature) -> None:
    """Drop generated functions whose arguments or result type change (CREATE OR REPLACE can't)."""
    params = ", ".join(PG_TYPES[f.type] for f in signature.features)
    wanted = {
        signature.name: (params, PG_TYPES[signature.label_type]),
        signature.name + "_proba": (params, proba_type(signature)),
    }
    query = (
        "SELECT p.oid::regprocedure::text AS proc, p.proname, "
        "pg_catalog.oidvectortypes(p.proargtypes) AS args, "
        "pg_catalog.format_type(p.prorettype, NULL) AS returns FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'ml'::regnamespace AND p.proname = ANY($1)"
    )
    plan = plpy.prepare(query, ["text[]"])
    for row in plan.execute([list(wanted)]):
        args, returns = wanted[row["proname"]]
        if returns is None or (row["args"], row["returns"]) != (args, returns):
            plpy.execute(f"DROP FUNCTION {row['proc']}")


def activate(plpy: Any, name: str, version: int, action: str) -> int:
    """Create the functions of ``name`` at ``version`` and record it as live."""
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
    sha256 = row["sha256"]
    plan_sha256 = _checked_plan(plpy, signature, row["plan"], row["plan_sha256"])
    others = [r["name"] for r in plpy.execute("SELECT DISTINCT name FROM ml.deployments")]
    check_deployable(signature, others)
    _drop_changed(plpy, signature)
    for statement in statements(plpy, signature, version, sha256):
        plpy.execute(statement)
    record = plpy.prepare(
        "INSERT INTO ml.deployments (name, version, sha256, action, plan_sha256) "
        "VALUES ($1, $2, $3, $4, $5)",
        ["text", "integer", "text", "text", "text"],
    )
    record.execute([name, version, sha256, action, plan_sha256])
    return version


def _checked_plan(plpy: Any, signature: Signature, blob: Any, plan_sha256: str | None) -> Any:
    """The sha256 of the version's plan, checked now rather than at the first call.

    A plan must load and link (the kernels check every index) and carry the sha256 the
    signature and ``ml.models`` record. Without a plan the version runs its pickle, which is
    refused unless a superuser allowed pickles; then the server's scikit-learn must be able to
    load it.
    """
    if blob is None:
        from udfs.bundle import check_versions
        from udfs.postgres.runtime import pickles_refused

        if not plpy.execute("SELECT ml._allow_pickles() AS allowed")[0]["allowed"]:
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


def rollback(plpy: Any, name: str) -> int:
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
    activate(plpy, name, previous, "rollback")
    return previous
