"""Iterator UDFs that call the shared scoring core: Arrow-native where pyspark has them.

pyspark >= 4.1 hands an ``arrow_udf`` its columns as ``pyarrow`` arrays, without building pandas
Series on the way in or out; on this 2-core machine that exchange costs about a quarter less
than a pandas UDF's (benchmarks/spark_scoring.py). The arrays become the numpy columns the core
takes (the same values a pandas UDF would hand over: float64 with NaN for a NULL double, int64
or float64 for bigints, bool or object for booleans, object for strings), and the core's result
goes back as one Arrow array of the function's SQL type. Older pyspark gets the pandas UDF.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Tuple  # noqa: UP035 - the UDFs' type-hint inference expects typing.Tuple

import pandas as pd
import pyarrow as pa
from pyspark.sql.functions import pandas_udf
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import DataType
from pyspark.sql.udf import UserDefinedFunction

from udfs import scoring
from udfs.signature import Signature
from udfs.spark import cache
from udfs.spark.device import task_gpu
from udfs.spark.types import predict_type, proba_type

try:
    from pyspark.sql.functions import arrow_udf
except ImportError:  # pyspark < 4.1
    arrow_udf = None

METHODS = ("predict", "predict_proba")


def make_udf(
    signature: Signature, artifact: Any, method: str, arrow: bool | None = None
) -> UserDefinedFunction:
    """A scalar iterator UDF computing ``method`` for the model in ``artifact``.

    ``arrow``: an Arrow-native UDF (the default where pyspark has them) or a pandas UDF.
    ``artifact`` is what ``shipping.ship`` made: a broadcast handle (the model reaches each
    executor once) or, on Spark Connect, the bytes themselves. The model is loaded once per
    Python worker.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    signature_json = signature.to_json()
    return_type = predict_type(signature) if method == "predict" else proba_type(signature)
    if arrow is None:
        arrow = arrow_udf is not None
    if arrow:
        return _arrow(signature_json, artifact, method, return_type, signature.name)
    return _pandas(signature_json, artifact, method, return_type, signature.name)


def _scores(signature_json: str, artifact: Any, method: str, batches: Iterator) -> Iterator:
    """The core's results (pandas Series) for each batch of columns; None for an empty batch."""
    sig = Signature.from_json(signature_json)
    score_batch = getattr(scoring, method)
    bundle = None  # one iterator is one task: its device and model don't change
    for columns in batches:
        if len(columns[0]) == 0:
            yield None  # don't load the model for nothing
            continue
        if bundle is None:
            bundle = cache.get(sig, lambda: artifact.value, gpu=task_gpu())
        yield score_batch(bundle.scorer, sig, columns)


def _pandas(signature_json: str, artifact: Any, method: str, return_type: DataType, name: str):
    def score(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
        columns = ((b,) if isinstance(b, pd.Series) else b for b in batches)
        for result in _scores(signature_json, artifact, method, columns):
            yield pd.Series([], dtype=object) if result is None else result

    score.__name__ = f"{name}_{method}"
    return pandas_udf(score, returnType=return_type)


def _arrow(signature_json: str, artifact: Any, method: str, return_type: DataType, name: str):
    arrow_type = to_arrow_type(return_type)

    def score(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:  # noqa: UP006
        columns = (
            [_column(a) for a in ((b,) if isinstance(b, pa.Array | pa.ChunkedArray) else b)]
            for b in batches
        )
        for result in _scores(signature_json, artifact, method, columns):
            yield (
                pa.array([], type=arrow_type)
                if result is None
                else _arrow_array(result, arrow_type)
            )

    score.__name__ = f"{name}_{method}"
    return arrow_udf(score, returnType=return_type)


def _column(array: Any) -> Any:
    """An Arrow column as the numpy column a pandas UDF would have held."""
    return array.to_numpy(zero_copy_only=False)


def _arrow_array(result: pd.Series, arrow_type: pa.DataType) -> pa.Array:
    if result.dtype == object:  # labels as text, multiclass probability lists; None is NULL
        return pa.array(result.tolist(), type=arrow_type)
    return pa.Array.from_pandas(result, type=arrow_type)
