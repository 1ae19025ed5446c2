"""The virtual-clock loop: Claude Code's side of the world, the hooks' moments, and the metrics.

Claude Code, as modelled here (facts from the shared Claude Code reference):
- every session reads the same credential: the OAuth login the store holds, unless settings.json
  names claude-pool's apiKeyHelper (API-key mode), which then wins;
- a session starts at its first request: SessionStart fires, then UserPromptSubmit;
- every request (one prompt, one turn) fires UserPromptSubmit first. The product runs that hook's
  reconcile detached; here it completes before the request goes out (a turn is many API calls,
  so the switch lands during it);
- a 429 from a usage limit: an interactive session fires StopFailure (with the limit's message)
  and the user retries the prompt once (UserPromptSubmit fires again); a print-mode request
  (`claude -p`) gets no plugin StopFailure and no retry;
- in API-key mode every request is accepted and billed; each session calls the apiKeyHelper at its
  first request in that mode (or after settings.json changed) and when its cached key is 5 min
  old; the helper serves a key and starts a detached reconcile (applied after the request);
- a scheduled recovery wake runs at its time, before any request at the same or a later time.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Protocol

from .anthropic import SimAccount, limit_message
from .trace import Request, Trace

HELPER_TTL_HOURS = 300.0 / 3600.0   # CLAUDE_CODE_API_KEY_HELPER_TTL_MS default


@dataclass
class Session:
    id: str
    model: str
    print: bool
    helper_at: float | None = None
    helper_epoch: int = -1


@dataclass(frozen=True)
class Evidence:
    """What StopFailure hands the hooks on a usage-limit 429."""
    account: str
    error: str                                  # "rate_limit"
    windows: tuple[tuple[str, float], ...]      # the refusing windows and their resets (hours)
    message: str                                # Claude Code's last_assistant_message


class Driver(Protocol):
    """A pooling policy as the hooks drive it. `attach` gets the world; each method is one hook
    moment and may poll (world.poll), switch (world.use_account / world.use_keys) and schedule
    wakes (world.schedule_wake / world.cancel_wake)."""

    name: str

    def attach(self, world: "World") -> None: ...
    def session_start(self, now: float, session: Session) -> None: ...
    def prompt(self, now: float, session: Session) -> None: ...
    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None: ...
    def helper(self, now: float) -> None: ...
    def wake(self, now: float) -> None: ...


class World:
    """What a policy can see and do: the usage API, the credential, the wake."""

    def __init__(self, trace: Trace, record: bool = False) -> None:
        self.trace = trace
        self.accounts = {a.id: SimAccount(a) for a in trace.accounts}
        self.account_ids = [a.id for a in trace.accounts]
        self.api_keys = trace.api_keys
        self.mode = "account"
        self.held = self.account_ids[0]
        self.settings_epoch = 0
        self.usage_calls = 0
        self.switches = 0
        self._wakes: list[tuple[float, int]] = []
        self._cancelled: set[int] = set()
        self._seq = itertools.count()
        self.record = record
        self.timeline: list[tuple[float, str]] = [(0.0, self.held)]

    # -- the usage API
    def poll(self, account_id: str, now: float) -> dict:
        self.usage_calls += 1
        return self.accounts[account_id].usage_body(now)

    # -- the credential
    def credential(self) -> str:
        return "apikey" if self.mode == "apikey" else self.held

    def use_account(self, account_id: str, now: float) -> None:
        if account_id not in self.accounts:
            raise KeyError(account_id)
        before = self.credential()
        if self.mode == "apikey":
            self.settings_epoch += 1
        self.mode, self.held = "account", account_id
        self._changed(before, now)

    def use_keys(self, now: float) -> None:
        if self.api_keys <= 0:
            raise RuntimeError("no API keys to switch to")
        before = self.credential()
        if self.mode != "apikey":
            self.settings_epoch += 1
        self.mode = "apikey"
        self._changed(before, now)

    def _changed(self, before: str, now: float) -> None:
        if self.credential() != before:
            self.switches += 1
            self.timeline.append((now, self.credential()))

    # -- the recovery wake
    def schedule_wake(self, at: float) -> int:
        token = next(self._seq)
        heapq.heappush(self._wakes, (at, token))
        return token

    def cancel_wake(self, token: int) -> None:
        self._cancelled.add(token)

    def due_wake(self, until: float) -> float | None:
        while self._wakes and self._wakes[0][0] <= until:
            at, token = heapq.heappop(self._wakes)
            if token not in self._cancelled:
                return at
        return None


@dataclass
class Result:
    policy: str
    trace: str
    total_units: float = 0.0
    requests: int = 0
    billed_units: float = 0.0
    billed_requests: int = 0
    blocked_units: float = 0.0
    blocked_requests: int = 0
    switches: int = 0
    usage_calls: int = 0
    refusals: int = 0                 # 429s seen (a retried request that then passed counts here)
    expired_units: float = 0.0
    lower_bound_billed_units: float | None = None
    served_units: dict[str, float] = field(default_factory=dict)
    # (t, "account id" | "apikey" | "blocked", units) per request, for the plot
    served_log: list[tuple[float, str, float]] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "trace": self.trace, "policy": self.policy, "requests": self.requests,
            "total_units": _r(self.total_units),
            "billed_units": _r(self.billed_units), "billed_requests": self.billed_requests,
            "blocked_units": _r(self.blocked_units), "blocked_requests": self.blocked_requests,
            "switches": self.switches, "usage_calls": self.usage_calls, "refusals": self.refusals,
            "expired_units": _r(self.expired_units),
            "lower_bound_billed_units": None if self.lower_bound_billed_units is None
            else _r(self.lower_bound_billed_units),
            "excess_over_lower_bound": None if self.lower_bound_billed_units is None
            else _r(self.billed_units + self.blocked_units - self.lower_bound_billed_units),
            "served_units": {k: _r(v) for k, v in self.served_units.items()},
        }


def _r(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 3)


def simulate(trace: Trace, driver: Driver, *, record: bool = False) -> Result:
    world = World(trace, record=record)
    driver.attach(world)
    res = Result(policy=driver.name, trace=trace.name, total_units=trace.total_units, requests=len(trace.requests))
    sessions: dict[str, Session] = {}
    unserved_at: list[float] = []     # times of billed or blocked requests (for expired_units)
    unserved_units: list[float] = []

    def run_wakes(until: float) -> None:
        while (at := world.due_wake(until)) is not None:
            driver.wake(at)

    for req in trace.requests:
        run_wakes(req.t)
        sess = sessions.get(req.session)
        if sess is None:
            sess = sessions[req.session] = Session(req.session, req.model, req.print)
            driver.session_start(req.t, sess)
        outcome = _serve(world, driver, sess, req, res)
        if outcome in ("apikey", "blocked"):
            unserved_at.append(req.t)
            unserved_units.append(req.units)
        if record:
            res.served_log.append((req.t, outcome, req.units))
    run_wakes(trace.duration_hours)

    res.switches, res.usage_calls = world.switches, world.usage_calls
    res.served_units = {a: acc.served for a, acc in world.accounts.items()}
    res.expired_units = _expired(world, trace.duration_hours, unserved_at, unserved_units)
    res.timeline = world.timeline
    return res


def _serve(world: World, driver: Driver, sess: Session, req: Request, res: Result) -> str:
    attempts = 1 if req.print else 2
    for _ in range(attempts):
        driver.prompt(req.t, sess)
        if world.mode == "apikey":
            res.billed_units += req.units
            res.billed_requests += 1
            if (sess.helper_at is None or req.t - sess.helper_at >= HELPER_TTL_HOURS
                    or sess.helper_epoch != world.settings_epoch):
                sess.helper_at, sess.helper_epoch = req.t, world.settings_epoch
                driver.helper(req.t)
            return "apikey"
        acc = world.accounts[world.held]
        refused = acc.refusal(req.t, req.model)
        if not refused:
            acc.charge(req.t, req.units, req.model)
            return world.held
        res.refusals += 1
        if not req.print:
            window, resets = max(refused, key=lambda w: w[1])
            driver.stop_failure(req.t, sess, Evidence(account=world.held, error="rate_limit", windows=tuple(refused),
                                                      message=limit_message(window, resets)))
    res.blocked_units += req.units
    res.blocked_requests += 1
    return "blocked"


def _expired(world: World, end: float, times: list[float], units: list[float]) -> float:
    """Seven-day capacity left unused at a reset inside the trace, in weeks (of that account) in
    which some units were billed or blocked."""
    prefix = [0.0]
    for u in units:
        prefix.append(prefix[-1] + u)
    total = 0.0
    for acc in world.accounts.values():
        acc.advance(end)
        for k in range(acc.k0, acc.period(end) + 1):
            stop = acc.period_end(k)
            if stop > end:
                break
            lo = bisect.bisect_left(times, max(0.0, acc.period_start(k)))
            hi = bisect.bisect_left(times, stop)
            if prefix[hi] - prefix[lo] > 0:
                total += max(0.0, acc.spec.seven_day_limit - acc.used_in_period(k))
    return total
