"""Spark Connect: udfs' two ways of shipping a model, inline (inside the UDF) vs a session artifact.

A Spark Connect session has no SparkContext, so no broadcast. ``udfs.spark.register`` ships a
model up to ``udfs.spark.shipping.INLINE_LIMIT`` (16 MiB) inside the UDF's pickled closure
(``Inline``) and uploads a larger one as a session artifact (``spark.addArtifacts(file=True)``,
named by its sha256) that workers read with ``SparkFiles.get`` (``SessionFile``). This benchmark
measures both strategies for every model, whatever its size, on a real Spark Connect server
(``spark-submit`` of ``SparkConnectServer`` on local[2], its own JVM, started by
``tests/fixtures/connect.py``) with a thin Connect client in this process, for three models: the
bare GBC on 20 doubles, the demo churn pipeline, and a large pipeline (the same
ColumnTransformer, then RandomForestClassifier(``--trees`` fully grown trees): tens of MB of
scoring plan).

- inline: ``shipping.checked_blobs`` then ``Inline(blobs)``, registered as ``<name>`` and
  ``<name>_proba`` with ``make_udf``, as ``register`` does for a small model;
- artifacts: ``shipping.ship`` with ``shipping.INLINE_LIMIT`` set to 0 for the call (restored
  after), so that it uploads even a small model as ``register`` does a large one; registered as
  ``<name>_art`` and ``<name>_art_proba``. Its signature's sha256 gets a suffix so that the
  per-worker cache (keyed by sha256) treats it as a different model: its first query starts
  from an empty cache as inline's does.

For each: the registration time (the first one, and the median of ``--reg-runs`` - 1 more: an
artifact is named by its sha256, so a repeat sends the same file again), the first query (once,
fresh per-worker cache; the Python workers were started and udfs imported by warm-up queries
with a small bare model and a small pipeline), the median steady-state time of ``SELECT sum(hash(<name>(...)))`` over
``--rows`` rows from Parquet (two files, so both cores work; the large model scores
``--large-rows``, so that its fixed per-query costs are not lost in its scoring time), and the
bytes sent. Baselines in the same rounds: the same query with Spark's native ``hash`` of the
columns, and with a pandas UDF returning zeros.
The measured server gets a ``--driver-memory`` heap (default 4g): with Spark's default 1g,
registering the large model inline can run it out of heap. A second server with the default
heap then takes the large model both ways (registration and a first query, or the error), and a
size probe: a ``--probe-mb`` payload inline (default client, and a client whose gRPC send limit
is raised) and as an artifact. Writes benchmarks/results/spark_connect.md.

    .venv/bin/python benchmarks/spark_connect.py [--rows N] [--runs K] [--reg-runs K]
        [--trees T] [--large-rows N] [--probe-mb MB] [--driver-memory 4g]
"""

from __future__ import annotations

import os

from udfs.threads import set_environment

set_environment()  # one BLAS/OpenMP thread per process, as in the Spark workers
os.environ.setdefault("PYTHONWARNINGS", "ignore")

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Tuple  # noqa: UP035 - pandas_udf's type-hint inference

import numpy as np
import pandas as pd
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType
from sklearn.ensemble import RandomForestClassifier

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the repository: tests/fixtures/connect.py
from _common import (
    BARE_FEATURES,
    bare_data,
    interleaved,
    machine,
    pipeline_data,
    plan_missing,
    table,
    train_bare,
    train_pipeline,
    versions,
)

import udfs
from tests.fixtures.connect import _listening, free_port, start_server, stop_server
from udfs import spark as udfs_spark
from udfs.demo.data import FEATURES
from udfs.spark import shipping
from udfs.spark.shipping import Inline
from udfs.spark.udf import make_udf
from udfs.store import resolve

