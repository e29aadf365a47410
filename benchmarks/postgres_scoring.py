"""Postgres scoring benchmark: the bare GBC (20 doubles) and the demo pipeline, side by side.

Both models are GradientBoostingClassifier(100 trees, depth 3); the pipeline puts the demo's
ColumnTransformer (age double, tenure bigint, plan text, active boolean) in front. Both are
saved with scoring plans and installed without pickles. Every figure is a median of ``--runs``
rounds after a warm-up; in each round every method runs right after its baseline, for both
models (interleaved), so all see the same load on a busy machine, and every ratio is against a
baseline measured in the same run. Writes benchmarks/results/postgres_scoring.md.

    .venv/bin/python benchmarks/postgres_scoring.py [--dsn DSN] [--rows N] [--per-row-rows N]
        [--runs K]

(default: the embedded cluster in .udfs/pg, started if needed; 100,000 rows, 20,000 of them
for the per-row function and the row trigger; 5 runs).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BARE_FEATURES,
    MODEL_LABELS,
    bare_data,
    interleaved,
    machine,
    median_seconds,
    pipeline_data,
    plan_missing,
    table,
    train_bare,
    train_pipeline,
    verdict,
    versions,
)

import udfs
from udfs.demo.data import FEATURES
from udfs.postgres.client.cluster import LocalCluster
from udfs.postgres.client.deploy import deploy
from udfs.postgres.client.install import install
from udfs.store import resolve

RESULTS = Path(__file__).resolve().parent / "results" / "postgres_scoring.md"
MODELS = ("bare", "pipeline")


@dataclass
class Bench:
    """One model's side of the benchmark: its tables, data and SQL."""

    key: str  # "bare" or "pipeline"
    name: str  # the model's name in the store and in ml.*
    model: Any
    columns: list[tuple[str, str]]  # (feature, SQL type)
    frame: pd.DataFrame  # id + features, the rows of <prefix>_src
    first_call_args: str  # SQL literals for one call

    @property
    def features(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def feature_list(self) -> str:
        return ", ".join(self.features)

    def table(self, suffix: str) -> str:
        return f"{self.name}_{suffix}"

    def csv(self) -> str:
        return self.frame.to_csv(index=False, header=False)

    def model_input(self, data: pd.DataFrame) -> Any:
        """What the user's client loop hands to scikit-learn after reading the COPY output."""
        if self.key == "bare":
            return data[self.features].to_numpy()
        X = data[self.features].copy()
        X["plan"] = X["plan"].astype(object).where(X["plan"].notna(), None)  # as trained
        return X

    def read_dtypes(self) -> dict[str, Any]:
        if self.key == "bare":
            return {"id": "int64"} | {f: "float64" for f in self.features}
        return {"id": "int64", "age": "float64", "tenure": "int64", "plan": object, "active": bool}


def make_benches(rows: int, store: Path) -> list[Bench]:
    bare, sample = train_bare()
    udfs.save_model(bare, "bench_gbc", sample=sample, store=store, feature_names=BARE_FEATURES)
    bare_frame = pd.DataFrame(bare_data(rows), columns=BARE_FEATURES)
    bare_frame.insert(0, "id", np.arange(1, rows + 1, dtype=np.int64))
    pipe, pipe_sample = train_pipeline()
    udfs.save_model(pipe, "bench_churn", sample=pipe_sample, store=store)
    benches = [
        Bench(
            "bare",
            "bench_gbc",
            bare,
            [(f, "double precision") for f in BARE_FEATURES],
            bare_frame,
            ", ".join(["0.5"] * len(BARE_FEATURES)),
        ),
        Bench(
            "pipeline",
            "bench_churn",
            pipe,
            [
                ("age", "double precision"),
                ("tenure", "bigint"),
                ("plan", "text"),
                ("active", "boolean"),
            ],
            pipeline_data(rows),
            "40.5::double precision, 12::bigint, 'basic'::text, true",
        ),
    ]
    for bench in benches:
        why = plan_missing(resolve(bench.name, store=store).signature())
        if why is not None:
            raise SystemExit(
                f"FAILED: model {bench.name} ({bench.key}) has no scoring plan ({why}); "
                "this benchmark does not enable pickles"
            )
    assert benches[1].features == FEATURES
    return benches


def setup(cur, bench: Bench, store: Path, conn) -> None:
    deploy(conn, bench.name, store=store)
    columns = ", ".join(f"{c} {t}" for c, t in bench.columns)
    for suffix in ("src", "copy", "stmt", "row"):
        name = bench.table(suffix)
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, {columns}, score bigint)")
    cur.copy_expert(
        f"COPY {bench.table('src')} (id, {bench.feature_list}) FROM STDIN (FORMAT csv)",
        io.StringIO(bench.csv()),
    )
    cur.execute(f"VACUUM ANALYZE {bench.table('src')}")
    model = bench.name
    cur.execute(
        f"SELECT ml.attach_scoring_trigger('{bench.table('stmt')}', '{model}', 'score', 'statement')"
    )
    cur.execute(
        f"SELECT ml.attach_scoring_trigger('{bench.table('row')}', '{model}', 'score', 'row')"
    )
    # The no-op baseline: a PL/Python function with the same argument types, returning a double.
    cur.execute(
        f"CREATE OR REPLACE FUNCTION pg_temp.{bench.name}_noop({columns}) "
        "RETURNS double precision LANGUAGE plpython3u AS 'return 0.0'"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-row-rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    started = time.perf_counter()
    dsn = opts.dsn or LocalCluster(Path(".udfs/pg")).up()
    n, runs = opts.rows, max(3, opts.runs)
    k = min(opts.per_row_rows, n)
    store = Path(tempfile.mkdtemp(prefix="udfs-bench-"))
    benches = make_benches(n, store)

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    info = install(conn)  # pickles stay as the database has them (refused in a new install)
    cur.execute("SHOW server_version")
    server = cur.fetchone()[0]
    for bench in benches:
        setup(cur, bench, store, conn)

    def sql(statement: str) -> Callable[[], None]:
        return lambda: cur.execute(statement)

    def nothing() -> None:
        return None

    def client_loop(bench: Bench) -> Callable[[], None]:
        def run() -> None:
            out = io.StringIO()
            cur.copy_expert(
                f"COPY {bench.table('src')} (id, {bench.feature_list}) TO STDOUT (FORMAT csv)", out
            )
            out.seek(0)
            data = pd.read_csv(
                out,
                header=None,
                names=["id", *bench.features],
                dtype=bench.read_dtypes(),
                true_values=["t"],
                false_values=["f"],
            )
            model = bench.model
            proba = model.predict_proba(bench.model_input(data))
            result = pd.DataFrame(
                {"id": data["id"], "prediction": model.classes_[proba.argmax(1)], "p": proba[:, 1]}
            )
            cur.execute(
                f"CREATE TABLE {bench.table('client')} "
                "(id bigint, prediction bigint, probability float8)"
            )
            buf = io.StringIO(result.to_csv(index=False, header=False))
            cur.copy_expert(f"COPY {bench.table('client')} FROM STDIN (FORMAT csv)", buf)

        return run

    def copy_into(bench: Bench, suffix: str) -> Callable[[], None]:
        statement = f"COPY {bench.table(suffix)} (id, {bench.feature_list}) FROM STDIN (FORMAT csv)"
        csv = bench.csv()
        return lambda: cur.copy_expert(statement, io.StringIO(csv))

    # 1. Whole tables: ml.score_table and CREATE TABLE AS ... ml.<name>_batch vs the client loop.
    steps: dict[str, Any] = {}
    for b in benches:
        src = b.table("src")
        steps[f"{b.key}/client_loop"] = (
            sql(f"DROP TABLE IF EXISTS {b.table('client')}"),
            client_loop(b),
        )
        steps[f"{b.key}/score_table"] = (
            sql(f"DROP TABLE IF EXISTS {b.table('out')}"),
            sql(f"CALL ml.score_table('{b.name}', '{src}', '{b.table('out')}', ARRAY['id'])"),
        )
        steps[f"{b.key}/ctas"] = (
            sql(f"DROP TABLE IF EXISTS {b.table('ctas')}"),
            sql(
                f"CREATE TABLE {b.table('ctas')} AS SELECT key, prediction, probability "
                f"FROM ml.{b.name}_batch('{src}', 'id')"
            ),
        )
    t = interleaved(steps, runs)
    # 2. COPY into a table with the statement trigger (as attached: fillfactor 45) vs plain COPY.
    steps = {}
    for b in benches:
        steps[f"{b.key}/plain_copy"] = (sql(f"TRUNCATE {b.table('copy')}"), copy_into(b, "copy"))
        steps[f"{b.key}/copy_stmt"] = (sql(f"TRUNCATE {b.table('stmt')}"), copy_into(b, "stmt"))
    t |= interleaved(steps, runs)
    scored = {}
    for b in benches:
        cur.execute(f"SELECT count(*), count(score) FROM {b.table('stmt')}")
        total, with_score = cur.fetchone()
        assert total == n and with_score > 0.9 * n, (
            f"{b.name}: statement trigger scored {with_score}/{total}"
        )
        scored[b.key] = with_score
    hot = {b.key: hot_share(cur, b.table("stmt"), copy_into(b, "stmt")) for b in benches}
    # 3. Per-row calls vs a no-op PL/Python function, and the row trigger vs plain INSERT.
    steps = {}
    for b in benches:
        src, cols = b.table("src"), b.feature_list
        where = f"FROM {src} WHERE id <= {k}"
        insert = f"INSERT INTO {{}} (id, {cols}) SELECT id, {cols} {where}"
        steps[f"{b.key}/noop"] = (
            nothing,
            sql(f"SELECT count(pg_temp.{b.name}_noop({cols})) {where}"),
        )
        steps[f"{b.key}/scalar"] = (
            nothing,
            sql(f"SELECT count(ml.{b.name}_proba({cols})) {where}"),
        )
        steps[f"{b.key}/plain_insert"] = (
            sql(f"TRUNCATE {b.table('copy')}"),
            sql(insert.format(b.table("copy"))),
        )
        steps[f"{b.key}/row_trigger"] = (
            sql(f"TRUNCATE {b.table('row')}"),
            sql(insert.format(b.table("row"))),
        )
    t |= interleaved(steps, runs)

    # 4. The first call in a fresh connection (connect + one SELECT: runtime, plan load, score).
    def first_call(b: Bench) -> Callable[[], None]:
        def run() -> None:
            fresh = psycopg2.connect(dsn)
            try:
                with fresh.cursor() as fcur:
                    fcur.execute(f"SELECT ml.{b.name}_proba({b.first_call_args})")
                    fcur.fetchone()
            finally:
                fresh.close()

        return run

    t |= interleaved({f"{b.key}/first_call": (nothing, first_call(b)) for b in benches}, runs)
    raw = {}
    for b in benches:
        X = b.model_input(b.frame)
        raw[b.key] = median_seconds(lambda b=b, X=X: b.model.predict_proba(X), runs=3)
    elapsed = time.perf_counter() - started
    header = (
        f"Postgres scoring: {n:,} rows per table ({k:,} for the per-row function and the row "
        "trigger), two models side by side: the bare GradientBoostingClassifier(100, depth 3) "
        "on 20 doubles, and the demo churn pipeline (ColumnTransformer on age double, tenure "
        "bigint, plan text, active boolean, ~2% NULLs; then the same GBC). Both run from scoring "
        "plans (pickles not enabled). Medians of "
        f"{runs} rounds after a warm-up; in every round each method runs next to its baseline, "
        "for both models, in the same session.\n"
        f"Machine: {machine()}; PostgreSQL {server}, backend Python {info.get('python')}; "
        f"{versions('scikit-learn', 'numpy', 'pandas', 'psycopg2-binary')}. "
        f"Run took {elapsed:.0f} s.\n"
        f"Statement trigger: HOT write-backs {hot['bare']:.0%} (bare), {hot['pipeline']:.0%} "
        f"(pipeline); rows scored {scored['bare']:,} / {scored['pipeline']:,} of {n:,}."
    )
    text = header + "\n\n" + report(t, raw, n, k) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    conn.close()


def hot_share(cur, table_name: str, copy: Callable[[], None]) -> float:
    """The share of one COPY's write-back UPDATEs that were HOT (read in the COPY's transaction)."""
    cur.execute(f"TRUNCATE {table_name}")
    cur.execute("BEGIN")
    copy()
    cur.execute(
        f"SELECT pg_stat_get_xact_tuples_hot_updated('{table_name}'::regclass), "
        f"pg_stat_get_xact_tuples_updated('{table_name}'::regclass)"
    )
    hot, updated = cur.fetchone()
    cur.execute("COMMIT")
    return hot / max(updated, 1)


def report(t: dict[str, float], raw: dict[str, float], n: int, k: int) -> str:
    def s(key: str, model: str) -> float:
        return t[f"{model}/{key}"]

    def rate(key: str, model: str, rows: int) -> float:
        return rows / s(key, model)

    rows: list[list[str]] = []

    def add(what: str, cells: dict[str, str], target: str, ok: dict[str, bool]) -> None:
        rows.append([what, cells["bare"], cells["pipeline"], target, verdict(ok)])

    # Per-row function vs the no-op PL/Python function.
    frac = {m: s("noop", m) / s("scalar", m) for m in MODELS}
    add(
        f"per-row `ml.<name>_proba(...)` vs a no-op PL/Python function, same argument types ({k:,} rows)",
        {
            m: f"{frac[m]:.2f}x of the no-op ({rate('scalar', m, k):,.0f} vs {rate('noop', m, k):,.0f} rows/s)"
            for m in MODELS
        },
        ">= 0.5x of the no-op's rate",
        {m: frac[m] >= 0.5 for m in MODELS},
    )
    add(
        f"per-row `ml.<name>_proba(...)` rate ({k:,} rows)",
        {m: f"{rate('scalar', m, k):,.0f} rows/s ({s('scalar', m):.2f} s)" for m in MODELS},
        ">= 50,000 rows/s (pipeline)",
        {"pipeline": rate("scalar", "pipeline", k) >= 50_000},
    )
    add(
        f"INSERT ... SELECT into a table with the row trigger ({k:,} rows)",
        {
            m: f"{rate('row_trigger', m, k):,.0f} rows/s ({s('row_trigger', m):.2f} s; "
            f"plain INSERT {rate('plain_insert', m, k):,.0f} rows/s)"
            for m in MODELS
        },
        ">= 30,000 rows/s (pipeline)",
        {"pipeline": rate("row_trigger", "pipeline", k) >= 30_000},
    )
    copy = {m: s("plain_copy", m) / s("copy_stmt", m) for m in MODELS}
    add(
        f"COPY into a table with the statement trigger vs plain COPY ({n:,} rows)",
        {
            m: f"{copy[m]:.2f}x ({s('copy_stmt', m):.2f} s vs {s('plain_copy', m):.2f} s; "
            f"{rate('copy_stmt', m, n):,.0f} rows/s)"
            for m in MODELS
        },
        ">= 0.8x plain COPY (pipeline)",
        {"pipeline": copy["pipeline"] >= 0.8},
    )
    add(
        "first call in a fresh connection (connect + one `SELECT ml.<name>_proba(...)`)",
        {m: f"{s('first_call', m):.3f} s" for m in MODELS},
        "<= 0.25 s",
        {m: s("first_call", m) <= 0.25 for m in MODELS},
    )
    for key, label in (
        ("score_table", "`CALL ml.score_table`"),
        ("ctas", "`CREATE TABLE AS ... ml.<name>_batch`"),
    ):
        ratio = {m: s("client_loop", m) / s(key, m) for m in MODELS}
        add(
            f"{label} vs the client loop (COPY out, pandas, predict_proba, COPY back; {n:,} rows)",
            {
                m: f"{ratio[m]:.2f}x ({s(key, m):.2f} s vs {s('client_loop', m):.2f} s; "
                f"{rate(key, m, n):,.0f} rows/s)"
                for m in MODELS
            },
            ">= 3x the client loop",
            {m: ratio[m] >= 3.0 for m in MODELS},
        )
    header = ["What", MODEL_LABELS["bare"], MODEL_LABELS["pipeline"], "Target", "Met"]
    notes = (
        "\n\nReferences measured in the same run: scikit-learn's `predict_proba` in the client "
        f"process on all {n:,} rows takes {raw['bare']:.2f} s (bare, on the array) and "
        f"{raw['pipeline']:.2f} s (pipeline, on the DataFrame)."
    )
    return table(header, rows) + notes


if __name__ == "__main__":
    main()
