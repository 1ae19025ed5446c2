"""Observe: build the observed state from the pool, the credential store, settings.json and
the usage API. Providers read; nothing here decides what the pool should become.

Two facts are saved the moment they are learned, even by `plan` (docs/ARCHITECTURE.md §7): a rotated refresh
token (the old one no longer works) and a dead refresh token (so it is not retried in a loop).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from claude_pool.providers import claude_lock, paths, sidecars
from claude_pool.providers.anthropic import ApiError, InvalidGrant, TransientError, Unauthorized
from claude_pool.providers.base import ProviderError
from claude_pool.providers.fsutil import clean_stale_temps
from claude_pool.providers.poolfile import decision_digest
from claude_pool.schema.credentials import (
    OAuth, blob_secrets, normalized_blob, oauth_fingerprint, refreshed_blob, same_login, try_oauth,
    with_oauth_of,
)
from claude_pool.schema.limits import families, parse_refusal, scope_applies
from claude_pool.schema.pool import Account, Block, Usage, UsageWindow
from claude_pool.schema.timefmt import format_time
from claude_pool.schema.state import AccountObs, ObservedState, SettingsObs, StoreObs

from . import policy
from .audit import REDACTOR, log
from .errors import UserError
from .intents import Intent, Refusal
from .runtime import Runtime, is_our_helper
from .status import duration


def _fresher(a: OAuth, b: OAuth | None) -> bool:
    """Is login `a` at least as fresh as `b` (later or equal expiry; unknown counts as old)?"""
    if b is None:
        return True
    return (a.expiresAt or 0) >= (b.expiresAt or 0)


def load(rt: Runtime) -> None:
    """Read the pool and the credential store into the runtime (after sweeping up temp files a
    killed run may have left beside them)."""
    for directory in (rt.pool_file.path.parent, Path(paths.claude_dir())):
        clean_stale_temps(directory)
    try:
        rt.pool = rt.pool_file.observe()
        rt.store_raw = rt.store.observe()
    except ProviderError as exc:
        raise UserError(str(exc)) from None
    rt.remember_secrets()
    forget_expired_blocks(rt)
    merge_feed(rt)


def forget_expired_blocks(rt: Runtime) -> None:
    """A 429 block whose time has passed says nothing any more: drop it (saved with the run)."""
    now = rt.clock()
    for acc in rt.pool.accounts:
        if acc.block is not None and (acc.block.until is None or acc.block.until <= now):
            acc.block = None
            rt.usage_dirty = True


COOLDOWN = timedelta(minutes=10)        # a 429 that names no reset, on an account with none cached
MESSAGE_MARGIN = timedelta(seconds=60)  # Claude Code shows the reset to the minute
MAX_BLOCK = timedelta(days=8)           # a reset further away than a weekly window is not believed


def refusal_block(message: str, acc: Account, now: datetime, words: frozenset[str] | None) -> Block | None:
    """The block a rate-limited request's message puts on the account that sent it (None: the
    server is limiting requests, which is not the account's usage). The reset is the one the
    message names; else the reset of the window it names (or of the window that binds this
    model); else a short cooldown."""
    said = parse_refusal(message, now)
    if said["kind"] != "usage":
        return None
    reason = _first_line(message)
    model = said["model"]
    when = said["resets_at"]
    if when is not None and now < when <= now + MAX_BLOCK:
        return Block(until=when + MESSAGE_MARGIN, source="message", reason=reason, model=model, at=now)
    window = None
    u = acc.usage
    if acc.usage_at is not None:
        if said["window"] == "five_hour":
            window = u.five_hour
        elif said["window"] == "seven_day":
            window = u.seven_day
        elif model:
            window = next((s for s in u.scoped if scope_applies(s.name, frozenset({model}))), None)
        if window is None or window.resets_at is None or window.resets_at <= now:
            window = u.binding_window(words)[1]
    if window is not None and window.resets_at is not None and now < window.resets_at <= now + MAX_BLOCK:
        return Block(until=window.resets_at, source="window", reason=reason, model=model, at=now)
    return Block(until=now + COOLDOWN, source="cooldown", reason=reason, model=model, at=now)


def _first_line(message: str) -> str:
    text = " ".join(str(message or "").split())
    text = REDACTOR.text(text)
    return text[:160]


def record_refusal(rt: Runtime, refusal: Refusal, held: str, now: datetime) -> None:
    """Claude Code's request on the account it holds was refused: save the evidence now."""
    acc = rt.pool.account(held)
    if acc is None:
        log().info("rate_limited", action="block", target=held or "credentials", result="skipped",
                   reason="the login Claude Code holds is not a pool account")
        return
    block = refusal_block(refusal.message, acc, now, families(refusal.model))
    if block is None:
        kind = parse_refusal(refusal.message, now)["kind"]
        log().info("rate_limited", action="look", target=acc.id, result=kind, model=refusal.model or "",
                   reason="the server is limiting requests, not this account's usage: nothing is blocked"
                   if kind == "server" else "not a usage-limit message: nothing is blocked; reconciling live")
        return
    with rt.save_lock:
        acc.block = block
        rt.usage_dirty = True
    log().warning("rate_limited", action="block", target=acc.id, result="ok",
                  until=format_time(block.until), source=block.source, reason=block.reason,
                  model=refusal.model or "",
                  say=f"{acc.id} refused a request ({block.reason or 'rate limit'}); not used again "
                      f"before {format_time(block.until)} (reset from {block.source})")


