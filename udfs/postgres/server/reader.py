"""The binary chunk reader: the feature columns of many rows in ONE query, decoded with numpy.

Turning rows into Python objects, not the model, is what scoring a table in PL/Python costs.
So a chunk is read with one query that aggregates each feature column into one value: numeric
and boolean columns as binary-packed ``bytea`` (``float8send``/``int8send``, decoded with
``numpy.frombuffer``), other columns as one array each. Key columns travel as the text of one
array (``array_agg(k)::text``): one Python string, handed back to SQL untouched.

Chunks are ranges of heap blocks read in ``ctid`` order.

Every function the queries call is schema-qualified, and they run in functions whose
search_path is pinned to ``pg_catalog, pg_temp``, so no look-alike in another schema is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from udfs.errors import InputError, suggest
from udfs.postgres.server.quoting import ident, literal, qualified
from udfs.signature import Signature

# Column types that are read binary-packed, per feature type: exact conversions only.
_FLOAT_SOURCES = {"double precision", "real", "integer", "smallint", "bigint"}
_INT_SOURCES = {"bigint", "integer", "smallint"}
_HEX = "pg_catalog.decode('{}', 'hex')"
_AGG = "pg_catalog.string_agg"
_NAN = _HEX.format("7ff8000000000000")  # a NULL double travels as NaN: the core's NULL


class Relation:
    """A table or view resolved from a regclass, with its columns and their types."""

    def __init__(self, plpy: Any, regclass: str) -> None:
        rows = plpy.execute(
            "SELECT c.oid::bigint AS oid, n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.oid = {literal(regclass)}::pg_catalog.regclass"
        )
        row = rows[0]
        self.oid, self.kind = row["oid"], row["relkind"]
        self.name = f"{row['nspname']}.{row['relname']}"
        self.sql = qualified(row["nspname"], row["relname"])
        columns = plpy.execute(
            "SELECT attname, pg_catalog.format_type(atttypid, atttypmod) AS type "
            f"FROM pg_catalog.pg_attribute WHERE attrelid = {int(self.oid)}::pg_catalog.oid "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        self.types = {c["attname"]: c["type"] for c in columns}
        keys = plpy.execute(
            "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            f"WHERE i.indrelid = {int(self.oid)}::pg_catalog.oid AND i.indisprimary "
            "ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)"
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


@dataclass
class Chunk:
    """The rows of one chunk: feature columns in signature order, and key arrays as text."""

    columns: list[Any]
    keys: list[str]
    size: int


def _encoding(feature_type: str, column_type: str) -> str:
    if feature_type == "double" and column_type in _FLOAT_SOURCES:
        return "f8"
    if feature_type == "bigint" and column_type in _INT_SOURCES:
        return "i8"
    if feature_type == "boolean" and column_type == "boolean":
        return "b"
    return "any"  # the core coerces the Python values, as it does for one row


def aggregates(signature: Signature, relation: Relation) -> tuple[list[str], list[str]]:
    """SELECT-list aggregates that read the feature columns of a chunk in a few values.

    All double features go into ONE ``bytea`` (each row's doubles side by side: one aggregate
    step per row, not per value); bigint and boolean features into one ``bytea`` each, with
    their NULLs; anything else into an array.
    """
    relation.require(signature.feature_names, f"model '{signature.name}' needs feature")
    encodings, sql, doubles = [], [], []
    for f in signature.features:
        c = f"s.{ident(f.name)}"
        enc = _encoding(f.type, relation.types[f.name])
        encodings.append(enc)
        if enc == "f8":
            doubles.append(f"coalesce(pg_catalog.float8send({c}::pg_catalog.float8), {_NAN})")
        elif enc == "i8":
            sql.append(f"{_AGG}(pg_catalog.int8send(coalesce({c}::pg_catalog.int8, 0)), ''::bytea)")
            sql.append(
                f"{_AGG}(CASE WHEN {c} IS NULL THEN {_HEX.format('01')} "
                f"ELSE {_HEX.format('00')} END, ''::bytea)"
            )
        elif enc == "b":
            sql.append(
                f"{_AGG}(CASE WHEN {c} THEN {_HEX.format('01')} WHEN NOT {c} THEN "
                f"{_HEX.format('00')} ELSE {_HEX.format('02')} END, ''::bytea)"
            )
        else:
            sql.append(f"pg_catalog.array_agg({c})")
    if doubles:
        sql.append(f"{_AGG}({' || '.join(doubles)}, ''::bytea)")
    return encodings, [f"{expr} AS a{i}" for i, expr in enumerate(sql)]


def decode(encodings: list[str], row: dict, size: int, order: Any = None) -> list[Any]:
    """Feature columns from one aggregate row, in signature order.

    ``order``: the permutation that puts the rows in the wanted order (None: as read).
    """
    import pandas as pd

    count = len(encodings) - encodings.count("f8") + encodings.count("i8") + ("f8" in encodings)
    values = [row[f"a{i}"] for i in range(count)]
    doubles = iter(())
    if "f8" in encodings:
        block = np.frombuffer(values[-1], dtype=">f8").reshape(size, encodings.count("f8"))
        block = block if order is None else block[order]
        doubles = iter(block.T.astype(np.float64))  # native byte order, one row per feature
    columns, i = [], 0
    for enc in encodings:
        if enc == "f8":
            columns.append(next(doubles))
            continue
        if enc == "i8":
            ints = np.frombuffer(values[i], dtype=">i8").astype(np.int64)
            null = np.frombuffer(values[i + 1], dtype=np.uint8).astype(bool)
            if order is not None:
                ints, null = ints[order], null[order]
            if null.any():
                ints = ints.astype(np.float64)
                ints[null] = np.nan
            columns.append(ints)
            i += 1
        elif enc == "b":
            codes = np.frombuffer(values[i], dtype=np.uint8)
            codes = codes if order is None else codes[order]
            flags: Any = codes == 1
            if (codes == 2).any():
                flags = flags.astype(object)
                flags[codes == 2] = None
            columns.append(flags)
        else:
            items = values[i] if order is None else [values[i][j] for j in order.tolist()]
            columns.append(pd.Series(items, dtype=object))
        i += 1
    return columns


def _ctid_order(tids: bytes) -> Any:
    """The permutation that sorts rows by ctid, from their ``tidsend`` (block u32, offset u16)."""
    raw = np.frombuffer(tids, dtype=[("block", ">u4"), ("offset", ">u2")])
    position = raw["block"].astype(np.int64) << 16 | raw["offset"].astype(np.int64)
    order = np.argsort(position, kind="stable")  # linear on the already sorted usual case
    return None if (order == np.arange(len(order))).all() else order


def read_chunk(
    plpy: Any,
    signature: Signature,
    relation: Relation,
    where: str = "",
    keys: Sequence[str] = (),
    source_sql: str | None = None,
    ordered: bool = True,
) -> Chunk:
    """The feature columns of the rows of a chunk, and ``keys`` as array texts, in ONE query.

    Key expressions are SQL over the columns of the source (already quoted). Rows come in
    ``ctid`` order from a table, in scan order from anything else; ``source_sql`` reads another
    relation with ``relation``'s columns (a transition table, scanned in insertion order).
    A table is read unsorted and put in ctid order in numpy: sorting wide rows in SQL costs
    more than reading them. ``ordered=False`` leaves the rows in scan order: features and keys
    still pair up, as every aggregate of one query sees the rows in the same order.
    """
    encodings, selects = aggregates(signature, relation)
    columns = [ident(n) for n in signature.feature_names]
    columns += [f"{k} AS ml_k{i}" for i, k in enumerate(keys)]
    by_ctid = ordered and source_sql is None and relation.has_ctid_ranges
    order = " ORDER BY s.ctid" if by_ctid else ""
    selects += [
        f"pg_catalog.array_agg(s.ml_k{i}{order})::text AS ml_k{i}" for i in range(len(keys))
    ]
    if by_ctid:
        columns.append("ctid")
        selects.append(f"{_AGG}(pg_catalog.tidsend(s.ctid), ''::bytea) AS ml_tids")
    query = (
        f"SELECT pg_catalog.count(*) AS ml_n, {', '.join(selects)} FROM "
        f"(SELECT {', '.join(columns)} FROM {source_sql or relation.sql}{where}) s"
    )
    row = plpy.execute(query)[0]
    size = row["ml_n"]
    if size == 0:
        return Chunk([], ["{}"] * len(keys), 0)
    permutation = _ctid_order(row["ml_tids"]) if by_ctid else None
    features = decode(encodings, row, size, permutation)
    return Chunk(features, [row[f"ml_k{i}"] for i in range(len(keys))], size)


def block_ranges(
    plpy: Any, relation: Relation, chunk_rows: int
) -> list[tuple[int | None, int | None]]:
    """Ranges of heap blocks holding about ``chunk_rows`` rows each."""
    if not relation.has_ctid_ranges:
        return [(None, None)]
    stats = plpy.execute(
        f"SELECT pg_catalog.pg_relation_size({int(relation.oid)}::pg_catalog.regclass) "
        "/ pg_catalog.current_setting('block_size')::bigint AS blocks, reltuples "
        f"FROM pg_catalog.pg_class WHERE oid = {int(relation.oid)}::pg_catalog.oid"
    )[0]
    blocks = int(stats["blocks"])
    rows = stats["reltuples"]
    if rows is None or rows < 0:  # never analyzed
        rows = plpy.execute(f"SELECT pg_catalog.count(*) AS n FROM {relation.sql}")[0]["n"]
    per_chunk = max(1, int(blocks * max(chunk_rows, 1) // max(rows, 1)))
    return [(lo, min(lo + per_chunk, blocks)) for lo in range(0, max(blocks, 1), per_chunk)]


def block_where(block_from: int | None, block_to: int | None) -> str:
    """The WHERE clause that reads the blocks [block_from, block_to), or all rows."""
    if block_from is None:
        return ""
    return f" WHERE ctid >= '({int(block_from)},0)'::tid AND ctid < '({int(block_to)},0)'::tid"
