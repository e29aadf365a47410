"""``ml.evaluate(model, source, label_column)``: the model's metrics on a labelled table.

The table is read in the chunks of ``ml.<name>_batch`` (ranges of heap blocks, one query per
chunk through ``reader``), the label column in the same query as the features: it is read as
one more column of the chunk, typed as the table types it, so a boolean column arrives as
booleans and a bigint one as integers, and ``udfs.evaluate`` matches them to the classes
exactly. Each chunk is scored through the batch scorer of ``ml.<name>_batch`` and only its
labels, predictions and probabilities are kept. The function runs as its caller (it is not
SECURITY DEFINER), so it reads only tables the caller may SELECT from.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from udfs.errors import InputError
from udfs.evaluate import Evaluation
from udfs.postgres.server.batch import batch_chunk_rows
from udfs.postgres.server.models import Loaded
from udfs.postgres.server.reader import Relation, block_ranges, block_where, read_chunk
from udfs.signature import Feature

# A label column's SQL type -> the portable type the reader decodes it as (text otherwise:
# numeric, varchar, ... arrive as Python values and are matched as ``udfs.evaluate`` says).
_LABEL_TYPES = {
    "double precision": "double",
    "real": "double",
    "bigint": "bigint",
    "integer": "bigint",
    "smallint": "bigint",
    "boolean": "boolean",
}


def evaluate(plpy: Any, loaded: Loaded, source: str, label_column: str) -> list[tuple]:
    """The ``(metric, value)`` rows of ``ml.evaluate`` (see ``udfs.evaluate``)."""
    sig = loaded.signature
    if label_column is None:
        raise InputError(f"ml.evaluate('{sig.name}', ...): label_column must not be NULL")
    relation = Relation(plpy, source)
    relation.require([label_column], "label_column")
    if label_column in sig.feature_names:
        raise InputError(
            f"label_column '{label_column}' is a feature of model '{sig.name}' "
            f"({sig.describe_features()}): name the column that holds the true labels",
            model=sig.name,
            column=label_column,
        )
    # The label travels as one more feature of the chunk's single query.
    label = Feature(label_column, _LABEL_TYPES.get(relation.types[label_column], "string"), True)
    reading = replace(sig, features=(*sig.features, label))
    evaluation = Evaluation(sig, label_column)
    for lo, hi in block_ranges(plpy, relation, batch_chunk_rows(plpy)):
        chunk = read_chunk(plpy, reading, relation, block_where(lo, hi), ordered=False)
        if chunk.size:
            evaluation.score(loaded.batch, chunk.columns[:-1], chunk.columns[-1])
    return evaluation.metrics()
