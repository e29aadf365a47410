"""Core results as the text of ONE SQL array, which SQL casts and ``unnest``s.

Handing PL/Python a list of Python values costs a ``str()`` and a type input call per value
anyway (that is how PL/Python converts numbers), plus an object per value; joining the texts in
Python and letting one ``array_in`` parse them is cheaper, and equally exact: ``repr`` of a
float is the shortest text that ``float8in`` reads back to the same double.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NULL = "NULL"


def _quote(text: str) -> str:
    """One element of an array literal, quoted as ``array_in`` reads it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _floats(values: list) -> str:
    return ",".join(NULL if v is None else repr(float(v)) for v in values)


def _element(value: Any, kind: str) -> str:
    if value is None or value is pd.NA:
        return NULL
    if kind == "b":
        return "t" if value else "f"
    if kind == "list":  # a multiclass probability row: one text element per row
        return _quote("{" + _floats(list(value)) + "}")
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "f":
        return repr(float(value))
    if kind == "i":
        return str(int(value))
    return _quote(str(value))


def _kind(sql_type: str) -> str:
    if sql_type.endswith("[]"):
        return "list"
    return {"double precision": "f", "bigint": "i", "boolean": "b"}.get(sql_type, "t")


def array_text(result: Any, sql_type: str) -> str:
    """``result`` (a core result Series) as an array literal of ``sql_type`` elements.

    Multiclass probabilities (``double precision[]`` per row) become a ``text[]`` whose elements
    are the rows' array literals: cast each with ``::double precision[]`` after ``unnest``.
    """
    kind = _kind(sql_type)
    if kind in ("f", "i"):
        missing = result.isna().to_numpy()
        numbers = result.to_numpy(dtype=np.float64 if kind == "f" else np.int64, na_value=0)
        texts = list(map(repr if kind == "f" else str, numbers.tolist()))
        if missing.any():
            for i in np.flatnonzero(missing).tolist():
                texts[i] = NULL
        return "{" + ",".join(texts) + "}"
    return "{" + ",".join(_element(v, kind) for v in result.tolist()) + "}"
