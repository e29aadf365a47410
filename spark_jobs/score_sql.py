"""spark-submit entry point: register the models and run a SQL file statement by statement.

    spark-submit --master spark://host:7077 --properties-file spark_jobs/conf/cpu.properties \
        spark_jobs/score_sql.py sql/spark/churn_scores.sql --store models

Prints each statement's row count and time; exits 1 with one clear line on a udfs error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import udfs  # noqa: F401 - installed on the cluster, or shipped with --py-files
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from udfs.errors import UdfsError
from udfs.spark.job import run_sql_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sql_file", type=Path, help="SQL script to run")
    parser.add_argument(
        "--store", default=None, help="model store (default $UDFS_STORE or ./models)"
    )
    parser.add_argument("--model", action="append", default=[], help="NAME[@VERSION] to register")
    parser.add_argument(
        "--remote", default=None, help="Spark Connect URL (spark-submit --remote sets it too)"
    )
    parser.add_argument("--gpu", choices=["auto", "on", "off"], default="auto")
    args = parser.parse_args(argv)
    try:
        run_sql_file(
            args.sql_file,
            gpu=args.gpu,
            store=args.store,
            models=args.model,
            remote=args.remote,
            echo=print,
        )
    except UdfsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
