import json
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn

import udfs
from tests.fixtures.models import ACCEPTS_MISSING, FEATURES, expected, scoring_rows
from udfs.errors import IntegrityError, ModelNotFoundError, VersionMismatchError
from udfs.store import list_models, model_names, resolve


def _nullable(series: pd.Series) -> list:
    return [None if v is pd.NA or v is None else v for v in series.tolist()]


@pytest.mark.parametrize("name", ["spend", "churn", "segment", "plain"])
def test_round_trip_predict_is_exact(model_store, trained, name):
    rows = scoring_rows()
    bundle = udfs.load_model(name, store=model_store)
    assert _nullable(bundle.predict(rows)) == expected(trained[name], rows)


@pytest.mark.parametrize("name", ["churn", "segment"])
def test_round_trip_proba_within_1e12(model_store, trained, name):
    rows = scoring_rows()
    got = _nullable(udfs.load_model(name, store=model_store).predict_proba(rows))
    want = expected(trained[name], rows, "predict_proba")
    assert [g is None for g in got] == [w is None for w in want]
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if w is not None]
    np.testing.assert_allclose([p[0] for p in pairs], [p[1] for p in pairs], rtol=0, atol=1e-12)


def test_signature_is_inferred(model_store):
    churn = udfs.load_model("churn", store=model_store).signature
    assert [(f.name, f.type) for f in churn.features] == [
        ("age", "double"),
        ("tenure", "bigint"),
        ("plan", "string"),
        ("active", "boolean"),
    ]
    assert churn.task == "binary" and churn.classes == (0, 1) and churn.label_type == "bigint"
    segment = udfs.load_model("segment", store=model_store).signature
    assert segment.task == "multiclass" and segment.label_type == "string"
    assert segment.classes == ("core", "key", "loyal")
    spend = udfs.load_model("spend", store=model_store).signature
    assert spend.task == "regression" and not spend.has_proba
    plain = udfs.load_model("plain", store=model_store).signature
    assert plain.input_kind == "array" and plain.feature_names == ["age", "tenure"]
    for sig in (churn, segment, spend, plain):
        missing = {f.name for f in sig.features if f.accepts_missing}
        assert missing == ACCEPTS_MISSING[sig.name]
        assert sig.libraries["scikit-learn"] == sklearn.__version__
        assert len(sig.sha256) == 64 and sig.version == 1


def test_numpy_model_gets_f_names(tmp_path, trained):
    t = trained["plain"]
    udfs.save_model(t.model, "plain", sample=t.train[["age", "tenure"]].to_numpy(), store=tmp_path)
    assert udfs.load_model("plain", store=tmp_path).signature.feature_names == ["f0", "f1"]


def test_versions_increase_and_list(tmp_path, trained):
    t = trained["churn"]
    refs = [
        udfs.save_model(t.model, "churn", sample=t.train[FEATURES], store=tmp_path)
        for _ in range(3)
    ]
    assert [r.version for r in refs] == [1, 2, 3]
    assert resolve("churn", store=tmp_path).version == 3
    assert udfs.load_model("churn", 2, store=tmp_path).signature.version == 2
    assert [str(r) for r in list_models(tmp_path)] == ["churn@1", "churn@2", "churn@3"]
    assert model_names(tmp_path) == ["churn"]


def test_tampered_artifact_is_refused_before_unpickling(tmp_path, trained):
    t = trained["churn"]
    ref = udfs.save_model(t.model, "churn", sample=t.train[FEATURES], store=tmp_path)
    data = bytearray(ref.artifact_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ref.artifact_path.write_bytes(bytes(data))
    with pytest.raises(
        IntegrityError, match=r"model 'churn' v1: artifact sha256 is [0-9a-f]{64}, expected"
    ):
        udfs.load_model("churn", store=tmp_path)


def _rewrite_sklearn_version(ref, version: str) -> None:
    sig = json.loads((ref.path / "model.json").read_text())
    sig["libraries"]["scikit-learn"] = version
    (ref.path / "model.json").write_text(json.dumps(sig))


def test_other_minor_sklearn_version_is_refused(tmp_path, trained, monkeypatch):
    t = trained["churn"]
    ref = udfs.save_model(t.model, "churn", sample=t.train[FEATURES], store=tmp_path)
    _rewrite_sklearn_version(ref, "1.2.0")
    with pytest.raises(
        VersionMismatchError, match=r"saved with scikit-learn 1\.2\.0, but .* is installed"
    ):
        udfs.load_model("churn", store=tmp_path)
    monkeypatch.setenv("UDFS_ALLOW_VERSION_MISMATCH", "1")
    with pytest.warns(udfs.errors.VersionMismatchWarning, match="loading it anyway"):
        udfs.load_model("churn", store=tmp_path)


def test_other_patch_sklearn_version_warns(tmp_path, trained):
    t = trained["churn"]
    ref = udfs.save_model(t.model, "churn", sample=t.train[FEATURES], store=tmp_path)
    major, minor = sklearn.__version__.split(".")[:2]
    _rewrite_sklearn_version(ref, f"{major}.{minor}.999")
    with pytest.warns(udfs.errors.VersionMismatchWarning, match=rf"{major}\.{minor}\.999"):
        bundle = udfs.load_model("churn", store=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle.predict(scoring_rows())


def test_unknown_model_suggests_closest(model_store):
    with pytest.raises(ModelNotFoundError, match=r"no model named 'chrun'.*Did you mean 'churn'"):
        udfs.load_model("chrun", store=model_store)


def test_unknown_version(model_store):
    with pytest.raises(
        ModelNotFoundError, match=r"model 'churn' has no version 9; saved versions: \[1\]"
    ):
        udfs.load_model("churn", 9, store=model_store)


def test_bad_name_refused_on_save(tmp_path, trained):
    t = trained["churn"]
    with pytest.raises(udfs.InvalidNameError, match="invalid model name 'Churn-2'"):
        udfs.save_model(t.model, "Churn-2", sample=t.train[FEATURES], store=tmp_path)
