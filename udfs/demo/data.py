"""A realistic, reproducible customer table for the demo, the notebook and the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["age", "tenure", "plan", "active"]
PLANS = ["basic", "pro", "enterprise"]


def customers(n: int, seed: int = 0, null_fraction: float = 0.0) -> pd.DataFrame:
    """Customers with bigint id, double/bigint/string/boolean features and three targets.

    ``null_fraction`` blanks that share of ``age`` and ``plan`` values, as real tables have.

    >>> customers(3).columns.tolist()
    ['id', 'age', 'tenure', 'plan', 'active', 'churned', 'segment', 'spend']
    """
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n).round(1)
    tenure = rng.integers(0, 120, n)
    plan = rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]).astype(object)
    active = rng.random(n) < 0.7
    risk = 0.03 * (age - 40) - 0.02 * tenure + (plan == "basic") * 1.0 - active * 0.8
    churned = (risk + rng.normal(0, 0.7, n) > -0.8).astype(np.int64)
    segment = np.where(tenure > 80, "loyal", np.where(plan == "enterprise", "key", "core"))
    spend = 20 + 0.5 * age + 0.3 * tenure + (plan == "pro") * 15 + rng.normal(0, 5, n)
    frame = pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "age": age,
            "tenure": tenure.astype(np.int64),
            "plan": plan,
            "active": active,
            "churned": churned,
            "segment": segment.astype(object),
            "spend": spend.round(2),
        }
    )
    if null_fraction > 0:
        frame.loc[rng.random(n) < null_fraction, "age"] = np.nan
        frame.loc[rng.random(n) < null_fraction, "plan"] = None
    return frame
