"""Split SQL scripts into statements, for engines whose API runs one statement at a time."""

from __future__ import annotations

import sqlparse
from sqlparse.tokens import Punctuation


def split_statements(text: str) -> list[str]:
    """The statements of ``text`` without their trailing ``;``, skipping comment-only ones.

    Quotes, backticks and comments are honoured (``sqlparse`` tokenizes the script), and
    comments inside a statement are kept, since Spark reads optimizer hints from them.

    >>> split_statements("SELECT 'a;b'; -- note\\n/* x; */ SELECT 2;")
    ["SELECT 'a;b' -- note", '/* x; */ SELECT 2']
    """
    statements = []
    for parsed in sqlparse.parse(text):
        # Drop the top-level terminator; a comment after it on the same line stays harmlessly.
        kept = [t for t in parsed.tokens if not (t.ttype is Punctuation and t.value == ";")]
        statement = "".join(str(t) for t in kept).strip()
        if sqlparse.format(statement, strip_comments=True).strip():
            statements.append(statement)
    return statements


def first_line(statement: str, width: int = 80) -> str:
    """A one-line summary of a statement for progress output."""
    code = sqlparse.format(statement, strip_comments=True)
    line = " ".join(code.split())
    return line if len(line) <= width else line[: width - 3] + "..."
