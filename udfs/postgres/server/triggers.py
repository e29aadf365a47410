"""Server side of scoring triggers: attach, detach, and what the triggers do when they fire.

``row`` mode is a BEFORE INSERT OR UPDATE OF <features> row trigger that sets the target column
through the one-row scorer. ``statement`` mode is an AFTER INSERT statement trigger that scores
the transition table in one vectorized call and writes the scores back by primary key. That
write-back UPDATE is the mode's main cost, so attaching it leaves room in the table's pages
(``fillfactor``, 45 by default): each row's new version (the old one plus its score) then fits
on the row's own page and the update is HOT, with no new index entries (about 2.5x cheaper,
see benchmarks/). 45, not 50: the new version is larger than the old by the score's bytes.

``on_error='null'`` never loses a row: a failed row gets a NULL score and a row in
``ml.scoring_errors``. In statement mode a failed batch is re-scored row by row to find the
rows that fail.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from udfs import scoring
from udfs.errors import InputError, ScoringError, UdfsError
from udfs.postgres.server.arrays import array_text
from udfs.postgres.server.ddl import PG_TYPES, unnest_each
from udfs.postgres.server.quoting import ident, idents, literal, qualified
from udfs.postgres.server.reader import Chunk, Relation, read_chunk
from udfs.signature import Signature

MODES = ("row", "statement")
ON_ERROR = ("raise", "null")
TRANSITION_TABLE = "ml_new_rows"
# Row errors: bad values or a model that rejects them. Anything else (a tampered artifact,
# a missing model) is not about the row, and always aborts the statement.
ROW_ERRORS = (InputError, ScoringError)
_plans: dict[str, Any] = {}


def trigger_name(model: str) -> str:
    return f"ml_{model}"


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}", value=value)
    return value


def _hot_room(plpy: Any, relation: Relation, target: str, fillfactor: int | None) -> str:
    """Set the table's fillfactor to at most ``fillfactor``: what attach did, as a sentence."""
    if fillfactor is None:
        return "fillfactor left alone (fillfactor => NULL)"
    row = plpy.execute(
        "SELECT (SELECT option_value::int FROM pg_catalog.pg_options_to_table(c.reloptions) "
        "WHERE option_name = 'fillfactor') AS fillfactor, "
        "pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owner, "
        "EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid "
        f"AND a.attname = {literal(target)}) AS indexed "
        f"FROM pg_catalog.pg_class c WHERE c.oid = {int(relation.oid)}::pg_catalog.oid"
    )[0]
    if row["indexed"]:
        return f"write-backs are not HOT: {target} is indexed"
    if relation.kind != "r":
        return "fillfactor left alone: set it on the partitions"
    current = row["fillfactor"] or 100
    if current <= fillfactor:
        return f"fillfactor already {current}"
    if not row["owner"]:
        return f"fillfactor left at {current}: only the table's owner can change it"
    plpy.execute(f"ALTER TABLE {relation.sql} SET (fillfactor = {int(fillfactor)})")
    return f"fillfactor {fillfactor} (was {current}) so write-backs are HOT updates"


