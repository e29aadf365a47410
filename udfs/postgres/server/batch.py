"""Vectorized scoring of tables: ``ml.<name>_batch`` and ``ml.score_table``.

Per chunk, ONE query reads the feature columns (see ``reader``), ONE vectorized prediction
gives the shared core's results (``fastpath.BatchScorer``), and the results leave Python as
the text of one SQL array per output (see ``arrays``): no row is ever built in Python.

Chunks are ranges of heap blocks. ``ml.<name>_batch`` is a SQL function that ``unnest``s the
arrays of ``ml._score_arrays``; both are STABLE, so their reads use the snapshot of the
statement that calls them. ``ml.score_table`` writes its target from Python: the query that
reads a chunk's features also reads its kept columns, so every row's scores are paired with
that row's own values by construction, whatever the snapshot of the next query.
"""

from __future__ import annotations

from typing import Any

from udfs.errors import InputError
from udfs.postgres.server.arrays import array_text
from udfs.postgres.server.ddl import PG_TYPES, proba_type, unnest_each
from udfs.postgres.server.models import Loaded
from udfs.postgres.server.quoting import ident, idents, literal, qualified
from udfs.postgres.server.reader import Relation, block_ranges, block_where, read_chunk
from udfs.signature import Signature

BATCH_CHUNK_ROWS = 100_000  # rows per chunk of ml.<name>_batch; SET udfs.batch_chunk_rows
# Columns ml.score_table adds to its target.
OUTPUTS = ("prediction", "probability")


def batch_chunk_rows(plpy: Any) -> int:
    setting = plpy.execute("SELECT current_setting('udfs.batch_chunk_rows', true) AS v")[0]["v"]
    try:
        return max(1, int(setting)) if setting else BATCH_CHUNK_ROWS
    except ValueError:
        message = f"udfs.batch_chunk_rows must be a number of rows, got {setting!r}"
        raise InputError(message) from None


def score_arrays(
    plpy: Any,
    loaded: Loaded,
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
        keys = [f"{ident(key_column)}::text"]
    if block_from is not None:
        ranges = [(block_from, block_to)]
    else:
        ranges = block_ranges(plpy, relation, batch_chunk_rows(plpy))
    out: list[tuple] = []
    base = 0
    for lo, hi in ranges:
        chunk = read_chunk(plpy, loaded.signature, relation, block_where(lo, hi), keys)
        if chunk.size == 0:
            continue
        predictions, probabilities = _scores(loaded, chunk.columns)
        out.append((base, chunk.keys[0] if keys else None, predictions, probabilities))
        base += chunk.size
    return out


def _scores(loaded: Loaded, columns: list[Any]) -> tuple[str, str | None]:
    """Labels and probabilities of the shared core as array texts, from one pass."""
    sig = loaded.signature
    label, proba = PG_TYPES[sig.label_type], proba_type(sig)
    labels, probas = loaded.batch.score(columns, proba=proba is not None)
    return array_text(labels, label), None if probas is None else array_text(probas, proba)


def create_target(
    plpy: Any,
    sig: Signature,
    source: str,
    target: str,
    keep: list | None,
    chunk_rows: int,
    target_schema: str | None = None,
) -> list[tuple]:
    """Create ``target`` of ``ml.score_table``; return the chunks ``score_chunk`` fills it with.

    An unqualified ``target`` goes into ``target_schema`` (the caller's current schema).
    """
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    if not relation.has_ctid_ranges:  # a view: score a snapshot of it, in this session
        plpy.execute("DROP TABLE IF EXISTS pg_temp.ml_score_source")
        plpy.execute(f"CREATE TEMP TABLE ml_score_source AS SELECT * FROM {relation.sql}")
        relation = Relation(plpy, "pg_temp.ml_score_source")
    target_sql = _target(plpy, target, target_schema)
    plpy.execute(
        f"CREATE TABLE {target_sql} AS SELECT {idents(keep)} FROM {relation.sql} WITH NO DATA"
    )
    plpy.execute(f"ALTER TABLE {target_sql} ADD COLUMN prediction {PG_TYPES[sig.label_type]}")
    if sig.has_proba:
        plpy.execute(f"ALTER TABLE {target_sql} ADD COLUMN probability {proba_type(sig)}")
    return [(relation.sql, lo, hi) for lo, hi in block_ranges(plpy, relation, chunk_rows)]


def score_chunk(
    plpy: Any,
    loaded: Loaded,
    source: str,
    target: str,
    keep: list | None,
    lo: int | None,
    hi: int | None,
    target_schema: str | None = None,
) -> int:
    """Insert one chunk's kept columns and scores into ``target``; return the rows.

    ONE query reads the chunk's features and its kept columns (each as the text of one array:
    text reads back to the same value of any type, and the function pins
    ``extra_float_digits`` so that floats do too); ONE INSERT unnests them with the scores.
    """
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    kept = [f"{ident(c)}::text" for c in keep]
    chunk = read_chunk(plpy, loaded.signature, relation, block_where(lo, hi), kept, ordered=False)
    if chunk.size == 0:
        return 0
    predictions, probabilities = _scores(loaded, chunk.columns)
    sig = loaded.signature
    texts = [*chunk.keys, predictions]
    arrays = [f"${i + 1}::text[]" for i in range(len(keep))]
    arrays.append(f"${len(keep) + 1}::{PG_TYPES[sig.label_type]}[]")
    values = [f"u.k{i}::{relation.types[c]}" for i, c in enumerate(keep)] + ["u.prediction"]
    names = [f"k{i}" for i in range(len(keep))] + ["prediction"]
    if probabilities is not None:
        proba = proba_type(sig)
        texts.append(probabilities)
        if proba.endswith("[]"):  # one array literal per row
            arrays.append(f"${len(texts)}::text[]")
            values.append(f"u.probability::{proba}")
        else:
            arrays.append(f"${len(texts)}::{proba}[]")
            values.append("u.probability")
        names.append("probability")
    columns = [*keep, *OUTPUTS[: len(names) - len(keep)]]
    statement = (
        f"INSERT INTO {_target(plpy, target, target_schema)} ({idents(columns)}) "
        f"SELECT {', '.join(values)} FROM ROWS FROM ({unnest_each(arrays)}) "
        f"AS u({', '.join(names)})"
    )
    return plpy.prepare(statement, ["text"] * len(texts)).execute(texts).nrows()


def _keep(relation: Relation, keep: list | None) -> list[str]:
    keep = list(keep) if keep else (relation.primary_key or list(relation.types))
    relation.require(keep, "keep column")
    clash = set(OUTPUTS) & set(keep)
    if clash:
        raise InputError(f"keep column '{clash.pop()}' clashes with a column score_table adds")
    return keep


def _target(plpy: Any, target: str, schema: str | None) -> str:
    """``target`` parsed as SQL would parse a table name: quote odd names as "my table".

    The functions run with a pinned search_path, so an unqualified name is qualified with
    ``schema``, the caller's current schema.
    """
    parts = plpy.execute(f"SELECT pg_catalog.parse_ident({literal(target)}) AS p")[0]["p"]
    if len(parts) == 1:
        if schema is None:
            raise InputError(
                f"target '{target}' names no schema and the caller has no current schema "
                "(nothing on its search_path exists): qualify it, e.g. public.scores",
                value=target,
            )
        parts = [schema, *parts]
    return qualified(*parts)
