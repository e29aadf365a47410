"""SQL text the server side creates: the functions of ``ml`` and of each model version.

Pure functions of a signature and constants, with no database: the unit tests build them
without a cluster. Names go through ``quoting.ident`` and values through ``quoting.literal``;
the Python bodies embed only a validated model name, an integer and a hex digest.

Every PL/Python function in ``ml`` is made by ``plpython_function``, with one preamble that
finds the server side (``entry``) in ``GD``, importing it on the backend's first call.
"""

from __future__ import annotations

from dataclasses import dataclass

from udfs.errors import InvalidNameError, SignatureError
from udfs.naming import validate_name
from udfs.postgres.server.quoting import ident, literal
from udfs.signature import Signature

# Portable type -> Postgres type of arguments and results.
PG_TYPES = {
    "double": "double precision",
    "bigint": "bigint",
    "boolean": "boolean",
    "string": "text",
}
# Function name suffixes per model: two models must never share a generated name.
SUFFIXES = ("", "_proba", "_batch", "_trgr", "_trgs", "_explain", "_explain_batch")
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
        "purge_scoring_errors",
        "evaluate",
        "drift",
    }
)

# Every function in ml runs with this search_path, whatever its caller's: a look-alike function
# or operator in a schema the caller can write to must never be what udfs's SQL calls.
PINNED = "SET search_path = pg_catalog, pg_temp"

# The first lines of every PL/Python body in ml: ``rt`` is udfs.postgres.server.entry.
PREAMBLE = """\
rt = GD.get("udfs.server")
if rt is None:
    plpy.execute("SELECT ml._bootstrap()")
    rt = GD["udfs.server"]
"""


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    default: str = ""  # SQL text after DEFAULT, if any

    def sql(self) -> str:
        return f"{self.name} {self.type}" + (f" DEFAULT {self.default}" if self.default else "")


def plpython_function(
    name: str,
    arguments: list[Argument],
    returns: str,
    options: str,
    body: str,
    before: str = "",
) -> str:
    """``CREATE OR REPLACE FUNCTION ml.<name>`` in PL/Python: the preamble, then ``body``.

    ``name`` is the function's name in ml, already quoted where it needs to be; ``options``
    its volatility and settings (the pinned search_path is always added); ``before``: lines
    that run before the preamble.
    """
    definition = ", ".join(a.sql() for a in arguments)
    return (
        f"CREATE OR REPLACE FUNCTION ml.{name}({definition}) RETURNS {returns} "
        f"LANGUAGE plpython3u {options} {PINNED} AS {literal(before + PREAMBLE + body)}"
    )


def sql_function(
    name: str, arguments: list[Argument], returns: str, options: str, body: str
) -> str:
    """``CREATE OR REPLACE FUNCTION ml.<name>`` in SQL."""
    definition = ", ".join(a.sql() for a in arguments)
    return (
        f"CREATE OR REPLACE FUNCTION ml.{name}({definition}) RETURNS {returns} "
        f"LANGUAGE sql {options} {PINNED} AS {literal(body)}"
    )


def _call(entry: str, arguments: list[Argument], head: str = "plpy, GD") -> str:
    return f"return rt.{entry}({', '.join([head, *(a.name for a in arguments)])})\n"


def _args(*specs: str) -> list[Argument]:
    """Arguments from ``"name type"`` or ``"name type = default"`` specs."""
    out = []
    for spec in specs:
        head, _, default = spec.partition(" = ")
        name, type_ = head.split(" ", 1)
        out.append(Argument(name, type_, default))
    return out


