"""The embedded SparkSession: local master, Arrow on, a warehouse that survives restarts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from udfs.paths import home
from udfs.spark.gpu import gpu_scheduling_conf, use_gpu

DEFAULT_MASTER = "local[*]"
ARROW_BATCH_SIZE = 10_000
LOG4J2 = Path(__file__).with_name("log4j2.properties")
# Each Python worker runs one batch at a time: BLAS threads would only fight over the cores.
_THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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
    conf.update({f"spark.executorEnv.{var}": "1" for var in _THREAD_LIMITS})
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
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
    }


def session(
    app_name: str = "udfs",
    master: str | None = None,
    gpu: str = "auto",
    *,
    state_dir: Path | None = None,
    arrow_batch_size: int = ARROW_BATCH_SIZE,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """The embedded default SparkSession, or the spark-submit one with udfs' settings.

    Tables made with ``CREATE TABLE ... AS SELECT`` persist in ``<udfs home>/spark`` (Hive
    catalog on an embedded Derby metastore) and are readable from a later session.

    >>> spark = session()  # doctest: +SKIP
    """
    settings = base_conf(arrow_batch_size)
    state = (state_dir or home() / "spark").absolute()
    state.mkdir(parents=True, exist_ok=True)
    local = embedded_conf(master, state)
    if submitted():
        # The cluster's properties win; the local defaults fill in only what they leave unset.
        SparkContext._ensure_initialized()  # attach to spark-submit's JVM to read its conf
        launched = SparkConf()
        local = {
            k: v
            for k, v in local.items()
            if (k == "spark.master" and master) or not launched.contains(k)
        }
    else:
        # Workers must run this interpreter: it has udfs and scikit-learn.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings.update(local)
    if use_gpu(gpu):
        settings.update(gpu_scheduling_conf())
    settings.update(conf or {})
    builder = SparkSession.builder.appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
