"""Plans in the store: compiled and verified at save, made for older versions, checked at load."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

import udfs
from udfs.errors import IntegrityError
from udfs.store import ensure_plan, resolve

X = pd.DataFrame({"age": np.linspace(18, 80, 120), "tenure": np.arange(120) % 30})


def test_every_test_model_takes_the_plan_path(model_store) -> None:
    for name in ("churn", "segment", "spend", "plain"):
        bundle = udfs.load_model(name, store=model_store)
        assert bundle.signature.scoring_path() == "plan"
        assert type(bundle.scorer).__name__ == "PlanRunner"


def test_a_dataframe_fitted_tree_model_gets_a_plan(tmp_path) -> None:
    """Compiling probes with arrays: scikit-learn's feature-name warning must not cost the plan."""
    model = GradientBoostingClassifier(n_estimators=5).fit(X, np.arange(120) % 2)
    ref = udfs.save_model(model, "gbc", sample=X, store=tmp_path)
    assert ref.signature().scoring_path() == "plan"
    assert udfs.load_model("gbc", store=tmp_path).predict(X).tolist() == model.predict(X).tolist()


def test_a_model_without_plan_says_which_step_and_runs_through_scikit_learn(tmp_path) -> None:
    model = make_pipeline(StandardScaler(), SVR()).fit(X, X["age"])
    ref = udfs.save_model(model, "svr", sample=X, store=tmp_path)
    path = ref.signature().scoring_path()
    assert path.startswith("sklearn: ") and "SVR" in path
    bundle = udfs.load_model("svr", store=tmp_path)
    assert bundle.plan is None and bundle.scorer is bundle.model
    assert bundle.predict(X).tolist() == model.predict(X).tolist()


def test_older_versions_get_their_plan_once(model_store, tmp_path) -> None:
    store = tmp_path / "store"
    version = store / "churn" / "1"
    version.mkdir(parents=True)
    for name in ("model.joblib", "model.json"):
        (version / name).write_bytes((model_store / "churn" / "1" / name).read_bytes())
    signature = json.loads((version / "model.json").read_text())
    signature.pop("plan")
    (version / "model.json").write_text(json.dumps(signature))
    ref = resolve("churn", store=store)
    assert ref.signature().scoring_path() == "sklearn: saved before scoring plans existed"
    assert ensure_plan(ref).scoring_path() == "plan"
    assert (version / "plan.npz").is_file()
    assert ensure_plan(ref).plan_sha256 == ref.signature().plan_sha256  # not compiled again


def test_a_tampered_plan_is_refused_at_load(model_store, tmp_path) -> None:
    store = tmp_path / "store"
    version = store / "churn" / "1"
    version.mkdir(parents=True)
    for name in ("model.joblib", "model.json", "plan.json", "plan.npz"):
        (version / name).write_bytes((model_store / "churn" / "1" / name).read_bytes())
    other = model_store / "spend" / "1"
    for name in ("plan.json", "plan.npz"):  # a valid plan, of another model
        (version / name).write_bytes((other / name).read_bytes())
    with pytest.raises(IntegrityError, match=r"scoring plan sha256 is .* refusing"):
        udfs.load_model("churn", store=store)


def test_spark_workers_import_neither_sklearn_nor_joblib():
    """A Spark Python worker unpickles the UDF (udfs.spark.udf) and loads a plan through the
    cache: neither may import scikit-learn or joblib (~2 s per new worker)."""
    script = (
        "import sys\n"
        "import udfs.spark, udfs.spark.udf, udfs.spark.cache\n"
        "print(sorted(m for m in ('sklearn', 'joblib') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