FEED_SETTLE = timedelta(seconds=30)


def merge_feed(rt: Runtime) -> None:
    """Take the statusline's free reading of the active account's usage as a cached poll.

    Only for the account active when it was recorded, and not in the first seconds after a
    switch (the statusline may still show the previous credential's last response).
    """
    feed = sidecars.read_feed(str(rt.pool_file.path.parent / os.path.basename(paths.feed_file())))
    if feed is None:
        return
    acc = rt.pool.account(str(feed.get("name", "")))
    if acc is None or acc.needs_relogin or acc.id != rt.pool.current or rt.pool.mode != "account":
        return
    since = rt.pool.switched_at
    if (format_time(since) if since else None) != feed.get("since"):
        return
    try:
        at = datetime.fromtimestamp(float(feed["at"]), tz=timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError):
        return
    if since is not None and at - since < FEED_SETTLE:
        return
    if acc.usage_at is not None and acc.usage_at >= at:
        return
    windows = {}
    for name in ("five_hour", "seven_day"):
        w = feed.get(name)
        pct = w.get("pct") if isinstance(w, dict) else None
        # the feed is a plain file: a NaN, an infinity or a far-off year must not break every run
        if isinstance(pct, (int, float)) and not isinstance(pct, bool) and 0 <= pct <= 100:
            resets = w.get("resets_at")  # type: ignore[union-attr]
            try:
                when = datetime.fromtimestamp(resets, tz=timezone.utc) if isinstance(resets, (int, float)) else None
            except (OverflowError, ValueError, OSError):
                when = None
            windows[name] = UsageWindow(pct=float(pct), resets_at=when)
    if not windows:
        return
    acc.usage, acc.usage_at = Usage(**windows), at
    rt.usage_dirty = True


def observe_store(rt: Runtime, *, identify: bool) -> StoreObs:
    """Which pool account (if any) the login in Claude Code's store belongs to."""
    raw = rt.store_raw
    obs = StoreObs(present=raw is not None, fingerprint=oauth_fingerprint(raw))
    oauth = try_oauth(raw)
    if raw is not None and (oauth is None or (oauth.accessToken and not oauth.valid())):
        obs.error = "Claude Code's credential store does not hold an OAuth login claude-pool can read"
    if oauth is None or not oauth.valid():
        return obs
    obs.valid = True
    for acc in rt.pool.accounts:
        if acc.blob == raw or same_login(oauth, try_oauth(acc.blob)):
            obs.account = acc.id
            return obs
    if not identify:
        return obs
    try:
        obs.email = rt.api().profile_email(oauth.accessToken)
    except ApiError as exc:
        obs.error = f"the login Claude Code holds could not be identified ({exc})"
        return obs
    for acc in rt.pool.accounts:
        if acc.email and acc.email.lower() == obs.email.lower():
            obs.account = acc.id
            obs.fresher_than_pool = _fresher(oauth, try_oauth(acc.blob))
            break
    return obs


def observe_settings(rt: Runtime) -> SettingsObs:
    view = rt.settings.observe()
    ours = is_our_helper(view.api_key_helper, rt.helper)
    return SettingsObs(present=view.present, api_key_helper=view.api_key_helper, error=view.error,
                       ours=ours, stale=ours and _stale_helper(view.api_key_helper or "", rt.helper))


