"""Harvest: the tokens the accounts about to be polled need, refreshed, and every rotated login
saved the moment it arrives (docs/ARCHITECTURE.md §7).

The token endpoint rotates the refresh token: once it answers, the old one no longer works, so
the new login is written to the pool at once (and, for the login Claude Code holds, to Claude
Code's store) before anything else happens, even in a `plan`. A refresh token the server rejects
(`invalid_grant`) marks the account "needs re-login" ("login expired on DATE" when the login is
past its deadline, reconciler/deadlines.py), saved at once too, so it is not retried in a loop.
A refresh never drops nor extends the login's deadline (`refreshTokenExpiresAt`). The engine
calls this step; observe never refreshes.

Audit events: `token_refreshed` (action `refresh`, or `adopt` when Claude Code had rotated the
login itself), `needs_relogin` (action `mark_dead`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from datetime import datetime

from claude_pool.providers import claude_lock
from claude_pool.providers.anthropic import InvalidGrant, Stalled, TransientError, Unauthorized
from claude_pool.providers.base import ProviderError
from claude_pool.providers.poolcodec import PoolError
from claude_pool.providers.world import World
from claude_pool.schema.credentials import (
    blob_secrets, normalized_blob, oauth_fingerprint, refreshed_blob, same_login, try_oauth, with_oauth_of,
)
from claude_pool.schema.pool import Account
from claude_pool.schema.state import StoreObs

from .audit import REDACTOR, Timer, log
from .deadlines import blob_deadline_ms, expired_text
from .observe import fresher, working_blob
from .runtime import Runtime

#: what a refresh can fail with, short of a dead login; the account is then not polled this run
FAILURES = (TransientError, Unauthorized, ProviderError, claude_lock.ClaudeLockTimeout)


def due(rt: Runtime, acc: Account, store: StoreObs, now: datetime) -> bool:
    """Does the account's freshest login need a refresh before its usage can be read?"""
    oauth = try_oauth(working_blob(rt, acc, store))
    return oauth is not None and (not oauth.accessToken or oauth.expired(int(now.timestamp() * 1000)))


def harvest(world: World, rt: Runtime, ids: list[str], store: StoreObs, reason: str) -> dict[str, Exception]:
    """Refresh these accounts' logins (concurrently), saving each rotated one at once. Returns the
    accounts whose refresh failed, with why: InvalidGrant (now marked "needs re-login") or a
    transient error."""
    accounts = [a for a in rt.pool.accounts if a.id in ids]
    if not accounts:
        return {}
    if len(accounts) == 1:
        results = {accounts[0].id: _one(world, rt, accounts[0], store, reason)}
    else:
        workers = min(len(accounts), rt.config.http.max_connections)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as threads:
            futures = {a.id: threads.submit(_one, world, rt, a, store, reason) for a in accounts}
            results = {aid: f.result() for aid, f in futures.items()}
    return {aid: exc for aid, exc in results.items() if exc is not None}


def _one(world: World, rt: Runtime, acc: Account, store: StoreObs, reason: str) -> Exception | None:
    try:
        refresh(world, rt, acc, store, reason)
    except PoolError:
        raise    # a login that cannot be kept (or was not refreshed for that reason) fails the run
    except InvalidGrant as exc:
        mark_dead(world, rt, acc, str(exc))
        return exc
    except FAILURES as exc:
        return exc
    return None


