"""The policy (docs/ARCHITECTURE.md §6): a pure function from observed state + intent to desired state.

No files, no network, no clock: `now` comes in with the observed state. Everything here is
table-tested in tests/test_policy.py.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from claude_pool.schema.limits import families
from claude_pool.schema.pool import Pool, usage_throttled
from claude_pool.schema.state import AccountObs, DesiredState, ObservedState

from . import decision
# The rules themselves live in reconciler/decision.py (stdlib only: the light paths ask them too);
# these names are the policy's vocabulary.
from .decision import (at_risk, exhausted_until, five_hour_open, fresh, live_block, near_limit,  # noqa: F401
                       pace, reset_since, score, weekly_window)
from .errors import UserError
from .intents import AddKey, Import, Intent, Prefer, Reconcile, Remove, Rename, Switch, threshold_of
from claude_pool.schema.timefmt import format_time


def words_of(intent: Intent) -> frozenset[str] | None:
    """The words of the model the decision is for (None: unknown)."""
    return families(getattr(intent, "model", None))


def accounts_to_poll(pool: Pool, intent: Intent, held: str, now: datetime, ttl_seconds: int) -> list[str]:
    """Which accounts need a usage poll for this decision (docs/ARCHITECTURE.md §6 rules 4 and 7).

    Not polled: dead accounts, accounts the usage endpoint asked to wait, a fresh cached reading
    (account mode only), an account provably exhausted until a known reset (except with `--live`,
    which calls for every account a 429 does not block). `--if-needed` in account mode reads the active account (past
    the TTL, or on every run once an API reading of a window that binds the model is at NEAR or
    above: decision.watch_closely) and any other
    account only once a reset its cached reading reported has passed (an account not in use
    changes little between its resets; a full look, before moving, reads it again past the
    TTL). Commands that edit the pool by hand (switch, import, key add, rm) decide on cached data
    and poll nothing.
    """
    if not isinstance(intent, Reconcile):
        return []
    usable = [a for a in pool.accounts if not a.needs_relogin]
    # the usage endpoint answered 429: not asked again before its backoff ends, whatever asks
    # (meanwhile the cached reading and the statusline's feed decide; schema/backoff.py)
    waiting = {a.id for a in usable if usage_throttled(a, now) is not None}
    words = words_of(intent)
    if intent.if_needed and pool.mode == "account":
        active = active_id(pool, held)
        if any(a.id == active for a in usable):
            mine = pool.account(active)
            if intent.live:   # the session start's engine, the stop-failure hook: the active account, now
                out = [] if live_block(mine, now, words) is not None else [active]
            else:
                out = [] if exhausted_until(mine, now, words) is not None or fresh(
                    mine, now, timedelta(seconds=ttl_seconds if not decision.watch_closely(mine, words, now)
                                         else 0)) else [active]
            return [aid for aid in out + decision.others_due(usable, active, now, words) if aid not in waiting]
    if intent.live:
        # `--live` (plan, apply, list, a person's reconcile) always calls: every account but the
        # dead, the ones a 429 blocks, and the ones the usage endpoint asked to wait
        return [a.id for a in usable if live_block(a, now, words) is None and a.id not in waiting]
    # API-key time is billed: on keys every run re-polls (docs/ARCHITECTURE.md §6 rule 7), unless a
    # trusted reading proves the account is exhausted until a known reset (a reading stamped in
    # the future proves nothing: reconciler/decision.py `trusted_reading`).
    ttl = timedelta(seconds=0 if pool.mode == "apikey" else ttl_seconds)
    return [a.id for a in usable if not fresh(a, now, ttl) and exhausted_until(a, now, words) is None
            and a.id not in waiting]


def active_id(pool: Pool, held: str) -> str:
    """The account in use: the one Claude Code holds, when it is a pool account."""
    if held and pool.account(held) is not None:
        return held
    return pool.current if pool.account(pool.current) is not None else ""


def needs_wider_poll(observed: ObservedState, intent: Intent) -> bool:
    """`--if-needed` looked at the active account only; is a full look needed now?"""
    if not (isinstance(intent, Reconcile) and intent.if_needed) or observed.pool.mode != "account":
        return False
    pool = observed.pool
    return decision.must_look_wider(observed.accounts, {a.id: a for a in pool.accounts},
                                    active_id(pool, observed.store.account), observed.now, words_of(intent),
                                    threshold_of(intent))


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
    which, window = decision.binding_window(u, words, now)
    text = f"{obs.id} at {math.floor(decision.window_pct(window, now))}% ({which})"   # floored, as `list` shows it
    full = decision.full_scoped(u, now)
    if words is None and full:
        text += "; " + ", ".join(f"{s.name} at 100%" for s in full) + " (model unknown)"
    return text


def _wake_at(observed: ObservedState, words: frozenset[str] | None = None) -> datetime | None:
    """The recovery wake's time (the rule: decision.wake_at, which the helper's light run asks too)."""
    return decision.wake_at(observed.pool.accounts, observed.now, words)


def paused_text(acc: object, now: datetime) -> str:
    """`paused until 2026-12-03T09:00:00Z (by hand: travel)`; "" when not paused now."""
    if not decision.paused(acc, now):
        return ""
    pause = acc.paused  # type: ignore[attr-defined]
    until = f" until {format_time(pause.until)}" if pause.until is not None else " until `claude-pool resume`"
    said = f": {pause.reason}" if pause.reason else ""
    return f"paused{until} (by hand{said}; never chosen meanwhile)"


def bypass_notes(observed: ObservedState) -> list[str]:
    """What makes Claude Code send something else than the credential the pool gives it: a
    variable that outranks it (providers/authenv.py), in settings.json's `env` or in the
    environment, and in account mode an apiKeyHelper that is not ours (it outranks every login;
    the pool puts it back whenever it leaves API keys). Names only, never a value."""
    from claude_pool.providers.authenv import FOREIGN_HELPER, explain

    settings, notes = observed.settings, []
    for names, where in ((settings.overrides, "in settings.json `env`"),
                         (settings.env_overrides, "in Claude Code's environment" if settings.env_is_claude_codes
                          else "in this shell (a Claude Code started from it gets it)")):
        if names:
            notes.append(explain(list(names), where))
    if (observed.pool.mode == "account" and observed.pool.accounts and settings.api_key_helper and not settings.ours
            and not settings.error):
        notes.append(FOREIGN_HELPER)
    if settings.sessions_claude_dir:
        notes.append(f"Claude Code's last session started with its folder at {settings.sessions_claude_dir} "
                     f"(CLAUDE_CONFIG_DIR), not this shell's {settings.claude_dir}: what claude-pool writes here "
                     f"does not reach those sessions; run it with CLAUDE_CONFIG_DIR={settings.sessions_claude_dir} "
                     "for them")
    return notes


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
        for acc in observed.pool.accounts:
            if paused_text(acc, observed.now):
                self.notes.append(f"{acc.id}: {paused_text(acc, observed.now)}")
        self.notes += bypass_notes(observed)
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
        return DesiredState.model_construct(mode=mode, current=account, current_key=key, saved_api_key_helper=saved,
                                            store_account=store_account, api_key_helper=helper, touch_settings=touch,
                                            adopt=list(self.adopt), wake_at=wake, reason=reason, notes=list(self.notes),
                                            **extra)   # trusted parts (schema/state.py): no validation


def _first_key(pool: Pool, skip: str = "") -> str:
    """The key API-key mode uses: the current one while on keys; entering, the key the helper's
    cursor serves next (the Go tool announces that one)."""
    if pool.mode == "apikey" and pool.current_key and pool.current_key != skip and pool.key(pool.current_key):
        return pool.current_key
    return pool.next_key_id(skip)


def _roomy(obs: AccountObs, acc: object, now: datetime, words: frozenset[str] | None, line: float) -> bool:
    return decision.roomy(obs, acc, now, words, line)


def _best(candidates: list[AccountObs], observed: ObservedState, active: str,
          words: frozenset[str] | None = None, *, line: float = 100.0) -> AccountObs | None:
    """The account to hold (docs/ARCHITECTURE.md §6 rule 3): reconciler/decision.py's `best`."""
    return decision.best(candidates, {a.id: a for a in observed.pool.accounts}, observed.now, active, words,
                         line=line)


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
    # a paused account is never chosen (`claude-pool pause`), so it is not usable here
    usable = [observed.accounts[a.id] for a in pool.accounts
              if not observed.accounts[a.id].dead and not decision.paused(a, observed.now)]
    if intent.if_needed and mode == "account" and not needs_wider_poll(observed, intent) and active:
        obs = observed.accounts[active]
        line = decision.line_of(pool.account(active), threshold_of(intent) * 100)
        if obs.usage is None or obs.poll == "error":
            why = f"{active}'s usage is unknown; staying put"
        elif decision.binding(obs.usage, words, observed.now) < line:
            why = f"{_label(obs, observed, words)} is under the {line:.4g}% threshold"
        else:
            why = f"{_label(obs, observed, words)}: no other account is a better place for this work; staying"
        return b.build("account", active, pool.current_key, why)
    trusted = [o for o in usable if o.poll in ("ok", "cached") and o.usage is not None]
    best = _best(trusted, observed, active if mode == "account" else "", words, line=threshold_of(intent) * 100)
    best_score = score(best, pool.account(best.id), observed.now, words) if best is not None else 100.0
    if best is not None and best_score < 100:
        room = f" ({pace(best.usage, observed.now, words):.1f} weekly points per hour to its reset)"  # type: ignore[arg-type]
        own = decision.line_of(pool.account(best.id), threshold_of(intent) * 100)
        if best.id == active and not _roomy(best, pool.account(best.id), observed.now, words, own):
            why = (f"{_label(best, observed, words)}: no account is under the {threshold_of(intent):.0%} threshold; "
                   "staying while it serves")
        elif best.id == active:
            why = f"{_label(best, observed, words)} has the most headroom" + room
            faster = [(pace(o.usage, observed.now, words), o.id) for o in trusted  # type: ignore[arg-type]
                      if o.id != active and score(o, pool.account(o.id), observed.now, words) < 100
                      and decision.tier(pool.account(o.id)) == decision.tier(pool.account(active))]
            mine = pace(best.usage, observed.now, words)  # type: ignore[arg-type]
            if faster and max(faster)[0] > mine:
                top, other = max(faster)
                theirs, ours = f"{top:.1f}", f"{mine:.1f}"
                factor = decision.switch_factor(best.usage, observed.now)
                if theirs == ours:
                    ahead = f"{other} is no further ahead (both {ours} weekly points per hour to their reset)"
                elif math.isinf(factor):
                    ahead = (f"its five-hour window is open and under {decision.BUSY:g}%, so it is not left for "
                             f"pacing ({other}: {theirs} weekly points per hour to its reset, against {ours})")
                else:
                    ahead = (f"{other} is not enough ahead ({theirs} weekly points per hour to its reset, against "
                             f"{ours}; a move takes {factor:g} times as much)")
                why = (f"{_label(best, observed, words)} stays: switching costs the session its prompt cache, "
                       f"and {ahead}")
        else:
            was = observed.accounts.get(active)
            why = f"{_label(best, observed, words)} has the most headroom" + room + (
                f"; {_label(was, observed, words)}" if was else "")
            mine, theirs = decision.tier(pool.account(active)), decision.tier(pool.account(best.id))
            if was is not None and theirs < mine:
                why = (f"{best.id} is in tier {theirs}, spent before {active}'s tier {mine} while it has room; "
                       + why)
        if mode == "apikey" or pool.mode == "apikey":
            why = f"{_label(best, observed, words)} has headroom again: leaving API keys"
        return b.build("account", best.id, pool.current_key, why)
    held = pool.account(active) if mode == "account" else None
    if best is None and held is not None and decision.paused(held, observed.now):
        # the held account is paused: leave it now even for an account whose usage is unknown
        # (a pause is the user's word; an unknown reading is not exhaustion)
        free = [o for o in usable if live_block(pool.account(o.id), observed.now, words) is None]
        if free:
            return b.build("account", free[0].id, pool.current_key,
                           f"{active} is paused; {free[0].id} takes over (its usage is not known yet)")
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
    if any(decision.paused(a, observed.now) for a in pool.accounts):
        b.notes.append("every account is paused or exhausted and there are no API keys")
        return b.keep("every account paused or exhausted, no API keys")
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