def _stale_helper(command: str, current: str) -> bool:
    """Our helper, but one that cannot keep working: its program is gone, or it lives in Claude
    Code's plugin folders (older plugin versions installed there; `claude plugin uninstall` deletes
    them). Another live install of ours is not stale, so two installs never take turns rewriting it."""
    if command.strip() == current:
        return False
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if len(words) < 2:
        return False
    program = os.path.abspath(os.path.expanduser(words[-2].strip('"')))
    plugins = os.path.join(os.path.abspath(paths.claude_dir()), "plugins") + os.sep
    return not os.path.exists(program) or program.startswith(plugins)


def _relogged(rt: Runtime, store: StoreObs) -> None:
    """An account marked "needs re-login" whose new login Claude Code now holds (the user ran /login
    again) is usable in this very run: it is polled with that login, and the adopt action saves it
    and clears the mark (docs/ARCHITECTURE.md §6: harvest first)."""
    acc = rt.pool.account(store.account) if store.account else None
    if acc is not None and acc.needs_relogin and store.valid and store.fresher_than_pool:
        acc.needs_relogin, acc.relogin_reason = False, ""


def _working_blob(rt: Runtime, acc: Account, store: StoreObs) -> str:
    """The freshest copy of an account's login: Claude Code's, when it refreshed it itself."""
    if store.account == acc.id and store.fresher_than_pool and rt.store_raw:
        return rt.store_raw
    return acc.blob


def _refresh(rt: Runtime, acc: Account, store: StoreObs) -> str:
    """Refresh an account's token; save the rotated login at once (pool, and the store when
    Claude Code holds it). For the login Claude Code holds, this runs under Claude Code's own
    refresh lock and re-reads its store first, adopting a token Claude Code just rotated."""
    held = store.account == acc.id
    lock_path = getattr(rt.store, "lock_path", None)
    with claude_lock.hold(lock_path) if held and lock_path else contextlib.nullcontext():
        blob = _working_blob(rt, acc, store)
        if held:
            current = rt.store.observe()
            cur, mine = try_oauth(current), try_oauth(blob)
            if cur is not None and cur.valid() and not same_login(cur, mine) and _fresher(cur, mine):
                # Claude Code rotated this login while we were not looking: its copy wins.
                rt.store_raw = current
                REDACTOR.add(*blob_secrets(current))
                blob = current
                if not cur.expired():
                    _adopt_now(rt, acc, blob)
                    return blob
        oauth = try_oauth(blob)
        if oauth is None or not oauth.refreshToken:
            raise InvalidGrant("no refresh token stored for this account")
        grant = rt.api().refresh(oauth.refreshToken)
        new_blob = refreshed_blob(blob, access_token=grant.access_token, refresh_token=grant.refresh_token,
                                  expires_in=grant.expires_in, scope=grant.scope,
                                  now_ms=int(rt.clock().timestamp() * 1000))
        REDACTOR.add(*blob_secrets(new_blob))
        _adopt_now(rt, acc, new_blob)
        if held:
            rt.store.write(with_oauth_of(rt.store.observe(), new_blob))
            rt.store_raw = rt.store.observe()
        log().info("token_refreshed", action="refresh", target=acc.id, result="ok",
                   after=oauth_fingerprint(new_blob), reason="access token expired or rejected")
        return new_blob


def _adopt_now(rt: Runtime, acc: Account, blob: str) -> None:
    with rt.save_lock:
        acc.blob = normalized_blob(blob)
        rt.pool_file.write(rt.pool)


def _mark_dead(rt: Runtime, acc: Account, reason: str) -> None:
    with rt.save_lock:
        acc.needs_relogin = True
        acc.relogin_reason = reason
        rt.pool_file.write(rt.pool)
    log().warning("needs_relogin", action="mark_dead", target=acc.id, reason=reason, result="ok",
                  say=f"{acc.id}: the refresh token was rejected; run /login in Claude Code as "
                      f"{acc.email or acc.id}, then `claude-pool import`")


