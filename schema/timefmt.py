"""RFC 3339 times as the Go tool writes them; Go's zero time means "never"."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

GO_ZERO = "0001-01-01T00:00:00Z"


def _parse(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value.startswith("0001-01-01"):
            return None
        # Go may write nanoseconds; Python keeps microseconds.
        head, dot, rest = value.partition(".")
        if dot:
            digits = ""
            i = 0
            while i < len(rest) and rest[i].isdigit():
                digits += rest[i]
                i += 1
            value = f"{head}.{digits[:6].ljust(6, '0')}{rest[i:]}" if digits else head + rest[i:]
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # NaN, infinities, years past 9999
            raise ValueError("not a time") from None
    return value


def format_time(value: datetime | None) -> str:
    if value is None:
        return GO_ZERO
    value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _serialize_optional(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


# Written as Go's zero time when unset (the Go tool's own habit for usage_at).
GoTime = Annotated[datetime | None, BeforeValidator(_parse), PlainSerializer(format_time, return_type=str)]
# Written as null when unset.
OptTime = Annotated[datetime | None, BeforeValidator(_parse), PlainSerializer(_serialize_optional)]