def _settle(observed: ObservedState, done: DesiredState, after: Pool, *, gone: str = "",
            what: str = "", rule: Reconcile | None = None) -> DesiredState:
    """A command's own change (`done`), then, in the same run, what a reconcile on the cached
    readings (no network) does with the pool as the command leaves it (`after`; `gone`: the account
    it removes), so no change is left pending (issue 16: every command converges). The command's
    choice stands when the reconcile lands on the same credential, or names none (no account or key)
    (nothing known about the rest). `what`: the command's change in words, when `done.reason`
    also names its choice of credential. A hand-made choice (`switch NAME`, `import`) never comes
    here."""
    accounts = {aid: obs for aid, obs in observed.accounts.items() if aid != gone}
    then = decide_reconcile(observed.model_copy(update={"pool": after, "accounts": accounts}), rule or Reconcile())

    def held(d: DesiredState) -> tuple[str, str]:
        return (d.mode, d.current_key if d.mode == "apikey" else d.current)

    if held(then) == held(done) or not held(then)[1]:
        return done
    then.adopt = [a for a in then.adopt if a != gone]
    then.add_accounts, then.remove_accounts = list(done.add_accounts), list(done.remove_accounts)
    then.add_keys, then.remove_keys = list(done.add_keys), list(done.remove_keys)
    then.prefs, then.renames = dict(done.prefs), list(done.renames)
    then.reason = f"{what or done.reason}; {then.reason}"
    return then


