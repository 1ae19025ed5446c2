"""The simulated Anthropic: one account's rate-limit windows, on a virtual clock in hours.

- five_hour opens with the first *accepted* request after the previous window closed and closes
  5 h later (a refused request opens nothing: it counted no units);
- seven_day resets at `weekly_reset_at_hour`, then every 168 h; the period that contains t=0
  starts with `seven_day_used_at_start` units;
- a scoped weekly window per model has the same schedule and counts only that model's units;
- utilization = units / limit * 100; a request is accepted while every window that applies to it
  is under 100 % (then its units count in all of them, so a window can end above 100 %).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from .trace import AccountSpec

FIVE_HOURS = 5.0
WEEK = 168.0
# The virtual clock's hour 0 (a Monday, midnight UTC).
EPOCH = datetime(2027, 1, 4, tzinfo=timezone.utc)


def clock(hours: float) -> datetime:
    return EPOCH + timedelta(hours=hours)


def hours_of(when: datetime) -> float:
    return (when - EPOCH).total_seconds() / 3600.0


def _iso(hours: float | None) -> str | None:
    return None if hours is None else clock(hours).isoformat()


class SimAccount:
    __slots__ = ("spec", "reset", "k0", "open5", "u5", "k", "u7", "us", "week_used", "served")

    def __init__(self, spec: AccountSpec) -> None:
        self.spec = spec
        self.reset = spec.weekly_reset_at_hour % WEEK
        self.k0 = self.period(0.0)
        self.open5: float | None = None
        self.u5 = 0.0
        self.k = self.k0
        self.u7 = float(spec.seven_day_used_at_start)
        self.us = {m: float(spec.scoped_used_at_start.get(m, 0.0)) for m in spec.scoped}
        self.week_used: dict[int, float] = {}
        self.served = 0.0

    # -- the schedule
    def period(self, t: float) -> int:
        return math.floor((t - self.reset) / WEEK)

    def period_start(self, k: int) -> float:
        return self.reset + WEEK * k

    def period_end(self, k: int) -> float:
        return self.reset + WEEK * (k + 1)

    def advance(self, t: float) -> None:
        if self.open5 is not None and t >= self.open5 + FIVE_HOURS:
            self.open5, self.u5 = None, 0.0
        k = self.period(t)
        if k != self.k:
            self.week_used[self.k] = self.u7
            self.k, self.u7 = k, 0.0
            for m in self.us:
                self.us[m] = 0.0

    def used_in_period(self, k: int) -> float:
        if k == self.k:
            return self.u7
        return self.week_used.get(k, float(self.spec.seven_day_used_at_start) if k == self.k0 else 0.0)

    # -- requests
    def refusal(self, t: float, model: str) -> list[tuple[str, float]]:
        """The windows that refuse a request of `model` at t: [(window name, resets at)], [] = accepted."""
        self.advance(t)
        s = self.spec
        out = []
        if self.open5 is not None and self.u5 >= s.five_hour_limit:
            out.append(("five_hour", self.open5 + FIVE_HOURS))
        if self.u7 >= s.seven_day_limit:
            out.append(("seven_day", self.period_end(self.k)))
        limit = s.scoped.get(model)
        if limit is not None and self.us[model] >= limit:
            out.append((f"seven_day_{model}", self.period_end(self.k)))
        return out

    def charge(self, t: float, units: float, model: str) -> None:
        self.advance(t)
        if self.open5 is None:
            self.open5 = t
        self.u5 += units
        self.u7 += units
        if model in self.us:
            self.us[model] += units
        self.served += units

    # -- what the usage API answers
    def windows(self, t: float) -> dict[str, tuple[float, float | None]]:
        """{window name: (utilization %, resets at in hours or None)} at t, the truth."""
        self.advance(t)
        s = self.spec
        end = self.period_end(self.k)
        out = {
            "five_hour": (self.u5 / s.five_hour_limit * 100.0,
                          None if self.open5 is None else self.open5 + FIVE_HOURS),
            "seven_day": (self.u7 / s.seven_day_limit * 100.0, end),
        }
        for m, limit in s.scoped.items():
            out[f"seven_day_{m}"] = (self.us[m] / limit * 100.0, end)
        return out

    def usage_body(self, t: float) -> dict:
        """The usage API's JSON at t: the legacy keys, and the `limits[]` shape for every window."""
        body: dict = {}
        limits = []
        for name, (pct, resets) in self.windows(t).items():
            body[name] = {"utilization": round(pct, 4), "resets_at": _iso(resets)}
            if name == "five_hour":
                limits.append({"kind": "session", "percent": round(pct, 4), "resets_at": _iso(resets)})
            elif name == "seven_day":
                limits.append({"kind": "weekly_all", "percent": round(pct, 4), "resets_at": _iso(resets)})
            else:
                model = name[len("seven_day_"):]
                limits.append({"kind": "weekly_scoped", "percent": round(pct, 4), "resets_at": _iso(resets),
                               "is_active": True, "scope": {"model": {"display_name": model.capitalize()}}})
        body["limits"] = limits
        return body


def limit_message(window: str, resets_at: float) -> str:
    """What Claude Code shows for a usage-limit 429 (the StopFailure's last_assistant_message)."""
    when = clock(resets_at)
    hour = when.strftime("%I:%M%p").lstrip("0").lower().replace(":00", "")
    if window == "five_hour":
        return f"You've hit your session limit · resets {hour} (UTC)"
    day = f"{when.strftime('%b')} {when.day}, {when.year}, {hour}"
    if window == "seven_day":
        return f"You've hit your weekly limit · resets {day} (UTC)"
    model = window[len("seven_day_"):].capitalize()
    return f"You've hit your {model} limit · resets {day} (UTC)"
