import pytest

from datekit.calendar import days_in_month, is_leap_year


def test_common_years():
    assert not is_leap_year(2023)
    assert not is_leap_year(1900)


def test_leap_years():
    assert is_leap_year(2024)


def test_days_in_month():
    assert days_in_month(2023, 2) == 28
    assert days_in_month(2024, 2) == 29
    assert days_in_month(2024, 4) == 30
    with pytest.raises(ValueError):
        days_in_month(2024, 13)
