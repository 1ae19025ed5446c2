"""`--policy seed`: the Go seed's rules (unsafe9/claude-pool 0.3), as a reference inside the
simulator only. Written from its documented behaviour, not its code:

- hooks: SessionStart and UserPromptSubmit run `auto --if-needed --threshold 0.9`; StopFailure
  (rate_limit) runs `auto`; the apiKeyHelper serves the next key and starts a detached `auto`;
- `--if-needed` in account mode polls the current account on every run (no cache TTL) and stays
  while its score max(five_hour, seven_day) is under the threshold;
- otherwise in API-key mode, when every account's cached reading proves it exhausted until a
  future reset, nothing is polled; else every account is polled;
- the account with the lowest score wins (ties: pool order); at 100 % everywhere: API keys, and
  a wake at the earliest reset + 30 s (at least 60 s away, none beyond 6 h), skipped when the
  last recorded wake is still pending and due no later;
- one account and no keys: nothing to do. Scoped windows and the 429's evidence are not seen.
"""

from __future__ import annotations

from .engine import Evidence, Session, World

THRESHOLD = 0.9
WAKE_DELAY_H = 30 / 3600
WAKE_MIN_H = 60 / 3600
WAKE_MAX_H = 6.0


class Seed:
    name = "seed"

    def attach(self, world: World) -> None:
        self.world = world
        self.cache: dict[str, dict] = {}
        self.marker: float | None = None

    def session_start(self, now: float, session: Session) -> None:
        self.auto(now, if_needed=True)

    def prompt(self, now: float, session: Session) -> None:
        self.auto(now, if_needed=True)

    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None:
        self.auto(now)

    def helper(self, now: float) -> None:
        self.auto(now)

    def wake(self, now: float) -> None:
        self.auto(now)

    # --
    def _usage(self, acc: str, now: float) -> dict:
        body = self.world.poll(acc, now)
        return {name: (float(body[name]["utilization"]), _hours(body[name]["resets_at"]))
                for name in ("five_hour", "seven_day")}

    @staticmethod
    def score(u: dict) -> float:
        return max(u["five_hour"][0], u["seven_day"][0])

    @staticmethod
    def usable_at(u: dict) -> float | None:
        at = None
        for pct, resets in u.values():
            if pct < 100:
                continue
            if resets is None:
                return None
            at = resets if at is None or resets > at else at
        return at

    def auto(self, now: float, if_needed: bool = False) -> None:
        w = self.world
        if len(w.account_ids) == 1 and w.api_keys == 0:
            return
        current_usage = None
        if if_needed and w.mode != "apikey":
            current_usage = self._usage(w.held, now)
            if self.score(current_usage) < THRESHOLD * 100:
                return
        if w.mode == "apikey":
            def still(acc: str) -> bool:
                u = self.cache.get(acc)
                t = self.usable_at(u) if u is not None else None
                return t is not None and now < t
            if all(still(a) for a in w.account_ids):
                return
        usages = {a: current_usage if (current_usage is not None and a == w.held) else self._usage(a, now)
                  for a in w.account_ids}
        self.cache.update(usages)
        best = None
        for a in w.account_ids:
            if best is None or self.score(usages[a]) < self.score(usages[best]):
                best = a
        if self.score(usages[best]) < 100:  # type: ignore[index]
            w.use_account(best, now)  # type: ignore[arg-type]
        elif w.api_keys and w.mode != "apikey":
            w.use_keys(now)
            times = [t for u in usages.values() if (t := self.usable_at(u)) is not None]
            if not times:
                return
            delay = max(min(times) - now + WAKE_DELAY_H, WAKE_MIN_H)
            if delay > WAKE_MAX_H:
                return
            target = now + delay
            if self.marker is not None and self.marker >= now and self.marker <= target:
                return
            w.schedule_wake(target)
            self.marker = target


def _hours(value: str | None) -> float | None:
    if value is None:
        return None
    from datetime import datetime

    from .anthropic import hours_of
    return hours_of(datetime.fromisoformat(value))