def decide_add_key(observed: ObservedState, intent: AddKey) -> DesiredState:
    from claude_pool.schema.pool import ApiKey

    b = _Builder(observed)
    pool = observed.pool
    if pool.account(intent.key_id) is not None:
        raise UserError(f"the name {intent.key_id!r} is already an account in the pool")
    if pool.key(intent.key_id) is not None:
        desired = b.keep(f"replaced API key {intent.key_id}")   # the Go tool's `key add --id`
        desired.add_keys = [intent.key_id]
        return _settle(observed, desired, pool, rule=intent.then)
    # the pool as the command leaves it: the new key last (its value is not the policy's business;
    # a placeholder, so the key order counts it)
    after = pool.model_copy(update={"api_keys": [*pool.api_keys, ApiKey(id=intent.key_id, key="new")]})
    usable = [a for a in pool.accounts if not a.needs_relogin]
    if not usable and pool.mode == "account":
        return _settle(observed, b.build("apikey", active_id(pool, observed.store.account), intent.key_id,
                                         "no usable account: using API keys", add_keys=[intent.key_id]), after,
                       rule=intent.then)
    desired = b.keep(f"added API key {intent.key_id}")
    desired.add_keys = [intent.key_id]
    return _settle(observed, desired, after, rule=intent.then)


