"""``<name>_explain(features...)``: exact explanations as a Spark SQL function.

It returns ``struct<base_value double, contributions map<string,double>>`` (NULL where the
prediction is NULL), computed by the shared core (``udfs.explain``), so Postgres'
``ml.<name>_explain`` gives the same doubles. The explainer needs the fitted estimator even
when the model scores through a plan: the pickled artifact travels (a broadcast, or a
session artifact on Spark Connect, see ``shipping``) and is unpickled once per Python worker
and sha256.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Tuple  # noqa: UP035 - the UDFs' type-hint inference expects typing.Tuple

import pandas as pd
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql.functions import pandas_udf
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import DoubleType, MapType, StringType, StructField, StructType

from udfs.signature import Signature
from udfs.spark.shipping import ship
from udfs.store import StorePath, resolve

try:
    from pyspark.sql.functions import arrow_udf
except ImportError:  # pyspark < 4.1
    arrow_udf = None

EXPLAIN_TYPE = StructType(
    [
        StructField("base_value", DoubleType(), nullable=False),
        StructField("contributions", MapType(StringType(), DoubleType(), False), nullable=False),
    ]
)
MAX_EXPLAINERS = 8  # per worker: explainers of redeployed versions must not pile up
_explainers: OrderedDict[tuple[str, str], Any] = OrderedDict()


def register_explain(
    spark: SparkSession, name: str, version: int | None = None, store: StorePath = None
) -> list[str]:
    """Register ``<name>_explain`` as a SQL function; returns its name.

    The explainer is built on the driver first (sha256, library versions, unpickling, and
    whether the model has an exact explainer: ``NoExactExplainerError`` says why not), so a
    model that cannot be explained fails here and not in a job.

    >>> register_explain(spark, "churn")  # doctest: +SKIP
    ['churn_explain']
    """
    from udfs.bundle import load_bytes
    from udfs.explain import DATA_FILE, explainer

    ref = resolve(name, version, store)
    signature = ref.signature()
    artifact = ref.artifact_path.read_bytes()
    saved = ref.path / DATA_FILE
    data = json.loads(saved.read_text()) if saved.is_file() else None
    explainer(load_bytes(artifact, signature), signature, data)
    # The pickle travels as a model without a plan does; the save-time data (a few numbers)
    # inside the UDF.
    shipped = ship(spark, {"plan": None, "artifact": artifact})
    spark.udf.register(f"{name}_explain", make_explain_udf(signature, shipped, data))
    return [f"{name}_explain"]


def _cached(signature: Signature, shipped: Any, data_json: str) -> Any:
    """The explainer for ``signature.sha256`` in this worker, built on first use."""
    key = (signature.sha256 or "", data_json)
    found = _explainers.get(key)
    if found is not None:
        _explainers.move_to_end(key)
        return found
    from udfs.bundle import load_bytes
    from udfs.explain import explainer

    artifact = shipped.value["artifact"]
    made = _explainers[key] = explainer(
        load_bytes(artifact, signature), signature, json.loads(data_json)
    )
    while len(_explainers) > MAX_EXPLAINERS:
        _explainers.popitem(last=False)
    return made


def _rows(signature_json: str, shipped: Any, data_json: str, batches: Iterator) -> Iterator:
    """The core's explanations (a list of dicts or None per row) for each batch of columns."""
    sig = Signature.from_json(signature_json)
    made = None
    for columns in batches:
        if len(columns[0]) == 0:
            yield []
            continue
        if made is None:
            made = _cached(sig, shipped, data_json)
        yield made.records(columns)


def _struct(record: dict | None) -> dict | None:
    if record is None:
        return None
    return {
        "base_value": record["base_value"],
        "contributions": list(record["contributions"].items()),
    }


def make_explain_udf(signature: Signature, shipped: Any, data: dict | None) -> Any:
    """The iterator UDF behind ``<name>_explain`` (Arrow-native where pyspark has them).

    ``shipped``: what ``shipping.ship`` made of the pickled artifact; ``data``: the version's
    save-time explain data (``udfs.explain.save_time_data``).
    """
    signature_json = signature.to_json()
    data_json = json.dumps(data)
    arrow_type = to_arrow_type(EXPLAIN_TYPE)
    if arrow_udf is not None:

        def explain(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:  # noqa: UP006
            columns = (
                [
                    a.to_numpy(zero_copy_only=False)
                    for a in ((b,) if isinstance(b, pa.Array | pa.ChunkedArray) else b)
                ]
                for b in batches
            )
            for records in _rows(signature_json, shipped, data_json, columns):
                yield pa.array([_struct(r) for r in records], type=arrow_type)

        explain.__name__ = f"{signature.name}_explain"
        return arrow_udf(explain, returnType=EXPLAIN_TYPE)

    def explain_pandas(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.DataFrame]:  # noqa: UP006
        columns = ((b,) if isinstance(b, pd.Series) else b for b in batches)
        for records in _rows(signature_json, shipped, data_json, columns):
            yield pd.DataFrame(
                {
                    "base_value": [None if r is None else r["base_value"] for r in records],
                    "contributions": [None if r is None else r["contributions"] for r in records],
                }
            )

    explain_pandas.__name__ = f"{signature.name}_explain"
    return pandas_udf(explain_pandas, returnType=EXPLAIN_TYPE)
