"""The one way server code puts names and values into SQL text.

Every identifier is double-quoted, every literal single-quoted: the same SQL as PostgreSQL's
``quote_ident``/``quote_literal`` give, whatever the name or value, and nothing to look up, so
the DDL is built (and unit-tested) without a database.
"""

from __future__ import annotations

from collections.abc import Iterable


def ident(name: str) -> str:
    """``name`` as a quoted identifier: ``my "odd" col`` becomes ``"my ""odd"" col"``."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """``schema.name`` with both parts quoted."""
    return ".".join(ident(p) for p in parts)


def literal(value: str | int | None) -> str:
    """``value`` as a SQL literal: NULL, an integer, or a string.

    A string with a backslash is written ``E'...'`` with the backslashes doubled, so it reads
    the same whatever ``standard_conforming_strings`` is.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if not isinstance(value, str):
        raise TypeError(f"no SQL literal for {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("a SQL string cannot contain NUL")
    quoted = "'" + value.replace("'", "''") + "'"
    return "E" + quoted.replace("\\", "\\\\") if "\\" in value else quoted


def idents(names: Iterable[str]) -> str:
    """Quoted identifiers separated by commas."""
    return ", ".join(ident(n) for n in names)