def decide_remove(observed: ObservedState, intent: Remove) -> DesiredState:
    b = _Builder(observed)
    pool = observed.pool
    target = intent.target
    active = active_id(pool, observed.store.account)
    if pool.account(target) is not None:
        rest = [observed.accounts[a.id] for a in pool.accounts if a.id != target and not a.needs_relogin]
        what = f"removed account {target}"
        if target != active:
            d = b.keep(what)
        else:
            what = f"removed the active account {target}"
            best = _best(rest, observed, "") or (rest[0] if rest else None)
            if best is not None:
                d = b.build(pool.mode, best.id, pool.current_key, f"{what}; now on {best.id}")
            elif pool.api_keys:
                d = b.build("apikey", "", _first_key(pool), f"removed the last account {target}: using API keys")
            else:
                d = b.build("account", "", "", f"removed the last account {target}", touch_store=False)
        d.remove_accounts = [target]
        d.adopt = [a for a in d.adopt if a != target]
        after = pool.model_copy(update={"accounts": [a for a in pool.accounts if a.id != target]})
        return _settle(observed, d, after, gone=target, what=what, rule=intent.then)
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
        # the pool as the command leaves it: the key's place kept blank (the rotation goes on where
        # it was, as apply's remove_key does); no key left: account mode
        keys = [k.model_copy(update={"key": ""}) if k.id == target else k for k in pool.api_keys] if others else []
        after = pool.model_copy(update={
            "api_keys": keys, "current_key": "" if pool.current_key == target else pool.current_key,
            "mode": pool.mode if others else "account"})
        return _settle(observed, d, after, what=f"removed API key {target}", rule=intent.then)
    raise UserError(f"no account or key named {target!r} (see `claude-pool list`)")


