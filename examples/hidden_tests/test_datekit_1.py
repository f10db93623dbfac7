"""Hidden test of issue datekit-1 (leap years divisible by 400). Not shown to the agent."""
from datetime import date

from datekit.calendar import is_leap_year
from datekit.parse import parse_date


def test_century_leap_years():
    assert is_leap_year(2000)
    assert is_leap_year(2400)
    assert not is_leap_year(1900)
    assert not is_leap_year(2100)


def test_parse_leap_day_2000():
    assert parse_date("2000-02-29") == date(2000, 2, 29)
