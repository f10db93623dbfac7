"""Parsing of dates and durations typed by people."""

import re
from datetime import date

from datekit.calendar import days_in_month

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_date(text):
    """Parse an ISO date `YYYY-MM-DD` into a `datetime.date`."""
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO date: {text!r}")
    year, month, day = (int(part) for part in match.groups())
    if not 1 <= day <= days_in_month(year, month):
        raise ValueError(f"day {day} is out of range for {year}-{month:02d}")
    return date(year, month, day)


def parse_duration(text):
    """Parse a duration like `90s`, `2h` or `1h30m` into a number of seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    amount, unit = match.groups()
    return int(amount) * _UNIT_SECONDS[unit]