# The PL/Python entry points of ml, besides the per-model functions:
# (name, arguments, result, options, body after the preamble), and who may call them.
_SCORE_ARRAYS = _args(
    "model text", "source regclass", "key_column text", "block_from bigint", "block_to bigint"
)
_TABLE = _args("model text", "source regclass", "target text", "keep_columns text[]")
_ATTACH = _args(
    "tbl regclass",
    "model text",
    "target_column text",
    "mode text = 'row'",
    "on_error text = 'raise'",
    "fillfactor integer = 45",
)
_EXPLAIN_ARRAYS = _args(
    "model text",
    "model_version integer",
    "sha256 text",
    "explain_data text",
    "source regclass",
    "key_column text",
)
_RUNTIME_INFO = (
    'query = "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"\n'
    'return rt.info(paths=plpy.execute(query)[0]["rolsuper"])\n'
)
ENTRY_POINTS: list[tuple[str, list[Argument], str, str, str, str]] = [
    ("runtime_info", [], "jsonb", "STABLE", _RUNTIME_INFO, "ml_user"),
    (
        "deploy",
        _args("model text", "model_version integer"),
        "integer",
        "VOLATILE SECURITY DEFINER",
        "return rt.deploy(plpy, model, model_version)\n",
        "ml_admin",
    ),
    (
        "rollback",
        _args("model text"),
        "integer",
        "VOLATILE SECURITY DEFINER",
        "return rt.rollback(plpy, model)\n",
        "ml_admin",
    ),
    # After an upgrade: recreate the functions of live models. Superusers only.
    ("_regenerate", [], "SETOF text", "VOLATILE", "return rt.regenerate(plpy)\n", ""),
    # STABLE: its reads use the snapshot of the calling statement (ml.<name>_batch).
    (
        "_score_arrays",
        _SCORE_ARRAYS,
        "TABLE (base bigint, keys text, predictions text, probabilities text)",
        "STABLE SET jit = off",
        _call("score_arrays", _SCORE_ARRAYS),
        "ml_user",
    ),
    (
        "_score_plan",
        [*_TABLE, *_args("chunk_rows integer", "target_schema text")],
        "TABLE (source_table regclass, block_from bigint, block_to bigint)",
        "VOLATILE",
        _call("score_plan", [*_TABLE, *_args("chunk_rows integer", "target_schema text")]),
        "ml_user",
    ),
    # extra_float_digits: kept columns travel as text, which must read back to the same value.
    (
        "_score_chunk",
        [*_TABLE, *_args("block_from bigint", "block_to bigint", "target_schema text")],
        "bigint",
        "VOLATILE SET jit = off SET extra_float_digits = 1",
        _call(
            "score_chunk",
            [*_TABLE, *_args("block_from bigint", "block_to bigint", "target_schema text")],
        ),
        "ml_user",
    ),
    (
        "attach_scoring_trigger",
        _ATTACH,
        "text",
        "VOLATILE",
        _call("attach", _ATTACH),
        "ml_user",
    ),
    # Beyond predict (DESIGN 5b): STABLE, so they read the caller's snapshot.
    (
        "evaluate",
        _args("model text", "source regclass", "label_column text"),
        "TABLE (metric text, value double precision)",
        "STABLE SET jit = off",
        _call("evaluate", _args("model text", "source regclass", "label_column text")),
        "ml_user",
    ),
    (
        "drift",
        _args("model text", "source regclass"),
        "TABLE (feature text, psi double precision, share_missing double precision, "
        "training_share_missing double precision, unseen_categories bigint, verdict text)",
        "STABLE SET jit = off",
        _call("drift", _args("model text", "source regclass")),
        "ml_user",
    ),
    # ml.<name>_explain_batch unnests its rows (see explain_statements).
    (
        "_explain_arrays",
        _EXPLAIN_ARRAYS,
        "TABLE (base bigint, keys text, explanations text)",
        "STABLE SET jit = off",
        _call("explain_arrays", _EXPLAIN_ARRAYS),
        "ml_user",
    ),
    (
        "detach_scoring_trigger",
        _args("tbl regclass", "model text"),
        "void",
        "VOLATILE",
        "rt.detach(plpy, tbl, model)\n",
        "ml_user",
    ),
]


