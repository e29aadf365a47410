"""Generated hostile input through the shared scoring core, against an independent oracle."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

import udfs
from tests.reliability.cases import CASES, same
from tests.reliability.oracle import expect
from tests.reliability.strategies import DEEP, DEEP_ROWS, batches, depth
from udfs import scoring
from udfs.errors import UdfsError

pytestmark = pytest.mark.reliability

COUNTS: dict[str, int] = {}
# Generated batches per model and method: 150 in CI; the deep mode runs at least DEEP_ROWS rows
# in all (about 4.5 rows a batch).
EXAMPLES = depth(150, 500)


def check(bundle, columns, method):
    """One generated batch: identical to the oracle, or a UdfsError naming model and column."""
    outcome = expect(bundle.model, bundle.signature, columns, method)
    try:
        result = getattr(scoring, method)(bundle.model, bundle.signature, columns)
    except UdfsError as exc:
        assert outcome.values is None, (
            f"udfs raised {exc!r} but the oracle predicts {outcome.values}"
        )
        assert exc.details.get("model") == bundle.signature.name, exc
        assert exc.details.get("column") in outcome.bad_columns, (exc, outcome.bad_columns)
        assert f"'{exc.details['column']}'" in str(exc)
        return "error"
    assert outcome.values is not None, (
        f"udfs predicted {list(result)}; the oracle expects an error on {outcome.bad_columns}"
    )
    got = [None if v is None or v is pd.NA else v for v in result.tolist()]
    assert all(same(g, w) for g, w in zip(got, outcome.values, strict=True)), (got, outcome.values)
    return "value"


@pytest.mark.parametrize(("name", "method"), CASES)
def test_core_matches_oracle_on_generated_batches(model_store, name, method):
    bundle = udfs.load_model(name, store=model_store)
    seen = {"value": 0, "error": 0, "rows": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batches(bundle.signature))
    def run(columns):
        seen[check(bundle, columns, method)] += 1
        seen["rows"] += len(columns[0])

    run()
    COUNTS[f"{name}.{method}"] = seen["rows"]
    print(f"core generated {name}.{method}: {seen}")
    assert seen["value"] > 0 and seen["error"] > 0, seen
    if DEEP:  # every case its share of the engine's rows
        assert seen["rows"] >= DEEP_ROWS / len(CASES), seen
