"""`udfs spark sql FILE`: run a SQL file in Spark with the models registered.

`udfs spark discovery-script`: where the GPU discovery script is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from udfs.commands.models import store_option


@click.group("spark")
def spark() -> None:
    """Score with Spark SQL."""


@spark.command("sql")
@click.argument("sql_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--master", default=None, help="Spark master (default: local[*], or $UDFS_SPARK_MASTER)."
)
@click.option(
    "--remote",
    envvar="SPARK_REMOTE",
    default=None,
    help="Spark Connect server, e.g. sc://host:15002 (or $SPARK_REMOTE); local[N] starts one.",
)
@click.option("--gpu", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--model", "models", multiple=True, help="Register only NAME[@VERSION] (repeatable).")
@click.option(
    "--rapids-jar",
    envvar="SPARK_RAPIDS_JAR",
    default=None,
    help="RAPIDS Accelerator jar: with GPUs, enables the SQL plugin (or $SPARK_RAPIDS_JAR).",
)
@click.option("--conf", "confs", multiple=True, metavar="KEY=VALUE", help="Extra Spark setting.")
@store_option
def sql_cmd(
    sql_file: Path,
    master: str | None,
    remote: str | None,
    gpu: str,
    models: tuple[str, ...],
    rapids_jar: str | None,
    confs: tuple[str, ...],
    store: Path,
) -> None:
    """Register the models and run SQL_FILE statement by statement."""
    from udfs.spark.job import run_sql_file  # pyspark loads only when needed

    settings = {}
    for item in confs:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--conf")
        settings[key.strip()] = value
    run_sql_file(
        sql_file,
        master=master,
        remote=remote,
        gpu=gpu,
        store=store,
        models=models,
        rapids_jar=rapids_jar,
        conf=settings,
        echo=click.echo,
    )


@spark.command("discovery-script")
def discovery_script_cmd() -> None:
    """Print the path of the GPU discovery script installed with udfs.

    For a cluster's spark.executor.resource.gpu.discoveryScript (and the worker's): install
    udfs at the same path on every node, then use this path.
    """
    from udfs.paths import package_file  # not udfs.spark.gpu: no pyspark import for one path

    script = package_file("spark", "getGpusResources.sh")
    click.echo(script)
    if not os.access(script, os.X_OK):  # Spark runs it without a shell
        click.echo(f"warning: it is not executable; run chmod +x {script}", err=True)
