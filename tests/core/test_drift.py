"""Training profiles and drift checks in the core: content, PSI, verdicts, chunks, errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.dummy import DummyClassifier

import udfs
from udfs.cli import cli
from udfs.demo.data import FEATURES, customers
from udfs.drift import COLUMNS, EPSILON, Drift, psi, verdict
from udfs.errors import IntegrityError, ModelNotFoundError, SignatureError
from udfs.profile import PREDICTION, PROFILE
from udfs.store import resolve

SHIFT_YEARS = 15


def drift_rows(n: int = 2000, seed: int = 11, shift: float = SHIFT_YEARS) -> pd.DataFrame:
    """Customers drawn as the training data were, except ``age``, ``shift`` years older."""
    frame = customers(n, seed=seed)
    frame["age"] = frame["age"] + shift
    return frame


def reference(model_store, name: str, rows: pd.DataFrame) -> list[tuple]:
    """The drift rows of ``rows`` computed in-process, in one pass: what every engine must give."""
    bundle = udfs.load_model(name, store=model_store)
    columns = [rows[f] for f in bundle.signature.feature_names]
    drift = Drift(bundle.signature, resolve(name, store=model_store).profile())
    drift.add(columns, bundle.predict(columns))
    return drift.rows()


def verdicts(rows: list[tuple]) -> dict[str, str]:
    return {row[0]: row[-1] for row in rows}


def _copy(model_store, tmp_path, name: str):
    """A private copy of ``name``'s store directory, to break things in."""
    shutil.copytree(model_store / name, tmp_path / name)
    return resolve(name, store=tmp_path)


# ------------------------------------------------------------------------------- profile


def test_profile_is_saved_beside_the_signature_as_plain_json(model_store) -> None:
    ref = resolve("churn", store=model_store)
    raw = json.loads((ref.path / PROFILE).read_text())
    assert raw == ref.profile()
    assert raw["model_sha256"] == ref.sha256 and raw["rows"] == 400
    age, tenure, plan, active = raw["features"]
    assert (age["kind"], tenure["kind"], plan["kind"], active["kind"]) == (
        "numeric",
        "numeric",
        "categorical",
        "categorical",
    )
    # 10 quantile bins: 9 cut points, about a tenth of the rows in each bin
    assert len(age["edges"]) == 9 and age["edges"] == sorted(age["edges"])
    assert all(0.08 <= s <= 0.12 for s in age["shares"])
    assert math.isclose(sum(age["shares"]) + age["missing"], 1.0)
    assert plan["categories"] == ["basic", "pro", "enterprise"]  # most frequent first
    assert plan["seen"] == ["basic", "enterprise", "pro"] and plan["other"] == 0.0
    assert active["categories"] == ["true", "false"]
    # the score: class frequencies of predict for a classifier, quantile bins for a regressor
    prediction = raw["prediction"]
    assert prediction["name"] == PREDICTION and prediction["categories"] == ["0", "1"]
    assert math.isclose(sum(prediction["shares"]), 1.0)
    spend = resolve("spend", store=model_store).profile()["prediction"]
    assert spend["kind"] == "numeric" and len(spend["edges"]) == 9


def test_profile_of_constant_few_valued_wide_and_missing_columns(tmp_path) -> None:
    n = 300
    rng = np.random.default_rng(3)
    sample = pd.DataFrame(
        {
            "flat": np.full(n, 2.5),
            "few": rng.choice([1, 5], n, p=[0.3, 0.7]).astype(np.int64),
            "wide": [f"c{i % 120}" for i in range(n)],
            "holes": np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1, n)),
            "flag": np.array([True, False, None] * 100, dtype=object),
        }
    )
    model = DummyClassifier(strategy="most_frequent").fit(sample, np.arange(n) % 2)
    ref = udfs.save_model(model, "oddities", sample=sample, store=tmp_path, accepts_missing=True)
    flat, few, wide, holes, flag = ref.profile()["features"]
    assert flat["edges"] == [2.5] and flat["shares"] == [1.0, 0.0]
    assert few["edges"] == [1.0, 5.0]  # one bin per value, plus one above
    assert few["shares"] == [
        pytest.approx(float((sample["few"] == 1).mean())),
        pytest.approx(float((sample["few"] == 5).mean())),
        0.0,
    ]
    assert len(wide["categories"]) == 50 and len(wide["seen"]) == 120
    assert wide["other"] == pytest.approx(1 - sum(wide["shares"]))
    assert holes["missing"] == pytest.approx(float(sample["holes"].isna().mean()))
    assert len(holes["edges"]) == 9
    assert flag["missing"] == pytest.approx(1 / 3) and flag["seen"] == ["false", "true"]
    # the sample itself has drifted nowhere
    for row in Drift(ref.signature(), ref.profile()).rows():
        assert row[1] is None  # no rows yet
    drift = Drift(ref.signature(), ref.profile())
    drift.add([sample[c] for c in sample.columns], np.zeros(n, dtype=np.int64))
    assert [r[1] for r in drift.rows()[:-1]] == [0.0] * 5


# ---------------------------------------------------------------------------- PSI, verdict


