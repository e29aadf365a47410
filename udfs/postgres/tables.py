"""Server side of vectorized scoring: ``ml.<name>_batch``, ``ml.score_table`` and the reader.

The cost of scoring a table in PL/Python is turning rows into Python objects, not the model.
So a chunk is read with ONE query that aggregates each feature column: numeric and boolean
columns as binary-packed ``bytea`` (decoded with ``numpy.frombuffer``), other columns as one
array each. One vectorized prediction per chunk goes through the shared core.

Chunks are ranges of heap blocks read in ``ctid`` order. ``ml.<name>_batch`` is STABLE, so its
reads use the snapshot of the statement that calls it: ``score_chunk`` joins its output with the
same ctid range of the source in ONE statement, and both sides see exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs import scoring
from udfs.errors import InputError, suggest
from udfs.postgres.functions import PG_TYPES
from udfs.signature import Signature

# Column types that are read binary-packed, per feature type: exact conversions only.
_FLOAT_SOURCES = {"double precision", "real", "integer", "smallint", "bigint"}
_INT_SOURCES = {"bigint", "integer", "smallint"}
_HEX = "decode('{}', 'hex')"
_NAN = _HEX.format("7ff8000000000000")  # a NULL double travels as NaN: the core's NULL


class Relation:
    """A table or view resolved from a regclass, with its columns and their types."""

    def __init__(self, plpy: Any, regclass: str) -> None:
        rows = plpy.execute(
            "SELECT c.oid::bigint AS oid, n.nspname, c.relname, c.relkind FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {plpy.quote_literal(regclass)}::regclass"
        )
        row = rows[0]
        self.oid, self.kind = row["oid"], row["relkind"]
        self.name = f"{row['nspname']}.{row['relname']}"
        self.sql = f"{plpy.quote_ident(row['nspname'])}.{plpy.quote_ident(row['relname'])}"
        columns = plpy.execute(
            "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
            f"WHERE attrelid = {int(self.oid)} AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        self.types = {c["attname"]: c["type"] for c in columns}
        keys = plpy.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {int(self.oid)} AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)"
        )
        self.primary_key = [k["attname"] for k in keys]

    @property
    def has_ctid_ranges(self) -> bool:
        """Plain tables and materialized views can be read in ranges of blocks."""
        return self.kind in ("r", "m")

    def require(self, columns: Sequence[str], what: str) -> None:
        for column in columns:
            if column not in self.types:
                raise InputError(
                    f"{what} '{column}' is not a column of {self.name} "
                    f"(columns: {', '.join(self.types)}).{suggest(column, self.types)}",
                    column=column,
                )


def _encoding(feature_type: str, column_type: str) -> str:
    if feature_type == "double" and column_type in _FLOAT_SOURCES:
        return "f8"
    if feature_type == "bigint" and column_type in _INT_SOURCES:
        return "i8"
    if feature_type == "boolean" and column_type == "boolean":
        return "b"
    return "any"  # the core coerces the Python values, as it does for one row


def aggregates(plpy: Any, signature: Signature, relation: Relation) -> tuple[list[str], list[str]]:
    """SELECT-list aggregates that read each feature column of a chunk in one value."""
    relation.require(signature.feature_names, f"model '{signature.name}' needs feature")
    encodings, sql = [], []
    for f in signature.features:
        c = f"s.{plpy.quote_ident(f.name)}"
        enc = _encoding(f.type, relation.types[f.name])
        encodings.append(enc)
        if enc == "f8":
            sql.append(f"string_agg(coalesce(float8send({c}::float8), {_NAN}), ''::bytea)")
        elif enc == "i8":
            sql.append(f"string_agg(int8send(coalesce({c}::int8, 0)), ''::bytea)")
            sql.append(
                f"string_agg(CASE WHEN {c} IS NULL THEN {_HEX.format('01')} "
                f"ELSE {_HEX.format('00')} END, ''::bytea)"
            )
        elif enc == "b":
            sql.append(
                f"string_agg(CASE WHEN {c} THEN {_HEX.format('01')} WHEN NOT {c} THEN "
                f"{_HEX.format('00')} ELSE {_HEX.format('02')} END, ''::bytea)"
            )
        else:
            sql.append(f"array_agg({c})")
    return encodings, [f"{expr} AS a{i}" for i, expr in enumerate(sql)]


def decode(encodings: list[str], row: dict, size: int) -> list[Any]:
    """Feature columns from one aggregate row, in signature order."""
    values = [row[f"a{i}"] for i in range(_width(encodings))]
    columns, i = [], 0
    for enc in encodings:
        if enc == "f8":
            columns.append(np.frombuffer(values[i], dtype=">f8").astype(np.float64))
        elif enc == "i8":
            ints = np.frombuffer(values[i], dtype=">i8").astype(np.int64)
            null = np.frombuffer(values[i + 1], dtype=np.uint8).astype(bool)
            if null.any():
                ints = ints.astype(np.float64)
                ints[null] = np.nan
            columns.append(ints)
            i += 1
        elif enc == "b":
            codes = np.frombuffer(values[i], dtype=np.uint8)
            flags: Any = codes == 1
            if (codes == 2).any():
                flags = flags.astype(object)
                flags[codes == 2] = None
            columns.append(flags)
        else:
            columns.append(pd.Series(values[i], dtype=object))
        i += 1
    return columns


def _width(encodings: list[str]) -> int:
    return len(encodings) + encodings.count("i8")


def to_python(result: pd.Series) -> list:
    """A core result as Python values for SPI: None for NULL, plain ints, floats and lists."""
    if result.dtype == object:
        return [None if v is None or v is pd.NA else v for v in result.tolist()]
    return result.astype(object).where(result.notna(), None).tolist()


def read_chunk(
    plpy: Any,
    signature: Signature,
    relation: Relation,
    where: str = "",
    key: str | None = None,
    source_sql: str | None = None,
) -> tuple[list[Any], list | None, int]:
    """Feature columns, keys (as text) and row count of the rows of a chunk.

    ``source_sql`` reads another relation with ``relation``'s columns (a transition table).
    """
    encodings, selects = aggregates(plpy, signature, relation)
    columns = ", ".join(plpy.quote_ident(n) for n in signature.feature_names)
    order = " ORDER BY ctid" if source_sql is None and relation.has_ctid_ranges else ""
    key_sql = f", {plpy.quote_ident(key)}::text AS ml_key" if key else ""
    key_agg = ", array_agg(s.ml_key) AS ml_keys" if key else ""
    query = (
        f"SELECT count(*) AS ml_n{key_agg}, {', '.join(selects)} FROM "
        f"(SELECT {columns}{key_sql} FROM {source_sql or relation.sql}{where}{order}) s"
    )
    row = plpy.execute(query)[0]
    size = row["ml_n"]
    if size == 0:
        return [], [] if key else None, 0
    return decode(encodings, row, size), row.get("ml_keys"), size


def block_ranges(
    plpy: Any, relation: Relation, chunk_rows: int
) -> list[tuple[int | None, int | None]]:
    """Ranges of heap blocks holding about ``chunk_rows`` rows each."""
    if not relation.has_ctid_ranges:
        return [(None, None)]
    stats = plpy.execute(
        f"SELECT pg_relation_size({int(relation.oid)}) / current_setting('block_size')::bigint "
        f"AS blocks, reltuples FROM pg_class WHERE oid = {int(relation.oid)}"
    )[0]
    blocks = int(stats["blocks"])
    rows = stats["reltuples"]
    if rows is None or rows < 0:  # never analyzed
        rows = plpy.execute(f"SELECT count(*) AS n FROM {relation.sql}")[0]["n"]
    per_chunk = max(1, int(blocks * max(chunk_rows, 1) // max(rows, 1)))
    return [(lo, min(lo + per_chunk, blocks)) for lo in range(0, max(blocks, 1), per_chunk)]


def _where(block_from: int | None, block_to: int | None) -> str:
    if block_from is None:
        return ""
    return f" WHERE ctid >= '({int(block_from)},0)'::tid AND ctid < '({int(block_to)},0)'::tid"


def predict_columns(loaded: Any, columns: list[Any]) -> list[list]:
    """Predictions (and probabilities) of one chunk as Python lists."""
    sig = loaded.signature
    out = [to_python(scoring.predict(loaded.model, sig, columns))]
    if sig.has_proba:
        out.append(to_python(scoring.predict_proba(loaded.model, sig, columns)))
    return out


def batch(
    plpy: Any,
    loaded: Any,
    source: str,
    key_column: str | None = None,
    block_from: int | None = None,
    block_to: int | None = None,
) -> list[tuple]:
    """Rows of ``ml.<name>_batch``: (key, prediction[, probability]) per source row."""
    relation = Relation(plpy, source)
    if key_column is not None:
        relation.require([key_column], "key_column")
    if block_from is not None:
        ranges = [(block_from, block_to)]
    else:
        ranges = block_ranges(plpy, relation, 50_000)
    rows: list[tuple] = []
    for lo, hi in ranges:
        columns, keys, size = read_chunk(
            plpy, loaded.signature, relation, _where(lo, hi), key_column
        )
        if size == 0:
            continue
        if keys is None:  # the row's position in ctid order, counted across chunks
            keys = [str(i) for i in range(len(rows) + 1, len(rows) + size + 1)]
        rows.extend(zip(keys, *predict_columns(loaded, columns), strict=True))
    return rows


def score_plan(
    plpy: Any, model: str, source: str, target: str, keep: list | None, chunk_rows: int
) -> list[tuple]:
    """Create ``target`` and return the chunks ``score_chunk`` fills it with."""
    from udfs.postgres.functions import proba_type

    sig = _live_signature(plpy, model)
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    if not relation.has_ctid_ranges:  # a view: score a snapshot of it, in this session
        plpy.execute("DROP TABLE IF EXISTS pg_temp.ml_score_source")
        plpy.execute(f"CREATE TEMP TABLE ml_score_source AS SELECT * FROM {relation.sql}")
        relation = Relation(plpy, "pg_temp.ml_score_source")
    target_sql = _target(plpy, target)
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
) -> int:
    """Insert one chunk's kept columns and predictions into ``target``, in one statement."""
    sig = _live_signature(plpy, model)
    relation = Relation(plpy, source)
    keep = _keep(relation, keep)
    q = plpy.quote_ident
    kept = ", ".join(f"s.{q(c)}" for c in keep)
    outputs = "prediction, probability" if sig.has_proba else "prediction"
    order = "ORDER BY ctid" if relation.has_ctid_ranges else ""
    statement = (
        f"INSERT INTO {_target(plpy, target)} ({', '.join(q(c) for c in keep)}, {outputs}) "
        f"SELECT {kept}, {', '.join('b.' + o for o in outputs.split(', '))} FROM "
        f"(SELECT {', '.join(q(c) for c in keep)}, row_number() OVER ({order}) AS ml_rn "
        f"FROM {relation.sql}{_where(lo, hi)}) s "
        f"JOIN ml.{q(model + '_batch')}({plpy.quote_literal(relation.sql)}::regclass, NULL, "
        f"{'NULL' if lo is None else int(lo)}, {'NULL' if hi is None else int(hi)}) b "
        "ON b.key = s.ml_rn::text"
    )
    return plpy.execute(statement).nrows()


def _keep(relation: Relation, keep: list | None) -> list[str]:
    keep = list(keep) if keep else (relation.primary_key or list(relation.types))
    relation.require(keep, "keep column")
    clash = {"prediction", "probability"} & set(keep)
    if clash:
        raise InputError(f"keep column '{clash.pop()}' clashes with a column score_table adds")
    return keep


def _target(plpy: Any, target: str) -> str:
    """``target`` parsed as SQL would parse a table name: quote odd names as "my table"."""
    parts = plpy.execute(f"SELECT parse_ident({plpy.quote_literal(target)}) AS p")[0]["p"]
    return ".".join(plpy.quote_ident(p) for p in parts)


def _live_signature(plpy: Any, model: str) -> Signature:
    from udfs.naming import validate_name

    validate_name(model)
    rows = plpy.execute(f"SELECT signature FROM ml._live({plpy.quote_literal(model)})")
    if not rows:
        raise InputError(f"model '{model}' is not deployed in this database", model=model)
    return Signature.from_json(rows[0]["signature"])
