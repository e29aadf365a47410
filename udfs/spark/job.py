"""The SQL job shared by `udfs spark sql` and `spark_jobs/score_sql.py`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from udfs.naming import parse_ref
from udfs.spark.register import register, register_all
from udfs.spark.script import StatementResult, run_script
from udfs.spark.session import describe, session
from udfs.store import StorePath


def run_sql_file(
    sql_file: Path,
    *,
    master: str | None = None,
    gpu: str = "auto",
    store: StorePath = None,
    models: Sequence[str] = (),
    rapids_jar: str | None = None,
    conf: dict[str, str] | None = None,
    remote: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[StatementResult]:
    """Register the models (``NAME`` or ``NAME@VERSION``; all by default) and run ``sql_file``.

    ``remote``: a Spark Connect URL (see :func:`udfs.spark.session.session`).
    """
    text = Path(sql_file).read_text()
    spark = session(
        f"udfs {Path(sql_file).name}", master, gpu, rapids_jar=rapids_jar, conf=conf, remote=remote
    )
    if models:
        functions = [fn for ref in models for fn in register(spark, *parse_ref(ref), store=store)]
    else:
        functions = register_all(spark, store=store)
    echo(f"registered: {', '.join(functions) or 'no models'} ({describe(spark, remote)})")
    return run_script(spark, text, functions, echo=echo)
