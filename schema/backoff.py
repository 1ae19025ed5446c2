"""The usage endpoint's own limit (docs/ARCHITECTURE.md §4), with the standard library only: the
full engine (reconciler/learn.py) and the session-start hook's light path share it.

`/api/oauth/usage` answers 429 per account, with `retry-after` 0 or about an hour. After a 429
the account's usage is not asked for again before the backoff ends: `retry-after` when it is
over 0 (believed up to RETRY_AFTER_MAX), else doubling from FIRST_DELAY up to MAX_DELAY. A good
reading clears it. Meanwhile decisions use the cached reading and the statusline's feed.

The pool keeps, per account, two keys the Go tool ignores (plain JSON, so the hot paths can use
them without pydantic):

    "usage_backoff": {"until": "2026-11-27T13:00:00Z",   # no usage call before this
                      "delay": 3600,                     # seconds; the next 429 doubles it
                      "at": "2026-11-27T12:00:00Z",      # when the 429 came
                      "retry_after": 3600}               # what the server said (null: nothing)
    "usage_calls": [1795780800, ...]    # epoch seconds of this account's usage calls in the last
                                        # hour (at most CALLS_KEPT), oldest first

One usage call, raw JSON (what the light path does):

    wait = throttled_until(acc.get("usage_backoff"), now)   # not None: do not call, use the cache
    ...call...
    acc["usage_backoff"], acc["usage_calls"] = after_call(
        acc.get("usage_backoff"), acc.get("usage_calls"), now, status=status,
        retry_after=parse_retry_after(headers.get("retry-after"), now), reading=found is not None)
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from claude_pool.reconciler.decision import CLOCK_SKEW

from .timefmt import format_time, parse_time

FIRST_DELAY = 60.0            # seconds: the first backoff when the 429 says no retry-after
MAX_DELAY = 3600.0            # the doubling stops at an hour
RETRY_AFTER_MAX = 6 * 3600.0  # a longer retry-after is not believed (it is cut to this)
CALL_WINDOW = 3600.0          # usage calls are counted over the last hour
CALLS_KEPT = 120              # at most this many call times are kept per account


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def parse_retry_after(value: Any, now: datetime) -> float | None:
    """A `retry-after` header in seconds: delta-seconds ("3600") or an HTTP-date ("Wed, 21 Oct
    2026 07:28:00 GMT", counted from `now`). None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return _seconds(float(text))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime   # only for the rare date form

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def next_backoff(previous_delay: float | None, retry_after: float | None) -> float:
    """Seconds to wait after a 429: `retry_after` when over 0 (at most RETRY_AFTER_MAX); else
    double the previous delay (FIRST_DELAY the first time), at most MAX_DELAY."""
    said = _seconds(retry_after)
    if said is not None and said > 0:
        return min(said, RETRY_AFTER_MAX)
    before = _seconds(previous_delay)
    if not before:
        return FIRST_DELAY
    return min(max(before * 2, FIRST_DELAY), MAX_DELAY)


def clean_backoff(value: Any) -> dict[str, Any] | None:
    """The stored backoff in its one shape, or None (absent, null, or not readable: a bad value
    never makes the pool unreadable)."""
    if not isinstance(value, dict):
        return None
    until, at = parse_time(value.get("until")), parse_time(value.get("at"))
    delay = _seconds(value.get("delay"))
    if until is None or delay is None:
        return None
    return {**value, "until": format_time(until), "delay": delay,
            "at": format_time(at) if at is not None else None, "retry_after": _seconds(value.get("retry_after"))}


def clean_calls(value: Any) -> list[float]:
    """The stored call times: finite epoch seconds, oldest first, at most CALLS_KEPT."""
    if not isinstance(value, list):
        return []
    return sorted(v for v in (_seconds(x) for x in value) if v is not None)[-CALLS_KEPT:]


def throttle(previous: Any, retry_after: float | None, now: datetime) -> dict[str, Any]:
    """The backoff a 429 at `now` sets, after `previous` (the stored one, even if it has ended:
    its delay is what doubles)."""
    prev = clean_backoff(previous)
    delay = next_backoff(prev["delay"] if prev else None, retry_after)
    return {"until": format_time(now + timedelta(seconds=delay)), "delay": delay, "at": format_time(now),
            "retry_after": _seconds(retry_after)}


def throttled_until(backoff: Any, now: datetime) -> datetime | None:
    """When the account's usage may be asked for again, while that is after `now`; None: ask.
    A backoff stamped in the future (the clock went back) or reaching further than any we set
    says nothing."""
    found = clean_backoff(backoff)
    if found is None:
        return None
    until, at = parse_time(found["until"]), parse_time(found["at"])
    if until is None or until <= now or at is None or at > now + CLOCK_SKEW:
        return None
    if until - at > timedelta(seconds=RETRY_AFTER_MAX) + CLOCK_SKEW:
        return None
    return until


def record_call(calls: Any, now: datetime) -> list[float]:
    """The call times after one more call at `now`: those of the last CALL_WINDOW seconds (none
    from the future), oldest first, at most CALLS_KEPT."""
    t = now.timestamp()
    kept = [c for c in clean_calls(calls) if t - CALL_WINDOW < c <= t]
    return (kept + [float(math.floor(t))])[-CALLS_KEPT:]   # whole seconds: never counted as after `now`


def calls_last_hour(calls: Any, now: datetime) -> int:
    t = now.timestamp()
    return sum(1 for c in clean_calls(calls) if t - CALL_WINDOW < c <= t)


def after_call(backoff: Any, calls: Any, now: datetime, *, status: int | None, retry_after: float | None = None,
               reading: bool = False) -> tuple[dict[str, Any] | None, list[float]]:
    """(backoff, call times) after one usage call at `now`: a 429 (`status`) sets or doubles the
    backoff; a good reading (`reading`) clears it; anything else (a timeout, a 5xx, garbage)
    keeps it as it was."""
    if status == 429:
        new = throttle(backoff, retry_after, now)
    elif reading:
        new = None
    else:
        new = clean_backoff(backoff)
    return new, record_call(calls, now)
