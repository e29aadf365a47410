"""Model evaluation on labelled rows: ``(metric, value)`` rows computed with ``sklearn.metrics``.

Engine-free: Postgres (``ml.evaluate``) and Spark (``udfs.spark.evaluate``, ``<name>_evaluate``)
read the feature columns and the label column in chunks, score each chunk through the core
(:class:`udfs.fastpath.BatchScorer`, the path of the SQL functions, so the predictions are
exactly theirs) and hand labels and predictions to :class:`Evaluation`. It keeps them as
class codes (and probabilities) and computes the metrics once at the end.

The rows, in this order:

- counts: ``rows`` (every row read), ``null_labels`` (the label is NULL, or NaN),
  ``null_predictions`` (the model gave NULL: a NULL in a feature it cannot take missing),
  for classifiers ``unknown_labels`` (a label that is no class of the model) and one
  ``unknown_label[value=<label>]`` row per such value (the 20 most frequent), and
  ``evaluated``: the rows the metrics are computed on, those with a label that is one of the
  model's classes (or any number, for a regressor) and a prediction. A row can be counted
  both as a NULL label and a NULL prediction, so the counts need not add up to ``rows``.
- classifiers: ``accuracy``, ``precision``, ``recall``, ``f1`` (binary: of the positive class,
  ``classes[1]``; multiclass: the macro average over the model's classes), ``log_loss`` and
  ``roc_auc`` (binary; multiclass: macro one-vs-rest) for models with ``predict_proba``, and the
  confusion matrix as one row per cell, ``confusion[actual=<class>,predicted=<class>]``, in
  class order (booleans spelled ``true``/``false``).
- regressors: ``rmse``, ``mae``, ``r2``.

A metric that is not defined on the rows (no row evaluated; ROC AUC when a class never occurs
among the labels; R² of one row) is NULL. Unknown labels are counted, not an error: a model
cannot score a class it does not know, so those rows are left out of every metric and the
counts say so. Only when no label at all is one of the classes is it an error (most likely the
wrong column or a type mismatch).

Labels are matched to the classes by type, exactly: text classes take text labels; boolean
classes take booleans; bigint classes take integers and whole doubles; double classes (and
regressors) take numbers. Text labels for non-text classes are read as PostgreSQL reads text
(``'1'``, ``'true'``). Anything else (a boolean column against the classes ``[0, 1]``, numbers
against text classes) is an :class:`InputError` naming the model and the label column: cast it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from udfs.coercion import Column, as_series, coerce
from udfs.errors import InputError, ScoringError
from udfs.signature import Feature, Signature

# How many distinct unknown label values get a row of their own (the most frequent ones).
UNKNOWN_VALUES_SHOWN = 20
# How many distinct unknown values are counted one by one (the total is always exact).
_UNKNOWN_VALUES_KEPT = 1000
# Kinds of label values (pandas' infer_dtype) each class type takes.
_TEXT = {"string"}
_ACCEPTED = {
    "string": _TEXT,
    "boolean": {"boolean"} | _TEXT,
    "bigint": {"integer", "floating", "mixed-integer-float", "decimal"} | _TEXT,
    "double": {"integer", "floating", "mixed-integer-float", "decimal"} | _TEXT,
}
_KIND_NAMES = {
    "boolean": "booleans",
    "integer": "integers",
    "floating": "numbers",
    "mixed-integer-float": "numbers",
    "decimal": "numerics",
    "string": "text",
}


def class_text(value: Any) -> str:
    """A class or label as it is shown in a metric's name: ``true``, ``1``, ``yes``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _kind(series: pd.Series, null: np.ndarray) -> str:
    """What the non-NULL values of a column are (an ``infer_dtype`` kind)."""
    if series.dtype != object:
        if pd.api.types.is_bool_dtype(series.dtype):
            return "boolean"
        if pd.api.types.is_integer_dtype(series.dtype):
            return "integer"
        if pd.api.types.is_float_dtype(series.dtype):
            return "floating"
    return pd.api.types.infer_dtype(series.to_numpy(dtype=object)[~null], skipna=True)


def _nulls(series: pd.Series) -> np.ndarray:
    """NULL, None, pd.NA and NaN: a label that is not there."""
    return np.asarray(pd.isna(series.to_numpy(dtype=object)), dtype=bool)