RESULTS = HERE / "results" / "spark_connect.md"
MODELS = ("bare", "pipeline", "large")
VARIANTS = ("inline", "artifacts")
NAMES = {"bare": "bench_gbc", "pipeline": "bench_churn", "large": "bench_forest"}
VIEWS = {"bare": "bare_features", "pipeline": "customer_features", "large": "large_features"}
TABLES = {"bare": "bare", "pipeline": "customers", "large": "customers-large"}
COLUMNS = {"bare": BARE_FEATURES, "pipeline": FEATURES, "large": FEATURES}
MAX_INBOUND = "spark.connect.grpc.maxInboundMessageSize"
START_TIMEOUT = 240
MB = 1024 * 1024


def launch(state: Path, arrow_batch_size: int, driver_memory: str | None) -> tuple[Any, int]:
    """A Connect server (``tests/fixtures/connect.py``) on a free port; returns it and the port."""
    state.mkdir(parents=True)
    extra = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(arrow_batch_size)}
    if driver_memory:  # else Spark's default, 1g
        extra["spark.driver.memory"] = driver_memory
    port = free_port()
    return start_server(state, port, extra_conf=extra), port


def wait_listening(proc: subprocess.Popen, port: int, state: Path) -> str:
    """Waits for the server's port; returns its ``sc://`` URL."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(port):
        if proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        log = (state / "server.log").read_text()[-3000:]
        raise SystemExit(f"FAILED: the Spark Connect server did not start:\n{log}")
    return f"sc://127.0.0.1:{port}"


# --- udfs' two strategies -------------------------------------------------------------------------


@contextmanager
def inline_limit(limit: int) -> Iterator[None]:
    """``shipping.INLINE_LIMIT`` set to ``limit`` for the block (``ship`` reads it per call)."""
    saved = shipping.INLINE_LIMIT
    shipping.INLINE_LIMIT = limit
    try:
        yield
    finally:
        shipping.INLINE_LIMIT = saved


def register_variant(client: Any, name: str, store: Path, variant: str) -> tuple[str, int]:
    """Register ``name`` shipped one way; returns the SQL function's name and the bytes uploaded
    as a session artifact (0 inline). ``<function>_proba`` too, for a classifier."""
    signature, blobs = shipping.checked_blobs(name, None, store)
    uploaded = 0
    if variant == "inline":
        function, shipped = name, Inline(blobs)
    else:
        # Another cache key: the per-worker cache must not serve the inline variant's model.
        signature = signature.with_identity(sha256=f"{signature.sha256}+artifacts")
        with inline_limit(0):
            shipped = shipping.ship(client, blobs)
        if not isinstance(shipped, shipping.SessionFile):
            raise SystemExit(f"FAILED: ship gave {type(shipped).__name__}, not a SessionFile")
        function, uploaded = f"{name}_art", len(blobs[shipped.kind])
    client.udf.register(function, make_udf(signature, shipped, "predict"))
    if signature.has_proba:
        client.udf.register(f"{function}_proba", make_udf(signature, shipped, "predict_proba"))
    return function, uploaded


# --- measuring ----------------------------------------------------------------------------------


class RequestSizes:
    """Records the ExecutePlan requests the client sends (UDF registrations) while active."""

    def __init__(self, client: Any) -> None:
        self.inner = client._client
        self.original = self.inner._execute
        self.requests: list[Any] = []

    def __enter__(self) -> RequestSizes:
        def recording(req: Any, *args: Any, **kwargs: Any) -> Any:
            self.requests.append(req)
            return self.original(req, *args, **kwargs)

        self.inner._execute = recording
        return self

    def __exit__(self, *exc: object) -> None:
        del self.inner._execute  # back to the class's method

    def take(self) -> int:
        size = sum(r.ByteSize() for r in self.requests)
        self.requests.clear()
        return size


def timed(action: Callable[[], object]) -> float:
    return timed_result(action)[0]


def timed_result(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def zeros_udf():
    """Spark's own pandas-UDF cost: the same inputs through Arrow to Python and back, no model."""

    @pandas_udf(DoubleType())  # a DataType: parsing "double" needs a classic session
    def zeros(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
        for batch in batches:
            yield pd.Series(np.zeros(len(batch[0])))

    return zeros


def write_parquet(frame: pd.DataFrame, directory: Path) -> None:
    """Two files: two partitions, so both cores of local[2] score."""
    directory.mkdir(parents=True)
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(directory / "part-0.parquet", row_group_size=50_000)
    frame.iloc[half:].to_parquet(directory / "part-1.parquet", row_group_size=50_000)


def scoring_query(client: Any, function: str, key: str) -> Callable[[], object]:
    """``SELECT sum(hash(<function>(<columns>)))``; a native ``hash`` of them if no function."""
    args = ", ".join(COLUMNS[key])
    expr = f"hash({args})" if function == "" else f"hash({function}({args}))"
    sql = f"SELECT sum({expr}) AS h FROM {VIEWS[key]}"
    return lambda: client.sql(sql).collect()


def short_error(exc: BaseException) -> str:
    """The exception's class and gRPC status and details when it has them, else its text."""
    text = " ".join(str(exc).split())
    status = re.search(r"status = (StatusCode\.\w+)", text)
    details = re.search(r'details = "([^"]*)"', text)
    if details:
        text = f"{status.group(1) + ' ' if status else ''}{details.group(1)}"
    return f"{type(exc).__name__}: {text[:200]}"


def attempt(found: dict[str, str], what: str, action: Callable[[], object], done: str = "") -> bool:
    """Runs ``action``: ``found[what]`` is ``"[<done> in ]<seconds> s"`` or its error."""
    try:
        found[what] = f"{done + ' in ' if done else ''}{timed(action):.1f} s"
        return True
    except Exception as exc:
        found[what] = f"failed ({short_error(exc)})"
        return False


def probe(client: Any, url: str, megabytes: int, signature: Any) -> dict[str, str]:
    """A ``megabytes`` payload inline (default client; raised client send limit) and as a session
    artifact (``shipping.ship``: above INLINE_LIMIT, udfs' own upload)."""
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    blobs = {"plan": os.urandom(megabytes * MB), "artifact": None}
    found: dict[str, str] = {}
    raised = ConnectSession.builder.channelBuilder(
        DefaultChannelBuilder(url, [("grpc.max_send_message_length", 1024 * MB)])
    ).create()
    try:
        for what, session in (("inline", client), ("inline_raised", raised)):
            udf = make_udf(signature, Inline(blobs), "predict")
            attempt(found, what, lambda s=session, u=udf: s.udf.register("probe", u), "registered")
    finally:
        raised.stop()
    attempt(found, "artifact", lambda: shipping.ship(client, blobs), "uploaded")
    return found


# --- the run ------------------------------------------------------------------------------------


def train(store: Path, trees: int) -> dict[str, dict]:
    """Save the three models; returns per model its plan and pickle sizes."""
    bare, bare_sample = train_bare()
    udfs.save_model(
        bare, NAMES["bare"], sample=bare_sample, store=store, feature_names=BARE_FEATURES
    )
    pipe, pipe_sample = train_pipeline()
    udfs.save_model(pipe, NAMES["pipeline"], sample=pipe_sample, store=store)
    forest, forest_sample = train_pipeline(
        RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2)
    )
    # Fitted on 2 cores, saved with n_jobs=1: with n_jobs > 1 scikit-learn sums the trees'
    # probabilities in thread order, so its own output varies and no plan can be verified.
    forest[-1].set_params(n_jobs=1)
    udfs.save_model(forest, NAMES["large"], sample=forest_sample, store=store)
    sizes = {}
    for key in MODELS:
        ref = resolve(NAMES[key], store=store)
        why = plan_missing(ref.signature())
        if why is not None:
            raise SystemExit(f"FAILED: model {NAMES[key]} ({key}) has no scoring plan ({why})")
        sizes[key] = {
            "plan": len(ref.plan().to_bytes()),
            "pickle": ref.artifact_path.stat().st_size,
        }
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5, help="steady-state rounds")
    parser.add_argument("--reg-runs", type=int, default=3, help="registrations per variant")
    parser.add_argument("--trees", type=int, default=300, help="trees of the large forest")
    parser.add_argument(
        "--large-rows", type=int, default=20_000, help="rows the large model scores per query"
    )
    parser.add_argument("--probe-mb", type=int, default=150, help="size probe (0: skip)")
    parser.add_argument("--batch", type=int, default=10_000, help="Arrow batch size (rows)")
    parser.add_argument(
        "--driver-memory",
        default="4g",
        help="the measured server's heap (the probes run on a second one with Spark's default)",
    )
    opts = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="udfs-bench-connect-"))
    # The servers start (JVM, ~30 s on a busy box) while the models train.
    proc, port = launch(work / "server", opts.batch, opts.driver_memory)
    default_proc, default_port = launch(work / "default-server", opts.batch, None)
    try:
        store = work / "models"
        sizes = train(store, opts.trees)
        write_parquet(pd.DataFrame(bare_data(opts.rows), columns=BARE_FEATURES), work / "bare")
        write_parquet(pipeline_data(opts.rows)[FEATURES], work / "customers")
        write_parquet(pipeline_data(opts.large_rows, seed=8)[FEATURES], work / "customers-large")
        warm, warm_sample = train_bare(rows=500)
        udfs.save_model(
            warm, "bench_warm", sample=warm_sample, store=store, feature_names=BARE_FEATURES
        )
        # A tiny pipeline: the workers' first use of the ColumnTransformer's plan steps happens
        # in the warm-up, not in the first timed query (inline's, which runs first).
        warm_pipe, warm_pipe_sample = train_pipeline(
            RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0)
        )
        udfs.save_model(warm_pipe, "bench_warm_pipe", sample=warm_pipe_sample, store=store)
        result = run(wait_listening(proc, port, work / "server"), store, work, opts)
        result["sizes"] = sizes
        stop_server(proc)
        url = wait_listening(default_proc, default_port, work / "default-server")
        result["default_heap"] = default_heap(url, store, work, opts)
    finally:
        stop_server(proc)
        stop_server(default_proc)
        shutil.rmtree(work, ignore_errors=True)
    text = report(opts, result, time.perf_counter() - started)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text, end="")


