"""Postgres scoring benchmark: 100k rows x 20 doubles, GradientBoostingClassifier(100, depth 3).

Every figure is a median after a warm-up, and every ratio is against a baseline measured in the
same run. Usage: .venv/bin/python benchmarks/postgres_scoring.py [--dsn DSN] [--rows N]
(default: the embedded cluster in .udfs/pg, started if needed).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
from sklearn.ensemble import GradientBoostingClassifier

import udfs
from udfs.postgres.cluster import LocalCluster
from udfs.postgres.deploy import deploy
from udfs.postgres.install import install

FEATURES = [f"f{i}" for i in range(20)]
MODEL = "bench_gbc"
RESULTS = Path(__file__).with_name("postgres_results.md")


def median_time(run: Callable[[], None], before: Callable[[], None], repeat: int) -> float:
    """Median seconds of ``run`` after one warm-up; ``before`` resets state, untimed."""
    times = []
    for attempt in range(repeat + 1):
        before()
        start = time.perf_counter()
        run()
        if attempt:  # the first run is the warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    dsn = opts.dsn or LocalCluster(Path(".udfs/pg")).up()
    n = opts.rows

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
    install(conn)
    deploy(conn, MODEL, store=store)
    columns = ", ".join(f"{f} double precision" for f in FEATURES)
    for table in ("bench_src", "bench_copy", "bench_stmt", "bench_row"):
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, {columns}, score bigint)")
    feature_list = ", ".join(FEATURES)
    cur.copy_expert(
        f"COPY bench_src (id, {feature_list}) FROM STDIN (FORMAT csv)", io.StringIO(csv)
    )
    cur.execute("VACUUM ANALYZE bench_src")
    cur.execute(f"SELECT ml.attach_scoring_trigger('bench_stmt', '{MODEL}', 'score', 'statement')")
    cur.execute(f"SELECT ml.attach_scoring_trigger('bench_row', '{MODEL}', 'score', 'row')")
    rows: dict[str, float] = {}

    def drop(*tables: str) -> Callable[[], None]:
        return lambda: [cur.execute(f"DROP TABLE IF EXISTS {t}") for t in tables] and None

    def truncate(table: str) -> Callable[[], None]:
        return lambda: cur.execute(f"TRUNCATE {table}")

    # 1. Vectorized table scoring against the client loop a user would write instead.
    rows["score_table"] = median_time(
        lambda: cur.execute(
            f"CALL ml.score_table('{MODEL}', 'bench_src', 'bench_out', ARRAY['id'])"
        ),
        drop("bench_out"),
        opts.repeat,
    )

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

    rows["client_loop"] = median_time(client_loop, drop("bench_client"), opts.repeat)
    rows["batch_srf_ctas"] = median_time(
        lambda: cur.execute(
            f"CREATE TABLE bench_ctas AS SELECT key, prediction, probability "
            f"FROM ml.{MODEL}_batch('bench_src', 'id')"
        ),
        drop("bench_ctas"),
        opts.repeat,
    )

    # 2. Per-row calls and the row trigger.
    args = ", ".join(FEATURES)
    rows["scalar"] = median_time(
        lambda: cur.execute(f"SELECT count(ml.{MODEL}_proba({args})) FROM bench_src"),
        lambda: None,
        opts.repeat,
    )
    insert = f"INSERT INTO {{}} (id, {feature_list}) SELECT id, {feature_list} FROM bench_src"
    rows["row_trigger"] = median_time(
        lambda: cur.execute(insert.format("bench_row")), truncate("bench_row"), opts.repeat
    )
    rows["plain_insert"] = median_time(
        lambda: cur.execute(insert.format("bench_copy")), truncate("bench_copy"), opts.repeat
    )

    # 3. COPY with the statement trigger against plain COPY.
    def copy_into(table: str) -> Callable[[], None]:
        sql = f"COPY {table} (id, {feature_list}) FROM STDIN (FORMAT csv)"
        return lambda: cur.copy_expert(sql, io.StringIO(csv))

    rows["plain_copy"] = median_time(copy_into("bench_copy"), truncate("bench_copy"), opts.repeat)
    rows["copy_statement_trigger"] = median_time(
        copy_into("bench_stmt"), truncate("bench_stmt"), opts.repeat
    )
    cur.execute("SELECT count(*), count(score) FROM bench_stmt")
    assert cur.fetchone() == (n, n), "the statement trigger did not score every row"

    # 4. First call in a fresh connection (imports + model load), and raw predict_proba.
    firsts = []
    for _ in range(opts.repeat):
        fresh = psycopg2.connect(dsn)
        start = time.perf_counter()
        with fresh.cursor() as fcur:
            fcur.execute(f"SELECT ml.{MODEL}_proba({', '.join(['0.5'] * 20)})")
        firsts.append(time.perf_counter() - start)
        fresh.close()
    rows["first_call"] = statistics.median(firsts)
    rows["raw_predict_proba"] = median_time(lambda: model.predict_proba(X), lambda: None, 3)
    report(rows, n)
    conn.close()


def report(t: dict[str, float], n: int) -> None:
    def rate(key: str) -> str:
        return f"{n / t[key]:,.0f}"

    lines = [
        f"Postgres scoring, {n:,} rows x 20 doubles, GradientBoostingClassifier(100, depth 3); "
        "medians after a warm-up, one run.",
        "",
        "| Method | Seconds | Rows/s | Ratio | Target |",
        "|---|---|---|---|---|",
        f"| client loop (COPY out, pandas, predict, COPY back): baseline | {t['client_loop']:.2f} | {rate('client_loop')} | 1.00x | |",
        f"| `CALL ml.score_table` | {t['score_table']:.2f} | {rate('score_table')} | {t['client_loop'] / t['score_table']:.2f}x vs client loop | >= 1.0x, aim 2x |",
        f"| `CREATE TABLE AS ... ml.<name>_batch` | {t['batch_srf_ctas']:.2f} | {rate('batch_srf_ctas')} | {t['client_loop'] / t['batch_srf_ctas']:.2f}x vs client loop | |",
        f"| per-row `ml.<name>_proba(...)` | {t['scalar']:.2f} | {rate('scalar')} | | >= 5,000/s, aim 20,000 |",
        f"| plain INSERT ... SELECT: baseline | {t['plain_insert']:.2f} | {rate('plain_insert')} | 1.00x | |",
        f"| INSERT ... SELECT with the row trigger | {t['row_trigger']:.2f} | {rate('row_trigger')} | {t['plain_insert'] / t['row_trigger']:.2f}x vs plain INSERT | >= 5,000/s, aim 20,000 |",
        f"| plain COPY: baseline | {t['plain_copy']:.2f} | {rate('plain_copy')} | 1.00x | |",
        f"| COPY with the statement trigger | {t['copy_statement_trigger']:.2f} | {rate('copy_statement_trigger')} | {t['plain_copy'] / t['copy_statement_trigger']:.2f}x vs plain COPY | >= 0.5x, aim 0.8x |",
        f"| first call in a fresh connection | {t['first_call']:.2f} | | | aim <= 0.5 s |",
        f"| raw `predict_proba` on a numpy array (reference) | {t['raw_predict_proba']:.2f} | {rate('raw_predict_proba')} | | |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
