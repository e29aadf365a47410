"""Run a SQL script in Spark statement by statement, with row counts, times and clear errors."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from pyspark.errors import AnalysisException
from pyspark.sql import Row, SparkSession

from udfs.errors import InputError, ModelNotFoundError, ScoringError, UdfsError, suggest
from udfs.spark.statements import first_line, split_statements

# Statements that write a table: their row count is the written table's.
_WRITES = re.compile(
    r"^\s*(?:CREATE\s+(?:OR\s+REPLACE\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?|INSERT\s+(?:INTO|OVERWRITE)(?:\s+TABLE)?)"
    r"\s+(?!(?:LOCAL\s+)?DIRECTORY\b)((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))*)",
    re.IGNORECASE,
)
_UDFS_ERROR = re.compile(r"udfs\.errors\.(\w+): (.+)")
_UNRESOLVED = re.compile(r"UNRESOLVED_ROUTINE\].*?routine `?([\w.]+?)`? ", re.S)


@dataclass
class StatementResult:
    """What one statement did."""

    statement: str
    seconds: float
    rows: int | None
    preview: list[Row] = field(default_factory=list)


def translate(exc: Exception, functions: list[str]) -> UdfsError | None:
    """Turn a Spark error caused by udfs (or a misspelled model) into a clear UdfsError."""
    # Python worker errors reach the driver as text, wrapped in PythonException or, from
    # toLocalIterator, in a Py4JJavaError: find the udfs error line in it.
    found = _UDFS_ERROR.findall(str(exc))
    if found:
        kind, message = found[-1]
        cls = {"InputError": InputError}.get(kind, ScoringError)
        return cls(message.strip())
    if isinstance(exc, AnalysisException):
        missing = _UNRESOLVED.search(str(exc))
        if missing:
            name = missing.group(1).split(".")[-1]
            return ModelNotFoundError(
                f"no SQL function '{name}' is registered.{suggest(name, functions)} "
                f"Registered: {', '.join(sorted(functions)) or 'none'}",
                model=name,
            )
    return None


def run_statement(spark: SparkSession, statement: str, show: int = 20) -> StatementResult:
    """Run one statement; a query's rows are streamed once, keeping the first ``show``."""
    start = time.perf_counter()
    frame = spark.sql(statement)
    written = _WRITES.match(statement)
    if written:
        rows: int | None = spark.table(written.group(1)).count()
        preview: list[Row] = []
    elif frame.columns and not statement.lstrip().upper().startswith(
        ("DROP", "CREATE", "USE", "SET")
    ):
        stream = frame.toLocalIterator()
        preview = list(islice(stream, show))
        rows = len(preview) + sum(1 for _ in stream)
    else:
        rows, preview = None, []
    return StatementResult(statement, time.perf_counter() - start, rows, preview)


def run_script(
    spark: SparkSession,
    text: str,
    functions: list[str] | None = None,
    echo: Callable[[str], None] = print,
    show: int = 20,
) -> list[StatementResult]:
    """Run every statement of ``text`` in order, reporting each one's rows and time."""
    statements = split_statements(text)
    results = []
    for number, statement in enumerate(statements, 1):
        echo(f"[{number}/{len(statements)}] {first_line(statement)}")
        try:
            result = run_statement(spark, statement, show)
        except Exception as exc:
            clear = translate(exc, functions or [])
            if clear is None:
                raise
            raise clear from exc
        results.append(result)
        for row in result.preview:
            echo("    " + " | ".join(str(v) for v in row))
        count = "" if result.rows is None else f"{result.rows:,} rows, "
        echo(f"    -> {count}{result.seconds:.2f}s")
    return results
