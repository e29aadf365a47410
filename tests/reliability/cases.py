"""What the generated reliability tests of every engine share: the models and methods they
run, and when a result counts as the oracle's."""

from __future__ import annotations

import math
from typing import Any

CASES = [
    (name, method)
    for name in ("spend", "churn", "segment", "plain")
    for method in ("predict", "predict_proba")
    if not (name in ("spend", "plain") and method == "predict_proba")
]


def same(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, list):
        return len(got) == len(want) and all(
            math.isclose(g, w, abs_tol=1e-12) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    return got == want
