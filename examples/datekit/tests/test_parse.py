from datetime import date

import pytest

from datekit.parse import parse_date, parse_duration


def test_parse_date():
    assert parse_date("2024-03-01") == date(2024, 3, 1)
    assert parse_date(" 2024-02-29 ") == date(2024, 2, 29)


def test_parse_date_rejects_bad_days():
    with pytest.raises(ValueError):
        parse_date("2023-02-29")
    with pytest.raises(ValueError):
        parse_date("2024-04-31")


def test_parse_duration_single_unit():
    assert parse_duration("90s") == 90
    assert parse_duration("2h") == 7200
    assert parse_duration("3D") == 3 * 86400


def test_parse_duration_rejects_garbage():
    with pytest.raises(ValueError):
        parse_duration("soon")
