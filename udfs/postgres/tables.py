"""Server side of vectorized scoring: ``ml.<name>_batch`` and ``ml.score_table``.

``ml._score_arrays`` does the work: per chunk, ONE query reads the feature columns (see
``reader``), ONE vectorized prediction gives the shared core's results (``fastpath.BatchScorer``:
the core, or one verified pass of the trees for labels and probabilities together), and the
results leave Python as the text of one SQL array per output (see ``arrays``). ``ml.<name>_batch`` is a SQL
function that ``unnest``s those arrays, so no row is ever built in Python.

Chunks are ranges of heap blocks read in ``ctid`` order. ``ml._score_arrays`` and
``ml.<name>_batch`` are STABLE, so their reads use the snapshot of the statement that calls
them: ``score_chunk`` joins the batch with the same ctid range of the source in ONE statement,
and both sides see exactly the same rows.
"""

from __future__ import annotations

from typing import Any

from udfs.errors import InputError
from udfs.postgres.arrays import array_text
from udfs.postgres.functions import PG_TYPES, batch_sql, proba_type
from udfs.postgres.reader import Relation, block_ranges, block_where, read_chunk
from udfs.signature import Signature

BATCH_CHUNK_ROWS = 100_000  # rows per chunk of ml.<name>_batch; SET udfs.batch_chunk_rows


def _batch_chunk_rows(plpy: Any) -> int:
    setting = plpy.execute("SELECT current_setting('udfs.batch_chunk_rows', true) AS v")[0]["v"]
    try:
        return max(1, int(setting)) if setting else BATCH_CHUNK_ROWS
    except ValueError:
        message = f"udfs.batch_chunk_rows must be a number of rows, got {setting!r}"
        raise InputError(message) from None


def score_arrays(
    plpy: Any,
    loaded: Any,
    source: str,
    key_column: str | None = None,
    block_from: int | None = None,
    block_to: int | None = None,
) -> list[tuple]:
    """Rows of ``ml._score_arrays``: (base, keys, predictions, probabilities) per chunk.

    ``keys`` is a ``text[]`` literal of ``key_column`` (NULL without one: the key is then the
    row's position in ctid order, ``base`` + its position in the chunk). ``predictions`` and
    ``probabilities`` are array literals of the result types (see ``arrays.array_text``).
    """
    relation = Relation(plpy, source)
    keys = []
    if key_column is not None:
        relation.require([key_column], "key_column")
        keys = [f"{plpy.quote_ident(key_column)}::text"]
    if block_from is not None:
        ranges = [(block_from, block_to)]
    else:
        ranges = block_ranges(plpy, relation, _batch_chunk_rows(plpy))
    sig = loaded.signature
    label, proba = PG_TYPES[sig.label_type], proba_type(sig)
    out: list[tuple] = []
    base = 0
    for lo, hi in ranges:
        chunk = read_chunk(plpy, sig, relation, block_where(lo, hi), keys)
        if chunk.size == 0:
            continue
        # Labels and probabilities of the shared core, from one pass where that is exact.
        labels, probas = loaded.batch.score(chunk.columns, proba=proba is not None)
        predictions = array_text(labels, label)
        probabilities = None if probas is None else array_text(probas, proba)
        out.append((base, chunk.keys[0] if keys else None, predictions, probabilities))
        base += chunk.size
    return out


def batch_rows(plpy: Any, loaded: Any, *args: Any) -> list[tuple]:
    """Rows of a ``_batch`` function deployed before ``ml._score_arrays`` existed.

    Those are PL/Python set-returning functions; a redeploy replaces them with SQL.
    """
    arrays = "(SELECT $1::bigint AS base, $2 AS keys, $3 AS predictions, $4 AS probabilities)"
    plan = plpy.prepare(batch_sql(loaded.signature, arrays), ["bigint", "text", "text", "text"])
    columns = ["key", "prediction"] + (["probability"] if loaded.signature.has_proba else [])
    rows: list[tuple] = []
    for chunk in score_arrays(plpy, loaded, *args):
        rows.extend(tuple(r[c] for c in columns) for r in plan.execute(list(chunk)))
    return rows


