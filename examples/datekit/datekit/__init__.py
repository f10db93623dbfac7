"""datekit: parse and describe dates and durations typed by people."""

from datekit.calendar import days_in_month, is_leap_year
from datekit.format import humanize_delta
from datekit.parse import parse_date, parse_duration

__all__ = ["days_in_month", "humanize_delta", "is_leap_year", "parse_date", "parse_duration"]
