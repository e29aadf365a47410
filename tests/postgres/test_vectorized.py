"""The vectorized paths' moving parts: binary reader, array literals, chunks, empty tables, keys."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import psycopg2
import pytest

from tests.fixtures.models import expected, scoring_rows
from tests.fixtures.postgres import Db, assert_same, create_customers
from udfs.postgres.server.arrays import array_text
from udfs.postgres.server.reader import _ctid_order, decode

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def rows():
    return scoring_rows()


@pytest.fixture(scope="module")
def padded(db: Db, rows) -> list[int]:
    """The scoring rows over several heap blocks, two of them moved by an UPDATE.

    Returns the ids in ctid order, which is no longer id order.
    """
    create_customers(db, "padded_src", rows)
    db.run("DROP TABLE IF EXISTS padded")
    # ~1.5 kB per row: about 5 rows per block, so chunks of 5 rows are ranges of 1 block.
    db.run(
        "CREATE TABLE padded AS SELECT c.*, 'x'::char(1500) AS pad FROM padded_src c ORDER BY id"
    )
    db.run("ALTER TABLE padded ADD PRIMARY KEY (id)")
    db.run("UPDATE padded SET age = age WHERE id IN (2, 9)")  # no room in their block: moved
    db.run("ANALYZE padded")
    order = db.column("SELECT id FROM padded ORDER BY ctid")
    assert (
        order != sorted(order)
        and db.one("SELECT count(DISTINCT (ctid::text::point)[0]) FROM padded") > 3
    )
    return order


def by_id(rows, ids: list[int]) -> pd.DataFrame:
    return rows.set_index("id").loc[ids].reset_index()


@pytest.mark.parametrize("model", ["spend", "segment"])
def test_score_table_over_many_chunks(db: Db, padded, rows, trained, model: str) -> None:
    db.run(f"DROP TABLE IF EXISTS padded_{model}")
    db.run(f"CALL ml.score_table('{model}', 'padded', 'padded_{model}', ARRAY['id'], 5)")
    got = db.rows(f"SELECT id, prediction FROM padded_{model} ORDER BY id")
    assert [r[0] for r in got] == sorted(padded)
    assert_same([r[1] for r in got], expected(trained[model], rows))


def test_batch_chunks_keep_keys_and_positions(db: Db, padded, rows, trained) -> None:
    with db.conn.cursor() as cur:
        cur.execute("SET udfs.batch_chunk_rows = 5")
        cur.execute("SELECT key, prediction, probability FROM ml.churn_batch('padded', 'id')")
        keyed = cur.fetchall()
        cur.execute("SELECT key, prediction FROM ml.churn_batch('padded')")
        positional = cur.fetchall()
        cur.execute("RESET udfs.batch_chunk_rows")
    in_ctid_order = by_id(rows, padded)
    assert [int(k) for k, _, _ in keyed] == padded
    assert_same([p for _, p, _ in keyed], expected(trained["churn"], in_ctid_order))
    assert_same(
        [p for _, _, p in keyed], expected(trained["churn"], in_ctid_order, "predict_proba"), True
    )
    # Without a key column, the key is the row's position in ctid order, counted across chunks.
    assert [k for k, _ in positional] == [str(i) for i in range(1, len(rows) + 1)]
    assert [p for _, p in positional] == [p for _, p, _ in keyed]


def test_batch_text_keys_keep_quotes_and_nulls(db: Db, padded, rows, trained) -> None:
    db.run("DROP TABLE IF EXISTS text_keys")
    db.run(
        "CREATE TABLE text_keys AS SELECT c.*, CASE WHEN id % 4 = 0 THEN NULL "
        "ELSE 'k \"' || id || '\", {x}' END AS k FROM padded_src c"
    )
    got = db.rows("SELECT key, prediction FROM ml.spend_batch('text_keys', 'k')")
    keys = db.column("SELECT k FROM text_keys ORDER BY ctid")
    assert [k for k, _ in got] == keys and None in keys and '"' in keys[0]
    assert_same([p for _, p in got], expected(trained["spend"], rows))


def test_bad_batch_chunk_setting_is_refused(db: Db, padded) -> None:
    with db.conn.cursor() as cur:
        cur.execute("SET udfs.batch_chunk_rows = 'many'")
        try:
            with pytest.raises(psycopg2.Error, match=r"udfs\.batch_chunk_rows must be a number"):
                cur.execute("SELECT count(*) FROM ml.churn_batch('padded')")
        finally:
            cur.execute("RESET udfs.batch_chunk_rows")


def test_empty_table(db: Db, rows) -> None:
    create_customers(db, "empty_src", rows.iloc[:0])
    db.run("DROP TABLE IF EXISTS empty_out")
    db.run("CALL ml.score_table('churn', 'empty_src', 'empty_out', ARRAY['id'])")
    assert db.one("SELECT count(*) FROM empty_out") == 0
    assert db.one("SELECT count(*) FROM ml.segment_batch('empty_src', 'id')") == 0
    db.run("SELECT ml.attach_scoring_trigger('empty_src', 'spend', 'score', 'statement')")
    db.run("INSERT INTO empty_src (id, age) SELECT 1, 2 WHERE false")
    assert db.one("SELECT count(*) FROM empty_src") == 0


def test_statement_trigger_composite_text_key_with_bad_rows(db: Db, trained) -> None:
    """Keys travel as array literals: quotes, commas and braces must come back intact."""
    db.run("DROP TABLE IF EXISTS odd_keys")
    db.run(
        "CREATE TABLE odd_keys (region text, n int, age text, tenure bigint, score float8, "
        "PRIMARY KEY (region, n))"
    )
    db.run("SELECT ml.attach_scoring_trigger('odd_keys', 'plain', 'score', 'statement', 'null')")
    regions = ['a "quoted", {braced}', "back\\slash", "NULL", ""]
    values = [(regions[0], 1, "40", 3), (regions[1], 1, "oops", 4), (regions[2], 2, "51.5", None)]
    values.append((regions[3], 3, None, 7))
    with db.conn.cursor() as cur:
        args = ", ".join(cur.mogrify("(%s, %s, %s, %s)", v).decode() for v in values)
        cur.execute(f"INSERT INTO odd_keys (region, n, age, tenure) VALUES {args}")
    got = dict(((r, n), s) for r, n, s in db.rows("SELECT region, n, score FROM odd_keys"))
    good = pd.DataFrame({"age": [40.0, 51.5, np.nan], "tenure": [3.0, np.nan, 7.0]})
    want = expected(trained["plain"], good)
    assert got[(regions[1], 1)] is None  # 'oops' is not a double: recorded, not lost
    keys = [(regions[0], 1), (regions[2], 2), (regions[3], 3)]
    assert_same([got[k] for k in keys], want, one_row=True)
    errors = db.column("SELECT key FROM ml.scoring_errors WHERE table_name = 'public.odd_keys'")
    assert errors == [{"region": regions[1], "n": 1}]


def _round_trip(db: Db, text: str, sql_type: str) -> list:
    return db.one(f"SELECT %s::text::{sql_type}[]", text)


def test_array_text_round_trips_exactly(db: Db) -> None:
    floats = [0.1, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, None]
    got = _round_trip(
        db, array_text(pd.Series(floats, dtype="Float64"), "double precision"), "float8"
    )
    assert got[:-1] == floats[:-1] and got[-1] is None and math.copysign(1, got[2]) == -1
    ints = [0, -(2**63), 2**63 - 1, None]
    assert _round_trip(db, array_text(pd.Series(ints, dtype="Int64"), "bigint"), "int8") == ints
    flags = [True, False, None]
    assert (
        _round_trip(db, array_text(pd.Series(flags, dtype="boolean"), "boolean"), "bool") == flags
    )
    texts = ['a"b', "c\\d", "NULL", "", " x ", "{,}", None, "é"]
    assert _round_trip(db, array_text(pd.Series(texts, dtype=object), "text"), "text") == texts
    rows_ = [[0.1, 0.9], [1 / 3, 2 / 3], None]
    literal = array_text(pd.Series(rows_, dtype=object), "double precision[]")
    query = "SELECT r::float8[] FROM unnest(%s::text::text[]) WITH ORDINALITY u(r, n) ORDER BY n"
    assert db.column(query, literal) == rows_


def test_decode_puts_rows_in_ctid_order() -> None:
    """Rows read out of ctid order are put back in it (bigint, boolean, text and doubles)."""
    tids = [(3, 1), (0, 2), (0, 1), (1, 7)]
    raw = b"".join(b.to_bytes(4, "big") + o.to_bytes(2, "big") for b, o in tids)
    order = _ctid_order(raw)
    assert order.tolist() == [2, 1, 3, 0]
    assert _ctid_order(b"".join(sorted(raw[i : i + 6] for i in range(0, 24, 6)))) is None
    doubles = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, np.nan], [4.0, 40.0]])
    ints, null = np.array([1, 2, 3, 4]), np.array([0, 0, 1, 0], dtype=np.uint8)
    row = {
        "a0": ints.astype(">i8").tobytes(),
        "a1": null.tobytes(),
        "a2": bytes([1, 0, 2, 1]),
        "a3": ["w", "x", None, "z"],
        "a4": doubles.astype(">f8").tobytes(),
    }
    columns = decode(["f8", "i8", "b", "any", "f8"], row, 4, order)
    assert columns[0].tolist() == [3.0, 2.0, 4.0, 1.0]
    assert np.isnan(columns[1][0]) and columns[1][1:].tolist() == [2.0, 4.0, 1.0]
    assert columns[2].tolist() == [None, False, True, True]
    assert columns[3].tolist() == [None, "x", "z", "w"]
    assert np.isnan(columns[4][0]) and columns[4][1:].tolist() == [20.0, 40.0, 10.0]
