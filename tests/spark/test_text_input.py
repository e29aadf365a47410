"""Spark string columns follow PostgreSQL's cast rules (udfs.coercion), as in Postgres."""

import pytest

from udfs.errors import InputError
from udfs.spark.script import run_script

pytestmark = pytest.mark.spark


def test_unicode_digits_in_a_string_column_are_refused_by_name(spark):
    """'１２' (full-width digits) is no double for PostgreSQL's cast, so not for Spark either;
    ' 40 ', '\\t3\\n' and 'Of' in the other rows are read as the casts read them."""
    query = (
        "SELECT churn(age, tenure, plan, active) FROM VALUES "
        "(' 40 ', '\\t3\\n', 'pro', 'Of'), ('１２', '+7', 'basic', 'tru') "
        "AS t(age, tenure, plan, active)"
    )
    with pytest.raises(
        InputError,
        match=r"model 'churn': column 'age' expects double, got '１２' \(str\) at row \d+: "
        r"not a number \(only ASCII digits",
    ):
        run_script(spark, query, ["churn"], echo=lambda _: None)
