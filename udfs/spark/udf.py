"""Iterator pandas UDFs that call the shared scoring core."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Tuple  # noqa: UP035 - pandas_udf's type-hint inference expects typing.Tuple

import pandas as pd
from pyspark.broadcast import Broadcast
from pyspark.sql.functions import pandas_udf
from pyspark.sql.udf import UserDefinedFunction

from udfs import scoring
from udfs.signature import Signature
from udfs.spark import cache
from udfs.spark.device import task_gpu
from udfs.spark.types import predict_type, proba_type

METHODS = ("predict", "predict_proba")


def make_udf(signature: Signature, artifact: Broadcast, method: str) -> UserDefinedFunction:
    """A SCALAR_ITER pandas UDF computing ``method`` for the model in ``artifact``.

    Only the signature (as JSON) and the broadcast handle travel in the closure; the model bytes
    reach each executor once through the broadcast and are unpickled once per Python worker.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    signature_json = signature.to_json()
    return_type = predict_type(signature) if method == "predict" else proba_type(signature)

    def score(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
        sig = Signature.from_json(signature_json)
        score_batch = getattr(scoring, method)
        bundle = None  # one iterator is one task: its device and model don't change
        for batch in batches:
            columns = (batch,) if isinstance(batch, pd.Series) else batch
            if len(columns[0]) == 0:
                yield pd.Series([], dtype=object)  # don't load the model for nothing
                continue
            if bundle is None:
                bundle = cache.get(sig, lambda: artifact.value, gpu=task_gpu())
            yield score_batch(bundle.scorer, sig, columns)

    score.__name__ = f"{signature.name}_{method}"
    return pandas_udf(score, returnType=return_type)
