"""The policy (docs/ARCHITECTURE.md §6): a pure function from observed state + intent to desired state.

No files, no network, no clock: `now` comes in with the observed state. Everything here is
table-tested in tests/test_policy.py.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from claude_pool.schema.limits import families, scope_applies
from claude_pool.schema.pool import Account, Pool, Usage, exhausted_until, live_block  # noqa: F401 (policy's vocabulary)
from claude_pool.schema.state import AccountObs, DesiredState, ObservedState

from .errors import UserError
from .intents import AddKey, Import, Intent, Reconcile, Remove, Switch
from claude_pool.schema.timefmt import format_time

WAKE_DELAY = timedelta(seconds=30)
WAKE_MIN = timedelta(seconds=60)
WAKE_MAX = timedelta(hours=6)

# The ranking (docs/ARCHITECTURE.md §6 rule 3), chosen in the simulator (docs/SIMULATOR.md):
NEAR = 85.0          # the active account this close to a limit is read on every run (no TTL)
BUSY = 50.0          # an open five-hour window under this much use is never left for pacing
OPEN_SWITCH = 1.75   # a busy open window is left only for a pace this many times the active's
IDLE_SWITCH = 4.0    # with the active's five-hour window closed, likewise
SPARE_MARGIN = 30.0  # keep accounts' room in other models' weekly windows for those models
PACE_TIE = 0.98      # paces within 2 % of the best are a tie (resets minutes apart say nothing)
WEEK = timedelta(hours=168)


def words_of(intent: Intent) -> frozenset[str] | None:
    """The words of the model the decision is for (None: unknown)."""
    return families(getattr(intent, "model", None))


def score(obs: AccountObs, acc: Account | None, now: datetime, words: frozenset[str] | None) -> float:
    """Binding utilization for this model, in percent: 100 while a 429 block lasts, whatever
    the usage API says."""
    if live_block(acc, now, words) is not None:
        return 100.0
    return obs.usage.binding(words) if obs.usage is not None else 100.0


def at_risk(obs: AccountObs, acc: Account | None, now: datetime, words: frozenset[str] | None) -> bool:
    """With the model unknown: some model's own window (or a 429 for one model) is exhausted on
    this account. It still serves, but ranks after every account with nothing exhausted."""
    if words is not None:
        return False
    if live_block(acc, now, None, strict=False) is not None:
        return True
    return obs.usage is not None and bool(obs.usage.full_scoped())


def reset_since(acc: Account, now: datetime) -> bool:
    """A window the cached reading reported has reset since it was taken."""
    u = acc.usage
    return acc.usage_at is not None and any(
        w.resets_at is not None and acc.usage_at < w.resets_at <= now
        for w in (u.five_hour, u.seven_day, *u.scoped))


def fresh(acc: Account, now: datetime, ttl: timedelta) -> bool:
    """A cached reading is fresh while younger than the TTL and no window has reset since."""
    if acc.usage_at is None or now - acc.usage_at >= ttl:
        return False
    return not reset_since(acc, now)


def near_limit(acc: Account, words: frozenset[str] | None) -> bool:
    """The cached reading of a window that binds this model is at NEAR or above."""
    if acc.usage_at is None:
        return False
    u = acc.usage
    return max([u.five_hour.pct, u.seven_day.pct] + [s.pct for s in u.scoped if s.pct is not None
                and scope_applies(s.name, words)]) >= NEAR


def accounts_to_poll(pool: Pool, intent: Intent, held: str, now: datetime, ttl_seconds: int) -> list[str]:
    """Which accounts need a usage poll for this decision (docs/ARCHITECTURE.md §6 rules 4 and 7).

    Not polled: dead accounts, a fresh cached reading (account mode only), an account provably
    exhausted until a known reset. `--if-needed` in account mode reads the active account (past
    the TTL, or on every run once a window that binds the model is at NEAR or above) and any other
    account only once a reset its cached reading reported has passed (an account not in use
    changes little between its resets; a full look, before moving, reads it again past the
    TTL). Commands that edit the pool by hand (switch, import, key add, rm) decide on cached data
    and poll nothing.
    """
    if not isinstance(intent, Reconcile):
        return []
    usable = [a for a in pool.accounts if not a.needs_relogin]
    words = words_of(intent)
    if intent.if_needed and pool.mode == "account":
        active = active_id(pool, held)
        if any(a.id == active for a in usable):
            out = []
            for a in usable:
                if exhausted_until(a, now, words) is not None:
                    continue
                if a.id == active:
                    ttl = timedelta(0) if intent.live or near_limit(a, words) else timedelta(seconds=ttl_seconds)
                    if not fresh(a, now, ttl):
                        out.append(a.id)
                elif reset_since(a, now):
                    out.append(a.id)
            return out
    # API-key time is billed: on keys every run re-polls (docs/ARCHITECTURE.md §6 rule 7), unless a reading proves the
    # account is exhausted until a known reset.
    ttl = timedelta(seconds=0 if intent.live or pool.mode == "apikey" else ttl_seconds)
    return [a.id for a in usable if not fresh(a, now, ttl) and exhausted_until(a, now, words) is None]


def active_id(pool: Pool, held: str) -> str:
    """The account in use: the one Claude Code holds, when it is a pool account."""
    if held and pool.account(held) is not None:
        return held
    return pool.current if pool.account(pool.current) is not None else ""


def needs_wider_poll(observed: ObservedState, intent: Intent) -> bool:
    """`--if-needed` looked at the active account only; is a full look needed now?"""
    if not (isinstance(intent, Reconcile) and intent.if_needed) or observed.pool.mode != "account":
        return False
    active = observed.accounts.get(active_id(observed.pool, observed.store.account))
    if active is None or active.dead:
        return bool(observed.pool.accounts)
    acc = observed.pool.account(active.id)
    words = words_of(intent)
    if live_block(acc, observed.now, words) is not None:
        return True  # a 429 said this account refuses requests: look for another now
    if active.usage is None or active.poll == "error":
        return False  # errors are not exhaustion: stay put
    if at_risk(active, acc, observed.now, words):
        return True
    if not _roomy(active, acc, observed.now, words, intent.threshold * 100):
        return True
    # the ranking, on what is known, would leave the active account: read the others first
    trusted = [o for o in observed.accounts.values() if not o.dead and o.poll in ("ok", "cached")
               and o.usage is not None]
    pick = _best(trusted, observed, active.id, words, line=intent.threshold * 100)
    return pick is not None and pick.id != active.id


def _label(obs: AccountObs, observed: ObservedState | None = None, words: frozenset[str] | None = None) -> str:
    acc = observed.pool.account(obs.id) if observed is not None else None
    now = observed.now if observed is not None else None
    block = live_block(acc, now, words, strict=False) if now is not None else None
    if block is not None and block.until is not None:
        said = f": {block.reason}" if block.reason else ""
        return f"{obs.id} blocked until {format_time(block.until)} (429{said}; reset from {block.source})"
    if obs.usage is None:
        return f"{obs.id} (unknown)"
    u = obs.usage
    which, window = u.binding_window(words)
    text = f"{obs.id} at {math.floor(window.pct)}% ({which})"   # floored, as `list` shows it
    if words is None and u.full_scoped():
        text += "; " + ", ".join(f"{s.name} at 100%" for s in u.full_scoped()) + " (model unknown)"
    return text


def _wake_at(observed: ObservedState, words: frozenset[str] | None = None) -> datetime | None:
    now = observed.now
    resets = [t for a in observed.pool.accounts if not a.needs_relogin
              for t in [exhausted_until(a, now, words)] if t is not None]
    if not resets:
        return None
    when = max(min(resets) + WAKE_DELAY, now + WAKE_MIN)
    return when if when - now <= WAKE_MAX else None


class _Builder:
    """Turns a target (mode, account, key) into a full desired state for this observation."""

    def __init__(self, observed: ObservedState) -> None:
        self.o = observed
        self.pool = observed.pool
        self.notes: list[str] = []
        self.adopt = [observed.store.account] if observed.store.fresher_than_pool else []
        self.foreign_login = observed.store.valid and not observed.store.account
        self.words: frozenset[str] | None = None
        for obs in observed.accounts.values():
            if obs.dead:
                self.notes.append(f"{obs.id}: needs re-login ({obs.error or 'refresh token rejected'})")
            elif obs.poll == "error" and obs.error:
                self.notes.append(f"{obs.id}: usage unknown: {obs.error}")
        for acc in observed.pool.accounts:
            block = live_block(acc, observed.now, None, strict=False)
            if block is not None and block.until is not None:
                scope = f" for {block.model}" if block.model else ""
                said = f": {block.reason}" if block.reason else ""
                self.notes.append(f"{acc.id}: blocked{scope} until {format_time(block.until)} (429{said}; "
                                  f"reset from {block.source})")
        if observed.store.error:
            self.notes.append(observed.store.error)
        if self.foreign_login:
            who = f" ({observed.store.email})" if observed.store.email else ""
            self.notes.append(f"Claude Code holds a login that is not in the pool{who}; it is left alone "
                              "(run `claude-pool import` to add it)")

    def keep(self, reason: str) -> DesiredState:
        p = self.pool
        active = active_id(p, self.o.store.account)
        return self.build(p.mode, active, p.current_key, reason, touch_store=False)

    def build(self, mode: str, account: str, key: str, reason: str, *, touch_store: bool = True,
              **extra: object) -> DesiredState:
        p, s = self.pool, self.o.settings
        if mode == "account":
            touch = s.ours
            helper = p.saved_api_key_helper or None
            saved = "" if (touch or p.mode == "apikey") else p.saved_api_key_helper
            store_account = account if (touch_store and account and not self.foreign_login) else ""
            wake = None
        else:
            touch = not s.ours or s.stale  # a stale helper of ours is rewritten to this run's
            helper = self.o.helper_command
            if p.mode == "apikey" or s.ours:
                saved = p.saved_api_key_helper
            else:
                saved = s.api_key_helper or ""
            store_account = ""
            wake = _wake_at(self.o, self.words)
        return DesiredState(mode=mode, current=account, current_key=key, saved_api_key_helper=saved,
                            store_account=store_account, api_key_helper=helper, touch_settings=touch,
                            adopt=list(self.adopt), wake_at=wake, reason=reason, notes=self.notes, **extra)


def _first_key(pool: Pool, skip: str = "") -> str:
    """The key API-key mode uses: the current one while on keys; entering, the key the helper's
    cursor serves next (the Go tool announces that one)."""
    if pool.mode == "apikey" and pool.current_key and pool.current_key != skip and pool.key(pool.current_key):
        return pool.current_key
    return pool.next_key_id(skip)


def weekly_window(usage: Usage, now: datetime, words: frozenset[str] | None) -> tuple[float, datetime | None]:
    """(pct, resets_at) of the fullest weekly window that binds this model (seven_day, or the
    model's own); a window whose reset has passed counts as empty and a week away."""
    found = [(usage.seven_day.pct, usage.seven_day.resets_at)]
    found += [(s.pct, s.resets_at) for s in usage.scoped if s.pct is not None and scope_applies(s.name, words)]
    found = [(0.0, None) if r is not None and r <= now else (p, r) for p, r in found]
    return max(found, key=lambda x: x[0])


def pace(usage: Usage, now: datetime, words: frozenset[str] | None) -> float:
    """How fast (percentage points per hour) the account must be spent from now on to lose
    nothing at its weekly reset: the binding weekly window's room over the hours to its reset
    (at least one hour; a week when no reset is known)."""
    pct, resets = weekly_window(usage, now, words)
    left = (resets - now) if resets is not None else WEEK
    return max(0.0, 100.0 - pct) / max(left.total_seconds() / 3600.0, 1.0)


def five_hour_open(usage: Usage, now: datetime) -> bool:
    """The account's five-hour window is running (a request opened it and it has not reset)."""
    return usage.five_hour.resets_at is not None and usage.five_hour.resets_at > now


def _five_hour_pct(usage: Usage, now: datetime) -> float:
    return usage.five_hour.pct if five_hour_open(usage, now) or usage.five_hour.resets_at is None else 0.0


def _roomy(obs: AccountObs, acc: Account | None, now: datetime, words: frozenset[str] | None,
           line: float) -> bool:
    """Usable (every window that binds the model under 100 %, no 429 block) with its five-hour
    window under the line (the threshold)."""
    return (obs.usage is not None and score(obs, acc, now, words) < 100.0
            and _five_hour_pct(obs.usage, now) < line)


def _other_scoped_room(usage: Usage, words: frozenset[str]) -> float:
    """Room (percentage points) left in weekly windows of other models: what only they can use."""
    return sum(100.0 - min(s.pct, 100.0) for s in usage.scoped
               if s.pct is not None and not scope_applies(s.name, words))


def _best(candidates: list[AccountObs], observed: ObservedState, active: str,
          words: frozenset[str] | None = None, *, line: float = 100.0) -> AccountObs | None:
    """The account to hold (docs/ARCHITECTURE.md §6 rule 3), among accounts with a reading.

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
    pool, now = observed.pool, observed.now
    order = {a.id: i for i, a in enumerate(pool.accounts)}
    ranked = [c for c in candidates if c.usage is not None]
    if not ranked:
        return None
    accs = {c.id: pool.account(c.id) for c in ranked}
    pcts = {c.id: score(c, accs[c.id], now, words) for c in ranked}
    paces = {c.id: pace(c.usage, now, words) for c in ranked}  # type: ignore[arg-type]

    def by_pace(cands: list[AccountObs]) -> AccountObs:
        top = max(paces[c.id] for c in cands)
        near = [c for c in cands if paces[c.id] >= top * PACE_TIE]
        return min(near, key=lambda c: (pcts[c.id], c.id != active, order.get(c.id, 0)))

    usable = [c for c in ranked if pcts[c.id] < 100.0]
    if not usable:
        return min(ranked, key=lambda c: (at_risk(c, accs[c.id], now, words), pcts[c.id], c.id != active,
                                          order.get(c.id, 0)))
    roomy = [c for c in usable if _roomy(c, accs[c.id], now, words, line)]
    if words is None:
        roomy = [c for c in roomy if not at_risk(c, accs[c.id], now, words)] or roomy
    elif roomy:
        room = {c.id: _other_scoped_room(c.usage, words) for c in roomy}  # type: ignore[arg-type]
        least = min(room.values())
        roomy = [c for c in roomy if room[c.id] <= least + SPARE_MARGIN]
    mine = next((c for c in roomy if c.id == active), None)
    if mine is not None:
        other = by_pace(roomy)
        if five_hour_open(mine.usage, now):  # type: ignore[arg-type]
            factor = OPEN_SWITCH if mine.usage.five_hour.pct >= BUSY else math.inf  # type: ignore[union-attr]
        else:
            factor = IDLE_SWITCH
        return other if other.id != active and paces[other.id] > factor * paces[active] else mine
    if roomy:
        return by_pace(roomy)
    mine = next((c for c in usable if c.id == active), None)
    if mine is not None:
        return mine
    if words is None:
        usable = [c for c in usable if not at_risk(c, accs[c.id], now, words)] or usable
    return by_pace(usable)


def _overage(candidates: list[AccountObs], observed: ObservedState, active: str) -> AccountObs | None:
    """An exhausted account whose paid extra usage is on and not spent (and no 429 says it
    refuses anyway): the one with the most of it left, the active one on a tie."""
    pool, now = observed.pool, observed.now
    order = {a.id: i for i, a in enumerate(pool.accounts)}
    able = [c for c in candidates if c.usage is not None and c.usage.extra_usage is not None
            and c.usage.extra_usage.available() and live_block(pool.account(c.id), now, None, strict=False) is None]
    if not able:
        return None
    return min(able, key=lambda c: (c.usage.extra_usage.pct or 0.0, c.id != active,  # type: ignore[union-attr]
                                    order.get(c.id, 0)))


def decide_reconcile(observed: ObservedState, intent: Reconcile) -> DesiredState:
    b = _Builder(observed)
    words = b.words = words_of(intent)
    pool = observed.pool
    if not pool.accounts and not pool.api_keys:
        return b.keep("the pool is empty")
    mode = pool.mode
    if mode == "apikey" and not observed.settings.ours and not observed.settings.error:
        # docs/ARCHITECTURE.md §6 rule 9: our helper was removed from settings.json by hand; respect it.
        b.notes.append("claude-pool's apiKeyHelper was removed from settings.json by hand: back to account mode")
        mode = "account"
    active = active_id(pool, observed.store.account)
    usable = [observed.accounts[a.id] for a in pool.accounts if not observed.accounts[a.id].dead]
    if intent.if_needed and mode == "account" and not needs_wider_poll(observed, intent) and active:
        obs = observed.accounts[active]
        if obs.usage is None or obs.poll == "error":
            why = f"{active}'s usage is unknown; staying put"
        elif obs.usage.binding(words) < intent.threshold * 100:
            why = f"{_label(obs, observed, words)} is under the {intent.threshold:.0%} threshold"
        else:
            why = f"{_label(obs, observed, words)}: no other account is a better place for this work; staying"
        return b.build("account", active, pool.current_key, why)
    trusted = [o for o in usable if o.poll in ("ok", "cached") and o.usage is not None]
    best = _best(trusted, observed, active if mode == "account" else "", words, line=intent.threshold * 100)
    best_score = score(best, pool.account(best.id), observed.now, words) if best is not None else 100.0
    if best is not None and best_score < 100:
        room = f" ({pace(best.usage, observed.now, words):.1f} weekly points per hour to its reset)"  # type: ignore[arg-type]
        if best.id == active and not _roomy(best, pool.account(best.id), observed.now, words,
                                            intent.threshold * 100):
            why = (f"{_label(best, observed, words)}: no account is under the {intent.threshold:.0%} threshold; "
                   "staying while it serves")
        elif best.id == active:
            why = f"{_label(best, observed, words)} has the most headroom" + room
            faster = [(pace(o.usage, observed.now, words), o.id) for o in trusted  # type: ignore[arg-type]
                      if o.id != active and score(o, pool.account(o.id), observed.now, words) < 100]
            if faster and max(faster)[0] > pace(best.usage, observed.now, words):  # type: ignore[arg-type]
                top, other = max(faster)
                why = (f"{_label(best, observed, words)} stays: switching costs the session its prompt cache, "
                       f"and {other} ({top:.1f} weekly points per hour to its reset) is not enough ahead" + room)
        else:
            was = observed.accounts.get(active)
            why = f"{_label(best, observed, words)} has the most headroom" + room + (
                f"; {_label(was, observed, words)}" if was else "")
        if mode == "apikey" or pool.mode == "apikey":
            why = f"{_label(best, observed, words)} has headroom again: leaving API keys"
        return b.build("account", best.id, pool.current_key, why)
    blocked_all = [o for o in usable if o.poll not in ("ok", "cached") and
                   live_block(pool.account(o.id), observed.now, words) is not None]
    if best is None and usable and len(blocked_all) < len(usable):
        why = "no account's usage could be read; keeping the current credential (errors are not exhaustion)"
        return b.keep(why) if mode == pool.mode else b.build(mode, active, pool.current_key, why)
    # every account that could be checked is exhausted (or none is usable)
    paid = _overage(trusted, observed, active)
    if paid is not None and (intent.overage == "before_keys" or not pool.api_keys):
        used = paid.usage.extra_usage.pct  # type: ignore[union-attr]
        why = (f"every account is at 100%: {paid.id}'s paid extra usage is on"
               + (f" ({used:.0f}% of its limit spent)" if used is not None else ""))
        return b.build("account", paid.id, pool.current_key, why)
    if pool.api_keys:
        key = _first_key(pool)
        why = ("every account is at 100%: using API keys" if usable else "no usable account: using API keys")
        return b.build("apikey", active, key, why)
    b.notes.append("every account is exhausted and there are no API keys (add one with `claude-pool key add`)")
    return b.keep("every account exhausted, no API keys")


def decide_switch(observed: ObservedState, intent: Switch) -> DesiredState:
    b = _Builder(observed)
    pool = observed.pool
    acc = pool.account(intent.target)
    if acc is not None:
        if acc.needs_relogin:
            raise UserError(f"{acc.id} needs re-login: run /login in Claude Code as {acc.email or acc.id}, "
                            "then `claude-pool import`")
        if b.foreign_login:
            raise UserError("Claude Code holds a login that is not in the pool; run `claude-pool import` first "
                            "so it is not lost")
        return b.build("account", acc.id, pool.current_key, f"switched to {acc.id} by hand")
    if pool.key(intent.target) is not None:
        return b.build("apikey", active_id(pool, observed.store.account), intent.target,
                       f"switched to API key {intent.target} by hand")
    raise UserError(f"no account or key named {intent.target!r} (see `claude-pool list`)")


def import_name(pool: Pool, email: str, wanted: str | None, now: datetime) -> str:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    if wanted:
        base = wanted
    elif email and email.split("@", 1)[0]:
        base = email.split("@", 1)[0]
    else:
        base = f"acc-{stamp}"
    taken = {a.id for a in pool.accounts} | {k.id for k in pool.api_keys}
    return base if base not in taken else f"{base}-{stamp}"


def decide_import(observed: ObservedState, intent: Import) -> DesiredState:
    store = observed.store
    if not store.present:
        raise UserError("Claude Code holds no login to import (run /login in Claude Code first)")
    if not store.valid:
        raise UserError(store.error or "Claude Code's stored login is blank (its refresh failed); "
                        "run /login in Claude Code first")
    b = _Builder(observed)
    pool = observed.pool
    wanted = intent.new_id
    if store.account:
        if wanted and wanted != store.account and pool.account(wanted) is not None:
            raise UserError(f"the login Claude Code holds is already in the pool as {store.account}; "
                            f"`claude-pool rm {store.account}` first to store it as {wanted}")
        b.adopt = [store.account] if store.account not in b.adopt and store.fresher_than_pool else b.adopt
        return b.build("account", store.account, pool.current_key, f"re-imported {store.account}; now active")
    b.foreign_login = False
    b.notes = [n for n in b.notes if "not in the pool" not in n]
    existing = pool.account(wanted) if wanted else None
    if existing is not None:
        # The user named the account: its stored login is replaced (the Go tool's `import --id`),
        # whether or not the profile call said who this login is.
        if store.email and existing.email and store.email.lower() != existing.email.lower():
            b.notes.append(f"{wanted}'s email changed from {existing.email} to {store.email}")
        return b.build("account", wanted, pool.current_key, f"updated {wanted} with the login Claude Code "
                       "holds; now active", add_accounts=[wanted])
    new_id = import_name(pool, store.email, wanted, observed.now)
    return b.build("account", new_id, pool.current_key, f"imported {new_id}; now active",
                   add_accounts=[new_id])


def decide_add_key(observed: ObservedState, intent: AddKey) -> DesiredState:
    b = _Builder(observed)
    pool = observed.pool
    if pool.account(intent.key_id) is not None:
        raise UserError(f"the name {intent.key_id!r} is already an account in the pool")
    if pool.key(intent.key_id) is not None:
        desired = b.keep(f"replaced API key {intent.key_id}")   # the Go tool's `key add --id`
        desired.add_keys = [intent.key_id]
        return desired
    usable = [a for a in pool.accounts if not a.needs_relogin]
    if not usable and pool.mode == "account":
        return b.build("apikey", active_id(pool, observed.store.account), intent.key_id,
                       "no usable account: using API keys", add_keys=[intent.key_id])
    desired = b.keep(f"added API key {intent.key_id}")
    desired.add_keys = [intent.key_id]
    return desired


def decide_remove(observed: ObservedState, intent: Remove) -> DesiredState:
    b = _Builder(observed)
    pool = observed.pool
    target = intent.target
    active = active_id(pool, observed.store.account)
    if pool.account(target) is not None:
        rest = [observed.accounts[a.id] for a in pool.accounts if a.id != target and not a.needs_relogin]
        if target != active:
            d = b.keep(f"removed account {target}")
        else:
            best = _best(rest, observed, "") or (rest[0] if rest else None)
            if best is not None:
                d = b.build(pool.mode, best.id, pool.current_key, f"removed the active account {target}; "
                            f"now on {best.id}")
            elif pool.api_keys:
                d = b.build("apikey", "", _first_key(pool), f"removed the last account {target}: using API keys")
            else:
                d = b.build("account", "", "", f"removed the last account {target}", touch_store=False)
        d.remove_accounts = [target]
        d.adopt = [a for a in d.adopt if a != target]
        return d
    if pool.key(target) is not None:
        others = [k for k in pool.api_keys if k.id != target]
        if pool.mode == "apikey" and not others:
            d = b.build("account", active, "", f"removed the last API key {target}: back to account mode")
        elif pool.mode == "apikey":
            d = b.build("apikey", pool.current, _first_key(pool, skip=target), f"removed API key {target}")
        else:
            d = b.keep(f"removed API key {target}")
            d.current_key = "" if pool.current_key == target else pool.current_key
        d.remove_keys = [target]
        return d
    raise UserError(f"no account or key named {target!r} (see `claude-pool list`)")


def decide(observed: ObservedState, intent: Intent) -> DesiredState:
    if isinstance(intent, Reconcile):
        return decide_reconcile(observed, intent)
    if isinstance(intent, Switch):
        return decide_switch(observed, intent)
    if isinstance(intent, Import):
        return decide_import(observed, intent)
    if isinstance(intent, AddKey):
        return decide_add_key(observed, intent)
    if isinstance(intent, Remove):
        return decide_remove(observed, intent)
    raise TypeError(f"unknown intent {intent!r}")
