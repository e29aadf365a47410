"""Run-side array semantics: what scikit-learn's input validation does to a batch, in numpy only.

Bit-identity needs more than the same values: a linear model's BLAS call sums in an order that
depends on the memory layout of its input, and an imputer's mask depends on the dtype. So this
module mirrors the containers sklearn sees step by step:

- :class:`Frame` is the pandas DataFrame ``udfs.scoring.prepare`` builds (one array per column).
  ``np.asarray(DataFrame)`` interleaves the columns into a ``(k, n)`` block and returns its
  transpose, so frames become Fortran-ordered arrays, with pandas' (not numpy's) common dtype:
  bool mixed with numbers gives object.
- :class:`Sparse` holds, densely, the values of a scipy CSR matrix sklearn would have built
  (a sparse OneHotEncoder or ColumnTransformer output). Consumers that care about sparse
  semantics (linear models: scipy's row-wise summation order) look at the type.
- :func:`validate` is ``sklearn.utils.check_array`` for these containers: the dtype request,
  the conversion and the finiteness check.

Imports numpy and udfs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from udfs.errors import InputError

OBJECT = np.dtype(object)
FLOAT64 = np.dtype(np.float64)
FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class Frame:
    """The DataFrame a step receives: its columns (1-D arrays) and their names."""

    columns: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def take(self, indices: Sequence[int]) -> Frame:
        return Frame(tuple(self.columns[i] for i in indices), tuple(self.names[i] for i in indices))


@dataclass(frozen=True)
class Sparse:
    """The values of a CSR matrix sklearn would hold, as a dense C-ordered array."""

    values: np.ndarray


def interleaved_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """pandas' common dtype for ``DataFrame.to_numpy()`` (``find_common_type``)."""
    first = dtypes[0]
    if all(d == first for d in dtypes):
        return first
    if any(d.kind == "O" for d in dtypes):
        return OBJECT
    # pandas, unlike numpy, does not mix bool with numbers: object.
    if any(d.kind == "b" for d in dtypes):
        return OBJECT
    return np.result_type(*dtypes)


def frame_values(frame: Frame, dtype: np.dtype | None = None) -> np.ndarray:
    """``np.asarray(DataFrame, dtype)``: a Fortran-ordered (n, k) array, as pandas returns it."""
    common = interleaved_dtype([c.dtype for c in frame.columns])
    block = np.empty((len(frame.columns), frame.n_rows), dtype=common)
    for i, column in enumerate(frame.columns):
        block[i] = column
    values = block.T
    if dtype is not None and dtype != values.dtype:
        values = np.asarray(values, dtype=dtype)
    return values


def _frame_dtype_orig(frame: Frame) -> np.dtype:
    return np.result_type(*[c.dtype for c in frame.columns])


def target_dtype(orig: np.dtype, dtype: object) -> np.dtype | None:
    """The dtype check_array converts to from ``orig`` (None: keep), for :func:`validate`."""
    if dtype == "numeric":
        return FLOAT64 if orig.kind == "O" else None
    if isinstance(dtype, tuple):
        listed = tuple(np.dtype(d) for d in dtype)
        return None if orig in listed else listed[0]
    return None if dtype is None else np.dtype(dtype)


def validate(
    X: Frame | np.ndarray,
    dtype: str | tuple | None,
    finite: bool | str,
    *,
    where: str,
    copy: bool = False,
) -> np.ndarray:
    """sklearn's ``check_array`` on a dense container.

    ``dtype``: None (keep), ``"numeric"`` (object -> float64), a tuple of dtypes (keep if listed,
    else the first), or one dtype name. ``finite``: True, ``"allow-nan"`` or False.
    """
    orig = _frame_dtype_orig(X) if isinstance(X, Frame) else X.dtype
    target = target_dtype(orig, dtype)
    try:
        if isinstance(X, Frame):
            out = frame_values(X, target)
        elif target is not None and target != X.dtype:
            out = np.asarray(X, dtype=target)
        else:
            out = np.array(X, copy=True) if copy else X
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: cannot convert the input: {exc}") from None
    if finite:
        check_finite(out, allow_nan=finite == "allow-nan", where=where)
    return out


def check_finite(X: np.ndarray, *, allow_nan: bool, where: str) -> None:
    """sklearn's ``_assert_all_finite``: floats must be finite (NaN too unless allowed)."""
    if X.dtype.kind == "O":
        if not allow_nan and bool(np.any(X != X)):
            raise InputError(f"{where}: the input contains NaN")
        return
    if X.dtype.kind != "f" or X.size == 0:
        return
    if allow_nan:
        bad = np.isinf(X)
        if bad.any():
            raise InputError(f"{where}: the input contains infinity {_first(X, bad)}")
    else:
        bad = ~np.isfinite(X)
        if bad.any():
            raise InputError(
                f"{where}: the input contains NaN, infinity or a value too large {_first(X, bad)}"
            )


def _first(X: np.ndarray, bad: np.ndarray) -> str:
    rows, cols = np.nonzero(bad) if bad.ndim == 2 else (np.flatnonzero(bad), None)
    value = X[rows[0], cols[0]] if cols is not None else X[rows[0]]
    where = f"row {rows[0]}" + (f", column {cols[0]}" if cols is not None else "")
    return f"({value!r} at {where})"


def dense_values(X: Frame | np.ndarray | Sparse) -> np.ndarray:
    """What ``np.hstack`` sees for one ColumnTransformer part in dense mode."""
    if isinstance(X, Sparse):
        return X.values  # csr.toarray(): C order, the CSR dtype
    if isinstance(X, Frame):
        return frame_values(X)
    return X


def sparse_part(X: Frame | np.ndarray | Sparse, where: str) -> np.ndarray:
    """One part of a sparse ColumnTransformer output: ``check_array(X, accept_sparse=True)``."""
    if isinstance(X, Sparse):
        return X.values
    return validate(X, "numeric", False, where=where)
