"""`--policy candidate`: a reset-aware pacing rule, judged in the simulator (not production code).

The rule is `choose()` below: pure Python over what `decide` gets (per-account windows with pct
and resets_at, now, the active account) plus what issue 10 adds (the session's model, accounts
blocked by a 429 until a reset). Times are hours on the simulator's clock; a port to
reconciler/policy.py uses datetimes and the same arithmetic.

    applicable(a, model) = five_hour, seven_day, and seven_day_<model> when a has it
    usable(a)   = not blocked by a 429 (for every model, or for this model) until a future reset,
                  and every applicable window < 100 %
    roomy(a)    = usable(a) and five_hour < 99 %   (safe only with the per-prompt read below)
    weekly(a)   = the applicable weekly window with the highest pct (seven_day or the model's)
    pace(a)     = (100 - weekly(a).pct) / max(hours until weekly(a) resets, 1)
                  "how fast this account must be spent from now on to lose nothing at its reset"
    spare(a)    = headroom (percentage points) left in a's scoped windows of *other* models

    0. among the roomy accounts keep those whose spare() is within 30 points of the least (a
       Sonnet request goes where it does not eat the five-hour room only Opus could use there)
    1. active in that set, its five-hour window open:
         five_hour < 50 %: stay (no flapping; the open window is the cheap place);
         else move to the best pace only if it is over 1.75x the active's pace, else stay.
    2. active in that set, its window closed (idle >= 5 h, or just reset): move to the best pace
       only if it is over 4x the active's (use-it-or-lose-it without flapping), else stay.
    3. otherwise move to the best pace in that set; if the set is empty: stay while the active
       is usable; else the usable account with the best pace.
    4. no usable account: API keys (None); wake at the earliest known reset + 30 s.
    Ties: the active account, then pool order.

Polls (what makes the 99 % safe): the active account on every prompt once any applicable window
of it reads >= 85 %, otherwise when its reading is older than the TTL (60 s); live at session
start and on StopFailure; any other account when a reset it reported has passed since its
reading (an account not in use only ever goes down, at its resets). A usage-limit 429 blocks the
account until the reset it names (for that model only, when the limit is a scoped one) and the
decision runs again at once.

The constants below are the values the sweeps chose (benchmarks/sim/research.py, docs/SIMULATOR.md);
OPEN_BONUS and IDLE_BUSY are knobs the sweeps tried and left neutral.
"""

from __future__ import annotations

from .engine import Evidence, Session, World

THRESHOLD = 99.0
OPEN_BONUS = 1.0
IDLE_SWITCH = 4.0      # at an idle start, move only to an account at least this much more urgent
OPEN_SWITCH = 1.75     # while the active window is open and busy, likewise
IDLE_BUSY = 0.0        # an idle start moves for urgency only once the active week is this used
BUSY = 50.0            # an open window is left for a more urgent account only past this much use
TTL_H = 60 / 3600
NEAR = 85.0            # an active account this close to a limit is read on every prompt
WAKE_DELAY_H = 30 / 3600
WAKE_MIN_H = 60 / 3600

Windows = dict[str, tuple[float, float | None]]     # name -> (pct, resets_at in hours or None)


def applicable(w: Windows, model: str) -> list[str]:
    names = ["five_hour", "seven_day"]
    if f"seven_day_{model}" in w:
        names.append(f"seven_day_{model}")
    return names


def usable(w: Windows, model: str, blocked: dict[str, float] | None, now: float) -> bool:
    """blocked: {"": until (every model), "<model>": until (that model's scoped window)}"""
    if blocked and any(until > now for scope, until in blocked.items() if scope in ("", model)):
        return False
    return all(w[n][0] < 100.0 for n in applicable(w, model))


def weekly(w: Windows, model: str) -> tuple[float, float | None]:
    names = [n for n in applicable(w, model) if n != "five_hour"]
    return max((w[n] for n in names), key=lambda x: x[0])


def five_open(w: Windows) -> bool:
    return w["five_hour"][1] is not None


def score(w: Windows, model: str, now: float) -> float:
    pct, resets = weekly(w, model)
    hours = max((resets - now) if resets is not None else 168.0, 1.0)
    return (100.0 - pct) / hours * (OPEN_BONUS if five_open(w) else 1.0)


PRESERVE_SCOPED = True


SPARE_MARGIN = 30.0


def _other_scoped_room(w: Windows, model: str) -> float:
    """Headroom (percentage points) in scoped windows of other models: what only they can use."""
    return sum(100.0 - min(pct, 100.0) for n, (pct, _) in w.items()
               if n.startswith("seven_day_") and n != f"seven_day_{model}")


