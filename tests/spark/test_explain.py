"""<name>_explain in Spark SQL: the core's numbers exactly, in one query for four models."""

from __future__ import annotations

import json

import numpy as np
import pytest

import udfs
from tests.fixtures.explain import explain_models, generated_rows
from tests.fixtures.models import as_records
from tests.fixtures.spark import ARGS, FEATURE_SCHEMA
from udfs.demo.data import FEATURES
from udfs.explain import DATA_FILE, NoExactExplainerError, explainer, save_time_data
from udfs.spark.explain import register_explain

pytestmark = pytest.mark.spark
NAMES = ("xforest", "xboost", "xlogit", "xridge")


@pytest.fixture(scope="module")
def explained(spark, trained, tmp_path_factory):
    store = tmp_path_factory.mktemp("explain_store")
    made = {}
    for name, t in explain_models(trained).items():
        ref = udfs.save_model(t.model, name, sample=t.train[FEATURES], store=store)
        data = json.loads((ref.path / DATA_FILE).read_text())  # written by save_model
        assert data == save_time_data(t.model, ref.signature(), t.train[FEATURES])
        assert register_explain(spark, name, store=store) == [f"{name}_explain"]
        made[name] = explainer(t.model, ref.signature(), data)
    rows = generated_rows()
    rows.insert(0, "id", np.arange(1, len(rows) + 1))
    spark.createDataFrame(as_records(rows), FEATURE_SCHEMA).createOrReplaceTempView("people")
    return made, rows, store


def test_explain_equals_the_core_exactly(spark, explained):
    made, rows, _ = explained
    selects = ", ".join(f"{n}_explain({ARGS}) AS {n}" for n in NAMES)
    got = {r["id"]: r for r in spark.sql(f"SELECT id, {selects} FROM people").collect()}
    for name in NAMES:
        expected = made[name].records([rows[f] for f in FEATURES])
        raw = made[name].raw_output([rows[f] for f in FEATURES])
        for i, want, output in zip(rows["id"].tolist(), expected, raw.tolist(), strict=True):
            value = got[i][name]
            if want is None:
                assert value is None
                continue
            assert value["base_value"] == want["base_value"]
            assert dict(value["contributions"]) == want["contributions"]
            total = value["base_value"] + sum(dict(value["contributions"]).values())
            assert total == pytest.approx(output, abs=1e-9, rel=0)


def test_a_model_without_an_exact_explainer_is_refused_at_registration(spark, model_store):
    with pytest.raises(NoExactExplainerError, match="'segment' \\(RandomForestClassifier\\)"):
        register_explain(spark, "segment", store=model_store)


def test_explain_on_spark_connect(connect, explained):
    """The pickled estimator travels inside the UDF: no SparkContext."""
    made, rows, store = explained
    assert register_explain(connect, "xlogit", store=store) == ["xlogit_explain"]
    few = rows.iloc[-30:]
    connect.createDataFrame(as_records(few), FEATURE_SCHEMA).createOrReplaceTempView("people")
    got = connect.sql(f"SELECT id, xlogit_explain({ARGS}) AS e FROM people ORDER BY id").collect()
    expected = made["xlogit"].records([few[f] for f in FEATURES])
    values = [None if r["e"] is None else r["e"].asDict() for r in got]
    assert [
        v if v is None else {**v, "contributions": dict(v["contributions"])} for v in values
    ] == expected
    assert None in expected