def refresh(world: World, rt: Runtime, acc: Account, store: StoreObs, reason: str) -> str:
    """Refresh one account's token; save the rotated login at once (pool, and the store when
    Claude Code holds it). For the login Claude Code holds, this runs under Claude Code's own
    refresh lock and re-reads its store first, adopting a token Claude Code just rotated."""
    timer = Timer()
    held = store.account == acc.id
    with world.store.hold() if held else contextlib.nullcontext():
        blob = working_blob(rt, acc, store)
        if held:
            current = world.store.observe()
            cur, mine = try_oauth(current), try_oauth(blob)
            if cur is not None and cur.valid() and not same_login(cur, mine) and fresher(cur, mine):
                # Claude Code rotated this login while we were not looking: its copy wins.
                rt.store_raw = current
                REDACTOR.add(*blob_secrets(current))
                blob = current
                if not cur.expired(int(world.clock().timestamp() * 1000)):
                    _save_now(world, rt, acc, blob)
                    log().info("token_refreshed", action="adopt", target=acc.id, result="ok",
                               after=oauth_fingerprint(blob), duration_ms=timer.ms(),
                               reason="Claude Code had refreshed this login itself")
                    return blob
        oauth = try_oauth(blob)
        if oauth is None or not oauth.refreshToken:
            raise InvalidGrant("no refresh token stored for this account")
        # The server invalidates the old refresh token the moment it answers: prove first that the
        # new one can be kept (PoolUnwritable: no refresh, the run fails in one line).
        with world.pool.reserve() as spot:
            try:
                grant = world.api.refresh(oauth.refreshToken)
            except Stalled as stalled:
                # given up at its deadline, but the server may have rotated: if the answer comes
                # while this process lives, the rotated login goes into the reservation, which
                # the next run reads first (providers/poolcodec.py)
                spot.keep = True
                stalled.when_answered(lambda late: _rescue_late(world, rt, acc, blob, late, spot, held))
                raise
            new_blob = refreshed_blob(blob, access_token=grant.access_token, refresh_token=grant.refresh_token,
                                      expires_in=grant.expires_in, scope=grant.scope,
                                      now_ms=int(world.clock().timestamp() * 1000),
                                      refresh_token_expires_in=grant.refresh_token_expires_in)
            REDACTOR.add(*blob_secrets(new_blob))
            try:
                _save_now(world, rt, acc, new_blob, spot)
            finally:
                # the login Claude Code holds goes to its store even when the pool save failed
                # (the reservation then keeps it for the pool's next run)
                if held:
                    world.store.write(with_oauth_of(world.store.observe(), new_blob))
                    rt.store_raw = world.store.observe()
        log().info("token_refreshed", action="refresh", target=acc.id, result="ok",
                   before=oauth_fingerprint(blob), after=oauth_fingerprint(new_blob), duration_ms=timer.ms(),
                   reason=reason)
        return new_blob


def _rescue_late(world: World, rt: Runtime, acc: Account, blob: str, grant: object, spot: object,
                 held: bool) -> None:
    """A refresh answered after its deadline: keep the rotated login as a rescue (never renamed
    into place here: the run may no longer hold the pool lock)."""
    new_blob = refreshed_blob(blob, access_token=grant.access_token, refresh_token=grant.refresh_token,  # type: ignore[attr-defined]
                              expires_in=grant.expires_in, scope=grant.scope,  # type: ignore[attr-defined]
                              now_ms=int(world.clock().timestamp() * 1000),
                              refresh_token_expires_in=grant.refresh_token_expires_in)  # type: ignore[attr-defined]
    REDACTOR.add(*blob_secrets(new_blob))
    with rt.save_lock:   # the run's later saves carry it too
        acc.blob = normalized_blob(new_blob)
        world.pool.rescue(rt.pool, spot)
    if held:
        with contextlib.suppress(*FAILURES, OSError):
            with world.store.hold():
                world.store.write(with_oauth_of(world.store.observe(), new_blob))
    log().warning("token_refreshed", action="refresh", target=acc.id, result="late",
                  reason="the token endpoint answered after the deadline: the rotated login is kept beside the "
                         "pool and taken by the next run")


def _save_now(world: World, rt: Runtime, acc: Account, blob: str, spot: object = None) -> None:
    with rt.save_lock:
        acc.blob = normalized_blob(blob)
        if spot is None:
            world.pool.write(rt.pool)
        else:
            world.pool.write(rt.pool, into=spot)


def mark_dead(world: World, rt: Runtime, acc: Account, reason: str) -> None:
    """The refresh token was refused: "needs re-login", or, past the login's deadline (known from
    its blob), "login expired on DATE" (reconciler/deadlines.py)."""
    ends = blob_deadline_ms(acc.blob)
    if ends is not None and world.clock().timestamp() * 1000 >= ends:
        reason = say = expired_text(ends / 1000, acc.email or acc.id)
    else:
        say = (f"the refresh token was rejected; run /login in Claude Code as {acc.email or acc.id}, "
               "then `claude-pool import`")
    with rt.save_lock:
        acc.needs_relogin = True
        acc.relogin_reason = reason
        world.pool.write(rt.pool)
    log().warning("needs_relogin", action="mark_dead", target=acc.id, reason=reason, result="ok",
                  say=f"{acc.id}: {say}")