def score_plan(
    plpy: Any,
    model: str,
    source: str,
    target: str,
    keep: list | None,
    chunk_rows: int,
    target_schema: str | None = None,
) -> list[tuple]:
    """Create ``target`` and return the chunks ``score_chunk`` fills it with.

    An unqualified ``target`` goes into ``target_schema`` (the caller's current schema).
    """
    sig = _live_signature(plpy, model)
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    if not relation.has_ctid_ranges:  # a view: score a snapshot of it, in this session
        plpy.execute("DROP TABLE IF EXISTS pg_temp.ml_score_source")
        plpy.execute(f"CREATE TEMP TABLE ml_score_source AS SELECT * FROM {relation.sql}")
        relation = Relation(plpy, "pg_temp.ml_score_source")
    target_sql = _target(plpy, target, target_schema)
    kept = ", ".join(plpy.quote_ident(c) for c in keep)
    plpy.execute(f"CREATE TABLE {target_sql} AS SELECT {kept} FROM {relation.sql} WITH NO DATA")
    plpy.execute(f"ALTER TABLE {target_sql} ADD COLUMN prediction {PG_TYPES[sig.label_type]}")
    if sig.has_proba:
        plpy.execute(f"ALTER TABLE {target_sql} ADD COLUMN probability {proba_type(sig)}")
    return [(relation.sql, lo, hi) for lo, hi in block_ranges(plpy, relation, chunk_rows)]


def score_chunk(
    plpy: Any,
    model: str,
    source: str,
    target: str,
    keep: list | None,
    lo: int | None,
    hi: int | None,
    target_schema: str | None = None,
) -> int:
    """Insert one chunk's kept columns and predictions into ``target``, in one statement.

    ``ml._score_arrays`` (STABLE) reads the chunk with the statement's snapshot, so joining its
    rows with the chunk's rows by position in ctid order pairs every row with its own scores.
    """
    sig, version, sha256 = _live(plpy, model)
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    q, lit = plpy.quote_ident, plpy.quote_literal
    kept = ", ".join(q(c) for c in keep)
    outputs = ["prediction"] + (["probability"] if sig.has_proba else [])
    order = "ORDER BY ctid" if relation.has_ctid_ranges else ""
    bounds = ", ".join("NULL" if b is None else str(int(b)) for b in (lo, hi))
    arrays = (
        f"ml._score_arrays({lit(model)}, {int(version)}, {lit(sha256)}, "
        f"{lit(relation.sql)}::regclass, NULL, {bounds})"
    )
    statement = (
        f"INSERT INTO {_target(plpy, target, target_schema)} ({kept}, {', '.join(outputs)}) "
        f"SELECT {', '.join(f's.{q(c)}' for c in keep)}, {', '.join('b.' + o for o in outputs)} "
        f"FROM (SELECT {kept}, row_number() OVER ({order}) AS ml_rn "
        f"FROM {relation.sql}{block_where(lo, hi)}) s "
        f"JOIN ({batch_sql(sig, arrays, key=False)}) b ON b.ml_rn = s.ml_rn"
    )
    return plpy.execute(statement).nrows()


def _keep(relation: Relation, keep: list | None) -> list[str]:
    keep = list(keep) if keep else (relation.primary_key or list(relation.types))
    relation.require(keep, "keep column")
    clash = {"prediction", "probability"} & set(keep)
    if clash:
        raise InputError(f"keep column '{clash.pop()}' clashes with a column score_table adds")
    return keep


def _target(plpy: Any, target: str, schema: str | None) -> str:
    """``target`` parsed as SQL would parse a table name: quote odd names as "my table".

    The functions run with a pinned search_path, so an unqualified name is qualified with
    ``schema``, the caller's current schema.
    """
    query = f"SELECT pg_catalog.parse_ident({plpy.quote_literal(target)}) AS p"
    parts = plpy.execute(query)[0]["p"]
    if len(parts) == 1:
        if schema is None:
            raise InputError(
                f"target '{target}' names no schema and the caller has no current schema "
                "(nothing on its search_path exists): qualify it, e.g. public.scores",
                value=target,
            )
        parts = [schema, *parts]
    return ".".join(plpy.quote_ident(p) for p in parts)


def _live(plpy: Any, model: str) -> tuple[Signature, int, str]:
    """The live version of ``model``: its signature, version and sha256."""
    from udfs.naming import validate_name

    validate_name(model)
    query = f"SELECT version, sha256, signature FROM ml._live({plpy.quote_literal(model)})"
    rows = plpy.execute(query)
    if not rows:
        raise InputError(f"model '{model}' is not deployed in this database", model=model)
    return Signature.from_json(rows[0]["signature"]), rows[0]["version"], rows[0]["sha256"]


def _live_signature(plpy: Any, model: str) -> Signature:
    return _live(plpy, model)[0]
