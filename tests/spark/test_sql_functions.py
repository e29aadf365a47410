import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.errors import PythonException
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from tests.fixtures.models import as_records, expected, scoring_rows
from tests.fixtures.spark import ARGS, FEATURE_SCHEMA
from udfs import spark as udfs_spark
from udfs.errors import InputError, ModelNotFoundError
from udfs.spark.script import run_script

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def rows():
    return scoring_rows()


@pytest.fixture(scope="module")
def customers(spark, rows):
    frame = spark.createDataFrame(as_records(rows), FEATURE_SCHEMA)
    frame.createOrReplaceTempView("customers")
    return frame


def _expected_frame(spark, rows, values, dtype):
    schema = StructType([StructField("id", LongType()), StructField("score", dtype)])
    return spark.createDataFrame(list(zip(rows["id"].tolist(), values, strict=True)), schema)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("spend", DoubleType()), ("churn", LongType()), ("segment", StringType())],
)
def test_predict_equals_sklearn(spark, customers, rows, trained, name, dtype):
    got = spark.sql(f"SELECT id, {name}({ARGS}) AS score FROM customers")
    want = _expected_frame(spark, rows, expected(trained[name], rows), dtype)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("churn", DoubleType()), ("segment", ArrayType(DoubleType(), containsNull=False))],
)
def test_proba_equals_sklearn_within_1e12(spark, customers, rows, trained, name, dtype):
    got = spark.sql(f"SELECT id, {name}_proba({ARGS}) AS score FROM customers")
    assert got.schema["score"].dataType == dtype
    want = expected(trained[name], rows, "predict_proba")
    if name == "churn":
        assert_approx_df_equality(
            got,
            _expected_frame(spark, rows, want, dtype),
            1e-12,
            ignore_row_order=True,
            ignore_nullable=True,
        )
        return
    by_id = {r["id"]: r["score"] for r in got.collect()}
    for row_id, probabilities in zip(rows["id"], want, strict=True):
        if probabilities is None:
            assert by_id[row_id] is None
        else:
            np.testing.assert_allclose(by_id[row_id], probabilities, rtol=0, atol=1e-12)


def test_null_policy_and_unseen_category(spark, customers):
    got = {
        r["id"]: r
        for r in spark.sql(
            f"SELECT id, churn({ARGS}) AS c, spend({ARGS}) AS s FROM customers"
        ).collect()
    }
    assert got[5]["c"] is None and got[5]["s"] is None  # active NULL: no imputer for it
    assert got[2]["c"] is not None  # age NULL: imputed
    assert got[7]["c"] is not None  # plan 'platinum': OneHotEncoder ignores it


def test_register_returns_function_names(spark, model_store):
    assert udfs_spark.register(spark, "churn", store=model_store) == ["churn", "churn_proba"]
    assert udfs_spark.register(spark, "spend", 1, store=model_store) == ["spend"]


def test_unknown_model_suggests(spark, model_store):
    with pytest.raises(ModelNotFoundError, match=r"no model named 'chrun'.*Did you mean 'churn'\?"):
        udfs_spark.register(spark, "chrun", store=model_store)


def test_unknown_function_in_sql_suggests(spark, customers):
    with pytest.raises(
        ModelNotFoundError, match=r"no SQL function 'chrun' is registered\. Did you mean 'churn'\?"
    ):
        run_script(
            spark, f"SELECT chrun({ARGS}) FROM customers", ["churn", "spend"], echo=lambda _: None
        )


def test_wrong_arity_names_model_and_counts(spark, customers):
    query = "SELECT churn(age, tenure, plan) FROM customers"
    with pytest.raises(
        PythonException, match=r"model 'churn' takes 4 features .* but 3 were passed"
    ):
        spark.sql(query).collect()
    with pytest.raises(InputError, match=r"^model 'churn' takes 4 features \(age double"):
        run_script(spark, query, ["churn"], echo=lambda _: None)


def test_string_in_double_column_names_model_and_column(spark, customers):
    query = "SELECT churn(plan, tenure, plan, active) FROM customers"
    with pytest.raises(
        InputError, match=r"model 'churn': column 'age' expects double, got '\w+' \(str\)"
    ):
        run_script(spark, query, ["churn"], echo=lambda _: None)


def test_empty_input_gives_empty_result(spark, customers):
    assert spark.sql(f"SELECT churn({ARGS}) FROM customers WHERE id < 0").collect() == []


def test_arrow_and_pandas_udfs_give_the_same_rows(spark, customers, model_store):
    """The Arrow-native UDF (the default) and the pandas UDF it replaces: same rows, same NULLs."""
    from udfs.spark.udf import arrow_udf, make_udf
    from udfs.store import resolve

    assert arrow_udf is not None, "this pyspark has Arrow-native UDFs: they must be the default"
    for name in ("spend", "churn", "segment"):
        ref = resolve(name, store=model_store)
        shipped = spark.sparkContext.broadcast({"plan": ref.plan().to_bytes(), "artifact": None})
        methods = ["predict", "predict_proba"] if ref.signature().has_proba else ["predict"]
        for method in methods:
            for arrow in (True, False):
                udf = make_udf(ref.signature(), shipped, method, arrow=arrow)
                spark.udf.register(f"{name}_{method}_{'arrow' if arrow else 'pandas'}", udf)
            query = "SELECT id, {}({}) AS score FROM customers"
            by_arrow = spark.sql(query.format(f"{name}_{method}_arrow", ARGS))
            by_pandas = spark.sql(query.format(f"{name}_{method}_pandas", ARGS))
            assert_df_equality(by_arrow, by_pandas, ignore_row_order=True)
