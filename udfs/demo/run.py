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
    report.trigger_rows, report.trigger_scored = step(
        "attaching a statement trigger and inserting 1,000 new customers",
        lambda: pg_side.trigger_demo(conn, customers(1_000, seed=99)[["id", *FEATURES]]),
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
    verdict = "EXACT" if report.exact else "MISMATCH"
    click.echo(f"\nResult: {verdict} agreement across engines.")
    click.echo(f'\nPostgreSQL is still running. Connect: psql "{report.dsn}"   Stop: udfs pg down')
    click.echo(f"Spark tables are in {home() / 'spark'}; query them with `udfs spark sql FILE`.")