def run(url: str, store: Path, work: Path, opts: argparse.Namespace) -> dict[str, Any]:
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    client = ConnectSession.builder.remote(url).getOrCreate()
    try:  # a live client's gRPC threads would keep this process from exiting
        return measure(client, store, work, opts)
    finally:
        client.stop()


def measure(client: Any, store: Path, work: Path, opts: argparse.Namespace) -> dict[str, Any]:
    try:
        max_inbound = client.conf.get(MAX_INBOUND, None)
    except Exception:
        max_inbound = None
    for key in MODELS:
        client.read.parquet(str(work / TABLES[key])).createOrReplaceTempView(VIEWS[key])
    client.udf.register("zeros", zeros_udf())

    def query(function: str, key: str) -> Callable[[], object]:
        return scoring_query(client, function, key)

    # Python workers started, udfs imported, before any first query is timed.
    udfs_spark.register(client, "bench_warm", store=store)
    udfs_spark.register(client, "bench_warm_pipe", store=store)
    query("zeros", "bare")()
    query("bench_warm", "bare")()
    query("bench_warm_pipe", "pipeline")()

    reg: dict[str, float] = {}
    again: dict[str, float] = {}
    sent: dict[str, int] = {}
    first: dict[str, float] = {}
    functions: dict[str, str] = {}
    for key in MODELS:
        sums = {}
        for variant in VARIANTS:
            cell = f"{key}/{variant}"
            times = []
            with RequestSizes(client) as requests:
                for _ in range(opts.reg_runs):
                    requests.take()
                    seconds, (functions[cell], uploaded) = timed_result(
                        lambda k=key, v=variant: register_variant(client, NAMES[k], store, v)
                    )
                    times.append(seconds)
                    if len(times) == 1:  # the UDF registrations and the upload, once
                        sent[cell] = requests.take() + uploaded
            reg[cell] = times[0]
            again[cell] = statistics.median(times[1:]) if len(times) > 1 else float("nan")
            first[cell], sums[variant] = timed_result(query(functions[cell], key))
        if sums["inline"] != sums["artifacts"]:  # same model, same rows: the same predictions
            raise SystemExit(f"FAILED: {key}: inline/artifacts sums differ: {sums}")
        print(f"{key}: registered and first queries done", flush=True)

    def nothing() -> None:
        return None

    steps: dict[str, Any] = {}
    for key in MODELS:
        steps[f"{key}/scan"] = (nothing, query("", key))
        steps[f"{key}/zeros"] = (nothing, query("zeros", key))
        for variant in VARIANTS:
            steps[f"{key}/{variant}"] = (nothing, query(functions[f"{key}/{variant}"], key))
    steady = interleaved(steps, opts.runs, warmup=0)  # the first queries were the warm-up

    return {
        "reg": reg,
        "again": again,
        "sent": sent,
        "first": first,
        "steady": steady,
        "max_inbound": max_inbound,
    }