def decide_prefer(observed: ObservedState, intent: Prefer) -> DesiredState:
    """`claude-pool priority / threshold / pause / resume`: the account's preference as asked,
    then what a reconcile on the cached readings does with the pool under it (a paused account
    held now is left; a tier with room takes over)."""
    from .diff import current_prefs, pref_label

    b = _Builder(observed)
    pool = observed.pool
    acc = pool.account(intent.target)
    if acc is None:
        if pool.key(intent.target) is not None:
            raise UserError(f"{intent.target} is an API key: preferences are for accounts (keys are used "
                            "only when no account can serve, in turn)")
        raise UserError(f"no account named {intent.target!r} (see `claude-pool list`)")
    value: object
    if intent.field == "priority":
        value = intent.priority
    elif intent.field == "threshold":
        value = intent.threshold
    else:
        value = {"until": intent.until, "reason": intent.reason} if intent.paused else None
    have = current_prefs(acc)[intent.field]
    if intent.field == "paused" and not decision.paused(acc, observed.now) and value is None:
        have = value   # resuming an account whose pause has ended: nothing to do (it is forgotten)
    what = f"{acc.id}: {pref_label(intent.field, value)}"
    d = b.keep(what if have != value else f"{what} already")
    if have != value:
        d.prefs = {acc.id: {intent.field: value}}
    update: dict[str, object] = {intent.field: value}
    if intent.field == "paused":
        from claude_pool.schema.pool import Pause

        update["paused"] = Pause(at=observed.now, **value) if isinstance(value, dict) else None
    changed = acc.model_copy(update=update)
    after = pool.model_copy(update={"accounts": [changed if a.id == acc.id else a for a in pool.accounts]})
    return _settle(observed, d, after, what=what, rule=intent.then)


def decide_rename(observed: ObservedState, intent: Rename) -> DesiredState:
    """`claude-pool rename OLD NEW`: the id changes (the pool's `current`/`current_key` follow),
    nothing else; the reconcile that follows sees the pool as the rename leaves it."""
    b = _Builder(observed)
    pool = observed.pool
    old, new = intent.old, intent.new
    kind = "account" if pool.account(old) is not None else "key" if pool.key(old) is not None else ""
    if not kind:
        raise UserError(f"no account or key named {old!r} (see `claude-pool list`)")
    what = f"renamed {'account' if kind == 'account' else 'API key'} {old} to {new}"
    if old == new:
        return b.keep(f"{old} is already called {new}")
    if pool.account(new) is not None or pool.key(new) is not None:
        raise UserError(f"the name {new!r} is already taken in the pool (see `claude-pool list`)")
    d = b.keep(what)
    d.renames = [(old, new)]
    d.current = new if d.current == old else d.current
    d.current_key = new if d.current_key == old else d.current_key
    d.store_account = new if d.store_account == old else d.store_account
    if kind == "account":
        after = pool.model_copy(update={
            "accounts": [a.model_copy(update={"id": new}) if a.id == old else a for a in pool.accounts],
            "current": new if pool.current == old else pool.current})
        accounts = {(new if aid == old else aid): (o.model_copy(update={"id": new}) if aid == old else o)
                    for aid, o in observed.accounts.items()}
        store = observed.store.model_copy(update={"account": new}) if observed.store.account == old \
            else observed.store
        seen = observed.model_copy(update={"accounts": accounts, "store": store})
    else:
        after = pool.model_copy(update={
            "api_keys": [k.model_copy(update={"id": new}) if k.id == old else k for k in pool.api_keys],
            "current_key": new if pool.current_key == old else pool.current_key})
        seen = observed
    return _settle(seen, d, after, what=what, rule=intent.then)


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
    if isinstance(intent, Prefer):
        return decide_prefer(observed, intent)
    if isinstance(intent, Rename):
        return decide_rename(observed, intent)
    raise TypeError(f"unknown intent {intent!r}")
