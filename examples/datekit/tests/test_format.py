from datetime import timedelta

from datekit.format import humanize_delta


def test_future():
    assert humanize_delta(timedelta(days=3)) == "in 3 days"
    assert humanize_delta(timedelta(hours=5, minutes=10)) == "in 5 hours"


def test_just_now():
    assert humanize_delta(timedelta(seconds=20)) == "just now"
    assert humanize_delta(timedelta(seconds=-20)) == "just now"