def default_heap(url: str, store: Path, work: Path, opts: argparse.Namespace) -> dict[str, str]:
    """On a server with Spark's default heap: the large model as an artifact, then inline.

    Then the ``--probe-mb`` size probe. Artifacts go first: an inline failure may leave the
    server short of memory for a while.
    """
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    client = ConnectSession.builder.remote(url).create()
    found: dict[str, str] = {}
    try:
        for key in ("bare", "large"):
            client.read.parquet(str(work / TABLES[key])).createOrReplaceTempView(VIEWS[key])
        udfs_spark.register(client, "bench_warm", store=store)  # workers up, udfs imported
        scoring_query(client, "bench_warm", "bare")()
        for variant in VARIANTS:
            function = f"{NAMES['large']}_art" if variant == "artifacts" else NAMES["large"]
            registered = attempt(
                found,
                f"{variant}_register",
                lambda v=variant: register_variant(client, NAMES["large"], store, v),
            )
            if registered:
                attempt(found, f"{variant}_query", scoring_query(client, function, "large"))
            if variant == "artifacts" and opts.probe_mb > 0:
                signature = resolve(NAMES["bare"], store=store).signature()
                found.update(probe(client, url, opts.probe_mb, signature))
    finally:
        client.stop()
    return found


# --- the report ---------------------------------------------------------------------------------


