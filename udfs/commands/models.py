"""`udfs models list|show|register|drift`: inspect and fill the local model store."""

from __future__ import annotations

from pathlib import Path

import click
import joblib
import pandas as pd

from udfs.naming import parse_ref
from udfs.store import list_models, resolve, save_model

store_option = click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="UDFS_STORE",
    default="models",
    show_default=True,
    help="Model store directory (or $UDFS_STORE).",
)


@click.group("models")
def models() -> None:
    """Inspect and fill the local model store."""


@models.command("list")
@store_option
def list_cmd(store: Path) -> None:
    """List every saved model version."""
    refs = list_models(store)
    if not refs:
        click.echo(
            f"no models in {store}; save one with udfs.save_model() or `udfs models register`"
        )
        return
    click.echo(
        f"{'name':<24} {'version':>7}  {'task':<10} {'features':>8}  {'sha256':<12}  "
        f"{'created':<25}  path"
    )
    for ref in refs:
        sig = ref.signature()
        click.echo(
            f"{ref.name:<24} {ref.version:>7}  {sig.task:<10} {len(sig.features):>8}  "
            f"{ref.sha256[:12]:<12}  {sig.created_at or '':<25}  {sig.scoring_path().split(':')[0]}"
        )


@models.command("show")
@click.argument("ref")
@store_option
def show_cmd(ref: str, store: Path) -> None:
    """Show how NAME or NAME@VERSION is scored (its plan, or why not), then its signature."""
    name, version = parse_ref(ref)
    signature = resolve(name, version, store).signature()
    path = signature.scoring_path()
    if signature.plan_sha256:
        path += f" (verified bit-identical to scikit-learn; sha256 {signature.plan_sha256[:12]})"
    click.echo(f"scoring path: {path}")
    click.echo(signature.to_json())


@models.command("register")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "name", required=True, help="Model name (a SQL identifier).")
@click.option(
    "--sample",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of training features (with a header) that fixes feature order and types.",
)
@click.option(
    "--feature", "features", multiple=True, help="Use only these sample columns (repeatable)."
)
@store_option
def register_cmd(
    file: Path, name: str, sample: Path, features: tuple[str, ...], store: Path
) -> None:
    """Save a joblib FILE made elsewhere as the next version of NAME.

    Unpickling runs code: register only files you trust.
    """
    model = joblib.load(file)
    frame = pd.read_csv(sample)
    if features:
        frame = frame[list(features)]
    ref = save_model(model, name, sample=frame, store=store)
    click.echo(f"saved {ref} ({ref.path}, sha256 {ref.sha256[:12]})")


@models.command("drift")
@click.argument("ref")
@click.option("--table", "table", required=True, help="Spark table to compare with training.")
@click.option("--master", help="Spark master, as for `udfs spark sql`.")
@click.option("--remote", envvar="SPARK_REMOTE", help="Spark Connect server (or $SPARK_REMOTE).")
@store_option
def drift_cmd(ref: str, table: str, master: str | None, remote: str | None, store: Path) -> None:
    """Compare Spark table TABLE with the training profile of NAME or NAME@VERSION.

    One row per feature and one for the score (<prediction>): PSI, share missing (now and in
    training), rows with categories never seen in training, and a verdict: stable (PSI < 0.1),
    moderate (0.1 to 0.25), drifted (PSI >= 0.25).
    """
    from udfs import spark as udfs_spark  # pyspark loads only when needed

    name, version = parse_ref(ref)
    resolve(name, version, store).profile()  # no profile: say so before starting Spark
    session = udfs_spark.session("udfs-drift", master=master, remote=remote)
    try:
        result = udfs_spark.drift(session, name, table, version, store)
    finally:
        session.stop()
    with pd.option_context("display.width", 200, "display.max_columns", None):
        click.echo(result.to_string(index=False))
