"""The SQL job shared by `udfs spark sql` and `spark_jobs/score_sql.py`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from udfs.naming import parse_ref
from udfs.spark.evaluate import register_evaluate
from udfs.spark.register import register
from udfs.spark.script import StatementResult, run_script
from udfs.spark.session import describe, session
from udfs.store import StorePath, model_names


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
    refs = [parse_ref(ref) for ref in models] or [(name, None) for name in model_names(store)]
    functions = [fn for name, version in refs for fn in register(spark, name, version, store)]
    # <name>_evaluate only where the script calls it: it carries the model's bytes once more.
    lowered = text.lower()
    functions += [
        register_evaluate(spark, name, version, store)
        for name, version in refs
        if f"{name}_evaluate".lower() in lowered
    ]
    echo(f"registered: {', '.join(functions) or 'no models'} ({describe(spark, remote)})")
    return run_script(spark, text, functions, echo=echo)
