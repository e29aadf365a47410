"""udfs.fastpath: one row at a time, with exactly the core's results and NULL policy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

import udfs
from udfs import scoring
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


def test_lean_path_equals_the_core(bundle) -> None:
    scorer = RowScorer(bundle.model, bundle.signature)
    assert scorer.lean
    rows = X[:50].tolist()
    got = [scorer.predict(r) for r in rows]
    want = scoring.predict(bundle.model, bundle.signature, [X[:50, i] for i in range(4)])
    assert got == [w.item() if hasattr(w, "item") else w for w in want]
    if bundle.signature.has_proba:
        probas = [scorer.predict_proba(r) for r in rows]
        batch = scoring.predict_proba(bundle.model, bundle.signature, [X[:50, i] for i in range(4)])
        flat = np.ravel(np.asarray(probas, dtype=float))
        assert flat == pytest.approx(np.ravel(np.asarray(batch.tolist(), dtype=float)), abs=1e-12)
    assert scorer.lean  # the first-row check agreed


def test_null_and_infinity_follow_the_core(bundle) -> None:
    scorer = RowScorer(bundle.model, bundle.signature)
    assert scorer.predict([None, 1.0, 2.0, 3.0]) is None
    assert scorer.predict([float("nan"), 1.0, 2.0, 3.0]) is None
    with pytest.raises(udfs.ScoringError, match="column 'a' has the value inf"):
        scorer.predict([float("inf"), 1.0, 2.0, 3.0])
    with pytest.raises(udfs.InputError, match="takes 4 features"):
        scorer.predict([1.0])