def attach(
    plpy: Any,
    tbl: str,
    sig: Signature,
    target: str,
    mode: str,
    on_error: str,
    fillfactor: int | None = None,
) -> str:
    """``ml.attach_scoring_trigger``: (re)create the trigger of the model ``sig`` on ``tbl``.

    In statement mode, also give the table's pages room for the write-back (``_hot_room``).
    """
    _choice(mode, MODES, "mode")
    _choice(on_error, ON_ERROR, "on_error")
    if fillfactor is not None and not 10 <= fillfactor <= 100:
        raise InputError(
            f"fillfactor must be between 10 and 100 (or NULL), got {fillfactor}",
            value=fillfactor,
        )
    model = sig.name
    relation = Relation(plpy, tbl)
    relation.require(sig.feature_names, f"model '{model}' needs feature")
    relation.require([target], "target_column")
    if target in sig.feature_names:
        raise InputError(f"target_column '{target}' is one of the model's features")
    if mode == "statement" and not relation.primary_key:
        raise InputError(
            f"table {relation.name} has no primary key: statement mode writes the scores back "
            "by primary key. Add one, or use mode => 'row'",
            table=relation.name,
        )
    name = ident(trigger_name(model))
    args = ", ".join(literal(a) for a in [target, on_error, *relation.primary_key])
    plpy.execute(f"DROP TRIGGER IF EXISTS {name} ON {relation.sql}")
    done = f"{mode} trigger {trigger_name(model)} on {relation.name} scores {model} into {target}"
    if mode == "row":
        features = idents(sig.feature_names)
        plpy.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OF {features} ON {relation.sql} "
            f"FOR EACH ROW EXECUTE FUNCTION ml.{ident(model + '_trgr')}({args})"
        )
        return done
    plpy.execute(
        f"CREATE TRIGGER {name} AFTER INSERT ON {relation.sql} REFERENCING NEW TABLE AS "
        f"{TRANSITION_TABLE} FOR EACH STATEMENT EXECUTE FUNCTION ml.{ident(model + '_trgs')}({args})"
    )
    return f"{done}; {_hot_room(plpy, relation, target, fillfactor)}"


def detach(plpy: Any, tbl: str, model: str) -> None:
    """``ml.detach_scoring_trigger``: drop the trigger of ``model`` on ``tbl``."""
    relation = Relation(plpy, tbl)
    found = plpy.execute(
        f"SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = {int(relation.oid)}::pg_catalog.oid "
        f"AND tgname = {literal(trigger_name(model))}"
    )
    if not found:
        raise InputError(f"no scoring trigger for model '{model}' on {relation.name}", model=model)
    plpy.execute(f"DROP TRIGGER {ident(trigger_name(model))} ON {relation.sql}")


def error_text(exc: UdfsError, keep_values: bool) -> tuple[str, str | None]:
    """What ``ml.scoring_errors`` keeps of a row's error: a message and, if allowed, the value.

    Without ``keep_values`` the message is rebuilt from the error's structured details (model,
    column, expected type, reason), so no value of the row, nor anything a model's own message
    quotes, reaches a table that many roles may read.
    """
    if keep_values:
        return exc.message, exc.details.get("value")
    details = exc.details
    text = f"{type(exc).__name__}: model '{details.get('model', '?')}'"
    if "column" in details:
        text += f": column '{details['column']}'"
    if "expected" in details:
        text += f" expects {details['expected']}"
    if "reason" in details:
        text += f": {details['reason']}"
    return text + " (value withheld; ml.settings errors_keep_values = on records it)", None


def _record(plpy: Any, table_oid: int, failures: list[tuple[Any, UdfsError]], loaded: Any) -> None:
    """Insert one row per failed row into ``ml.scoring_errors``, in one statement.

    The insert runs as the user whose statement fired the trigger; the table's row-level policy
    accepts it only for a table that user writes to and that has this model's trigger.
    """
    if not failures:
        return
    plan = _plans.get("record")
    if plan is None:
        query = (
            "INSERT INTO ml.scoring_errors (table_oid, key, model, version, error, value) "
            "SELECT $1, u.k::pg_catalog.jsonb, $2, $3, u.e, u.v "
            f"FROM ROWS FROM ({unnest_each(['$4::text[]', '$5::text[]', '$6::text[]'])}) AS u(k, e, v)"
        )
        types = ["oid", "text", "integer", "text[]", "text[]", "text[]"]
        _plans["keep"] = plpy.prepare("SELECT ml._keep_error_values() AS keep")
        plan = _plans["record"] = plpy.prepare(query, types)
    keep_values = bool(_plans["keep"].execute()[0]["keep"])
    keys, errors, values = [], [], []
    for key, exc in failures:
        keys.append(None if key is None else json.dumps(key, default=str))
        message, value = error_text(exc, keep_values)
        errors.append(message)
        values.append(value)
    plan.execute([table_oid, loaded.name, loaded.version, keys, errors, values])


def _in_context(exc: UdfsError, table: str) -> UdfsError:
    """The same error, saying which table's trigger raised it."""
    return type(exc)(f"scoring trigger on {table}: {exc.message}", **exc.details)


