"""The embedded SparkSession: local master, Arrow on, a warehouse that survives restarts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from udfs.paths import home, package_file
from udfs.spark.gpu import (
    DISCOVERY_ENV,
    DISCOVERY_SCRIPT,
    discover,
    executor_cores,
    gpu_conf,
    use_gpu,
)
from udfs.spark.shipping import is_connect
from udfs.threads import ONE_THREAD_ENV

DEFAULT_MASTER = "local[*]"
REMOTE_ENV = "SPARK_REMOTE"  # a Spark Connect URL; spark-submit --remote sets it
ARROW_BATCH_SIZE = 10_000
LOG4J2 = package_file("spark", "log4j2.properties")


def submitted() -> bool:
    """True inside a driver started by spark-submit, whose configuration then rules."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def base_conf(arrow_batch_size: int) -> dict[str, str]:
    """Settings udfs needs on any cluster."""
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(arrow_batch_size),
        "spark.python.worker.reuse": "true",  # keeps the per-worker model cache alive
    }
    # Each Python worker runs one batch at a time (udfs.threads).
    conf.update({f"spark.executorEnv.{var}": n for var, n in ONE_THREAD_ENV.items()})
    return conf


def embedded_conf(master: str | None, state: Path) -> dict[str, str]:
    """The local defaults: a project-local warehouse and Derby metastore, quiet logs, no UI."""
    metastore = state / "metastore_db"
    java_options = f"-Dderby.system.home={state} -Dlog4j2.configurationFile=file:{LOG4J2}"
    return {
        "spark.master": master or os.environ.get("UDFS_SPARK_MASTER", DEFAULT_MASTER),
        "spark.sql.warehouse.dir": str(state / "warehouse"),
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",
        "spark.driver.extraJavaOptions": java_options,
        "spark.ui.enabled": "false",
        # Stage progress bars for long jobs in a terminal; never in captured output (tests, CI).
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),
        "spark.sql.shuffle.partitions": "4",
    }


def session_conf(
    master: str | None = None,
    gpu: str = "auto",
    *,
    state_dir: Path | str | None = None,
    arrow_batch_size: int = ARROW_BATCH_SIZE,
    rapids_jar: str | None = None,
    conf: dict[str, str] | None = None,
) -> dict[str, str]:
    """Every setting :func:`session` applies; explicit ``conf`` entries win."""
    settings = base_conf(arrow_batch_size)
    state = Path(state_dir or home() / "spark").absolute()
    local = embedded_conf(master, state)
    launched = SparkConf() if submitted() else None
    if launched is not None:
        # The cluster's properties win. The local defaults fill in only what they leave unset,
        # and only for a local master: on a cluster, a warehouse or metastore on the driver's
        # disk, 4 shuffle partitions or no UI would be wrong (the cluster's defaults rule).
        submitted_master = master or launched.get("spark.master", "")
        keep = {k: v for k, v in local.items() if not launched.contains(k)}
        if not submitted_master.startswith("local"):
            keep = {}
        if master:
            keep["spark.master"] = master
        local = keep
    settings.update(local)
    settings.update(conf or {})
    effective_master = settings.get("spark.master") or (
        launched.get("spark.master", "") if launched else ""
    )
    script = Path(
        settings.get("spark.executor.resource.gpu.discoveryScript")
        or os.environ.get(DISCOVERY_ENV, DISCOVERY_SCRIPT)
    )
    if use_gpu(gpu, discover(script) if gpu != "off" else []):
        cores = int(settings.get("spark.executor.cores") or executor_cores(effective_master))
        settings.update(
            gpu_conf(effective_master, script, rapids_jar=rapids_jar, executor_cores=cores)
        )
        settings.update(conf or {})
    return settings


def session(
    app_name: str = "udfs",
    master: str | None = None,
    gpu: str = "auto",
    *,
    state_dir: Path | str | None = None,
    arrow_batch_size: int = ARROW_BATCH_SIZE,
    rapids_jar: str | None = None,
    conf: dict[str, str] | None = None,
    remote: str | None = None,
) -> SparkSession:
    """The embedded default SparkSession, or the spark-submit one with udfs' settings.

    ``remote`` (or ``$SPARK_REMOTE``, which ``spark-submit --remote`` sets) gives a Spark
    Connect session instead: ``sc://host:port`` reaches a running server, which applies the
    runtime settings (its cluster settings are its administrator's); ``local[N]`` starts a
    local server in this process with the same settings as the embedded session.

    Tables made with ``CREATE TABLE ... AS SELECT`` persist in ``<udfs home>/spark`` (Hive
    catalog on an embedded Derby metastore) and are readable from a later session.
    ``gpu="auto"`` uses GPUs when the discovery script finds some, ``"on"`` requires them;
    with a RAPIDS Accelerator jar (``rapids_jar`` or ``$SPARK_RAPIDS_JAR``) the SQL plugin too.

    >>> spark = session()  # doctest: +SKIP
    """
    remote = remote or os.environ.get(REMOTE_ENV)
    if remote and remote.startswith("sc://"):
        return _connect_client(app_name, remote, arrow_batch_size, conf)
    if submitted() and not remote:
        SparkContext._ensure_initialized()  # attach to spark-submit's JVM to read its conf
    else:
        # Workers must run this interpreter: it has udfs and scikit-learn.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = session_conf(
        master,
        gpu,
        state_dir=state_dir,
        arrow_batch_size=arrow_batch_size,
        rapids_jar=rapids_jar,
        conf=conf,
    )
    if not submitted():
        Path(settings["spark.sql.warehouse.dir"]).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name)
    if remote:  # local[N]: pyspark starts a Connect server in this process, with these settings
        builder = builder.remote(remote)
        settings.pop("spark.master", None)  # the remote URL names it
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not is_connect(spark):  # a Connect client has no SparkContext; log4j2 quiets its server
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _connect_client(
    app_name: str, url: str, arrow_batch_size: int, conf: dict[str, str] | None
) -> SparkSession:
    """A client of a running Spark Connect server, with udfs' runtime SQL settings.

    Only ``spark.sql.*`` settings are sent: the server's cluster settings (workers' Python,
    thread limits, worker reuse) are its administrator's, and README says which udfs needs.
    Built with Connect's own builder, so it works beside a classic session in one process.
    """
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    settings = {k: v for k, v in base_conf(arrow_batch_size).items() if k.startswith("spark.sql.")}
    settings.update(conf or {})
    return ConnectSession.builder.remote(url).appName(app_name).config(map=settings).getOrCreate()


def describe(spark: SparkSession, remote: str | None = None) -> str:
    """Where a session runs: ``master local[*]``, or ``remote sc://host:15002`` on Connect."""
    if is_connect(spark):
        return f"remote {remote or os.environ.get(REMOTE_ENV, '')}".rstrip()
    return f"master {spark.sparkContext.master}"
