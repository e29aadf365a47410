"""`udfs demo`: the main job on embedded defaults, start to finish.

Train and save the demo models, start the embedded PostgreSQL and a local Spark, deploy, score
the demo tables with SQL in both engines into new tables, check that Spark, Postgres and
in-process scikit-learn agree exactly, and show scoring on insert with a statement trigger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import click
import pandas as pd

from udfs.demo.agreement import Agreement, compare
from udfs.demo.data import FEATURES, customers
from udfs.demo.models import ensure_demo_models, patients
from udfs.paths import home
from udfs.store import StorePath, load_model

T = TypeVar("T")
DEMO_ROWS = 100_000
NEWCOMERS_OLDER_BY = 12  # years: the drift the demo's new customers carry
# model -> the demo table it scores
TABLES = {"churn": "customers", "segment": "customers", "progression": "patients"}


@dataclass
class Timing:
    engine: str
    model: str
    rows: int
    seconds: float
    table: str


@dataclass
class DemoReport:
    timings: list[Timing] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)
    trigger_rows: int = 0
    trigger_scored: int = 0
    drift: list[tuple] = field(default_factory=list)
    explained: tuple = ()
    dsn: str = ""

    @property
    def exact(self) -> bool:
        return bool(self.agreements) and all(a.exact for a in self.agreements)


def step(title: str, action: Callable[[], T]) -> T:
    """Run one step of the demo, saying what it does and how long it took."""
    click.echo(f"· {title} ...", nl=False)
    start = time.perf_counter()
    result = action()
    click.echo(f" {time.perf_counter() - start:.1f}s")
    return result


def run_demo(store: StorePath = None, rows: int = DEMO_ROWS, retrain: bool = False) -> DemoReport:
    """Run the whole demo and print its report; returns the figures."""
    from udfs.demo import pg_side, spark_side

    report = DemoReport()
    refs = step("training and saving the demo models", lambda: ensure_demo_models(store, retrain))
    click.echo("  models: " + ", ".join(str(r) for r in refs))
    for ref in refs:
        click.echo(f"  {ref.name:<12} scores through {ref.signature().scoring_path()}")
    frames = {
        "customers": customers(rows, seed=7, null_fraction=0.02)[["id", *FEATURES]],
        "patients": patients(),
    }
    conn, report.dsn = step(
        "starting PostgreSQL, installing ml, deploying", lambda: pg_side.start(refs, store)
    )
    spark = step("starting Spark and registering the models", lambda: spark_side.start(store))
    step(f"loading {rows:,} customers and {len(frames['patients'])} patients into both engines",
         lambda: (pg_side.load(conn, frames), spark_side.load(spark, frames)))  # fmt: skip

    results: dict[str, dict[str, pd.DataFrame]] = {"spark": {}, "postgres": {}}
    signatures = {ref.name: ref.signature() for ref in refs}
    for model, table in TABLES.items():
        target = f"{model}_scores"
        for engine, score, handle in (
            ("spark", spark_side.score, spark),
            ("postgres", pg_side.score, conn),
        ):
            start = time.perf_counter()
            results[engine][model] = score(handle, signatures[model], table, target)
            seconds = time.perf_counter() - start
            report.timings.append(Timing(engine, model, len(frames[table]), seconds, target))
            click.echo(f"  {engine:<8} {model:<12} -> {target} in {seconds:.1f}s")

    for model, table in TABLES.items():
        bundle = load_model(model, store=store)
        report.agreements.append(
            compare(
                model, bundle, frames[table], results["spark"][model], results["postgres"][model]
            )
        )
    # The new customers are older than the training ones: ml.drift should say so, and only so.
    newcomers = customers(1_000, seed=99, null_fraction=0.02)[["id", *FEATURES]]
    newcomers["age"] += NEWCOMERS_OLDER_BY
    report.trigger_rows, report.trigger_scored = step(
        "attaching a statement trigger and inserting 1,000 new customers",
        lambda: pg_side.trigger_demo(conn, newcomers),
    )
    report.drift = step(
        "checking the new customers for drift (ml.drift)",
        lambda: pg_side.drift(conn, "churn", "new_customers"),
    )
    report.explained = step(
        "explaining one customer's churn score (Spark SQL churn_explain)",
        lambda: spark_side.explain_one(spark, store, "churn", "customers"),
    )
    conn.close()
    print_report(report)
    return report


def print_report(report: DemoReport) -> None:
    click.echo("\nScored with SQL (times include writing the new table):")
    click.echo(f"  {'engine':<9}{'model':<13}{'rows':>9}{'seconds':>9}{'rows/s':>10}  new table")
    for t in report.timings:
        click.echo(
            f"  {t.engine:<9}{t.model:<13}{t.rows:>9,}{t.seconds:>9.2f}{t.rows / t.seconds:>10,.0f}  {t.table}"
        )
    click.echo("\nAgreement between Spark, PostgreSQL and in-process scikit-learn:")
    for a in report.agreements:
        click.echo(f"  {a.describe()}")
    unscored = report.trigger_rows - report.trigger_scored
    why = f" ({unscored:,} have a NULL feature the model can't impute)" if unscored else ""
    click.echo(
        f"\nTrigger: {report.trigger_rows:,} rows copied into new_customers, "
        f"{report.trigger_scored:,} scored on insert by the statement trigger{why}."
    )
    if report.explained:
        row_id, values, why = report.explained
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        click.echo(f"\nWhy customer {row_id} ({shown}) got its churn score (log-odds):")
        click.echo(f"  base value     {why['base_value']:+.4f}")
        for feature in values:  # the model's feature order (a Spark map has none)
            click.echo(f"  {feature:<14} {why['contributions'][feature]:+.4f}")
        total = why["base_value"] + sum(why["contributions"].values())
        click.echo(f"  = log-odds     {total:+.4f}")
    click.echo(
        f"\nDrift of new_customers (ages {NEWCOMERS_OLDER_BY} years above training) from churn's "
        "training profile, SELECT * FROM ml.drift('churn', 'new_customers'):"
    )
    for feature, psi, verdict in report.drift:
        click.echo(f"  {feature:<14} psi {psi if psi is None else round(psi, 3)!s:>7}  {verdict}")
    verdict = "EXACT" if report.exact else "MISMATCH"
    click.echo(f"\nResult: {verdict} agreement across engines.")
    click.echo(f'\nPostgreSQL is still running. Connect: psql "{report.dsn}"   Stop: udfs pg down')
    click.echo(f"Spark tables are in {home() / 'spark'}; query them with `udfs spark sql FILE`.")
