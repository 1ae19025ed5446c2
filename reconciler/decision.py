"""The one decision (docs/ARCHITECTURE.md §6): which account can take a request, which one should,
and when the active one may stay, as pure functions over plain data. Standard library only.

Three callers ask these same functions the same questions, each building the data its own way:
- the policy (reconciler/policy.py), from the pool's pydantic models and the run's observation;
- the session-start hook's light path (reconciler/quicklook.py), from the pool file's raw JSON
  through `light_account` / `light_obs` below (no pydantic on the hot path);
- the simulator (benchmarks/sim/ours.py), which drives the policy itself.
tests/test_decision.py draws thousands of random pools and checks that the light path's "stay"
is the policy's "no change". No other module may carry a copy of a rule or a default below.

The data, by attribute (duck-typed: the pydantic models in schema/pool.py and schema/state.py
have these attributes, and so do the light dataclasses here):
- a window: `pct` (float, or None for "no number"), `resets_at` (aware datetime or None);
  a per-model window also has `name`;
- usage: `five_hour`, `seven_day` (windows), `scoped` (per-model windows);
- a block (a 429's evidence): `until`, `model` ("" = every model), `at` (when it was seen);
- an account: `id`, `usage`, `usage_at` (None: never read), `block`, `needs_relogin`, and the
  user's preferences (read with getattr: absent means none): `priority` (the tier, None: the
  default), `threshold` (a fraction, None: the global one), `paused` (None, or with `until`);
- an observation of an account in this run: `id`, `usage` (None: unknown), `poll` ("ok",
  "cached", "error", "skipped", "dead"), `dead`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the hooks import this module)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

from claude_pool.schema.limits import scope_applies
from claude_pool.schema.timefmt import parse_time

# Defaults: config.toml overrides them (schema/config.py takes them from here).
DEFAULT_THRESHOLD = 0.95   # --if-needed: the active account stays while its five-hour window is under this
DEFAULT_TTL_SECONDS = 60   # a cached reading younger than this is reused, not read again

# The ranking (§6 rule 3), chosen in the simulator (docs/SIMULATOR.md):
NEAR = 85.0          # the active account this close to a limit is watched closely (statusline, prompt hook)
# Claude Code's statusline input may still carry the previous credential's last response this long
# after a switch: its rate limits are not the held account's until then (learn.take_feed, statusline)
FEED_SETTLE = timedelta(seconds=30)
BUSY = 50.0          # an open five-hour window under this much use is never left for pacing
OPEN_SWITCH = 1.75   # a busy open window is left only for a pace this many times the active's
IDLE_SWITCH = 4.0    # with the active's five-hour window closed, likewise
SPARE_MARGIN = 30.0  # keep accounts' room in other models' weekly windows for those models
PACE_TIE = 0.98      # paces within 2 % of the best are a tie (resets minutes apart say nothing)
WEEK = timedelta(hours=168)
# A time stamped this far after `now` was written under another clock (a laptop waking with a
# wrong time, a restored VM): a reading from the future is stale, a block from the future void.
CLOCK_SKEW = timedelta(minutes=2)
# `claude-pool priority`: an account with no priority of its own is in this tier (1 is spent first).
DEFAULT_TIER = 1


# ---- the user's preferences (`claude-pool priority / threshold / pause`) -----------------------------

def paused(acc: Any, now: datetime) -> bool:
    """The account is paused now: never chosen (a pause past its end says nothing)."""
    pause = getattr(acc, "paused", None)
    if pause is None:
        return False
    return pause.until is None or pause.until > now


def tier(acc: Any) -> int:
    """The account's tier: a lower one is spent before a higher one while it has room."""
    value = getattr(acc, "priority", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_TIER


def line_of(acc: Any, line: float) -> float:
    """The threshold (in percent) the account's five-hour window is held to: its own, else `line`."""
    value = getattr(acc, "threshold", None)
    return value * 100 if isinstance(value, (int, float)) and not isinstance(value, bool) else line



# ---- windows and usage --------------------------------------------------------------------------

def window_pct(w: Any, now: datetime | None = None) -> float:
    """A window's use in percent; a window whose reset has passed is over (0 %)."""
    pct = w.pct if w.pct is not None else 0.0
    if now is not None and w.resets_at is not None and w.resets_at <= now:
        return 0.0
    return pct


def binding_window(usage: Any, words: frozenset[str] | None, now: datetime | None = None) -> tuple[str, Any]:
    """(label, window) of the window that binds a request of this model: "5h", "7d" or a model's
    name. `now` given: a window whose reset has passed counts as empty."""
    five, seven = window_pct(usage.five_hour, now), window_pct(usage.seven_day, now)
    best: tuple[str, Any] = ("5h", usage.five_hour) if five >= seven else ("7d", usage.seven_day)
    top = max(five, seven)
    for s in usage.scoped:
        if s.pct is not None and scope_applies(s.name, words) and window_pct(s, now) > top:
            best, top = (s.name, s), window_pct(s, now)
    return best


def binding(usage: Any, words: frozenset[str] | None, now: datetime | None = None) -> float:
    """The utilization that binds a request of this model (its words, schema/limits.py): the
    largest of five_hour, seven_day and the model's own weekly windows, in percent."""
    return window_pct(binding_window(usage, words, now)[1], now)


def full_scoped(usage: Any, now: datetime | None = None) -> list[Any]:
    """Per-model windows at 100 % (whatever the model)."""
    return [s for s in usage.scoped if s.pct is not None and window_pct(s, now) >= 100.0]


def future(when: datetime | None, now: datetime) -> bool:
    """Stamped after now (beyond the skew): written under another clock."""
    return when is not None and when > now + CLOCK_SKEW


def trusted_reading(acc: Any, now: datetime) -> bool:
    """The account has a cached reading that may be believed (read once, not from the future)."""
    return acc.usage_at is not None and not future(acc.usage_at, now)


def live_block(acc: Any, now: datetime, words: frozenset[str] | None = None, *, strict: bool = True) -> Any:
    """The account's 429 block, while it lasts and applies to the model (an expired block, or one
    seen "in the future", says nothing). A block for one model's own limit applies to that
    model; with the model unknown it applies only when `strict` is False (the account then
    ranks last instead)."""
    block = acc.block if acc is not None else None
    if block is None or block.until is None or block.until <= now:
        return None
    if future(getattr(block, "at", None), now):
        return None
    if block.model:
        if words is None:
            return None if strict else block
        if block.model not in words:
            return None
    return block


def exhausted_until(acc: Any, now: datetime, words: frozenset[str] | None = None) -> datetime | None:
    """The time the account is back, when its cached reading (the windows that bind the model)
    or a 429 block proves it refuses requests until then. The one definition: the policy, the
    wake and `status` all ask this."""
    resets: list[datetime] = []
    if trusted_reading(acc, now):
        u = acc.usage
        resets += [w.resets_at for w in (u.five_hour, u.seven_day)
                   if w.pct is not None and w.pct >= 100.0 and w.resets_at is not None and w.resets_at > now]
        resets += [s.resets_at for s in u.scoped
                   if s.pct is not None and s.pct >= 100.0 and s.resets_at is not None and s.resets_at > now
                   and scope_applies(s.name, words)]
    block = live_block(acc, now, words)
    if block is not None and block.until is not None:
        resets.append(block.until)
    return max(resets) if resets else None


# ---- the recovery wake (§6 rule 7) ----------------------------------------------------------------

WAKE_DELAY = timedelta(seconds=30)   # after the earliest known reset
WAKE_MIN = timedelta(seconds=60)     # never sooner than this from now
WAKE_MAX = timedelta(hours=6)        # a reset further away: no wake (the next run schedules it)


def back_at(acc: Any, now: datetime, words: frozenset[str] | None) -> datetime | None:
    """When the account can serve again, as far as a wake is concerned: its known reset, and a
    pause's end (paused until resumed: never)."""
    until = exhausted_until(acc, now, words)
    if paused(acc, now):
        end = acc.paused.until
        return None if end is None else max(end, until) if until is not None else end
    return until


def wake_at(accounts: Iterable[Any], now: datetime, words: frozenset[str] | None = None) -> datetime | None:
    """When the recovery wake of a pool on API keys runs: the earliest time an account (not
    needing a re-login) is back, plus WAKE_DELAY, at least WAKE_MIN from now; None when nobody is
    known to come back within WAKE_MAX. The engine (policy.py) and the helper's light background
    run (reconciler/helper.py) both ask this."""
    resets = [t for a in accounts if not a.needs_relogin for t in [back_at(a, now, words)] if t is not None]
    if not resets:
        return None
    when = max(min(resets) + WAKE_DELAY, now + WAKE_MIN)
    return when if when - now <= WAKE_MAX else None


# ---- reading again ------------------------------------------------------------------------------

def reset_since(acc: Any, now: datetime) -> bool:
    """A window the cached reading reported has reset since it was taken."""
    u = acc.usage
    return acc.usage_at is not None and any(
        w.resets_at is not None and acc.usage_at < w.resets_at <= now
        for w in (u.five_hour, u.seven_day, *u.scoped))


def fresh(acc: Any, now: datetime, ttl: timedelta) -> bool:
    """A cached reading is fresh while younger than the TTL, not from the future, and no window
    has reset since."""
    if acc.usage_at is None or future(acc.usage_at, now) or now - acc.usage_at >= ttl:
        return False
    return not reset_since(acc, now)


def near_limit(acc: Any, words: frozenset[str] | None, now: datetime | None = None) -> bool:
    """The cached reading of a window that binds this model is at NEAR or above."""
    if acc.usage_at is None:
        return False
    return binding(acc.usage, words, now) >= NEAR


def watch_closely(acc: Any, words: frozenset[str] | None, now: datetime) -> bool:
    """Read the active account on every run, not once per TTL: its reading is near a limit and
    came from the usage API. A reading from the statusline's feed (`usage_source` "feed": Claude
    Code's own rate-limit headers after each response, free) is kept for the TTL like any other,
    so a session with the statusline makes at most one usage call per account per TTL."""
    return near_limit(acc, words, now) and getattr(acc, "usage_source", "") != "feed"


def others_due(accounts: Iterable[Any], active: str, now: datetime, words: frozenset[str] | None) -> list[str]:
    """`--if-needed`: the accounts besides the active one to read again before deciding: those
    whose cached reading reported a reset that has passed (an account not in use changes little
    between its resets), or whose reading is from the future; never a dead or provably exhausted one."""
    return [a.id for a in accounts if a.id != active and not a.needs_relogin
            and exhausted_until(a, now, words) is None
            and (reset_since(a, now) or future(a.usage_at, now))]


# ---- ranking ------------------------------------------------------------------------------------

def score(obs: Any, acc: Any, now: datetime, words: frozenset[str] | None) -> float:
    """Binding utilization for this model, in percent: 100 while a 429 block lasts, whatever the
    usage API says; 100 when the usage is unknown."""
    if live_block(acc, now, words) is not None:
        return 100.0
    return binding(obs.usage, words, now) if obs.usage is not None else 100.0


def at_risk(obs: Any, acc: Any, now: datetime, words: frozenset[str] | None) -> bool:
    """With the model unknown: some model's own window (or a 429 for one model) is exhausted on
    this account. It still serves, but ranks after every account with nothing exhausted."""
    if words is not None:
        return False
    if live_block(acc, now, None, strict=False) is not None:
        return True
    return obs.usage is not None and bool(full_scoped(obs.usage, now))


def weekly_window(usage: Any, now: datetime, words: frozenset[str] | None) -> tuple[float, datetime | None]:
    """(pct, resets_at) of the fullest weekly window that binds this model (seven_day, or the
    model's own); a window whose reset has passed counts as empty and a week away."""
    found = [(usage.seven_day.pct or 0.0, usage.seven_day.resets_at)]
    found += [(s.pct, s.resets_at) for s in usage.scoped if s.pct is not None and scope_applies(s.name, words)]
    found = [(0.0, None) if r is not None and r <= now else (p, r) for p, r in found]
    return max(found, key=lambda x: x[0])


def pace(usage: Any, now: datetime, words: frozenset[str] | None) -> float:
    """How fast (percentage points per hour) the account must be spent from now on to lose
    nothing at its weekly reset: the binding weekly window's room over the hours to its reset
    (at least one hour; a week when no reset is known)."""
    pct, resets = weekly_window(usage, now, words)
    left = (resets - now) if resets is not None else WEEK
    return max(0.0, 100.0 - pct) / max(left.total_seconds() / 3600.0, 1.0)


def five_hour_open(usage: Any, now: datetime) -> bool:
    """The five-hour window is running (a request opened it and it has not reset). An account
    idle since its last reset has none: not open, 0 % used."""
    return usage.five_hour.resets_at is not None and usage.five_hour.resets_at > now


def five_hour_pct(usage: Any, now: datetime) -> float:
    return window_pct(usage.five_hour, now)


def switch_factor(usage: Any, now: datetime) -> float:
    """How many times the active account's pace another must offer for the pool to move there
    (`best`, rules 1 and 2): infinite while its five-hour window is open under BUSY."""
    if five_hour_open(usage, now):
        return OPEN_SWITCH if five_hour_pct(usage, now) >= BUSY else math.inf
    return IDLE_SWITCH


def roomy(obs: Any, acc: Any, now: datetime, words: frozenset[str] | None, line: float) -> bool:
    """Usable (every window that binds the model under 100 %, no 429 block) with its five-hour
    window under the line (the threshold, in percent)."""
    return (obs.usage is not None and score(obs, acc, now, words) < 100.0
            and five_hour_pct(obs.usage, now) < line)


def other_scoped_room(usage: Any, words: frozenset[str], now: datetime) -> float:
    """Room (percentage points) left in weekly windows of other models: what only they can use."""
    return sum(100.0 - min(window_pct(s, now), 100.0) for s in usage.scoped
               if s.pct is not None and not scope_applies(s.name, words))


def best(candidates: list[Any], accounts: Mapping[str, Any], now: datetime, active: str,
         words: frozenset[str] | None = None, *, line: float = 100.0) -> Any:
    """The account to hold (docs/ARCHITECTURE.md §6 rule 3), among observations with a reading;
    `accounts` maps every pool account's id to it, in pool order.

    roomy = usable for this model (no window that binds it at 100 %, no 429 block) and its
    five-hour window under `line`; pace = weekly room per hour left to the weekly reset.
      0. among the roomy: with the model unknown, those with no model's window full; with it
         known, those whose room in other models' weekly windows is within SPARE_MARGIN of the
         least (a Sonnet request does not eat the room only Opus could use elsewhere);
      1. the active one among them, its five-hour window open: stay under BUSY; past it, move
         only to a pace over OPEN_SWITCH times its own;
      2. the active one among them, its window closed: move only to a pace over IDLE_SWITCH
         times its own;
      3. else the best pace among them; none: stay while the active account is usable; else the
         usable one with the best pace;
      4. none usable: the lowest binding utilization (the caller sees it is at 100 %).
    Ties (paces within 2 % of the best): the lower binding utilization, the active account, pool order.
    """
    order = {aid: i for i, aid in enumerate(accounts)}
    ranked = [c for c in candidates if c.usage is not None and not paused(accounts.get(c.id), now)]
    if not ranked:
        return None
    accs = {c.id: accounts.get(c.id) for c in ranked}
    pcts = {c.id: score(c, accs[c.id], now, words) for c in ranked}
    paces = {c.id: pace(c.usage, now, words) for c in ranked}

    def by_pace(cands: list[Any]) -> Any:
        top = max(paces[c.id] for c in cands)
        near = [c for c in cands if paces[c.id] >= top * PACE_TIE]
        return min(near, key=lambda c: (pcts[c.id], c.id != active, order.get(c.id, 0)))

    usable = [c for c in ranked if pcts[c.id] < 100.0]
    if not usable:
        return min(ranked, key=lambda c: (at_risk(c, accs[c.id], now, words), pcts[c.id], c.id != active,
                                          order.get(c.id, 0)))
    room = [c for c in usable if roomy(c, accs[c.id], now, words, line_of(accs[c.id], line))]
    if words is None:
        room = [c for c in room if not at_risk(c, accs[c.id], now, words)] or room
    if room:   # tiers (`claude-pool priority`): the lowest tier with room is spent first
        first = min(tier(accs[c.id]) for c in room)
        room = [c for c in room if tier(accs[c.id]) == first]
    if words is not None and room:
        spare = {c.id: other_scoped_room(c.usage, words, now) for c in room}
        least = min(spare.values())
        room = [c for c in room if spare[c.id] <= least + SPARE_MARGIN]
    mine = next((c for c in room if c.id == active), None)
    if mine is not None:
        other = by_pace(room)
        factor = switch_factor(mine.usage, now)
        return other if other.id != active and paces[other.id] > factor * paces[active] else mine
    if room:
        return by_pace(room)
    mine = next((c for c in usable if c.id == active), None)
    if mine is not None:
        return mine
    if words is None:
        usable = [c for c in usable if not at_risk(c, accs[c.id], now, words)] or usable
    first = min(tier(accs[c.id]) for c in usable)
    return by_pace([c for c in usable if tier(accs[c.id]) == first])


def trusted(observations: Iterable[Any]) -> list[Any]:
    """The observations a decision may rank: alive, read this run or cached, with a reading."""
    return [o for o in observations if not o.dead and o.poll in ("ok", "cached") and o.usage is not None]


def must_look_wider(observations: Mapping[str, Any], accounts: Mapping[str, Any], active: str,
                    now: datetime, words: frozenset[str] | None, threshold: float) -> bool:
    """The stay rule of `--if-needed` (§6 rule 4), after the active account was read: False when
    the active account keeps the work with no further look; True when the others must be read
    and ranked first (it is paused, blocked, dead, at risk, over its threshold, or the ranking on
    what is known would leave it). `threshold` is a fraction (0.95), the account's own overrides it."""
    obs = observations.get(active)
    if obs is None or obs.dead:
        return bool(accounts)
    acc = accounts.get(active)
    if paused(acc, now):
        return True   # `claude-pool pause`: never chosen, the pool moves off it
    if live_block(acc, now, words) is not None:
        return True   # a 429 said this account refuses requests: look for another now
    if obs.usage is None or obs.poll == "error":
        return False  # errors are not exhaustion: stay put
    if at_risk(obs, acc, now, words):
        return True
    if not roomy(obs, acc, now, words, line_of(acc, threshold * 100)):
        return True
    if any(tier(accounts.get(aid)) < tier(acc) and o.usage is None and not o.dead
           and not paused(accounts.get(aid), now) for aid, o in observations.items()):
        return True   # a lower tier never read: it may have room (spent first), read it
    pick = best(trusted(observations.values()), accounts, now, active, words, line=threshold * 100)
    return pick is not None and pick.id != active


def cannot_serve(acc: Any, now: datetime, words: frozenset[str] | None, threshold: float,
                 feed_pct: float | None = None) -> bool:
    """The pool's own facts already say the held account should not take the next request: a
    pause, a block, a trusted reading at or past its threshold (the account's own, else
    `threshold`), or the statusline's fresh reading at or past it. (Nothing known: False.) The
    prompt hook asks this before deciding to wait."""
    if acc is None or acc.needs_relogin:
        return False
    if paused(acc, now) or live_block(acc, now, words) is not None:
        return True
    line = line_of(acc, threshold * 100)
    if trusted_reading(acc, now) and (binding(acc.usage, words, now) >= 100.0
                                      or five_hour_pct(acc.usage, now) >= line):
        return True
    return feed_pct is not None and feed_pct >= line


# ---- API keys ---------------------------------------------------------------------------------------

def key_order(has_value: list[bool], cursor: int) -> list[int]:
    """Indexes of the keys in the order the helper serves them from now on (§6 rule 10, the Go
    tool's meaning: `cursor` is the index of the key last served; a key with no value is skipped)."""
    n = len(has_value)
    return [i for i in ((cursor + 1 + step) % n for step in range(n)) if has_value[i]] if n else []


# ---- the light data: the pool file's raw JSON, for the hot paths -----------------------------------

class _Plain:
    """A small record (no dataclasses import: this module is on the hooks' path)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kw: Any) -> None:
        defaults = self._defaults()
        for name, value in zip(self.__slots__, args):
            kw[name] = value
        for name in self.__slots__:
            object.__setattr__(self, name, kw[name] if name in kw else defaults[name])

    def _defaults(self) -> dict[str, Any]:
        return {}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Window(_Plain):
    __slots__ = ("pct", "resets_at", "name")

    def _defaults(self) -> dict[str, Any]:
        return {"pct": 0.0, "resets_at": None, "name": ""}


class LightUsage(_Plain):
    __slots__ = ("five_hour", "seven_day", "scoped")

    def _defaults(self) -> dict[str, Any]:
        return {"five_hour": Window(), "seven_day": Window(), "scoped": ()}


class LightBlock(_Plain):
    __slots__ = ("until", "model", "at")

    def _defaults(self) -> dict[str, Any]:
        return {"until": None, "model": "", "at": None}


class LightPause(_Plain):
    __slots__ = ("until", "at", "reason")

    def _defaults(self) -> dict[str, Any]:
        return {"until": None, "at": None, "reason": ""}


class LightAccount(_Plain):
    __slots__ = ("id", "usage", "usage_at", "block", "needs_relogin", "usage_source", "priority", "threshold",
                 "paused")

    def _defaults(self) -> dict[str, Any]:
        return {"usage": LightUsage(), "usage_at": None, "block": None, "needs_relogin": False, "usage_source": "",
                "priority": None, "threshold": None, "paused": None}


class LightObs(_Plain):
    __slots__ = ("id", "usage", "poll", "dead")

    def _defaults(self) -> dict[str, Any]:
        return {"dead": False}


def _num(value: Any, default: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def _window(data: Any, name: str = "") -> Window:
    if not isinstance(data, dict):
        return Window(name=name)
    return Window(pct=_num(data.get("pct"), None if name else 0.0), resets_at=parse_time(data.get("resets_at")),
                  name=name)


def light_usage(data: Any) -> LightUsage:
    """The pool's JSON form of a reading (schema/pool.py's Usage) as light data."""
    if not isinstance(data, dict):
        return LightUsage()
    scoped = tuple(_window(s, str(s.get("name", ""))) for s in data.get("scoped") or [] if isinstance(s, dict))
    return LightUsage(five_hour=_window(data.get("five_hour")), seven_day=_window(data.get("seven_day")),
                      scoped=scoped)


def light_account(data: dict) -> LightAccount:
    """One account of the pool file's JSON as light data."""
    block = data.get("block")
    light_block = None
    if isinstance(block, dict):
        light_block = LightBlock(until=parse_time(block.get("until")), model=str(block.get("model") or ""),
                                 at=parse_time(block.get("at")))
    return LightAccount(id=str(data.get("id", "")), usage=light_usage(data.get("usage")),
                        usage_at=parse_time(data.get("usage_at")), block=light_block,
                        needs_relogin=bool(data.get("needs_relogin")), usage_source=str(data.get("usage_source") or ""),
                        **light_prefs(data))


