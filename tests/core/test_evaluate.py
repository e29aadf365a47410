"""udfs.evaluate: metrics equal to sklearn.metrics on the same rows, NULLs counted, labels
matched to the classes by type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.linear_model import LogisticRegression

import udfs
from tests.fixtures.models import Trained, expected
from udfs.demo.data import FEATURES, customers
from udfs.errors import InputError
from udfs.evaluate import Evaluation, class_text, evaluate
from udfs.fastpath import BatchScorer
from udfs.infer_signature import infer_signature

LABELS = {"churn": "churned", "segment": "segment", "spend": "spend"}
# Metrics computed from probabilities or sums: equal to 1e-12 (a binary model's P(classes[0])
# is taken as 1 - P(classes[1])); the others exactly.
APPROX = {"log_loss", "roc_auc", "rmse", "mae", "r2"}


def labelled_rows(n: int = 120, seed: int = 11) -> pd.DataFrame:
    """Customers with their labels, NULLs in features and labels, and an unseen plan."""
    frame = customers(n, seed=seed).astype({"active": object, "churned": object})
    frame.loc[1, "age"] = np.nan
    frame.loc[2, "plan"] = None
    frame.loc[3, "active"] = None  # churn and spend cannot take it: a NULL prediction
    frame.loc[4, "plan"] = "platinum"
    frame.loc[5, ["churned", "segment", "spend"]] = [None, None, np.nan]
    frame.loc[6, ["churned", "segment", "spend", "active"]] = [None, None, np.nan, None]
    frame.loc[7, ["churned", "segment", "spend"]] = [None, None, np.nan]
    return frame


def reference(trained: Trained, rows: pd.DataFrame) -> dict[str, float | None]:
    """sklearn.metrics on the rows with a label and a prediction, straight from the model."""
    model = trained.model
    labels = rows[LABELS[trained.name]]
    predictions = expected(trained, rows)
    keep = labels.notna() & pd.Series([p is not None for p in predictions], index=rows.index)
    y = labels[keep].tolist()
    p = [v for v, k in zip(predictions, keep, strict=True) if k]
    out: dict[str, float | None] = {
        "rows": len(rows),
        "null_labels": int(labels.isna().sum()),
        "null_predictions": sum(v is None for v in predictions),
        "evaluated": len(y),
    }
    if trained.name == "spend":
        out["rmse"] = metrics.root_mean_squared_error(y, p)
        out["mae"] = metrics.mean_absolute_error(y, p)
        out["r2"] = metrics.r2_score(y, p)
        return out
    X = rows.loc[keep, FEATURES].astype(object).where(rows.loc[keep, FEATURES].notna(), np.nan)
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    out["unknown_labels"] = 0
    if len(classes) == 2:
        averaging = {"pos_label": classes[1], "average": "binary"}
        out["roc_auc"] = metrics.roc_auc_score(y, proba[:, 1])
    else:
        averaging = {"labels": classes, "average": "macro"}
        out["roc_auc"] = metrics.roc_auc_score(
            y, proba, multi_class="ovr", average="macro", labels=classes
        )
    out["accuracy"] = metrics.accuracy_score(y, p)
    out["precision"] = metrics.precision_score(y, p, zero_division=0, **averaging)
    out["recall"] = metrics.recall_score(y, p, zero_division=0, **averaging)
    out["f1"] = metrics.f1_score(y, p, zero_division=0, **averaging)
    out["log_loss"] = metrics.log_loss(y, proba, labels=classes)
    matrix = metrics.confusion_matrix(y, p, labels=classes)
    for i, actual in enumerate(classes):
        for j, guess in enumerate(classes):
            name = f"confusion[actual={class_text(actual)},predicted={class_text(guess)}]"
            out[name] = int(matrix[i, j])
    return out


def assert_metrics(got: list[tuple[str, float | None]], wanted: dict[str, float | None]) -> None:
    """Same metric names, every value equal to sklearn's (1e-12 where it sums or uses
    probabilities)."""
    values = dict(got)
    assert len(values) == len(got), "a metric is reported twice"
    assert set(values) == set(wanted)
    for name, want in wanted.items():
        if name in APPROX:
            assert values[name] == pytest.approx(want, rel=1e-12, abs=1e-15), name
        else:
            assert values[name] == want, name
        assert values[name] is None or isinstance(values[name], float)


@pytest.fixture(scope="module")
def bundles(model_store):
    return {name: udfs.load_model(name, store=model_store) for name in LABELS}


def run(bundle, rows: pd.DataFrame, labels, chunk: int = 50) -> list[tuple]:
    """Evaluate as the engines do: chunk by chunk through the batch scorer."""
    evaluation = Evaluation(bundle.signature, "label")
    scorer = BatchScorer(bundle.scorer, bundle.signature)
    labels = pd.Series(labels)
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start : start + chunk]
        evaluation.score(scorer, [part[f] for f in FEATURES], labels.iloc[start : start + chunk])
    return evaluation.metrics()


@pytest.mark.parametrize("name", ["churn", "segment", "spend"])
def test_metrics_equal_sklearn_and_nulls_are_counted(bundles, trained, name: str) -> None:
    rows = labelled_rows()
    got = run(bundles[name], rows, rows[LABELS[name]])
    wanted = reference(trained[name], rows)
    assert_metrics(got, wanted)
    counts = dict(got)
    assert counts["null_labels"] == 3
    assert counts["null_predictions"] == (0 if name == "segment" else 2)
    assert counts["evaluated"] == len(rows) - 3 - (0 if name == "segment" else 1)


def test_binary_label_types_map_to_integer_classes(bundles) -> None:
    rows = labelled_rows()
    labels = rows["churned"]
    baseline = run(bundles["churn"], rows, labels)
    as_text = labels.map(lambda v: None if v is None else f" {v} ")  # read as int8in reads text
    as_double = labels.astype("Float64")
    as_nullable = labels.astype("Int64")
    for other in (as_text, as_double, as_nullable, labels.astype(object)):
        assert run(bundles["churn"], rows, other) == baseline
    with pytest.raises(InputError, match="model 'churn': label column 'label' holds booleans"):
        run(bundles["churn"], rows, labels.map(lambda v: None if v is None else bool(v)))
    with pytest.raises(InputError, match=r"label column 'label'.*not a whole number"):
        run(bundles["churn"], rows, as_double.fillna(0.5))


def test_boolean_classes_take_booleans_and_their_text_only() -> None:
    train = customers(300, seed=3)
    model = LogisticRegression().fit(train[["age", "tenure"]], train["churned"] == 1)
    sig = infer_signature(model, train[["age", "tenure"]], name="flag")
    assert sig.classes == (False, True) and sig.label_type == "boolean"
    truth = [True, False, None, True]
    predicted = pd.Series([True, True, False, pd.NA], dtype="boolean")
    proba = pd.Series([0.9, 0.6, 0.2, pd.NA], dtype="Float64")
    got = dict(evaluate(sig, truth, predicted, proba, label_column="churned"))
    assert got["confusion[actual=true,predicted=true]"] == 1.0
    assert got["confusion[actual=false,predicted=true]"] == 1.0
    assert (got["null_labels"], got["null_predictions"], got["evaluated"]) == (1.0, 1.0, 2.0)
    assert got["accuracy"] == metrics.accuracy_score([True, False], [True, True])
    as_text = dict(evaluate(sig, ["t", "false", None, "yes"], predicted, proba))
    assert as_text == got
    with pytest.raises(InputError, match="model 'flag': label column 'churned' holds numbers"):
        evaluate(sig, [1, 0, None, 1], predicted, proba, label_column="churned")
    with pytest.raises(InputError, match=r"label column 'label'.*boolean.*'maybe'"):
        evaluate(sig, ["true", "maybe", None, "no"], predicted, proba)


def test_text_classes_take_text_and_count_unknown_labels(bundles) -> None:
    rows = labelled_rows()
    labels = rows["segment"].copy()
    labels.iloc[10:13] = ["vip", "vip", "Core"]
    got = dict(run(bundles["segment"], rows, labels))
    assert got["unknown_labels"] == 3.0
    assert got["unknown_label[value=vip]"] == 2.0
    assert got["unknown_label[value=Core]"] == 1.0
    assert got["evaluated"] == len(rows) - 3 - 3
    # The unknown rows are left out of every metric: as if they were not there.
    kept = np.r_[0:10, 13 : len(rows)]
    alone = dict(run(bundles["segment"], rows.iloc[kept], labels.iloc[kept]))
    assert {k: v for k, v in got.items() if not k.startswith(("unknown", "rows"))} == {
        k: v for k, v in alone.items() if not k.startswith(("unknown", "rows"))
    }
    with pytest.raises(InputError, match="model 'segment': label column 'label' holds integers"):
        run(bundles["segment"], rows, pd.Series(np.arange(len(rows))))
    with pytest.raises(InputError, match="none of the labels in column 'label' is one of"):
        run(bundles["segment"], rows, labels.str.upper())


def test_regression_labels_and_undefined_metrics(bundles, trained) -> None:
    rows = labelled_rows()
    spend = rows["spend"]
    as_text = spend.map(lambda v: None if np.isnan(v) else repr(float(v)))
    assert run(bundles["spend"], rows, as_text) == run(bundles["spend"], rows, spend)
    with pytest.raises(InputError, match="model 'spend': label column 'label' holds booleans"):
        run(bundles["spend"], rows, spend.notna())
    # One row: R² is undefined (NULL), RMSE and MAE are not.
    one = dict(run(bundles["spend"], rows.iloc[:1], spend.iloc[:1]))
    assert one["r2"] is None and one["rmse"] == one["mae"]
    # No label at all: counted, and every metric NULL.
    none = dict(run(bundles["churn"], rows, [None] * len(rows)))
    assert none["null_labels"] == len(rows) and none["evaluated"] == 0
    assert none["accuracy"] is None and none["roc_auc"] is None
    assert none["confusion[actual=0,predicted=0]"] == 0.0


def test_roc_auc_is_null_with_one_class_and_missing_probabilities_drop_it(bundles) -> None:
    sig = bundles["churn"].signature
    got = dict(evaluate(sig, [1, 1, 1], [1, 0, 1], [0.9, 0.4, 0.7]))
    assert got["roc_auc"] is None
    assert got["recall"] == metrics.recall_score([1, 1, 1], [1, 0, 1])
    assert got["log_loss"] == pytest.approx(
        metrics.log_loss([1, 1, 1], [[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]], labels=[0, 1])
    )
    without = dict(evaluate(sig, [1, 0, 1], [1, 0, 1]))
    assert "log_loss" not in without and "roc_auc" not in without
    with pytest.raises(InputError, match="3 labels but 2 predictions"):
        evaluate(sig, [1, 0, 1], [1, 0])
