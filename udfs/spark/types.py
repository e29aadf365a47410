"""Portable types as Spark SQL types."""

from __future__ import annotations

from pyspark.sql.types import ArrayType, BooleanType, DataType, DoubleType, LongType, StringType

from udfs.signature import Signature

SPARK_TYPES: dict[str, DataType] = {
    "double": DoubleType(),
    "bigint": LongType(),
    "boolean": BooleanType(),
    "string": StringType(),
}


def predict_type(signature: Signature) -> DataType:
    """`<name>(...)`: double for regression, the classes' type for classifiers."""
    return SPARK_TYPES[signature.label_type]


def proba_type(signature: Signature) -> DataType:
    """`<name>_proba(...)`: P(classes[1]) for binary, one probability per class for multiclass."""
    return (
        DoubleType() if signature.task == "binary" else ArrayType(DoubleType(), containsNull=False)
    )
