"""Model evaluation in Spark: a Python API and a SQL table function, both ``(metric, value)``.

- :func:`evaluate` (``udfs.spark.evaluate(spark, "churn", "labelled", "churned")``) scores the
  table with the model's SQL functions, registered as :func:`udfs.spark.register` registers
  them (distributed, exactly the predictions of ``SELECT churn(...)``), brings the label, the
  prediction and the probability (three columns) to the driver and computes the metrics there.
- :func:`register_evaluate` registers ``<name>_evaluate``, a Python UDTF for SQL:
  ``SELECT * FROM churn_evaluate(TABLE(labelled), 'churned')``. Its ``analyze`` asks Spark for
  the feature and label columns only, in ONE partition (metrics such as ROC AUC need every row
  in one place); the UDTF scores them in chunks through the core's batch scorer (the model
  loaded once per Python worker, as the scoring UDFs load it) and returns the metric rows.

Both compute the rows of ``udfs.evaluate`` (its docstring says which). Neither touches the
SparkContext or the JVM, so both work on a Spark Connect session too.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from udfs.errors import InputError, suggest
from udfs.evaluate import Evaluation
from udfs.signature import Signature
from udfs.spark.shipping import checked_blobs, is_connect
from udfs.store import StorePath, resolve

# Rows the UDTF scores at a time.
UDTF_CHUNK_ROWS = 10_000
RESULT_COLUMNS = ["metric", "value"]


def find_column(columns: list[str], name: str, what: str, model: str) -> str:
    """The column of ``columns`` that ``name`` means: itself, else the one that differs only
    in case (Spark resolves names case-insensitively); an :class:`InputError` otherwise."""
    if name in columns:
        return name
    folded = [c for c in columns if c.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise InputError(
        f"model '{model}': {what} '{name}' is not a column of the table "
        f"(columns: {', '.join(columns)}).{suggest(name, columns)}",
        model=model,
        column=name,
    )


def quoted(column: str) -> str:
    """A column name as a Spark SQL identifier."""
    return "`" + column.replace("`", "``") + "`"


def _columns(columns: list[str], signature: Signature, label_column: Any) -> list[str]:
    """The feature columns in signature order, then the label column."""
    if not isinstance(label_column, str):
        raise InputError(
            f"model '{signature.name}': the label column must be given as a string, "
            f"got {label_column!r}",
            model=signature.name,
        )
    label = find_column(columns, label_column, "label column", signature.name)
    features = [find_column(columns, f, "feature", signature.name) for f in signature.feature_names]
    if label in features:
        raise InputError(
            f"model '{signature.name}': label column '{label_column}' is a feature of the model "
            f"({signature.describe_features()}): name the column that holds the true labels",
            model=signature.name,
            column=label_column,
        )
    return [*features, label]


def evaluate(
    spark: Any,
    model: str,
    data: Any,
    label_column: str,
    version: int | None = None,
    store: StorePath = None,
) -> pd.DataFrame:
    """The model's metrics on a labelled table or DataFrame, as a pandas DataFrame
    ``(metric, value)`` (NaN where a metric is NULL).

    Registers ``<model>`` (and ``<model>_proba``) in ``spark`` first, as
    :func:`udfs.spark.register` does, and scores with them.

    >>> evaluate(spark, "churn", "labelled", "churned")  # doctest: +SKIP
             metric  value
    0          rows  100.0
    ...
    """
    from udfs.spark.register import register

    frame = spark.table(data) if isinstance(data, str) else data
    register(spark, model, version, store)
    signature = resolve(model, version, store).signature()
    *features, label = (quoted(c) for c in _columns(list(frame.columns), signature, label_column))
    # SQL expressions, not pyspark.sql.functions: the same on classic and Connect sessions.
    arguments = ", ".join(features)
    selected = [f"{label} AS label", f"{model}({arguments}) AS prediction"]
    if signature.is_classifier and signature.has_proba:
        selected.append(f"{model}_proba({arguments}) AS probability")
    scored = frame.selectExpr(*selected).toPandas()
    evaluation = Evaluation(signature, label_column)
    evaluation.add(scored["label"], scored["prediction"], scored.get("probability"))
    return pd.DataFrame(evaluation.metrics(), columns=RESULT_COLUMNS)


class TableEvaluation:
    """What one ``<name>_evaluate`` UDTF instance does in its Python worker: buffer rows, score
    them in chunks through the core, and give the metrics at the end."""

    def __init__(self, signature_json: str, blobs: dict) -> None:
        self.signature = Signature.from_json(signature_json)
        self.blobs = blobs
        self.rows: list[tuple] = []
        self.evaluation: Evaluation | None = None
        self.scorer: Any = None

    def add(self, row: Any, label_column: str) -> None:
        if self.evaluation is None:
            self.evaluation = Evaluation(self.signature, label_column)
        self.rows.append(tuple(row))
        if len(self.rows) >= UDTF_CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.scorer is None:
            from udfs.fastpath import BatchScorer
            from udfs.spark import cache

            bundle = cache.get(self.signature, lambda: self.blobs)
            self.scorer = BatchScorer(bundle.scorer, self.signature)
        *features, labels = (list(column) for column in zip(*self.rows, strict=True))
        self.rows = []
        self.evaluation.score(self.scorer, features, labels)

    def metrics(self, label_column: str | None) -> list[tuple]:
        self.flush()
        if self.evaluation is None:  # an empty table: eval never ran
            self.evaluation = Evaluation(self.signature, label_column or "label")
        return self.evaluation.metrics()


def make_udtf(signature: Signature, blobs: dict, connect: bool = False) -> Any:
    """The ``<name>_evaluate`` UDTF: ``(TABLE(t), 'label_column')`` -> ``(metric, value)``.

    ``connect``: for a Spark Connect session (pyspark picks the kind by the process's default
    session, which a process holding both kinds of session may get wrong).
    """
    if connect:
        from pyspark.sql.connect.functions import udtf
    else:
        from pyspark.sql.functions import udtf

    signature_json = signature.to_json()

    class Evaluate:
        @staticmethod
        def analyze(table: Any, label_column: Any) -> Any:
            from pyspark.sql.types import DoubleType, StringType, StructField, StructType
            from pyspark.sql.udtf import AnalyzeResult, SelectedColumn

            sig = Signature.from_json(signature_json)
            if not table.isTable:
                raise InputError(
                    f"{sig.name}_evaluate takes TABLE(<table or query>) first, then the label "
                    f"column: SELECT * FROM {sig.name}_evaluate(TABLE(t), 'label')",
                    model=sig.name,
                )
            label = label_column.value if label_column.isConstantExpression else None
            chosen = _columns(table.dataType.fieldNames(), sig, label)
            schema = StructType(
                [StructField("metric", StringType(), False), StructField("value", DoubleType())]
            )
            select = [SelectedColumn(quoted(c), f"c{i}") for i, c in enumerate(chosen)]
            return AnalyzeResult(schema=schema, withSinglePartition=True, select=select)

        def __init__(self) -> None:
            self.state = TableEvaluation(signature_json, blobs)
            self.label_column: str | None = None

        def eval(self, row: Any, label_column: str) -> Any:
            self.label_column = label_column
            self.state.add(row, label_column)
            return iter(())

        def terminate(self) -> Any:
            yield from self.state.metrics(self.label_column)

    Evaluate.__name__ = f"{signature.name}_evaluate"
    return udtf(Evaluate)


def register_evaluate(
    spark: Any, name: str, version: int | None = None, store: StorePath = None
) -> str:
    """Register ``<name>_evaluate`` for SQL; return its name.

    >>> register_evaluate(spark, "churn")  # doctest: +SKIP
    'churn_evaluate'
    >>> spark.sql("SELECT * FROM churn_evaluate(TABLE(labelled), 'churned')")  # doctest: +SKIP
    """
    signature, blobs = checked_blobs(name, version, store)
    function = f"{name}_evaluate"
    spark.udtf.register(function, make_udtf(signature, blobs, is_connect(spark)))
    return function
