"""`udfs pg up|down|status|install|deploy|rollback|score`: models inside PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from udfs.naming import parse_ref
from udfs.postgres.client.connect import connect, default_root

dsn_option = click.option(
    "--dsn",
    envvar="UDFS_PG_DSN",
    default=None,
    help="Server to use; default: the PG* variables if set, else the embedded cluster.",
)
root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the embedded cluster (default: $UDFS_HOME/pg, else .udfs/pg).",
)


@click.group("pg")
def pg() -> None:
    """Serve models as SQL functions in PostgreSQL."""


@pg.command("up")
@root_option
@click.option(
    "--auth",
    type=click.Choice(["trust", "password"]),
    default=None,
    help="For a new cluster: trust (default; any local OS user connects as any role, for "
    "development only) or password (SCRAM; the DSN names a private password file).",
)
def up_cmd(root: Path | None, auth: str | None) -> None:
    """Start the embedded cluster (creating it if needed) and print its DSN."""
    from udfs.postgres.client.cluster import LocalCluster

    click.echo(LocalCluster(root or default_root(), auth=auth).up())


@pg.command("down")
@root_option
def down_cmd(root: Path | None) -> None:
    """Stop the embedded cluster."""
    from udfs.postgres.client.cluster import LocalCluster

    LocalCluster(root or default_root()).down()
    click.echo("stopped")


@pg.command("status")
@root_option
def status_cmd(root: Path | None) -> None:
    """Show whether the embedded cluster runs, and its DSN."""
    from udfs.postgres.client.cluster import LocalCluster

    status = LocalCluster(root or default_root()).status()
    state = "running" if status["running"] else "stopped"
    click.echo(f"{state}  dsn={status['dsn']}  data={status['data_dir']}")


@pg.command("install")
@dsn_option
@root_option
@click.option(
    "--allow-pickles/--no-allow-pickles",
    default=None,
    help="Let models without a scoring plan run their pickled artifact inside the server. "
    "That lets every ml_admin run code as the server's OS user. Default: leave the setting "
    "as it is (off in a new install).",
)
def install_cmd(dsn: str | None, root: Path | None, allow_pickles: bool | None) -> None:
    """Create the ml schema, roles and functions, or upgrade them in place (needs a superuser)."""
    from udfs.postgres.client.install import install

    conn = connect(dsn, root)
    try:
        info = install(conn, allow_pickles=allow_pickles)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT ml._allow_pickles()")
            pickles = "allowed" if cur.fetchone()[0] else "refused (models run from plans)"
    finally:
        conn.close()
    before = info["upgraded_from"]
    done = "installed" if before is None else f"upgraded (from schema {before})"
    click.echo(
        f"{done} ml schema {info['schema_version']}: PL/Python {info['python']}, scikit-learn "
        f"{info['scikit-learn']}, udfs from {info['udfs_path']}; pickled models {pickles}"
    )


@pg.command("deploy")
@click.argument("ref")
@click.option("--store", envvar="UDFS_STORE", default="models", show_default=True)
@dsn_option
@root_option
def deploy_cmd(ref: str, store: str, dsn: str | None, root: Path | None) -> None:
    """Upload NAME[@VERSION] and make it live as ml.NAME(...) and ml.NAME_proba(...)."""
    from udfs.postgres.client.deploy import deploy

    name, version = parse_ref(ref)
    conn = connect(dsn, root)
    try:
        live = deploy(conn, name, version, store=store)
    finally:
        conn.close()
    click.echo(f"deployed {name}@{live}")


@pg.command("rollback")
@click.argument("name")
@dsn_option
@root_option
def rollback_cmd(name: str, dsn: str | None, root: Path | None) -> None:
    """Make the version live before the current one of NAME live again."""
    from udfs.postgres.client.deploy import rollback

    conn = connect(dsn, root)
    try:
        live = rollback(conn, name)
    finally:
        conn.close()
    click.echo(f"rolled back {name} to version {live}")


@pg.command("score")
@click.argument("name")
@click.option("--table", "source", required=True, help="Table (or view) to score.")
@click.option("--into", "target", required=True, help="New table to create.")
@click.option("--keep", multiple=True, help="Column to copy (repeatable); default: primary key.")
@click.option("--chunk-rows", default=50_000, show_default=True)
@dsn_option
@root_option
def score_cmd(
    name: str,
    source: str,
    target: str,
    keep: tuple[str, ...],
    chunk_rows: int,
    dsn: str | None,
    root: Path | None,
) -> None:
    """Score every row of --table into a new table --into (ml.score_table with progress)."""
    from udfs.postgres.client.score import score_table

    conn = connect(dsn, root)
    bar = None

    def progress(done: int, chunks: int, rows: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=chunks, label=f"scoring {source}", file=None)
            bar.__enter__()
        bar.update(1)

    try:
        total = score_table(conn, name, source, target, list(keep) or None, chunk_rows, progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        conn.close()
    click.echo(f"wrote {total} rows to {target}")
