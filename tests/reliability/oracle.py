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

# PostgreSQL's casts from text, restated from its documentation: ASCII whitespace around the
# value, ASCII digits, C99 strtod spellings for doubles, decimal digits only for bigint (15).
_WHITESPACE = " \t\n\v\f\r"
_FLOAT8 = re.compile(
    r"[+-]?(?:(?P<hex>0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    r"|(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)|inf|infinity|nan(?:\([0-9a-z_]*\))?)",
    re.IGNORECASE | re.ASCII,
)
_INT8 = re.compile(r"[+-]?[0-9]+", re.ASCII)
_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}


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
        if isinstance(value, str):
            return _boolean(value)
        raise Bad(value)
    if kind == "bigint" and isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise Bad(value)
        return value
    if kind == "bigint" and isinstance(value, str):
        return _bigint(value)
    if isinstance(value, str):
        number = _double(value)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise Bad(value) from None
    if math.isnan(number):
        return None
    if kind == "bigint":
        if math.isinf(number) or abs(number) > 2**63 or number != math.floor(number):
            raise Bad(value)
        return int(number)
    return number


def _boolean(value: str) -> bool:
    """boolin: a prefix of true/yes/false/no, or on, of(f), 1, 0, in any ASCII case."""
    word = value.strip(_WHITESPACE)
    if not word.isascii():
        raise Bad(value)
    word = word.lower()
    if word in ("1", "on"):
        return True
    if word in ("0", "of", "off"):
        return False
    for full, flag in _BOOL_WORDS.items():
        if word and full.startswith(word):
            return flag
    raise Bad(value)


def _bigint(value: str) -> int:
    text = value.strip(_WHITESPACE)
    if not _INT8.fullmatch(text):
        raise Bad(value)
    sign, digits = ("-", text[1:]) if text[0] == "-" else ("", text.lstrip("+"))
    digits = digits.lstrip("0") or "0"
    if len(digits) > 19 or not -(2**63) <= int(sign + digits) < 2**63:
        raise Bad(value)
    return int(sign + digits)


def _double(value: str) -> float:
    text = value.strip(_WHITESPACE)
    match = _FLOAT8.fullmatch(text)
    if not match:
        raise Bad(value)
    lower = text.lower()
    if lower.lstrip("+-").startswith("nan"):
        return math.nan
    if "inf" in lower:
        return -math.inf if lower.startswith("-") else math.inf
    try:
        number = float.fromhex(text) if match["hex"] else float(text)
    except OverflowError:
        raise Bad(value) from None
    mantissa = re.split("[ep]", lower.split("x")[-1])[0]
    if math.isinf(number) or (number == 0 and mantissa.strip("+-0.")):
        raise Bad(value)  # overflow, or underflow to zero
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
    refused: list[set[str]] = []
    for row in rows:
        if any(v is None and not f.accepts_missing for f, v in zip(features, row, strict=True)):
            values.append(None)
            continue
        try:
            values.append(_predict(model, signature, row, method))
        except (ValueError, RuntimeWarning):  # sklearn refuses inf and float32 overflow
            refused.append(_guilty(model, signature, row, method))
    if refused:
        return Outcome(None, set().union(*refused))
    return Outcome(values, set())


def _predict(model: Any, signature: Any, row: list[Any], method: str) -> Any:
    """scikit-learn on a one-row frame (or array) of coerced values."""
    features = signature.features
    cells = {f.name: [np.nan if v is None else v] for f, v in zip(features, row, strict=True)}
    X = pd.DataFrame(cells).astype({f.name: object for f in features if f.type != "double"})
    if signature.input_kind == "array":
        X = X.to_numpy(dtype=np.float64)
    out = np.asarray(getattr(model, method)(X))
    if method == "predict_proba":
        out = out[0, 1] if out.shape[1] == 2 else out[0].tolist()
    else:
        out = out[0]
    return out.item() if isinstance(out, np.generic) else out


def _guilty(model: Any, signature: Any, row: list[Any], method: str) -> set[str]:
    """The double features whose value alone makes the model refuse ``row``: the value kept,
    every other infinite or huge double of the row replaced by 0.0, and 0.0 in its place
    accepted."""
    suspects = [
        i
        for i, (f, v) in enumerate(zip(signature.features, row, strict=True))
        if f.type == "double" and v is not None and (math.isinf(v) or abs(v) > 3.4e38)
    ]

    def refuses(keep: int | None) -> bool:
        probe = [0.0 if i in suspects and i != keep else v for i, v in enumerate(row)]
        try:
            _predict(model, signature, probe, method)
        except (ValueError, RuntimeWarning):
            return True
        return False

    if refuses(None):
        return set()  # the row is refused without any of them
    return {signature.features[i].name for i in suspects if refuses(i)}
