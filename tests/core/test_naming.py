import pytest

from udfs.errors import InvalidNameError
from udfs.naming import parse_ref, validate_name


@pytest.mark.parametrize("name", ["churn", "c", "churn_v2", "a1_b2"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Churn", "1churn", "_churn", "churn-v2", "churn v2", 'ch"urn', "churn;drop", "é", None, 3],
)
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidNameError, match="invalid model name"):
        validate_name(name)


def test_names_leave_room_for_proba_suffix():
    with pytest.raises(InvalidNameError, match="at most 57 characters"):
        validate_name("a" * 58)


def test_parse_ref():
    assert parse_ref("churn") == ("churn", None)
    assert parse_ref("churn@3") == ("churn", 3)
    with pytest.raises(InvalidNameError, match="NAME@VERSION"):
        parse_ref("churn@latest")