def choose(readings: dict[str, Windows], active: str, model: str, now: float,
           blocked: dict[str, dict[str, float]] | None = None, order: list[str] | None = None) -> str | None:
    """The account to hold, or None for API keys."""
    blocked = blocked or {}
    order = order or list(readings)
    rank = {a: i for i, a in enumerate(order)}
    ok = [a for a in order if a in readings and usable(readings[a], model, blocked.get(a), now)]
    roomy = [a for a in ok if readings[a]["five_hour"][0] < THRESHOLD]

    def best(cands: list[str]) -> str:
        def key(a: str) -> tuple:
            return (score(readings[a], model, now), a == active, -rank[a])
        return max(cands, key=key)

    if PRESERVE_SCOPED:
        # a request its model's scoped window does not limit is better spent where other models'
        # scoped windows are already exhausted: keep those accounts' scoped room for their model.
        room = {a: _other_scoped_room(readings[a], model) for a in roomy}
        least = min(room.values(), default=0.0)
        spare = [a for a in roomy if room[a] <= least + SPARE_MARGIN]
        if spare and len(spare) < len(roomy):
            roomy = spare
    if active in roomy:
        other = best(roomy)
        if five_open(readings[active]):
            factor = OPEN_SWITCH if readings[active]["five_hour"][0] >= BUSY else float("inf")
        else:
            factor = IDLE_SWITCH if weekly(readings[active], model)[0] >= IDLE_BUSY else float("inf")
        if other != active and score(readings[other], model, now) > factor * score(readings[active], model, now):
            return other
        return active
    if roomy:
        return best(roomy)
    if active in ok:
        return active
    return best(ok) if ok else None


class Candidate:
    name = "candidate"

    def attach(self, world: World) -> None:
        self.world = world
        self.cache: dict[str, tuple[float, Windows]] = {}     # account -> (read at, windows)
        self.blocked: dict[str, dict[str, float]] = {}     # account -> {scope: until}
        self.sleeper: tuple[float, int] | None = None
        self.model = "sonnet"

    # -- readings
    def _poll(self, acc: str, now: float) -> None:
        body = self.world.poll(acc, now)
        w: Windows = {}
        for name, v in body.items():
            if name == "limits" or not isinstance(v, dict):
                continue
            w[name] = (min(float(v["utilization"]), 100.0), _hours(v["resets_at"]))
        self.cache[acc] = (now, w)

    def _stale(self, acc: str, now: float, ttl: float | None) -> bool:
        got = self.cache.get(acc)
        if got is None:
            return True
        at, w = got
        if ttl is not None and now - at >= ttl:
            return True
        return any(r is not None and at < r <= now for _, r in w.values())

    def _decide(self, now: float, model: str, *, live_active: bool = False) -> None:
        w = self.world
        self.model = model
        active = w.held
        near = active in self.cache and any(
            self.cache[active][1][n][0] >= NEAR for n in applicable(self.cache[active][1], model))
        if w.mode == "account" and (live_active or near or self._stale(active, now, TTL_H)):
            self._poll(active, now)
        for acc in w.account_ids:   # a reading is good until a reset it reported passes
            if (acc != active or w.mode == "apikey") and self._stale(acc, now, None):
                self._poll(acc, now)
        readings = {a: self.cache[a][1] for a in w.account_ids if a in self.cache}
        self.blocked = {a: kept for a, b in self.blocked.items() if (kept := {s: t for s, t in b.items() if t > now})}
        pick = choose(readings, active if w.mode == "account" else "", model, now, self.blocked, w.account_ids)
        if pick is not None:
            w.use_account(pick, now)
        elif w.api_keys:
            w.use_keys(now)
            self._wake(now)

    def _wake(self, now: float) -> None:
        times = []
        for a in self.world.account_ids:
            got = self.cache.get(a)
            ends = [r for p, r in got[1].values() if p >= 100 and r is not None and r > now] if got else []
            if a in self.blocked:
                ends.append(max(self.blocked[a].values()))
            if ends:
                times.append(max(ends))
        if not times:
            return
        at = max(min(times) + WAKE_DELAY_H, now + WAKE_MIN_H)
        if self.sleeper is not None and self.sleeper[0] > now and self.sleeper[0] <= at + 1 / 3600:
            return
        if self.sleeper is not None:
            self.world.cancel_wake(self.sleeper[1])
        self.sleeper = (at, self.world.schedule_wake(at))

    # -- hook moments
    def session_start(self, now: float, session: Session) -> None:
        self._decide(now, session.model, live_active=True)

    def prompt(self, now: float, session: Session) -> None:
        self._decide(now, session.model)

    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None:
        mine = self.blocked.setdefault(evidence.account, {})
        for window, until in evidence.windows:
            scope = window[len("seven_day_"):] if window.startswith("seven_day_") else ""
            mine[scope] = max(until, mine.get(scope, 0.0))
        self._decide(now, session.model, live_active=True)

    def helper(self, now: float) -> None:
        self._decide(now, self.model)

    def wake(self, now: float) -> None:
        self.sleeper = None
        self._decide(now, self.model)


def _hours(value: str | None) -> float | None:
    if value is None:
        return None
    from datetime import datetime

    from .anthropic import hours_of
    return hours_of(datetime.fromisoformat(value))
