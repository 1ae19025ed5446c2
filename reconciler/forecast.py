"""The pace of a usage window and when it runs out at that pace (issue 20: "pace in list and status").

Pure and standard library only, importing nothing of ours: the history writer
(`providers/history.py`, which the session-start light path calls) computes forecasts with it and
keeps them in a small cache, and `status` (a hot path), `list`, `watch` and `report` read them.

A forecast is a least-squares line through the readings of the window's current period (the last
points since it began): its slope is the pace in percent per hour, and from the last reading at
that pace the window is full at `out_at`. None when the readings are too few or too close together
to say anything, or when the pace is flat or falling. Times are epoch seconds.
"""

from __future__ import annotations

import math

HOUR = 3600.0
DAY = 86400.0
#: the length of each window; a model's own weekly window is a week too
WINDOW_SECONDS = {"5h": 5 * HOUR, "7d": 7 * DAY}
#: a reading stamped later than now by more than this is from a clock that jumped back: ignored
FUTURE_SKEW = 120.0
#: at least this many readings, spanning at least max(MIN_SPAN, the window's length / 48)
MIN_POINTS = 3
MIN_SPAN = 15 * 60.0
#: a drop of more than this many points between two readings is a reset the reset time missed
RESET_DROP = 1.0
#: slower than this (percent per hour) is flat: it would take more than a year to fill a window
FLAT = 100.0 / (366 * 24)


def window_seconds(label: str) -> float:
    return WINDOW_SECONDS.get(label, WINDOW_SECONDS["7d"])


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def current_period(points: list, now: float, resets_at: float | None, length: float) -> list[tuple[float, float]]:
    """The readings of the window's current period, oldest first: none from the future (a clock
    that was ahead), none from before the period began, none from before a drop (a reset)."""
    pts = sorted((float(t), float(p)) for t, p in (tuple(x)[:2] for x in points if isinstance(x, (list, tuple))
                                                   and len(x) >= 2)
                 if _finite(t) and _finite(p) and -1.0 <= p <= 1000.0 and t <= now + FUTURE_SKEW)
    if resets_at is not None:
        start = resets_at - length
        pts = [pt for pt in pts if pt[0] >= start - FUTURE_SKEW]
    begin = 0
    for i in range(1, len(pts)):
        if pts[i][1] < pts[i - 1][1] - RESET_DROP:
            begin = i
    return pts[begin:]


def pace(points: list, now: float, resets_at: float | None = None, label: str = "7d") -> dict | None:
    """The forecast of one window from its readings [(epoch, pct), ...] (any order), or None.

    {"window", "pct" (the last reading), "pace" (percent per hour), "as_of" (the last reading's
    time), "out_at" (when it is full at this pace; the last reading's time when it already is),
    "resets_at", "out_before_reset" (None: the reset is unknown), "at_reset" (the percentage at the
    reset at this pace, at most 100; None: unknown), "points"}.
    """
    if resets_at is not None and (not _finite(resets_at) or resets_at <= now):
        return None   # the period these readings belong to is over
    length = window_seconds(label)
    pts = current_period(points, now, resets_at, length)
    if len(pts) < MIN_POINTS or pts[-1][0] - pts[0][0] < max(MIN_SPAN, length / 48):
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mp = sum(p for _, p in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var <= 0:
        return None
    slope = sum((t - mt) * (p - mp) for t, p in pts) / var * HOUR   # percent per hour
    if not math.isfinite(slope) or slope <= FLAT:
        return None
    last_t, last_p = pts[-1]
    out_at = last_t if last_p >= 100.0 else last_t + (100.0 - last_p) / slope * HOUR
    result: dict = {"window": label, "pct": round(last_p, 1), "pace": round(slope, 3), "as_of": int(last_t),
                    "out_at": int(out_at), "resets_at": int(resets_at) if resets_at is not None else None,
                    "out_before_reset": None, "at_reset": None, "points": n}
    if resets_at is not None:
        result["out_before_reset"] = out_at < resets_at
        result["at_reset"] = round(min(100.0, last_p + slope * (resets_at - last_t) / HOUR), 1)
    return result


def live(forecasts: dict | None, now: float) -> dict:
    """The forecasts (label -> forecast) whose period is not over yet."""
    out = {}
    for label, fc in (forecasts or {}).items():
        if not isinstance(fc, dict):
            continue
        resets = fc.get("resets_at")
        if _finite(resets) and resets <= now:   # type: ignore[operator]
            continue
        if not _finite(fc.get("out_at")) or not _finite(fc.get("pace")):
            continue
        out[label] = fc
    return out


def main_one(forecasts: dict | None, now: float) -> dict | None:
    """The forecast that matters for an account: the window that runs out first before its reset;
    else the weekly one ("7d"), else any."""
    found = live(forecasts, now)
    if not found:
        return None
    short = [fc for fc in found.values() if fc.get("out_before_reset")]
    if short:
        return min(short, key=lambda fc: fc["out_at"])
    return found.get("7d") or min(found.values(), key=lambda fc: fc["out_at"])


def approx(seconds: float) -> str:
    """`~2d`, `~5h`, `~40m`: a forecast is not precise to the minute."""
    seconds = max(0.0, seconds)
    if seconds >= 1.5 * DAY:
        return f"~{round(seconds / DAY)}d"
    if seconds >= 1.5 * HOUR:
        return f"~{round(seconds / HOUR)}h"
    return f"~{max(1, round(seconds / 60))}m"


def text(fc: dict | None, now: float) -> str:
    """`7d: out in ~2d, resets in ~3d`, `7d: out now`, `7d: ~60% at its reset in ~3d`; '' for none."""
    if not fc:
        return ""
    label = fc.get("window", "")
    resets = fc.get("resets_at")
    reset = f"resets in {approx(resets - now)}" if _finite(resets) else "reset unknown"
    if fc.get("pct", 0) >= 100:
        return f"{label}: out now, {reset}"
    if fc.get("out_before_reset") is False:
        return f"{label}: ~{fc.get('at_reset', 0):.0f}% at its reset in {approx(resets - now)}"   # type: ignore[operator]
    return f"{label}: out in {approx(fc['out_at'] - now)}, {reset}"


def for_script(fc: dict, now: float) -> dict:
    """A forecast as `status` prints it: epochs, seconds from now and ISO times (UTC)."""
    import time as _time

    def iso(epoch: float) -> str:
        return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(epoch))

    out = {"window": fc.get("window"), "pct": fc.get("pct"), "pace_pct_per_hour": fc.get("pace"),
           "out_at": iso(fc["out_at"]), "out_in_seconds": max(0, int(fc["out_at"] - now)),
           "resets_at": None, "resets_in_seconds": None, "out_before_reset": fc.get("out_before_reset"),
           "as_of": iso(fc["as_of"]) if _finite(fc.get("as_of")) else None}
    if _finite(fc.get("resets_at")):
        out["resets_at"] = iso(fc["resets_at"])
        out["resets_in_seconds"] = max(0, int(fc["resets_at"] - now))
    return out
