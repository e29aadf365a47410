"""Generated hostile rows through the Spark SQL functions, against the independent oracle."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

import udfs
from tests.reliability.cases import CASES, same
from tests.reliability.oracle import expect
from tests.reliability.strategies import BY_TYPE, DEEP, DEEP_ROWS, depth
from udfs.demo.data import PLANS
from udfs.spark.script import translate

pytestmark = [pytest.mark.reliability, pytest.mark.spark, pytest.mark.slow]

SPARK_TYPES = {
    "double": DoubleType(),
    "bigint": LongType(),
    "boolean": BooleanType(),
    "string": StringType(),
}
NATIVE = {
    "double": st.one_of(
        st.floats(-1e3, 1e3), st.floats(allow_nan=True, allow_infinity=True), st.none()
    ),
    "bigint": st.one_of(st.integers(0, 150), st.integers(-(2**63), 2**63 - 1), st.none()),
    "boolean": st.one_of(st.booleans(), st.none()),
    "string": st.one_of(
        st.sampled_from([*PLANS, "platinum", ""]), st.text(max_size=200), st.none()
    ),
}
# Hostile text for a STRING column feeding any feature: '１２', ' 1e400', 'Of', ...
TEXT = {
    kind: strategy.map(lambda v: None if v is None else str(v))
    for kind, strategy in BY_TYPE.items()
}
# Generated batches per model and method, and their size: 8 of 1 to 20 rows in CI; in the deep
# mode larger batches, at least DEEP_ROWS rows in all.
EXAMPLES = depth(8, 45)
MIN_ROWS, MAX_ROWS = depth(1, 30), depth(20, 80)
RAN: dict[str, int] = {}


def _case(signature):
    """Rows of (native value, text) per feature, and for each feature what the function gets:
    the native column, its CAST(... AS STRING), or the text column."""
    types = [f.type for f in signature.features]
    cells = [st.tuples(NATIVE[t], TEXT[t]) for t in types]
    rows = st.lists(st.tuples(*cells), min_size=MIN_ROWS, max_size=MAX_ROWS)
    reads = st.lists(
        st.sampled_from(["native", "native", "cast", "text"]),
        min_size=len(types),
        max_size=len(types),
    )
    return st.tuples(rows, reads)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_spark_matches_oracle_on_generated_rows(spark, model_store, name, method):
    bundle = udfs.load_model(name, store=model_store)
    sig = bundle.signature
    schema = StructType(
        [StructField("id", LongType())]
        + [StructField(f.name, SPARK_TYPES[f.type]) for f in sig.features]
        + [StructField(f"t_{f.name}", StringType()) for f in sig.features]
    )
    function = name if method == "predict" else f"{name}_proba"
    outcomes = {"value": 0, "error": 0, "rows": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_case(sig))
    def run(case):
        rows, reads = case
        flat = [(i, *[c[0] for c in r], *[c[1] for c in r]) for i, r in enumerate(rows)]
        frame = spark.createDataFrame(flat, schema)
        frame.createOrReplaceTempView("generated")
        outcomes["rows"] += len(rows)
        args = ", ".join(
            {
                "native": f"`{f.name}`",
                "cast": f"CAST(`{f.name}` AS STRING)",
                "text": f"`t_{f.name}`",
            }[read]
            for f, read in zip(sig.features, reads, strict=True)
        )
        # What the function receives, after Spark's own casts, is what the oracle sees.
        received = spark.sql(f"SELECT {args} FROM generated ORDER BY id").collect()
        columns = [[row[i] for row in received] for i in range(len(sig.features))]
        want = expect(bundle.model, sig, columns, method)
        try:
            got = [
                r[0]
                for r in spark.sql(
                    f"SELECT {function}({args}) FROM generated ORDER BY id"
                ).collect()
            ]
        except Exception as exc:
            clear = translate(exc, [])
            assert clear is not None, f"not a udfs error: {exc}"
            assert want.values is None, f"{clear} but the oracle predicts {want.values}"
            assert f"model '{name}'" in str(clear)
            # Spark splits the rows into batches (partitions) and reports the first task that
            # fails: any column guilty in one of the rows may be named, not only the one the
            # oracle names for all rows at once.
            guilty = set(want.bad_columns)
            for i in range(len(rows)):
                guilty |= expect(bundle.model, sig, [[c[i]] for c in columns], method).bad_columns
            assert any(f"column '{c}'" in str(clear) for c in guilty), (clear, guilty)
            outcomes["error"] += 1
            return
        assert want.values is not None, (
            f"Spark gave {got}; the oracle expects an error on {want.bad_columns}"
        )
        got = [None if isinstance(g, float) and math.isnan(g) else g for g in got]
        assert all(same(g, w) for g, w in zip(got, want.values, strict=True)), (got, want.values)
        outcomes["value"] += 1

    run()
    RAN[f"{name}.{method}"] = outcomes["rows"]
    print(f"spark generated {name}.{method}: {outcomes}")
    assert outcomes["value"] + outcomes["error"] == EXAMPLES
    if DEEP:
        assert outcomes["rows"] >= DEEP_ROWS / len(CASES), outcomes
