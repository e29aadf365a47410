"""An independent, row-at-a-time statement of the udfs prediction contract, for generated input.

It coerces each value with plain Python and calls scikit-learn on one-row frames, sharing no
code with udfs.coercion or udfs.scoring, so agreement with it means something.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_TRUE = {"true", "t", "yes", "y", "1", "1.0", "on"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", "off"}


_NUMBER = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)


class Bad(Exception):
    """The value can't be coerced to the feature's type."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def coerce(value: Any, kind: str) -> Any:
    """One value to a portable type; ``None`` for missing; raises Bad."""
    if _missing(value):
        return None
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        word = str(value).strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise Bad(value)
    if kind == "bigint" and isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise Bad(value)
        return value
    if isinstance(value, str):
        # Decimal or scientific notation, inf/infinity, nan; text that overflows is not a number.
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise Bad(value)
        number = float(text)
        if math.isinf(number) and "inf" not in text.lower():
            raise Bad(value)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Bad(value) from None
    if math.isnan(number):
        return None
    if kind == "bigint":
        if math.isinf(number) or abs(number) > 2**63 or number != math.floor(number):
            raise Bad(value)
        return int(number)
    return number


@dataclass
class Outcome:
    """Per row: the expected result, or for the batch: the columns that must be named."""

    values: list[Any] | None
    bad_columns: set[str]


def expect(model: Any, signature: Any, columns: list[list[Any]], method: str) -> Outcome:
    features = signature.features
    bad: set[str] = set()
    rows: list[list[Any]] = []
    for i in range(len(columns[0])):
        row = []
        for feature, column in zip(features, columns, strict=True):
            try:
                row.append(coerce(column[i], feature.type))
            except Bad:
                bad.add(feature.name)
                row.append(None)
        rows.append(row)
    if bad:
        return Outcome(None, bad)
    values: list[Any] = []
    for row in rows:
        if any(v is None and not f.accepts_missing for f, v in zip(features, row, strict=True)):
            values.append(None)
            continue
        cells = {f.name: [np.nan if v is None else v] for f, v in zip(features, row, strict=True)}
        X = pd.DataFrame(cells).astype({f.name: object for f in features if f.type != "double"})
        if signature.input_kind == "array":
            X = X.to_numpy(dtype=np.float64)
        try:
            out = np.asarray(getattr(model, method)(X))
        except (ValueError, RuntimeWarning):  # sklearn refuses inf and float32 overflow
            return Outcome(None, _non_finite(features, rows))
        if method == "predict_proba":
            out = out[0, 1] if out.shape[1] == 2 else out[0].tolist()
        else:
            out = out[0]
        values.append(out.item() if isinstance(out, np.generic) else out)
    return Outcome(values, set())


def _non_finite(features: Any, rows: list[list[Any]]) -> set[str]:
    """Double features holding a value sklearn rejects (infinite, or too large for float32)."""
    names = set()
    for row in rows:
        for f, v in zip(features, row, strict=True):
            if f.type == "double" and v is not None and (math.isinf(v) or abs(v) > 3.4e38):
                names.add(f.name)
    return names
