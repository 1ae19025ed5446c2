"""RFC 3339 times as the Go tool writes them; Go's zero time means "never".

Standard library only: the light hot paths (status, helper, the session-start look) read and
write pool times through this module too. The pydantic field types built on it live in
schema/pool.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

GO_ZERO = "0001-01-01T00:00:00Z"


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 (Z or an offset, any number of fraction digits: Go writes nanoseconds)
    or epoch seconds; None for "never" (Go's zero time, empty) and for anything unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # NaN, infinities, years past 9999
            return None
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    head, dot, rest = value.partition(".")
    if dot:  # Python keeps microseconds
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        digits = rest[:i]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[i:]}" if digits else head + rest[i:]
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def is_never(value: Any) -> bool:
    """The ways a file says "no time": null, empty, Go's zero time."""
    return value is None or value == "" or (isinstance(value, str) and value.startswith("0001-01-01"))


def format_time(value: datetime | None) -> str:
    """UTC, `Z`, fraction only when there is one; Go's zero time for None."""
    if value is None:
        return GO_ZERO
    value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_optional(value: datetime | None) -> str | None:
    """As format_time, but null for None."""
    return None if value is None else format_time(value)
