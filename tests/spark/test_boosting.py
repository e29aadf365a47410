"""XGBoost and LightGBM models as Spark SQL functions: exactly the libraries' scores."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from tests.fixtures.boosting import (
    CLASSIFIERS,
    SPECS,
    library_input,
    save_all,
    scoring_frame,
)
from tests.fixtures.models import as_records
from tests.fixtures.spark import FEATURE_SCHEMA
from udfs import spark as udfs_spark

pytestmark = pytest.mark.spark
NAMES = list(SPECS)


@pytest.fixture(scope="module")
def registered(spark, boosted, tmp_path_factory):
    """The models registered into the session under their own (unique) names; two views."""
    store = tmp_path_factory.mktemp("boosting-spark")
    save_all(boosted, store)
    functions = [fn for name in NAMES for fn in udfs_spark.register(spark, name, store=store)]
    assert sorted(functions) == sorted(NAMES + [f"{n}_proba" for n in CLASSIFIERS])
    for view, extremes in (("bx_rows", True), ("bx_rows_finite", False)):
        rows = scoring_frame(extremes=extremes)
        frame = spark.createDataFrame(as_records(rows), FEATURE_SCHEMA)
        frame.createOrReplaceTempView(view)
    return spark


def _view(name: str) -> str:
    return "bx_rows" if SPECS[name][3] is None else "bx_rows_finite"


@pytest.mark.parametrize("name", NAMES)
def test_spark_sql_equals_the_library(registered, boosted, name):
    spark = registered
    m = boosted[name]
    rows = scoring_frame(extremes=SPECS[name][3] is None)
    X = library_input(m, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = np.asarray(m.model.predict(X)).tolist()
        proba = m.model.predict_proba(X)[:, 1].tolist() if name in CLASSIFIERS else None
    args = ", ".join(SPECS[name][1])
    label_type = LongType() if name in CLASSIFIERS else DoubleType()
    columns = [StructField("id", LongType()), StructField("prediction", label_type)]
    values = [rows["id"].tolist(), labels]
    select = f"SELECT id, {name}({args}) AS prediction"
    if proba is not None:
        columns.append(StructField("probability", DoubleType()))
        values.append(proba)
        select += f", {name}_proba({args}) AS probability"
    got = spark.sql(f"{select} FROM {_view(name)}")
    want = spark.createDataFrame(list(zip(*values, strict=True)), StructType(columns))
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    assert not pd.isna(labels).any()
