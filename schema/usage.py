"""The usage API's answer (docs/ARCHITECTURE.md §4: both shapes, every window) turned into the pool's `Usage`.

The parsing itself is in schema/limits.py (standard library only, shared with the session-start
hook's light path). A 200 with no recognizable five_hour or seven_day window is an error, never
"0% used". One of the two missing is a window that has not started (the account idle since its
last reset, or a plan without it): `Usage` keeps it at 0 % with no reset, "not open".
"""

from __future__ import annotations

from typing import Any

from .limits import parse_windows
from .pool import ExtraUsage, ScopedWindow, Usage, UsageWindow


class UsageFormatError(ValueError):
    """The usage API answered 200 with nothing we can read as usage."""


def usage_from_windows(found: dict[str, Any]) -> Usage:
    """`Usage` from parse_windows' plain result."""
    fields: dict[str, Any] = {}
    for name in ("five_hour", "seven_day"):
        if name in found:
            fields[name] = UsageWindow(pct=found[name]["pct"], resets_at=found[name]["resets_at"])
    fields["scoped"] = [ScopedWindow(**s) for s in found.get("scoped", [])]
    if found.get("extra_usage") is not None:
        fields["extra_usage"] = ExtraUsage(**found["extra_usage"])
    return Usage(**fields)


def parse_usage(body: Any) -> Usage:
    """Parse either shape; raise UsageFormatError when neither window can be read."""
    if not isinstance(body, dict):
        raise UsageFormatError("usage answer is not a JSON object")
    found = parse_windows(body)
    if found is None:
        raise UsageFormatError("usage answer has no five_hour or seven_day window")
    return usage_from_windows(found)
