"""udfs.fastpath: one row at a time, with exactly the core's results and NULL policy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

import udfs
from udfs.fastpath import RowScorer

rng = np.random.default_rng(3)
X = rng.normal(size=(300, 4))
NAMES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def bundle(request, tmp_path_factory):
    if request.param == "regression":
        model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, X[:, 0] * 3)
    else:
        k = 2 if request.param == "binary" else 3
        y = np.digitize(
            X[:, 0] + X[:, 1], np.quantile(X[:, 0] + X[:, 1], [0.5] if k == 2 else [0.33, 0.66])
        )
        model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    store = tmp_path_factory.mktemp("fast")
    udfs.save_model(model, "m", sample=X, store=store, feature_names=NAMES)
    return udfs.load_model("m", store=store)


def test_lean_path_equals_scikit_learn_row_by_row(bundle) -> None:
    scorer = RowScorer(bundle.scorer, bundle.signature)
    assert scorer.lean  # the model has a plan
    rows = X[:50]
    got = [scorer.predict(r) for r in rows.tolist()]
    assert got == [bundle.model.predict(r.reshape(1, -1))[0].item() for r in rows]
    if bundle.signature.has_proba:
        probas = [scorer.predict_proba(r) for r in rows.tolist()]
        want = [bundle.model.predict_proba(r.reshape(1, -1))[0] for r in rows]
        if bundle.signature.task == "binary":
            assert probas == [float(p[1]) for p in want]
        else:
            assert probas == [p.tolist() for p in want]
    assert scorer.lean  # the first-row check agreed


def test_pipeline_rows_with_every_type_and_nulls(trained, model_store) -> None:
    """Strings, booleans, bigints and NULLs through the plan, one row at a time."""
    from tests.fixtures.models import ACCEPTS_MISSING, FEATURES, as_records, expected, scoring_rows

    for name in ("churn", "segment", "spend"):
        bundle = udfs.load_model(name, store=model_store)
        scorer = RowScorer(bundle.scorer, bundle.signature)
        assert scorer.lean
        rows = scoring_rows()
        records = [r[1:] for r in as_records(rows)]
        for i, record in enumerate(records):
            # One row at a time, as scikit-learn itself would score it (BLAS sums a one-row
            # batch in another order than a large one).
            row = rows.iloc[[i]].reset_index(drop=True)
            blocked = [c for c in FEATURES if c not in ACCEPTS_MISSING[name]]
            want = None if row[blocked].isna().any(axis=None) else expected(trained[name], row)[0]
            assert scorer.predict(list(record)) == want, (name, record)
        assert scorer.lean


def test_null_and_infinity_follow_the_core(bundle) -> None:
    scorer = RowScorer(bundle.scorer, bundle.signature)
    assert scorer.predict([None, 1.0, 2.0, 3.0]) is None
    assert scorer.predict([float("nan"), 1.0, 2.0, 3.0]) is None
    with pytest.raises(udfs.ScoringError, match="column 'a' has the value inf"):
        scorer.predict([float("inf"), 1.0, 2.0, 3.0])
    with pytest.raises(udfs.InputError, match="takes 4 features"):
        scorer.predict([1.0])
