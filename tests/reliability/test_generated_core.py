"""Generated hostile input through the shared scoring core, against an independent oracle."""

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings

import udfs
from tests.reliability.oracle import expect
from tests.reliability.strategies import batches
from udfs import scoring
from udfs.errors import UdfsError

pytestmark = pytest.mark.reliability

CASES = [
    (name, method)
    for name in ("spend", "churn", "segment", "plain")
    for method in ("predict", "predict_proba")
    if not (name in ("spend", "plain") and method == "predict_proba")
]
COUNTS: dict[str, int] = {}
# CI runs 150 generated batches per model and method; raise it for a deeper local search.
EXAMPLES = int(os.environ.get("UDFS_HYPOTHESIS_EXAMPLES", "150"))


def same(got, want) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, list):
        return len(got) == len(want) and all(
            math.isclose(g, w, abs_tol=1e-12) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    return got == want


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
    got = [None if v is None or v is __import__("pandas").NA else v for v in result.tolist()]
    assert all(same(g, w) for g, w in zip(got, outcome.values, strict=True)), (got, outcome.values)
    return "value"


@pytest.mark.parametrize(("name", "method"), CASES)
def test_core_matches_oracle_on_generated_batches(model_store, name, method):
    bundle = udfs.load_model(name, store=model_store)
    seen = {"value": 0, "error": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batches(bundle.signature))
    def run(columns):
        seen[check(bundle, columns, method)] += 1

    run()
    COUNTS[f"{name}.{method}"] = sum(seen.values())
    assert seen["value"] > 0 and seen["error"] > 0, seen
