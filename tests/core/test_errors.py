import pickle

import pytest

from udfs import errors
from udfs.errors import InputError, UdfsError, suggest

ALL_ERRORS = [
    cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, UdfsError)
]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_details(cls):
    err = cls("model 'churn': boom", model="churn", column="age", value="'x'")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == "model 'churn': boom"
    assert back.details == {"model": "churn", "column": "age", "value": "'x'"}
    assert back.column == "age"
    assert isinstance(back, UdfsError)


def test_there_are_several_meaningful_subclasses():
    assert len(ALL_ERRORS) >= 8


def test_input_error_is_also_a_value_error():
    with pytest.raises(ValueError, match="bad"):
        raise InputError("bad")


def test_unknown_detail_is_an_attribute_error():
    with pytest.raises(AttributeError):
        _ = UdfsError("x").nothing


def test_suggest_closest_name():
    assert suggest("chrun", ["churn", "spend"]) == " Did you mean 'churn'?"
    assert suggest("zzz", ["churn", "spend"]) == ""
