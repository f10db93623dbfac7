"""Describing time differences in words."""


def humanize_delta(delta):
    """Describe a `timedelta` in words: 'in 3 days', '2 hours ago', 'just now'."""
    seconds = int(delta.total_seconds())
    if abs(seconds) < 60:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if abs(seconds) >= size:
            count = seconds // size
            return f"in {count} {unit}s"
