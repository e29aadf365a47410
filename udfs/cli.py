"""The `udfs` command line."""

from __future__ import annotations

import sys

import click

from udfs import __version__
from udfs.commands.models import models
from udfs.commands.pg import pg
from udfs.commands.spark import spark
from udfs.errors import UdfsError


@click.group()
@click.version_option(__version__, prog_name="udfs")
def cli() -> None:
    """scikit-learn models as SQL functions in Spark SQL and PostgreSQL."""


cli.add_command(models)
cli.add_command(pg)
cli.add_command(spark)


@cli.command()
@click.option("--store", envvar="UDFS_STORE", default="models", show_default=True)
@click.option("--rows", default=100_000, show_default=True, help="Rows in the demo customer table.")
@click.option("--retrain", is_flag=True, help="Train and save new versions of the demo models.")
def demo(store: str, rows: int, retrain: bool) -> None:
    """Run the main job: train, deploy and score the demo models in Spark and PostgreSQL."""
    from udfs.demo.run import run_demo  # keeps `udfs --help` fast

    if not run_demo(store, rows, retrain).exact:
        raise UdfsError("the engines disagree: see the agreement lines above")


def main() -> None:
    """Entry point: udfs errors become one clear line and exit code 1, not a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UdfsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
