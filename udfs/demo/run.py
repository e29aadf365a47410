"""`udfs demo`: the main job on embedded defaults, start to finish."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import click

from udfs.demo.data import customers
from udfs.demo.models import save_demo_models
from udfs.store import StorePath, load_model

T = TypeVar("T")
DEMO_ROWS = 100_000


def _step(title: str, action: Callable[[], T]) -> T:
    click.echo(f"· {title} ...", nl=False)
    start = time.perf_counter()
    result = action()
    click.echo(f" done in {time.perf_counter() - start:.1f}s")
    return result


def run_demo(store: StorePath = None, rows: int = DEMO_ROWS) -> dict[str, float]:
    """Train and save the demo models, then score the demo customer table in-process.

    Returns rows/s per model. The Spark and Postgres steps join this job as they land.
    """
    refs = _step("training and saving the demo models", lambda: save_demo_models(store))
    table = _step(
        f"generating {rows:,} customers", lambda: customers(rows, seed=7, null_fraction=0.02)
    )
    speeds: dict[str, float] = {}
    click.echo("\nmodel          version  rows       seconds  rows/s")
    for ref in refs:
        if ref.name == "progression":
            continue  # scored on its own dataset once the engines arrive
        bundle = load_model(ref.name, ref.version, store)
        start = time.perf_counter()
        scores = bundle.predict(table)
        elapsed = time.perf_counter() - start
        speeds[ref.name] = rows / elapsed
        click.echo(
            f"{ref.name:<14} {ref.version:>7}  {len(scores):<9,}  {elapsed:7.2f}  {speeds[ref.name]:,.0f}"
        )
    click.echo("\nsaved: " + ", ".join(str(r) for r in refs) + "  (see `udfs models list`)")
    return speeds
