"""Postgres scoring benchmark: 100k rows x 20 doubles, GradientBoostingClassifier(100, depth 3).

Every figure is a median of ``--runs`` runs after a warm-up. Each method runs right after its
baseline in every round (interleaved), so both see the same load on a busy machine, and every
ratio is against a baseline measured in the same run. Writes benchmarks/results/postgres_scoring.md.

    .venv/bin/python benchmarks/postgres_scoring.py [--dsn DSN] [--rows N] [--runs K]

(default: the embedded cluster in .udfs/pg, started if needed).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
from sklearn.ensemble import GradientBoostingClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median_seconds, table, versions

import udfs
from udfs.postgres.cluster import LocalCluster
from udfs.postgres.deploy import deploy
from udfs.postgres.install import install

FEATURES = [f"f{i}" for i in range(20)]
MODEL = "bench_gbc"
RESULTS = Path(__file__).resolve().parent / "results" / "postgres_scoring.md"
Step = tuple[Callable[[], object], Callable[[], object]]  # (untimed reset, timed action)


def interleaved(steps: dict[str, Step], runs: int) -> dict[str, float]:
    """Median seconds of each step's action; one warm-up round, then ``runs`` rounds in turn."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for attempt in range(runs + 1):
        for name, (reset, action) in steps.items():
            reset()
            start = time.perf_counter()
            action()
            if attempt:  # the first round is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    dsn = opts.dsn or LocalCluster(Path(".udfs/pg")).up()
    n, runs = opts.rows, max(3, opts.runs)

    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(5_000, 20))
    y_train = (X_train[:, 0] + X_train[:, 1] * X_train[:, 2] > 0).astype(np.int64)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    model.fit(X_train, y_train)
    store = Path(tempfile.mkdtemp(prefix="udfs-bench-"))
    udfs.save_model(model, MODEL, sample=X_train, store=store, feature_names=FEATURES)
    X = rng.normal(size=(n, 20))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, n + 1, dtype=np.int64))
    csv = frame.to_csv(index=False, header=False)

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    info = install(conn)
    deploy(conn, MODEL, store=store)
    cur.execute("SHOW server_version")
    server = cur.fetchone()[0]
    columns = ", ".join(f"{f} double precision" for f in FEATURES)
    for name in (
        "bench_src",
        "bench_copy",
        "bench_stmt",
        "bench_row",
        "bench_copy_ff",
        "bench_stmt_nf",
    ):
        storage = " WITH (fillfactor = 45)" if name.endswith("_ff") else ""
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, {columns}, score bigint){storage}"
        )
    feature_list = ", ".join(FEATURES)
    cur.copy_expert(
        f"COPY bench_src (id, {feature_list}) FROM STDIN (FORMAT csv)", io.StringIO(csv)
    )
    cur.execute("VACUUM ANALYZE bench_src")
    # As attached by default (the table gets fillfactor 45: HOT write-backs), and with
    # fillfactor => NULL (the table left at 100: every write-back adds an index entry).
    cur.execute(f"SELECT ml.attach_scoring_trigger('bench_stmt', '{MODEL}', 'score', 'statement')")
    cur.execute(
        f"SELECT ml.attach_scoring_trigger('bench_stmt_nf', '{MODEL}', 'score', 'statement', "
        "fillfactor => NULL)"
    )
    cur.execute(f"SELECT ml.attach_scoring_trigger('bench_row', '{MODEL}', 'score', 'row')")

    def sql(statement: str) -> Callable[[], None]:
        return lambda: cur.execute(statement)

    def drop(table_name: str) -> Callable[[], None]:
        return sql(f"DROP TABLE IF EXISTS {table_name}")

    def client_loop() -> None:
        out = io.StringIO()
        cur.copy_expert(f"COPY bench_src (id, {feature_list}) TO STDOUT (FORMAT csv)", out)
        out.seek(0)
        data = pd.read_csv(out, header=None, names=["id", *FEATURES])
        proba = model.predict_proba(data[FEATURES].to_numpy())
        result = pd.DataFrame(
            {"id": data["id"], "prediction": model.classes_[proba.argmax(1)], "p": proba[:, 1]}
        )
        cur.execute("CREATE TABLE bench_client (id bigint, prediction bigint, probability float8)")
        buf = io.StringIO(result.to_csv(index=False, header=False))
        cur.copy_expert("COPY bench_client FROM STDIN (FORMAT csv)", buf)

    def copy_into(table_name: str) -> Callable[[], None]:
        statement = f"COPY {table_name} (id, {feature_list}) FROM STDIN (FORMAT csv)"
        return lambda: cur.copy_expert(statement, io.StringIO(csv))

    insert = f"INSERT INTO {{}} (id, {feature_list}) SELECT id, {feature_list} FROM bench_src"
    args = ", ".join(FEATURES)
    t: dict[str, float] = {}
    # 1. Vectorized table scoring against the client loop a user would write instead.
    t |= interleaved(
        {
            "client_loop": (drop("bench_client"), client_loop),
            "score_table": (
                drop("bench_out"),
                sql(f"CALL ml.score_table('{MODEL}', 'bench_src', 'bench_out', ARRAY['id'])"),
            ),
            "batch_srf_ctas": (
                drop("bench_ctas"),
                sql(
                    "CREATE TABLE bench_ctas AS SELECT key, prediction, probability "
                    f"FROM ml.{MODEL}_batch('bench_src', 'id')"
                ),
            ),
        },
        runs,
    )
    # 2. COPY with the statement trigger against plain COPY.
    t |= interleaved(
        {
            "plain_copy": (sql("TRUNCATE bench_copy"), copy_into("bench_copy")),
            "copy_statement_trigger": (sql("TRUNCATE bench_stmt"), copy_into("bench_stmt")),
            "copy_statement_trigger_nf": (
                sql("TRUNCATE bench_stmt_nf"),
                copy_into("bench_stmt_nf"),
            ),
            "plain_copy_ff": (sql("TRUNCATE bench_copy_ff"), copy_into("bench_copy_ff")),
        },
        runs,
    )
    cur.execute("SELECT count(*), count(score) FROM bench_stmt")
    assert cur.fetchone() == (n, n), "the statement trigger did not score every row"
    hot = {name: hot_share(cur, name, copy_into(name)) for name in ("bench_stmt", "bench_stmt_nf")}
    # 3. Per-row calls and the row trigger (slow: 3 runs).
    t |= interleaved(
        {
            "plain_insert": (sql("TRUNCATE bench_copy"), sql(insert.format("bench_copy"))),
            "row_trigger": (sql("TRUNCATE bench_row"), sql(insert.format("bench_row"))),
            "scalar": (
                lambda: None,
                sql(f"SELECT count(ml.{MODEL}_proba({args})) FROM bench_src"),
            ),
        },
        3,
    )

    # 4. First call in a fresh connection (imports + model load), and raw predict_proba.
    def first_call() -> None:
        fresh = psycopg2.connect(dsn)
        try:
            with fresh.cursor() as fcur:
                fcur.execute(f"SELECT ml.{MODEL}_proba({', '.join(['0.5'] * 20)})")
        finally:
            fresh.close()

    t["first_call"] = median_seconds(first_call, runs=runs)
    t["raw_predict_proba"] = median_seconds(lambda: model.predict_proba(X), runs=runs)
    header = (
        f"Postgres scoring, {n:,} rows x 20 doubles, GradientBoostingClassifier(100, depth 3); "
        f"medians of {runs} runs after a warm-up (3 for the per-row rows), each method "
        "interleaved with its baseline in the same run.\n"
        f"Machine: {machine()}; PostgreSQL {server}, backend Python {info.get('python')}; "
        f"{versions('scikit-learn', 'numpy', 'pandas', 'psycopg2-binary')}.\n"
        f"HOT write-backs: {hot['bench_stmt']:.0%} with the default attach, "
        f"{hot['bench_stmt_nf']:.0%} with `fillfactor => NULL`."
    )
    text = header + "\n\n" + report(t, n) + "\n"
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


