"""The element-wise helpers of udfs.plan._kernels: the same bits and lookups as Python's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from udfs.plan import _kernels


def test_exp_array_is_the_c_librarys_exp() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(0, 30, 100_000), [0.0, -0.0, 709.7, 710.0, 1e308, -1e308, np.inf, -np.inf]]
    )
    out = np.empty_like(x)
    _kernels.exp_array(x, out)

    def libm(v: float) -> float:
        try:
            return math.exp(v)
        except OverflowError:
            return math.inf

    want = np.array([libm(v) for v in x.tolist()])
    assert out.tobytes() == want.tobytes()
    nan = np.empty(1)
    _kernels.exp_array(np.array([np.nan]), nan)
    assert np.isnan(nan[0])
    with pytest.raises(ValueError, match="float64 of one size"):
        _kernels.exp_array(x, np.empty(3))


def test_lookup_is_dict_get_per_value() -> None:
    table = {"a": 0, "b": 1, 2: 2, True: 3}
    values = np.array(["a", "zz", None, float("nan"), "b", 2, 2.0, True, ""], dtype=object)
    out = np.empty(len(values), dtype=np.intp)
    _kernels.lookup(values, table, -1, out)
    assert out.tolist() == [table.get(v, -1) for v in values.tolist()]
    with pytest.raises(TypeError, match="unhashable"):
        unhashable = np.empty(1, dtype=object)
        unhashable[0] = ["list"]
        _kernels.lookup(unhashable, table, -1, out[:1])
    with pytest.raises(ValueError, match="object array"):
        _kernels.lookup(np.zeros(3), table, -1, np.empty(3, dtype=np.intp))