def test_psi_on_hand_checked_numbers() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-15
    )
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.2746530721670274)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin counts as EPSILON on either side; two empty bins add nothing
    assert EPSILON == 1e-4
    assert psi([1.0, 0.0, 0.0], [0.5, 0.5, 0.0]) == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )


def test_verdicts_at_the_usual_thresholds() -> None:
    assert [verdict(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0, None)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "drifted",
        "drifted",
        None,
    ]


# ------------------------------------------------------------------------------- drift


@pytest.mark.parametrize("name", ["spend", "churn", "segment", "plain"])
def test_only_the_shifted_feature_is_flagged(model_store, name: str) -> None:
    same = verdicts(reference(model_store, name, drift_rows(shift=0)))
    shifted = reference(model_store, name, drift_rows())
    assert [r[0] for r in shifted][-1] == PREDICTION
    assert set(same.values()) == {"stable"}, same
    flagged = {f for f, v in verdicts(shifted).items() if v != "stable"}
    assert flagged - {PREDICTION} == {"age"}
    assert verdicts(shifted)["age"] == "drifted"


def test_training_sample_has_no_drift(model_store, trained) -> None:
    rows = reference(model_store, "churn", trained["churn"].train)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (f, 0.0, 0.0, 0.0, 0) for f in [*FEATURES, PREDICTION]
    ]


def test_missing_values_and_unseen_categories(model_store) -> None:
    rows = drift_rows(200, shift=0).astype({"active": object})
    rows.loc[:9, "plan"] = "platinum"  # never seen in training
    rows.loc[10:14, "plan"] = None
    rows.loc[15:34, "age"] = np.nan
    rows.loc[35:38, "active"] = None
    got = {r[0]: r for r in reference(model_store, "churn", rows)}
    assert got["plan"][2:5] == (pytest.approx(5 / 200), 0.0, 10)
    assert got["age"][2:5] == (pytest.approx(20 / 200), 0.0, 0)
    assert got["active"][2:5] == (pytest.approx(4 / 200), 0.0, 0)
    assert got[PREDICTION][4] == 0
    # plain has no imputer: a NULL age is a NULL prediction
    plain = {r[0]: r for r in reference(model_store, "plain", rows)}
    assert plain[PREDICTION][2] == pytest.approx(20 / 200)


def test_chunks_and_partial_counts_add_up_to_one_pass(model_store) -> None:
    rows = drift_rows(1000)
    bundle = udfs.load_model("segment", store=model_store)
    profile = resolve("segment", store=model_store).profile()
    whole = reference(model_store, "segment", rows)
    chunked = Drift(bundle.signature, profile)
    merged = Drift(bundle.signature, profile)
    for part in np.array_split(np.arange(len(rows)), 7):
        chunk = rows.iloc[part]
        columns = [chunk[f] for f in bundle.signature.feature_names]
        chunked.add(columns, bundle.predict(columns))
        partial = Drift(bundle.signature, profile)
        partial.add(columns, bundle.predict(columns))
        merged.merge(partial.state())
    assert chunked.rows() == whole
    assert merged.rows() == whole
    assert len(COLUMNS) == len(whole[0])


def test_text_values_are_read_as_scoring_reads_them(model_store) -> None:
    rows = drift_rows(300)
    as_text = rows.astype({"age": str, "tenure": str, "active": str})
    assert reference(model_store, "churn", as_text) == reference(model_store, "churn", rows)


def test_an_empty_table_has_no_shares(model_store) -> None:
    rows = reference(model_store, "spend", drift_rows(0))
    assert [r[1:3] + r[5:] for r in rows] == [(None, None, None)] * 5


# ------------------------------------------------------------------------------ errors


def test_a_version_saved_before_profiles_says_to_resave(model_store, tmp_path) -> None:
    ref = _copy(model_store, tmp_path, "churn")
    (ref.path / PROFILE).unlink()
    with pytest.raises(
        ModelNotFoundError,
        match=r"model 'churn' v1 has no training profile.*"
        r"Re-save it with udfs.save_model\(model, 'churn', sample=",
    ):
        ref.profile()
    # predict never reads it
    assert len(udfs.load_model("churn", store=tmp_path).predict(drift_rows(5))) == 5
    result = CliRunner().invoke(
        cli, ["models", "drift", "churn", "--table", "t", "--store", str(tmp_path)]
    )
    # before any Spark session starts (udfs.cli.main prints it as one line)
    assert isinstance(result.exception, ModelNotFoundError)
    assert "has no training profile" in str(result.exception)


def test_a_profile_of_another_model_or_malformed_is_refused(model_store, tmp_path) -> None:
    ref = _copy(model_store, tmp_path, "churn")
    path = ref.path / PROFILE
    profile = json.loads(path.read_text())
    path.write_text(json.dumps({**profile, "model_sha256": "0" * 64}))
    with pytest.raises(IntegrityError, match="belongs to another model"):
        ref.profile()
    path.write_text(json.dumps({**profile, "features": profile["features"][:2]}))
    with pytest.raises(IntegrityError, match="describes features"):
        ref.profile()
    path.write_text("{not json")
    with pytest.raises(SignatureError, match="malformed training profile"):
        ref.profile()
    # predict never reads it
    assert len(udfs.load_model("churn", store=tmp_path).predict(drift_rows(5))) == 5
