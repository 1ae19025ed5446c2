"""The usage API's answer (docs/ARCHITECTURE.md §4), in both shapes, turned into the pool's `Usage`.

A 200 with no recognizable window is an error, never "0% used".
"""

from __future__ import annotations

import math
from typing import Any

from .pool import Usage, UsageWindow
from .timefmt import _parse

# Newer shape: `limits[].kind` -> our window name.
_LIMIT_KINDS = {"session": "five_hour", "weekly_all": "seven_day"}


class UsageFormatError(ValueError):
    """The usage API answered 200 with nothing we can read as usage."""


def _percent(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return min(max(value, 0.0), 100.0)


def _window(pct: Any, resets_at: Any) -> UsageWindow | None:
    value = _percent(pct)
    if value is None:
        return None
    try:
        when = _parse(resets_at) if isinstance(resets_at, (str, int, float)) else None
    except ValueError:
        when = None
    return UsageWindow(pct=value, resets_at=when)


def parse_usage(body: Any) -> Usage:
    """Parse either shape; raise UsageFormatError when neither window can be read."""
    if not isinstance(body, dict):
        raise UsageFormatError("usage answer is not a JSON object")
    found: dict[str, UsageWindow] = {}
    for name in ("five_hour", "seven_day"):
        raw = body.get(name)
        if isinstance(raw, dict):
            window = _window(raw.get("utilization"), raw.get("resets_at"))
            if window is not None:
                found[name] = window
    limits = body.get("limits")
    if isinstance(limits, list):
        for item in limits:
            if not isinstance(item, dict):
                continue
            name = _LIMIT_KINDS.get(str(item.get("kind")))
            if name is None or name in found:
                continue
            window = _window(item.get("percent", item.get("utilization")), item.get("resets_at"))
            if window is not None:
                found[name] = window
    if not found:
        raise UsageFormatError("usage answer has no five_hour or seven_day window")
    return Usage(**found)