def report(t: dict[str, float], n: int) -> str:
    def row(label: str, key: str, base: str | None = None, vs: str = "", target: str = "") -> list:
        ratio = f"{t[base] / t[key]:.2f}x{vs}" if base else ""
        return [label, f"{t[key]:.2f}", f"{n / t[key]:,.0f}", ratio, target]

    rows = [
        row(
            "client loop (COPY out, pandas, predict, COPY back): baseline",
            "client_loop",
            "client_loop",
        ),
        row(
            "`CALL ml.score_table`",
            "score_table",
            "client_loop",
            " vs client loop",
            ">= 1.0x, aim 2x",
        ),
        row(
            "`CREATE TABLE AS ... ml.<name>_batch`",
            "batch_srf_ctas",
            "client_loop",
            " vs client loop",
        ),
        row("per-row `ml.<name>_proba(...)`", "scalar", target=">= 5,000/s, aim 20,000"),
        row("plain INSERT ... SELECT: baseline", "plain_insert", "plain_insert"),
        row(
            "INSERT ... SELECT with the row trigger",
            "row_trigger",
            "plain_insert",
            " vs plain INSERT",
            ">= 5,000/s, aim 20,000",
        ),
        row("plain COPY (table as created, fillfactor 100): baseline", "plain_copy", "plain_copy"),
        row(
            "COPY with the statement trigger (attach sets fillfactor 45: HOT write-back)",
            "copy_statement_trigger",
            "plain_copy",
            " vs plain COPY",
            ">= 0.5x, aim 0.8x",
        ),
        row(
            "COPY with the statement trigger, `fillfactor => NULL` (table left at 100)",
            "copy_statement_trigger_nf",
            "plain_copy",
            " vs plain COPY",
        ),
        row(
            "plain COPY into a fillfactor-45 table (reference)",
            "plain_copy_ff",
            "plain_copy",
            " vs plain COPY",
        ),
        ["first call in a fresh connection", f"{t['first_call']:.2f}", "", "", "aim <= 0.5 s"],
        row("raw `predict_proba` on a numpy array (reference)", "raw_predict_proba"),
    ]
    return table(["Method", "Seconds", "Rows/s", "Ratio", "Target"], rows)


if __name__ == "__main__":
    main()