def poll_one(rt: Runtime, acc: Account, store: StoreObs, now: datetime) -> AccountObs:
    obs = AccountObs(id=acc.id, email=acc.email, usage=acc.usage if acc.usage_at else None,
                     usage_at=acc.usage_at, poll="cached" if acc.usage_at else "error")
    blob = _working_blob(rt, acc, store)
    oauth = try_oauth(blob)
    if oauth is None:
        obs.poll, obs.error = "error", "the stored login is not readable"
        return obs
    refreshed = False
    try:
        if oauth.expired(int(now.timestamp() * 1000)) or not oauth.accessToken:
            blob = _refresh(rt, acc, store)
            refreshed = True
        for attempt in (0, 1):
            token = try_oauth(blob).accessToken  # type: ignore[union-attr]
            try:
                usage = rt.api().usage(token)
                break
            except Unauthorized:
                if refreshed or attempt:
                    raise TransientError("usage: the access token was refused even after a refresh") from None
                blob = _refresh(rt, acc, store)
                refreshed = True
    except InvalidGrant as exc:
        _mark_dead(rt, acc, str(exc))
        obs.poll, obs.dead, obs.error = "dead", True, str(exc)
        return obs
    except (TransientError, Unauthorized, ProviderError, claude_lock.ClaudeLockTimeout) as exc:
        obs.poll = "error"  # skipped by the policy; the cached reading is kept for display
        age = ""
        if acc.usage_at:
            age = f"; last reading {duration((now - acc.usage_at).total_seconds())} ago (shown, not used to decide)"
        obs.error = f"{exc}{age}"
        return obs
    with rt.save_lock:
        acc.usage = usage
        acc.usage_at = now
        rt.usage_dirty = True
    obs.usage, obs.usage_at, obs.poll = usage, now, "ok"
    return obs


def poll(rt: Runtime, ids: list[str], store: StoreObs, now: datetime) -> dict[str, AccountObs]:
    accounts = [a for a in rt.pool.accounts if a.id in ids]
    if not accounts:
        return {}
    rt.api()  # one client (and one TLS context) for all, built before the threads start
    if len(accounts) == 1:
        return {accounts[0].id: poll_one(rt, accounts[0], store, now)}
    workers = min(len(accounts), rt.config.http.max_connections)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {a.id: pool.submit(poll_one, rt, a, store, now) for a in accounts}
        return {aid: f.result() for aid, f in futures.items()}


def unpolled(acc: Account, now: datetime, why: str) -> AccountObs:
    obs = AccountObs(id=acc.id, email=acc.email, usage=acc.usage if acc.usage_at else None,
                     usage_at=acc.usage_at, poll="cached" if acc.usage_at else "skipped", error=why)
    if acc.needs_relogin:
        obs.poll, obs.dead, obs.error = "dead", True, acc.relogin_reason or "needs re-login"
    return obs


def observe(rt: Runtime, intent: Intent, *, network: bool = True,
            poll_ids: list[str] | None = None, previous: ObservedState | None = None) -> ObservedState:
    """One observation. `poll_ids` None: let the poll plan decide which accounts to poll."""
    now = rt.clock()
    if previous is None:
        load(rt)
        store = observe_store(rt, identify=network)
        settings = observe_settings(rt)
        _relogged(rt, store)
        refusal = getattr(intent, "refusal", None)
        if refusal is not None:
            record_refusal(rt, refusal, store.account or rt.pool.current, now)
    else:
        store, settings = previous.store, previous.settings
    if poll_ids is None:
        poll_ids = policy.accounts_to_poll(rt.pool, intent, store.account, now,
                                           rt.config.policy.usage_ttl_seconds) if network else []
    raw_before = rt.store_raw
    polled = poll(rt, poll_ids, store, now)
    if rt.store_raw != raw_before:
        # a refresh of the login Claude Code holds rewrote the store: observe what it holds now
        store = observe_store(rt, identify=False).model_copy(update={"email": store.email})
    accounts: dict[str, AccountObs] = {}
    for acc in rt.pool.accounts:
        if acc.id in polled:
            accounts[acc.id] = polled[acc.id]
        elif previous is not None and acc.id in previous.accounts:
            accounts[acc.id] = previous.accounts[acc.id]
        else:
            accounts[acc.id] = unpolled(acc, now, "")
    return ObservedState(now=now, pool=rt.pool, pool_digest=decision_digest(rt.pool), store=store,
                         settings=settings, accounts=accounts, helper_command=rt.helper)