def on_row(plpy: Any, TD: dict, loaded: Any) -> str:
    """BEFORE row trigger: set the target column of the new row."""
    target, on_error, *key_columns = TD["args"]
    new = TD["new"]
    try:
        new[target] = loaded.rows.predict([new[n] for n in loaded.signature.feature_names])
    except ROW_ERRORS as exc:
        if on_error == "raise":
            raise _in_context(exc, f"{TD['table_schema']}.{TD['table_name']}") from exc
        key = {k: new[k] for k in key_columns} or None
        _record(plpy, int(TD["relid"]), [(key, exc)], loaded)
        new[target] = None
    return "MODIFY"


def _row_values(columns: list[Any], i: int) -> list[Any]:
    values = []
    for column in columns:
        value = column.iloc[i] if hasattr(column, "iloc") else column[i]
        values.append(value.item() if isinstance(value, np.generic) else value)
    return values


def _one_by_one(plpy: Any, loaded: Any, chunk: Chunk, keys_sql: str, table_oid: int) -> list:
    """Score row by row: failed rows get None and a row in ml.scoring_errors."""
    keys = [json.loads(r["k"]) for r in plpy.execute(keys_sql)]
    out, failures = [], []
    for i in range(chunk.size):
        try:
            out.append(loaded.rows.predict(_row_values(chunk.columns, i)))
        except ROW_ERRORS as exc:
            failures.append((keys[i], exc))
            out.append(None)
    _record(plpy, table_oid, failures, loaded)
    return out


def on_statement(plpy: Any, TD: dict, loaded: Any) -> None:
    """AFTER INSERT statement trigger: score the transition table, update by primary key.

    ONE query reads the features and the primary keys of every inserted row (as array texts),
    ONE prediction scores them and ONE UPDATE joins the table with ``unnest`` of the keys and
    scores, so every row's score lands on its own key whatever order the queries scan in.
    """
    target, on_error, *key_columns = TD["args"]
    relation = Relation(plpy, qualified(TD["table_schema"], TD["table_name"]))
    table = relation.name
    sig = loaded.signature
    keys = [ident(k) for k in key_columns]
    chunk = read_chunk(plpy, sig, relation, keys=keys, source_sql=TRANSITION_TABLE)
    if chunk.size == 0:
        return
    names = [f"ml_k{i}" for i in range(len(keys))]
    key_arrays = [
        f"{literal(text)}::{relation.types[k]}[]"
        for text, k in zip(chunk.keys, key_columns, strict=True)
    ]
    try:
        result = loaded.batch.score(chunk.columns, proba=False)[0]
    except ROW_ERRORS as exc:
        if on_error == "raise":
            raise _in_context(exc, table) from exc
        pairs = ", ".join(f"{literal(k)}, u.{n}" for k, n in zip(key_columns, names, strict=True))
        keys_sql = (
            f"SELECT pg_catalog.jsonb_build_object({pairs})::text AS k "
            f"FROM ROWS FROM ({unnest_each(key_arrays)}) "
            f"WITH ORDINALITY AS u({', '.join(names)}, ml_n) ORDER BY ml_n"
        )
        values = _one_by_one(plpy, loaded, chunk, keys_sql, int(relation.oid))
        result = pd.Series(values, dtype=scoring.RESULT_DTYPES[sig.label_type])
    label = PG_TYPES[sig.label_type]
    match = " AND ".join(f"t.{k} = u.{n}" for k, n in zip(keys, names, strict=True))
    # unnest() in a SELECT list zips the arrays without materializing them (a FROM-clause
    # function scan would), and as literals their lengths are known to the planner.
    arrays = [*key_arrays, f"{literal(array_text(result, label))}::{label}[]"]
    unnest = ", ".join(
        f"pg_catalog.unnest({a}) AS {n}" for a, n in zip(arrays, [*names, "ml_v"], strict=True)
    )
    plpy.execute(
        f"UPDATE {relation.sql} AS t SET {ident(target)} = u.ml_v FROM (SELECT {unnest}) AS u "
        f"WHERE {match}"
    )