def entry_point_statements() -> list[str]:
    """The PL/Python functions of ml that ``udfs pg install`` creates, with their grants."""
    out = []
    for name, arguments, returns, options, body, grantee in ENTRY_POINTS:
        out.append(plpython_function(name, arguments, returns, options, body))
        signature = f"ml.{name}({', '.join(a.type for a in arguments)})"
        out.append(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        if grantee:
            out.append(f"GRANT EXECUTE ON FUNCTION {signature} TO {grantee}")
    return out


def unnest_each(arrays: list[str]) -> str:
    """``unnest(a, b)`` in a FROM clause, spelled out so each call is schema-qualified."""
    return ", ".join(f"pg_catalog.unnest({a})" for a in arrays)


def proba_type(signature: Signature) -> str | None:
    """The SQL type of ``<name>_proba``, or None when the model has no probabilities."""
    if not signature.has_proba:
        return None
    return "double precision" if signature.task == "binary" else "double precision[]"


def batch_sql(signature: Signature, arrays: str) -> str:
    """The rows of ``ml.<name>_batch`` from ``arrays``, rows of ``ml._score_arrays``."""
    label = PG_TYPES[signature.label_type]
    proba = proba_type(signature)
    names = ["key", "prediction"] + (["probability"] if proba else [])
    # Without a key column (keys IS NULL) the key is the position; a NULL key stays NULL.
    selects = [
        "CASE WHEN c.keys IS NULL THEN (c.base + u.ml_n)::text ELSE u.key END",
        "u.prediction",
    ]
    arrays_sql = ["c.keys::text[]", f"c.predictions::{label}[]"]
    if proba == "double precision[]":  # one array literal per row
        selects.append("u.probability::double precision[]")
        arrays_sql.append("c.probabilities::text[]")
    elif proba:
        selects.append("u.probability")
        arrays_sql.append(f"c.probabilities::{proba}[]")
    columns = ", ".join(f"{e} AS {n}" for e, n in zip(selects, names, strict=True))
    return (
        f"SELECT {columns} FROM {arrays} c CROSS JOIN LATERAL ROWS FROM "
        f"({unnest_each(arrays_sql)}) WITH ORDINALITY AS u({', '.join(names)}, ml_n)"
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


# Per-row calls keep the row scorer of their own version in SD (this function's own dict, new
# whenever a redeploy replaces the body): a call then costs one lookup, before the preamble.
_CACHED_SCORER = 'score = SD.get("score")\nif score is not None:\n    return score(args)\n'


def _scalar_body(constants: str, method: str) -> str:
    return (
        f"score, own = rt.scalar_function(plpy, GD, {constants}, {literal(method)})\n"
        'if own:\n    SD["score"] = score\nreturn score(args)\n'
    )


def model_statements(signature: Signature, version: int, sha256: str) -> list[str]:
    """CREATE OR REPLACE FUNCTION statements and grants for one model version."""
    name = signature.name
    constants = f"{literal(name)}, {int(version)}, {literal(sha256)}"
    features = [Argument(ident(f.name), PG_TYPES[f.type]) for f in signature.features]
    label = PG_TYPES[signature.label_type]
    proba = proba_type(signature)
    outputs = f"key text, prediction {label}" + (f", probability {proba}" if proba else "")
    batch_args = _args(
        "source regclass",
        "key_column text = NULL",
        "block_from bigint = NULL",
        "block_to bigint = NULL",
    )
    arrays = f"ml._score_arrays({literal(name)}, source, key_column, block_from, block_to)"
    triggered = f"plpy, GD, TD, {constants}"
    # (name, arguments, result, options, body, lines before the preamble)
    made = [(name, features, label, "STABLE", _scalar_body(constants, "predict"), _CACHED_SCORER)]
    if proba:
        body = _scalar_body(constants, "predict_proba")
        made.append((name + "_proba", features, proba, "STABLE", body, _CACHED_SCORER))
    made += [
        (name + "_trgr", [], "trigger", "VOLATILE", f"return rt.row_trigger({triggered})\n", ""),
        # Its queries cost enough to be JIT-compiled, which takes longer than running them.
        (
            name + "_trgs",
            [],
            "trigger",
            "VOLATILE SET jit = off",
            f"return rt.statement_trigger({triggered})\n",
            "",
        ),
    ]
    out = []
    for function, arguments, returns, options, body, before in made:
        # Not PARALLEL SAFE: the first call loads the model through SPI.
        options += " PARALLEL UNSAFE"
        out.append(plpython_function(ident(function), arguments, returns, options, body, before))
        out += _grants(function, arguments)
    # STABLE: its reads share the calling statement's snapshot (see batch.py).
    batch = sql_function(
        ident(name + "_batch"),
        batch_args,
        f"TABLE ({outputs})",
        "STABLE PARALLEL UNSAFE",
        batch_sql(signature, arrays),
    )
    return [*out, batch, *_grants(name + "_batch", batch_args)]


def _grants(function: str, arguments: list[Argument]) -> list[str]:
    procedure = f"ml.{ident(function)}({', '.join(a.type for a in arguments)})"
    return [
        f"REVOKE ALL ON FUNCTION {procedure} FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {procedure} TO ml_user",
    ]


# ``ml.<name>_explain_batch``'s result, as ``pg_get_function_result`` spells it.
EXPLAIN_BATCH_RESULT = "TABLE(key text, explanation jsonb)"


def explain_statements(signature: Signature, version: int, sha256: str, data_hex: str) -> list[str]:
    """``ml.<name>_explain(features...)`` and ``ml.<name>_explain_batch(source, key_column)``.

    ``data_hex``: the hex of the explainer's save-time data (``udfs.explain.save_time_data``,
    as JSON), so that the bodies embed only hex digits besides the validated name.
    """
    name = signature.name
    if any(c not in "0123456789abcdef" for c in data_hex + sha256):
        raise ValueError("explain data and sha256 must be lowercase hex")
    constants = f"{literal(name)}, {int(version)}, {literal(sha256)}, {literal(data_hex)}"
    features = [Argument(ident(f.name), PG_TYPES[f.type]) for f in signature.features]
    row = plpython_function(
        ident(name + "_explain"),
        features,
        "jsonb",
        "STABLE PARALLEL UNSAFE",
        f"return rt.explain_row(plpy, GD, {constants}, args)\n",
    )
    arguments = _args("source regclass", "key_column text = NULL")
    arrays = f"ml._explain_arrays({constants}, source, key_column)"
    # Without a key column the key is the row's position, as in ml.<name>_batch.
    body = (
        "SELECT CASE WHEN c.keys IS NULL THEN (c.base + u.ml_n)::text ELSE u.key END AS key, "
        "NULLIF(u.explanation, 'null'::jsonb) AS explanation "
        f"FROM {arrays} c CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(c.keys::text[]), "
        "pg_catalog.jsonb_array_elements(c.explanations::jsonb)) "
        "WITH ORDINALITY AS u(key, explanation, ml_n)"
    )
    batch = sql_function(
        ident(name + "_explain_batch"),
        arguments,
        "TABLE (key text, explanation jsonb)",
        "STABLE PARALLEL UNSAFE",
        body,
    )
    return [
        row,
        *_grants(name + "_explain", features),
        batch,
        *_grants(name + "_explain_batch", arguments),
    ]