def report(opts: argparse.Namespace, r: dict[str, Any], elapsed: float) -> str:
    """The results page: the table and the notes."""
    reg, again, sent, first, steady = r["reg"], r["again"], r["sent"], r["first"], r["steady"]
    sizes = r["sizes"]
    labels = {
        "bare": "bare GBC (20 doubles)",
        "pipeline": "pipeline (ColumnTransformer + GBC)",
        "large": f"large pipeline (ColumnTransformer + RandomForest({opts.trees}, full depth))",
    }

    def cell(values: dict[str, float], key: str, unit: str = "s") -> str:
        inline, art = values[f"{key}/inline"], values[f"{key}/artifacts"]
        if unit == "MB":
            return f"{inline / MB:,.2f} MB / {art / MB:,.2f} MB ({art / inline:.2f}x)"
        return f"{inline:.2f} s / {art:.2f} s ({art / inline:.2f}x)"

    def over_zeros(key: str) -> str:
        zeros = steady[f"{key}/zeros"]
        return " / ".join(f"{steady[f'{key}/{v}'] - zeros:+.2f} s" for v in VARIANTS)

    rows = [
        [
            "model size: scoring plan (what ships) / pickle",
            *[
                f"{sizes[k]['plan'] / MB:,.2f} MB / {sizes[k]['pickle'] / MB:,.2f} MB"
                for k in MODELS
            ],
        ],
        [
            "what `udfs.spark.register` does for it on Connect",
            *[
                "inline" if sizes[k]["plan"] <= shipping.INLINE_LIMIT else "artifacts"
                for k in MODELS
            ],
        ],
        [
            "bytes sent at registration (`<name>` + `<name>_proba`, + the file)",
            *[cell(sent, k, "MB") for k in MODELS],
        ],
        ["registration (first)", *[cell(reg, k) for k in MODELS]],
        [
            f"registration again (median of {opts.reg_runs - 1}; same sha256-named file)",
            *[cell(again, k) for k in MODELS],
        ],
        ["first query (fresh per-worker cache, once)", *[cell(first, k) for k in MODELS]],
        [f"steady-state query (median of {opts.runs})", *[cell(steady, k) for k in MODELS]],
        [
            "steady state over the zeros pandas UDF (inline / artifacts)",
            *[over_zeros(k) for k in MODELS],
        ],
        [
            "baselines: native `hash` of the columns / zeros pandas UDF",
            *[f"{steady[f'{k}/scan']:.2f} s / {steady[f'{k}/zeros']:.2f} s" for k in MODELS],
        ],
    ]
    limit_mib = shipping.INLINE_LIMIT // MB
    text = (
        "Spark Connect model shipping, udfs' two strategies: inline (the model's bytes inside "
        "the UDF, `shipping.Inline`) vs artifacts (`shipping.ship`: `addArtifacts(file=True)` "
        "of a file named by its sha256, read with `SparkFiles.get` on the worker, "
        f"`shipping.SessionFile`). `udfs.spark.register` ships a model up to {limit_mib} MiB "
        "inline and a larger one as an artifact; here every model goes both ways. On a real "
        "Spark Connect server (`spark-submit` of `SparkConnectServer`, local[2], udfs' session "
        f"settings, `spark.driver.memory` {opts.driver_memory}) and a thin client in the "
        f"benchmark process. Query: `SELECT sum(hash(<name>(...)))` over {opts.rows:,} rows from "
        f"Parquet (two files; the large model: {opts.large_rows:,} rows, so that its fixed "
        "per-query costs show beside its scoring). Cells are inline / artifacts (artifacts/inline "
        f"ratio; below 1 favours artifacts). Steady state: medians of {opts.runs} interleaved "
        "rounds (every query in every round).\n"
        f"Machine: {machine()}; other sessions were running tests at the same time; "
        f"{versions('pyspark', 'scikit-learn', 'pandas', 'pyarrow', 'grpcio')}. "
        f"Run took {elapsed:.0f} s.\n\n" + table(["What", *[labels[k] for k in MODELS]], rows)
    )
    limit = r["max_inbound"]
    d = r["default_heap"]
    notes = [
        f"- gRPC limits: the server's `{MAX_INBOUND}` is "
        f"{'unset (default 128 MiB)' if limit is None else limit}; the Python client's channel "
        "sends at most 128 MiB per message (`ChannelBuilder.GRPC_MAX_MESSAGE_LENGTH_DEFAULT`). "
        "A UDF registration is one message carrying the pickled closure; `addArtifacts` streams "
        "files in 32 KiB chunks.",
        f"- The measured server has a {opts.driver_memory} heap (`spark.driver.memory`). On a "
        "second server with Spark's default heap (1g), the large model: as an artifact, "
        f"registration {d['artifacts_register']}, first query {d.get('artifacts_query', '-')}; "
        f"inline, registration {d['inline_register']}, first query "
        f"{d.get('inline_query', '-')}.",
    ]
    if "inline" in d:
        notes.append(
            f"- A {opts.probe_mb} MB model (random bytes in the shipped dict), same 1g server: "
            f"inline with the default client: {d['inline']}; inline with the client's send limit "
            f"raised to 1 GiB: {d['inline_raised']}; as an artifact: {d['artifact']}."
        )
    notes.append(
        f"- Why udfs ships up to {limit_mib} MiB inline and larger models as artifacts: for the "
        "small models the two are alike (their steady-state rows; their registrations and first queries differ by tenths of a second, within this shared machine's noise). A large "
        "model inside the UDF is one gRPC message (refused beyond 128 MiB), is held more than once "
        "by the server (the large model ran a 1g server out of heap) and travels again with every "
        "task (its steady-state row). Small models, the common case, stay inline because Spark "
        "Connect does not hand session artifacts to streaming queries' tasks: a streaming query "
        "needs its model inline (under the limit) or a classic session."
    )
    return text + "\n\n" + "\n".join(notes) + "\n"


if __name__ == "__main__":
    main()
