"""Drift checks in Spark: ``udfs.spark.drift(spark, "churn", "new_customers")``.

The table is scored with the model's SQL functions, registered as :func:`udfs.spark.register`
registers them (exactly the predictions of ``SELECT churn(...)``). The bins are counted where
the rows are: each partition's feature columns and predictions go through
:class:`udfs.drift.Drift` in a ``mapInPandas`` task, which sends back only its counts per bin
(a few hundred numbers), and the driver adds them up and computes the rows. No row travels to
the driver, so the table may be larger than the driver's memory; and the counting is the
code ``ml.drift`` runs, so both engines give the same numbers on the same rows.

Only DataFrame operations (``selectExpr``, ``mapInPandas``): it works on a Spark Connect session
too (no SparkContext, no JVM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from udfs.drift import COLUMNS, Drift
from udfs.signature import Signature
from udfs.spark.evaluate import find_column, quoted
from udfs.store import StorePath, resolve


def _partition_counts(signature_json: str, profile_json: str, features: int) -> Any:
    """The ``mapInPandas`` function: one row holding a partition's counts (``Drift.state``)."""

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        drift = Drift(Signature.from_json(signature_json), json.loads(profile_json))
        for batch in batches:
            columns = [batch[f"ml_f{i}"] for i in range(features)]
            drift.add(columns, batch["ml_prediction"])
        yield pd.DataFrame({"state": [drift.state()]})

    return count


def drift(
    spark: Any,
    model: str,
    data: Any,
    version: int | None = None,
    store: StorePath = None,
) -> pd.DataFrame:
    """The drift of a table or DataFrame from the model's training profile, as a pandas
    DataFrame with the columns of ``ml.drift`` (``udfs.drift`` says what they mean).

    Registers ``<model>`` in ``spark`` first, as :func:`udfs.spark.register` does, and scores
    with it.

    >>> drift(spark, "churn", "new_customers")  # doctest: +SKIP
            feature       psi  share_missing  training_share_missing  unseen_categories  verdict
    0           age  0.412...            0.0                     0.0                  0  drifted
    ...
    """
    from udfs.spark.register import register

    ref = resolve(model, version, store)
    signature, profile = ref.signature(), ref.profile()  # no profile: fail before any job
    frame = spark.table(data) if isinstance(data, str) else data
    columns = [
        find_column(list(frame.columns), f, "feature", model) for f in signature.feature_names
    ]
    register(spark, model, ref.version, store)
    identifiers = [quoted(c) for c in columns]
    # SQL expressions, not pyspark.sql.functions: the same on classic and Connect sessions.
    scored = frame.selectExpr(
        *(f"{c} AS ml_f{i}" for i, c in enumerate(identifiers)),
        f"{model}({', '.join(identifiers)}) AS ml_prediction",
    )
    count = _partition_counts(signature.to_json(), json.dumps(profile), len(columns))
    total = Drift(signature, profile)
    for row in scored.mapInPandas(count, "state string").collect():
        total.merge(row["state"])
    return pd.DataFrame(total.rows(), columns=list(COLUMNS))
