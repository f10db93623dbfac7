"""Hidden test of issue datekit-2 (compound durations). Not shown to the agent."""
import pytest

from datekit.parse import parse_duration


def test_compound_durations():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d4h") == 2 * 86400 + 4 * 3600
    assert parse_duration("1m30s") == 90
    assert parse_duration("90s") == 90


@pytest.mark.parametrize("text", ["1h30x", "30m1", "h"])
def test_rejects_partial_matches(text):
    with pytest.raises(ValueError):
        parse_duration(text)