def _time_or_never(value: Any) -> bool:
    """schema/pool.py's reading of a time field: "never" (null, empty, Go's zero time) or a time."""
    never = value is None or value == "" or (isinstance(value, str) and value.startswith("0001-01-01"))
    return never or parse_time(value) is not None


def light_prefs(data: dict) -> dict[str, Any]:
    """The user's preferences of one account of the pool file's JSON, as schema/pool.py's Account
    reads them (a value it would not write means unset)."""
    priority = data.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 99:
        priority = None
    threshold = data.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        threshold = None
    pause = data.get("paused")
    light_pause = None
    if isinstance(pause, dict) and _time_or_never(pause.get("until")) and _time_or_never(pause.get("at")) \
            and isinstance(pause.get("reason", ""), str):   # else the full reader drops it too
        light_pause = LightPause(until=parse_time(pause.get("until")), at=parse_time(pause.get("at")),
                                 reason=pause.get("reason", ""))
    return {"priority": priority, "threshold": float(threshold) if threshold is not None else None,
            "paused": light_pause}


def light_obs(acc: LightAccount, reading: LightUsage | None = None) -> LightObs:
    """The account as a run observes it: read now (`reading`), else its cached reading
    (reconciler/observe.py's `unpolled`)."""
    if acc.needs_relogin:
        return LightObs(acc.id, acc.usage if acc.usage_at else None, "dead", dead=True)
    if reading is not None:
        return LightObs(acc.id, reading, "ok")
    return LightObs(acc.id, acc.usage if acc.usage_at else None, "cached" if acc.usage_at else "skipped")
