"""The types that flow: a date filter names a day that exists (the API's 422 comes from here)."""

from __future__ import annotations

import pytest

from rag.errors import InputError
from rag.types import Filters


@pytest.mark.parametrize("value", ["2017", "2017-05", "2017-05-31", "2016-02-29"])
def test_real_dates_are_accepted(value):
    assert Filters(date_from=value).date_from == value


@pytest.mark.parametrize("value", ["2017-99-99", "2017-02-30", "2017-13", "2017-00", "2015-02-29", "17", "maj 2017"])
def test_dates_that_do_not_exist_are_refused_with_the_form_to_use(value):
    with pytest.raises(InputError) as error:
        Filters(date_to=value)
    assert f"{value!r} is not a real ISO date like 2017, 2017-05 or 2017-05-31" in str(error.value)
