"""A long-lived Spark Python worker's memory stays bounded as new model versions arrive."""

from collections.abc import Iterator
from pathlib import Path
from typing import Tuple  # noqa: UP035 - pandas_udf's type-hint inference

import pandas as pd
import pytest
from pyspark.sql.functions import pandas_udf
from sklearn.ensemble import RandomForestClassifier

import udfs
from tests.fixtures.models import as_records
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs import spark as udfs_spark
from udfs.demo.data import FEATURES, customers
from udfs.spark.cache import MAX_MODELS

pytestmark = [pytest.mark.reliability, pytest.mark.spark, pytest.mark.slow]

VERSIONS = MAX_MODELS + 8


def probe(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
    """pid, resident kB and cached models of the Python worker running this batch."""
    import os

    from udfs.spark import cache

    for batch in batches:
        status = Path("/proc/self/status").read_text()
        rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        yield pd.Series([f"{os.getpid()} {rss} {len(cache._models)}"] * len(batch[0]))


def test_worker_memory_is_bounded_across_redeploys(spark, tmp_path, trained):
    spark.udf.register("probe", pandas_udf(probe, "string"))
    rows = customers(2000, seed=17)[["id", *FEATURES]]
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).coalesce(1).createOrReplaceTempView(
        "few"
    )
    train = trained["churn"].train
    samples = []
    for version in range(1, VERSIONS + 1):
        numeric = train[["age", "tenure"]]
        model = RandomForestClassifier(n_estimators=30, random_state=version)
        udfs.save_model(
            model.fit(numeric, train["churned"]), "grow", sample=numeric, store=tmp_path
        )
        udfs_spark.register(spark, "grow", version, store=tmp_path)
        row = spark.sql(
            "SELECT first(grow(age, tenure)) AS g, first(probe(id, grow(age, tenure))) AS p FROM few"
        ).first()
        pid, rss, cached = row["p"].split()
        samples.append((int(pid), int(rss), int(cached)))
    assert max(cached for _, _, cached in samples) <= MAX_MODELS  # old versions are evicted
    by_worker: dict[int, list[int]] = {}
    for pid, rss, _ in samples:
        by_worker.setdefault(pid, []).append(rss)
    longest = max(by_worker.values(), key=len)
    assert len(longest) > MAX_MODELS, f"no worker lived through {MAX_MODELS} versions: {samples}"
    early = longest[MAX_MODELS - 1] - longest[0]  # growth while the cache fills
    late = longest[-1] - longest[MAX_MODELS - 1]  # growth once it evicts
    print(
        f"worker RSS: start {longest[0] / 1024:.0f} MiB, full cache {longest[MAX_MODELS - 1] / 1024:.0f} MiB, end {longest[-1] / 1024:.0f} MiB"
    )
    assert late < max(early / 2, 10 * 1024), samples