class Evaluation:
    """Labels and predictions of a model, chunk by chunk; the metrics at the end.

    >>> evaluation = Evaluation(signature, "churned")  # doctest: +SKIP
    >>> evaluation.score(bundle_batch_scorer, feature_columns, labels)  # doctest: +SKIP
    >>> evaluation.metrics()  # doctest: +SKIP
    [('rows', 100.0), ('null_labels', 0.0), ...]
    """

    def __init__(self, signature: Signature, label_column: str) -> None:
        self.signature = signature
        self.label_column = label_column
        self.classifier = signature.is_classifier
        self.classes = list(signature.classes or ()) if self.classifier else []
        self.with_proba = self.classifier and signature.has_proba
        self.label_type = signature.label_type if self.classifier else "double"
        self.rows = 0
        self.null_labels = 0
        self.null_predictions = 0
        self.unknown = 0
        self.unknown_values: Counter[str] = Counter()
        self._truth: list[np.ndarray] = []
        self._predicted: list[np.ndarray] = []
        self._proba: list[np.ndarray] = []
        self._no_proba = False  # a chunk came without probabilities: no log loss, no ROC AUC

    # ----------------------------------------------------------------------------- input

    def score(self, scorer: Any, columns: Sequence[Column], labels: Column) -> None:
        """Score one chunk's feature columns with ``scorer`` (a :class:`BatchScorer`) and add
        it with its labels."""
        predictions, probabilities = scorer.score(columns, proba=self.with_proba)
        self.add(labels, predictions, probabilities)

    def add(self, labels: Column, predictions: Column, probabilities: Column | None = None) -> None:
        """Add one chunk: labels as read from the table, the core's predictions and (for
        classifiers with ``predict_proba``) its probabilities: P(classes[1]) for binary, a list
        in class order for multiclass."""
        labels = as_series(labels)
        predictions = as_series(predictions)
        size = len(labels)
        if len(predictions) != size:
            raise InputError(
                f"model '{self.signature.name}': {size} labels but {len(predictions)} predictions",
                model=self.signature.name,
            )
        label_null = _nulls(labels)
        predicted_null = _nulls(predictions)
        self.rows += size
        self.null_labels += int(label_null.sum())
        self.null_predictions += int(predicted_null.sum())
        truth = self._labels(labels, label_null)
        keep = ~label_null & ~predicted_null
        if self.classifier:
            unknown = keep & (truth < 0)
            if unknown.any():
                self._count_unknown(labels[unknown])
            keep &= truth >= 0
            predicted = self._predictions(predictions, keep)
            self._truth.append(truth[keep].astype(np.int32))
            self._predicted.append(predicted)
            if probabilities is None:
                self._no_proba = True
            elif self.with_proba:
                self._proba.append(self._probabilities(as_series(probabilities), keep))
        else:
            values = predictions.to_numpy(dtype=object)[keep]
            self._truth.append(truth[keep])
            self._predicted.append(np.asarray(values, dtype=np.float64))

    def _labels(self, labels: pd.Series, null: np.ndarray) -> np.ndarray:
        """Labels as class codes (-1: not a class, or NULL), or as doubles for a regressor."""
        model, column = self.signature.name, self.label_column
        if null.all():
            return np.full(len(labels), -1 if self.classifier else np.nan)
        kind = _kind(labels, null)
        if kind not in _ACCEPTED[self.label_type]:
            what = f"classes {[class_text(c) for c in self.classes]}" if self.classifier else ""
            raise InputError(
                f"model '{model}': label column '{column}' holds {_KIND_NAMES.get(kind, kind)}, "
                f"which cannot be matched to the model's {self.label_type} "
                f"{what or 'predictions'}: cast the column to {self.label_type}",
                model=model,
                column=column,
                expected=self.label_type,
            )
        try:
            values, _ = coerce(model, Feature(column, self.label_type), labels)
        except InputError as exc:
            raise InputError(
                f"model '{model}': label column '{column}' cannot be matched to the model's "
                f"{self.label_type} {'classes' if self.classifier else 'predictions'}: "
                f"{exc.message}",
                model=model,
                column=column,
                expected=self.label_type,
            ) from exc
        if not self.classifier:
            return np.where(null, np.nan, np.asarray(values, dtype=np.float64))
        return self._codes(values, null)

    def _codes(self, values: np.ndarray, null: np.ndarray) -> np.ndarray:
        codes = np.full(len(values), -1, dtype=np.int64)
        present = np.asarray(values)[~null]
        if self.label_type == "bigint":
            present = present.astype(np.int64)  # a float64 column only where there were NULLs
            index = pd.Index(np.asarray(self.classes, dtype=np.int64))
        else:
            present = present.astype(object)
            index = pd.Index(self.classes, dtype=object)
        codes[~null] = index.get_indexer(present)
        return codes

    def _predictions(self, predictions: pd.Series, keep: np.ndarray) -> np.ndarray:
        values, _ = coerce(
            self.signature.name, Feature("prediction", self.label_type), predictions[keep]
        )
        codes = self._codes(values, np.zeros(len(values), dtype=bool))
        if (codes < 0).any():
            raise ScoringError(
                f"model '{self.signature.name}' predicted a label that is not one of its classes",
                model=self.signature.name,
            )
        return codes.astype(np.int32)

    def _probabilities(self, probabilities: pd.Series, keep: np.ndarray) -> np.ndarray:
        kept = probabilities[keep]
        if self.signature.task == "binary":
            positive = kept.to_numpy(dtype=np.float64, na_value=np.nan)
            return np.column_stack([1.0 - positive, positive])
        rows = [np.asarray(p, dtype=np.float64) for p in kept.tolist()]
        return np.vstack(rows) if rows else np.empty((0, len(self.classes)))

    def _count_unknown(self, values: pd.Series) -> None:
        self.unknown += len(values)
        for value, count in values.map(class_text).value_counts().items():
            if value in self.unknown_values or len(self.unknown_values) < _UNKNOWN_VALUES_KEPT:
                self.unknown_values[value] += int(count)

    # ---------------------------------------------------------------------------- output

    def metrics(self) -> list[tuple[str, float | None]]:
        """The ``(metric, value)`` rows (see the module's docstring); NULL is None."""
        truth = np.concatenate(self._truth) if self._truth else np.empty(0)
        predicted = np.concatenate(self._predicted) if self._predicted else np.empty(0)
        counts: list[tuple[str, float | None]] = [
            ("rows", float(self.rows)),
            ("null_labels", float(self.null_labels)),
            ("null_predictions", float(self.null_predictions)),
        ]
        if not self.classifier:
            counts.append(("evaluated", float(len(truth))))
            return counts + _regression(truth, predicted)
        if self.unknown and len(truth) == 0:
            examples = ", ".join(repr(v) for v, _ in self.unknown_values.most_common(3))
            raise InputError(
                f"model '{self.signature.name}': none of the labels in column "
                f"'{self.label_column}' is one of the model's classes "
                f"{[class_text(c) for c in self.classes]} (e.g. {examples}): is it the right "
                "column?",
                model=self.signature.name,
                column=self.label_column,
            )
        counts.append(("unknown_labels", float(self.unknown)))
        counts += [
            (f"unknown_label[value={value}]", float(count))
            for value, count in self.unknown_values.most_common(UNKNOWN_VALUES_SHOWN)
        ]
        counts.append(("evaluated", float(len(truth))))
        proba = None
        if self.with_proba and not self._no_proba:
            proba = np.concatenate(self._proba) if self._proba else np.empty((0, len(self.classes)))
        return counts + _classification(self.signature, self.classes, truth, predicted, proba)


