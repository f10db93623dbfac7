"""Hidden test of issue datekit-3 (past deltas and singular units). Not shown to the agent."""
from datetime import timedelta

from datekit.format import humanize_delta


def test_past():
    assert humanize_delta(timedelta(days=-1)) == "1 day ago"
    assert humanize_delta(timedelta(hours=-25)) == "1 day ago"
    assert humanize_delta(timedelta(minutes=-5)) == "5 minutes ago"


def test_singular_future():
    assert humanize_delta(timedelta(hours=1)) == "in 1 hour"
    assert humanize_delta(timedelta(days=3)) == "in 3 days"
