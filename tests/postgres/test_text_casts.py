"""udfs reads text exactly as PostgreSQL's casts do: a table of hostile strings, each cast by a
real server (``float8in``, ``int8in``, ``boolin``) and parsed by ``udfs.coercion``.

Both must take the same decision (accept or refuse) and, when they accept, give the same value,
bit for bit. The one intended difference: ``'NaN'::float8`` is a value in PostgreSQL and a NULL
in udfs (scikit-learn's missing value), asserted below.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator

import pytest
from psycopg2 import errors

from tests.fixtures.postgres import Db
from tests.reliability.pg_support import alive
from udfs.coercion import (
    TextRefused,
    bigint_from_text,
    boolean_from_text,
    coerce,
    double_from_text,
)
from udfs.errors import InputError
from udfs.signature import Feature

pytestmark = pytest.mark.postgres

_NUMBERS = [
    *("0", "-0", "+0", "1", "-1", "+1", "12", "007", "1.5", ".5", "5.", ".", "-.5", "+.5"),
    *("+-1", "--1", "1-", "1+", "1.2.3", "1..2", "1e5", "1E5", "1e+5", "1e-5", "1e", "1e+"),
    *("e5", "1.e5", ".e5", ".5e1", "1e5.5", "1e05", "1e-0", "0.1", "3.14159265358979323846"),
    *("1e400", "-1e400", "1e-400", "-1e-400", "1e308", "1e309", "4.9e-324", "5e-324"),
    *("2.4703282292062327e-324", "2.4703282292062328e-324", "2.2250738585072011e-308"),
    *("1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308"),
    *("3.4028235677973362e38", "3.4028235677973366e38", "9007199254740993", "0.30000000000000004"),
    *("0e999999", "0e-999999", "1e-99999999999999999999", "1e99999999999999999999", "-0e5"),
    *("0." + "0" * 400 + "1", "1" + "0" * 400, "0" * 5000 + "1", "0" * 30 + "12", "0" * 5000),
    *("1" * 5000, "0." + "0" * 323 + "247032822920623272", "0." + "0" * 323 + "247032822920623273"),
    *("0x1p3", "0X1P3", "0x1.8p1", "0x.8p1", "0x1.", "0x", "0x1p", "0x10", "0xff", "0xFF", "-0x10"),
    *("0x1p-1074", "0x1p-1075", "0x1.0000000000001p-1075", "0x1p1023", "0x1p1024", "0xg"),
    *("0x1.fffffffffffffp1023", "0x1.fffffffffffff8p1023", "0x1p99999", "0x1p-99999", "0x1P+3"),
    *("0o17", "0O17", "0b101", "0B101", "0b", "0o", "017", "1_000", "1__0", "_1", "1_", "1,5"),
    *("1 000", "1'000", "١,٥", "１２", "١٢", "٣.٥", "१२", "𝟏𝟐", "½", "²", "Ⅻ", "1e１", "−1", "＋1"),
    *("inf", "INF", "Inf", "iNf", "infinity", "INFINITY", "Infinity", "iNfInItY", "infinit"),
    *("infinityy", "infx", "in", "-inf", "+inf", "-Infinity", "+Infinity", "--inf", "- inf"),
    *("nan", "NaN", "NAN", "nAn", "-nan", "+nan", "nan(123)", "nan()", "nan(abc_1)", "NaN(0x1)"),
    *("nan(", "nan(1 2)", "nan(-1)", "nanx", "na", "nan nan", "∞", "-∞", "NaN()x", "infinity()"),
    *("9223372036854775807", "9223372036854775808", "-9223372036854775808", "+9223372036854775807"),
    *(
        "-9223372036854775809",
        "99999999999999999999",
        "99999999999999999999x",
        "18446744073709551616",
    ),
    *("-00000000000000000000000009223372036854775808", "9223372036854775807.0", "1.0", "1e3"),
    *("", " ", "\t", "+", "-", "e", "x", "1x", "x1", "0x1e", "12abc", "1\x01"),
]
_WORDS = [
    *("t", "T", "tr", "tru", "true", "TRUE", "tRuE", "truex", "truth", "f", "F", "fa", "fal"),
    *("fals", "false", "FALSE", "falsee", "y", "Y", "ye", "yes", "YES", "yess", "n", "N", "no"),
    *("NO", "non", "nope", "on", "ON", "oN", "o", "O", "of", "OF", "off", "OFF", "offf", "onn"),
    *("1", "0", "1.0", "0.0", "2", "-1", "01", "10", "00", "yes!", "t r u e", "ｔｒｕｅ", "tRUE "),
    *("ſ", "ТRUE", "İ", "vrai", "ja"),
]
# Around and inside a value: ASCII whitespace (which C's isspace skips) and Unicode whitespace,
# zero-width and separator characters (which it does not).
_DECORATIONS = [
    *(" {}", "{} ", "  {}  ", "\t{}\n", "\v{}\f", "\r{}", "\n\n{}\t\t", "{}\r\n"),
    *("\xa0{}", "{}\xa0", "\u2003{}", "{}\u3000", "\u200b{}", "\ufeff{}", "\x1c{}", "{}\x1f"),
    *("\x85{}", "{}\u2028", "\u2009{}\u2009", "{} x", "'{}'", "({})", "{}\x0b\x0c"),
]
_DECORATED = [
    *("1", "-12", "1.5", "1e5", ".5", "0x1p3", "inf", "-Infinity", "nan", "nan(1)", "true", "off"),
    *("9223372036854775807", "-9223372036854775808", "t", "0"),
]


def hostile_strings() -> list[str]:
    """A few hundred distinct strings, none holding NUL (which text cannot hold)."""
    strings = [*_NUMBERS, *_WORDS]
    strings += [d.format(s) for s in _DECORATED for d in _DECORATIONS]
    strings += [s[0] + " " + s[1:] for s in ("12", "1.5", "1e5", "true", "-1", "inf") if len(s) > 1]
    strings = [s for s in dict.fromkeys(strings) if "\x00" not in s]
    assert len(strings) >= 300, len(strings)
    return strings


STRINGS = hostile_strings()

# Per SQL type: udfs's parser, the feature type, how the server sends the value and unpacks it.
TYPES: dict[str, tuple[Callable[[str], object], str, str, str]] = {
    "float8": (double_from_text, "double", "float8send", ">d"),
    "bigint": (bigint_from_text, "bigint", "int8send", ">q"),
    "boolean": (boolean_from_text, "boolean", "boolsend", ">?"),
}

_TRY_CAST = """
CREATE FUNCTION pg_temp.try_cast(t text, sql_type text, OUT bits bytea, OUT refusal text)
LANGUAGE plpgsql AS $$
BEGIN
    IF sql_type = 'float8' THEN bits := float8send(t::float8);
    ELSIF sql_type = 'bigint' THEN bits := int8send(t::bigint);
    ELSE bits := boolsend(t::boolean);
    END IF;
EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
    refusal := SQLSTATE;
END $$
"""


@pytest.fixture(scope="module")
def server(pg_db: str) -> Iterator[Db]:
    """A plain database (nothing installed) with ``pg_temp.try_cast``: a cast's result or error,
    without aborting the statement."""
    handle = Db(pg_db)
    handle.run(_TRY_CAST)
    yield handle
    handle.close()


def _server_casts(server: Db, sql_type: str) -> dict[str, object]:
    """Each string's value as the server's cast gives it, or the SQLSTATE of its refusal."""
    rows = server.rows(
        "SELECT u.t, c.bits, c.refusal FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i), "
        "LATERAL pg_temp.try_cast(u.t, %s) AS c ORDER BY u.i",
        STRINGS,
        sql_type,
    )
    unpack = TYPES[sql_type][3]
    return {
        text: struct.unpack(unpack, bytes(bits))[0] if state is None else state
        for text, bits, state in rows
    }


def _bits(value: object, unpack: str) -> bytes:
    return struct.pack(unpack, value)


def _udfs_parse(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except TextRefused:
        return "refused"


@pytest.mark.parametrize("sql_type", list(TYPES))
def test_udfs_parses_text_as_the_server_casts_it(server: Db, sql_type: str) -> None:
    parse, _, _, unpack = TYPES[sql_type]
    cast = _server_casts(server, sql_type)
    assert list(cast) == STRINGS  # the server received every string intact
    accepted = 0
    differences = []
    for text, want in cast.items():
        got = _udfs_parse(parse, text)
        if isinstance(want, str):  # a SQLSTATE: the server refused it
            ok = got == "refused"
        elif isinstance(want, float) and math.isnan(want):
            ok = isinstance(got, float) and math.isnan(got)
        else:
            ok = got != "refused" and _bits(got, unpack) == _bits(want, unpack)
        accepted += not isinstance(want, str)
        if not ok:
            differences.append((text, want, got))
    assert not differences, differences
    assert 20 <= accepted < len(STRINGS) - 100, accepted  # the table holds both kinds


@pytest.mark.parametrize("sql_type", list(TYPES))
def test_coerce_agrees_with_the_server_on_whole_columns(server: Db, sql_type: str) -> None:
    """Through ``coerce``: one column of every accepted string (its vectorized path, and the
    plain-notation fast path alone), and each refused string alone raising InputError."""
    _, feature_type, _, unpack = TYPES[sql_type]
    feature = Feature("x", feature_type)
    cast = _server_casts(server, sql_type)
    accepted = {t: v for t, v in cast.items() if not isinstance(v, str)}
    plain = {t: v for t, v in accepted.items() if set(t) <= set("0123456789+-.eE \t\n\v\f\r")}
    for column in (accepted, plain):
        values, null = coerce("m", feature, list(column))
        for text, want, got, is_null in zip(column, column.values(), values, null, strict=True):
            if isinstance(want, float) and math.isnan(want):
                assert is_null, text  # the intended difference: NaN is NULL in udfs
            else:
                assert not is_null and _bits(got, unpack) == _bits(want, unpack), (text, got)
    for text in (t for t, v in cast.items() if isinstance(v, str)):
        with pytest.raises(InputError) as info:
            coerce("m", feature, ["0", text])
        assert info.value.details["column"] == "x" and info.value.details["row"] == 1
        assert info.value.details["value"] == repr(text)


def test_postgres_15_takes_no_prefixed_or_separated_integers(server: Db) -> None:
    """Integer literals with 0x/0o/0b prefixes or _ separators came with PostgreSQL 16."""
    assert server.one("SELECT current_setting('server_version_num')::int / 10000") == 15
    for text in ("0x10", "0o17", "0b101", "1_000"):
        with pytest.raises(errors.InvalidTextRepresentation):
            server.run("SELECT %s::bigint", text)
        alive(server.conn)
        with pytest.raises(TextRefused):
            bigint_from_text(text)


def test_nan_is_a_value_in_postgres_and_null_in_udfs(server: Db) -> None:
    assert math.isnan(server.one("SELECT 'NaN'::float8"))
    _, null = coerce("m", Feature("x", "double"), ["NaN", "-nan", "nan(7)", "1"])
    assert null.tolist() == [True, True, True, False]


def test_text_columns_reach_the_functions_with_these_rules(db: Db) -> None:
    """End to end: text columns under ``ml.churn_batch`` are refused as their casts would be."""
    db.run("DROP TABLE IF EXISTS hostile_text")
    db.run(
        "CREATE TABLE hostile_text (id int PRIMARY KEY, age text, tenure text, plan text, active text)"
    )
    db.run(
        "INSERT INTO hostile_text VALUES (1, ' 40 ', '3', 'pro', 'yes'), (2, '１２', '1', 'pro', 'of')"
    )
    for column, value, reason in (
        ("age", "１２", "not a number"),
        ("tenure", "9223372036854775808", "out of bigint range"),
        ("active", "o", "not a boolean"),
    ):
        db.run(f"UPDATE hostile_text SET {column} = %s WHERE id = 2", value)
        with pytest.raises(errors.ExternalRoutineException) as caught:
            db.run("SELECT * FROM ml.churn_batch('hostile_text', 'id')")
        message = caught.value.pgerror
        assert f"model 'churn': column '{column}'" in message, message
        assert repr(value) in message and reason in message, message
        alive(db.conn)
        db.run(
            "UPDATE hostile_text SET age = '\t12\n', tenure = '+1', active = ' OF ' WHERE id = 2"
        )
    assert len(db.rows("SELECT * FROM ml.churn_batch('hostile_text', 'id')")) == 2