def _value(compute: Any, *args: Any, **kwargs: Any) -> float | None:
    """A metric's value as a float; None (NULL) where sklearn says it is undefined."""
    try:
        value = float(compute(*args, **kwargs))
    except ValueError:  # e.g. ROC AUC with one class among the labels
        return None
    return None if np.isnan(value) else value


def _classification(
    signature: Signature,
    classes: list[Any],
    truth: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray | None,
) -> list[tuple[str, float | None]]:
    import warnings

    from sklearn import metrics

    codes = list(range(len(classes)))
    binary = signature.task == "binary"
    averaging = {"pos_label": 1, "average": "binary"} if binary else {"average": "macro"}
    names = ["accuracy", "precision", "recall", "f1"]
    if not len(truth):
        out: list[tuple[str, float | None]] = [(n, None) for n in names]
        out += [(n, None) for n in ("log_loss", "roc_auc") if proba is not None]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined metrics come back as NULL or 0, as said
            out = [
                ("accuracy", _value(metrics.accuracy_score, truth, predicted)),
                *(
                    (name, _value(f, truth, predicted, labels=codes, zero_division=0, **averaging))
                    for name, f in (
                        ("precision", metrics.precision_score),
                        ("recall", metrics.recall_score),
                        ("f1", metrics.f1_score),
                    )
                ),
            ]
            if proba is not None:
                out.append(("log_loss", _value(metrics.log_loss, truth, proba, labels=codes)))
                if binary:
                    out.append(("roc_auc", _value(metrics.roc_auc_score, truth, proba[:, 1])))
                else:
                    roc = _value(
                        metrics.roc_auc_score,
                        truth,
                        proba,
                        multi_class="ovr",
                        average="macro",
                        labels=codes,
                    )
                    out.append(("roc_auc", roc))
    if len(truth):
        matrix = metrics.confusion_matrix(truth, predicted, labels=codes)
    else:  # sklearn refuses empty input; no row is a matrix of zeros
        matrix = np.zeros((len(codes), len(codes)), dtype=np.int64)
    texts = [class_text(c) for c in classes]
    for i, actual in enumerate(texts):
        for j, guess in enumerate(texts):
            out.append((f"confusion[actual={actual},predicted={guess}]", float(matrix[i, j])))
    return out


def _regression(truth: np.ndarray, predicted: np.ndarray) -> list[tuple[str, float | None]]:
    import warnings

    from sklearn import metrics

    if not len(truth):
        return [("rmse", None), ("mae", None), ("r2", None)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R² of one row: NaN, reported as NULL
        return [
            ("rmse", _value(metrics.root_mean_squared_error, truth, predicted)),
            ("mae", _value(metrics.mean_absolute_error, truth, predicted)),
            ("r2", _value(metrics.r2_score, truth, predicted)),
        ]


def evaluate(
    signature: Signature,
    labels: Column,
    predictions: Column,
    probabilities: Column | None = None,
    label_column: str = "label",
) -> list[tuple[str, float | None]]:
    """The ``(metric, value)`` rows for one batch of labels and the core's predictions.

    >>> evaluate(signature, [0, 1, None], [0, 1, 1], [0.2, 0.9, 0.6])  # doctest: +SKIP
    [('rows', 3.0), ('null_labels', 1.0), ...]
    """
    evaluation = Evaluation(signature, label_column)
    evaluation.add(labels, predictions, probabilities)
    return evaluation.metrics()
