"""Observe: read the world and build the observed state. Nothing here writes, refreshes, sweeps
or decides; the engine calls each function in turn (docs/ARCHITECTURE.md §1).

- `load`: the pool and Claude Code's store, as they are, into the run.
- `observe_store`: which pool account the login Claude Code holds belongs to (a profile call
  identifies an unknown one).
- `observe_settings`: whose apiKeyHelper settings.json names.
- `read_usage`: one usage call per account, concurrently, with the token each holds now.
- `observed_state`: the ObservedState the policy decides on.
"""

from __future__ import annotations

import concurrent.futures
import os
from datetime import datetime

from claude_pool.providers import paths
from claude_pool.providers.anthropic import ApiError, InvalidGrant
from claude_pool.providers.base import ProviderError
from claude_pool.providers.claude_json import same_identity
from claude_pool.providers.poolfile import decision_digest
from claude_pool.providers.world import World
from claude_pool.schema.credentials import OAuth, oauth_fingerprint, same_login, try_oauth
from claude_pool.schema.pool import Account, Usage
from claude_pool.schema.state import AccountObs, ObservedState, SettingsObs, StoreObs

from .errors import UserError
from .runtime import Runtime, is_our_helper
from .status import duration


def fresher(a: OAuth, b: OAuth | None) -> bool:
    """Is login `a` at least as fresh as `b` (later or equal expiry; unknown counts as old)?"""
    if b is None:
        return True
    return (a.expiresAt or 0) >= (b.expiresAt or 0)


def load(world: World, rt: Runtime) -> None:
    """Read the pool and the credential store into the run."""
    try:
        rt.pool = world.pool.observe()
        rt.store_raw = world.store.observe()
    except ProviderError as exc:
        raise UserError(str(exc)) from None
    rt.remember_secrets()


def observe_store(world: World, rt: Runtime, *, identify: bool) -> StoreObs:
    """Which pool account (if any) the login in Claude Code's store belongs to, and the account
    Claude Code shows (`.claude.json`); an unknown login identified by the profile call gets its
    identity too: the one `.claude.json` shows when that is this login, else the profile's."""
    raw = rt.store_raw
    obs = StoreObs.model_construct(present=raw is not None, fingerprint=oauth_fingerprint(raw))
    shown = world.claude_json.observe()
    obs.shown_file, obs.shown = shown.present, shown.account
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
        profile = world.api.profile(oauth.accessToken)
    except ApiError as exc:
        obs.error = f"the login Claude Code holds could not be identified ({exc})"
        return obs
    obs.email = profile.email
    obs.identity = obs.shown if same_identity(obs.shown, profile.oauth_account) else profile.oauth_account
    for acc in rt.pool.accounts:
        if acc.email and acc.email.lower() == obs.email.lower():
            obs.account = acc.id
            obs.fresher_than_pool = fresher(oauth, try_oauth(acc.blob))
            break
    return obs


def observe_settings(world: World, rt: Runtime) -> SettingsObs:
    from claude_pool.providers.authenv import overrides

    view = world.settings.observe()
    ours = is_our_helper(view.api_key_helper, rt.helper)
    in_settings = list(view.env_overrides)
    return SettingsObs.model_construct(present=view.present, api_key_helper=view.api_key_helper, error=view.error,
                                      ours=ours, stale=ours and _stale_helper(view.api_key_helper or "", rt.helper),
                                      overrides=in_settings,
                                      env_overrides=[n for n in overrides(os.environ) if n not in in_settings],
                                      env_is_claude_codes=os.environ.get("CLAUDECODE") == "1",   # Claude Code runs us
                                      **_claude_dirs(world, world.clock().timestamp()))


SEEN_FOR = 7 * 86400.0   # a session start this recent still says which folder Claude Code uses


def _claude_dirs(world: World, now: float) -> dict[str, str]:
    """This run's Claude Code folder, and the one its last session start used when that differs
    (the world's sessions provider; only from a shell: inside Claude Code they agree)."""
    if os.environ.get("CLAUDECODE") == "1":
        return {}
    here = os.path.realpath(paths.claude_dir())
    seen = world.sessions.last_folder()
    if (not isinstance(seen, dict) or not isinstance(seen.get("dir"), str) or seen["dir"] == here
            or not isinstance(seen.get("at"), (int, float)) or not 0 <= now - seen["at"] < SEEN_FOR):
        return {}
    return {"sessions_claude_dir": seen["dir"], "claude_dir": here}


def _stale_helper(command: str, current: str) -> bool:
    """Our helper, but one that cannot keep working: its program is gone, or it lives in Claude
    Code's plugin folders (older plugin versions installed there; `claude plugin uninstall` deletes
    them). Another live install of ours is not stale, so two installs never take turns rewriting it."""
    if command.strip() == current:
        return False
    return paths.helper_program_stale(command) is True


def working_blob(rt: Runtime, acc: Account, store: StoreObs) -> str:
    """The freshest copy of an account's login: Claude Code's, when it refreshed it itself."""
    if store.account == acc.id and store.fresher_than_pool and rt.store_raw:
        return rt.store_raw
    return acc.blob


def read_usage(world: World, rt: Runtime, ids: list[str], store: StoreObs) -> dict[str, Usage | Exception]:
    """One usage call per account (concurrently), with the access token its login holds now.
    An account whose login is unreadable answers ProviderError, a refused token Unauthorized:
    refreshing is the harvest's job."""
    accounts = [a for a in rt.pool.accounts if a.id in ids]
    if len(accounts) <= 1:
        return {a.id: _read_one(world, rt, a, store) for a in accounts}
    workers = min(len(accounts), rt.config.http.max_connections)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as threads:
        futures = {a.id: threads.submit(_read_one, world, rt, a, store) for a in accounts}
        return {aid: f.result() for aid, f in futures.items()}


def _read_one(world: World, rt: Runtime, acc: Account, store: StoreObs) -> Usage | Exception:
    oauth = try_oauth(working_blob(rt, acc, store))
    if oauth is None:
        return ProviderError("the stored login is not readable")
    if not oauth.accessToken:
        return ProviderError("the stored login has no access token")
    try:
        return world.api.usage(oauth.accessToken)
    except ApiError as exc:
        return exc


def account_obs(acc: Account, result: Usage | Exception, now: datetime) -> AccountObs:
    """An account as observed: a fresh reading, a dead login, or a failed poll (skipped by the
    policy; the cached reading is kept for display)."""
    if isinstance(result, Usage):
        return AccountObs.model_construct(id=acc.id, email=acc.email, usage=result, usage_at=now, poll="ok")
    obs = AccountObs.model_construct(id=acc.id, email=acc.email, usage=acc.usage if acc.usage_at else None,
                                     usage_at=acc.usage_at)
    if isinstance(result, InvalidGrant):
        obs.poll, obs.dead, obs.error = "dead", True, str(result)
        return obs
    obs.poll = "error"
    age = ""
    if acc.usage_at:
        age = f"; last reading {duration((now - acc.usage_at).total_seconds())} ago (shown, not used to decide)"
    obs.error = f"{result}{age}"
    return obs


def unpolled(acc: Account, now: datetime, why: str) -> AccountObs:
    obs = AccountObs.model_construct(id=acc.id, email=acc.email, usage=acc.usage if acc.usage_at else None,
                                     usage_at=acc.usage_at, poll="cached" if acc.usage_at else "skipped", error=why)
    if acc.needs_relogin:
        obs.poll, obs.dead, obs.error = "dead", True, acc.relogin_reason or "needs re-login"
    return obs


def observed_state(rt: Runtime, now: datetime, store: StoreObs, settings: SettingsObs,
                   polled: dict[str, AccountObs]) -> ObservedState:
    """The state the policy decides on: the accounts polled this run as observed, the others as
    the pool has them."""
    accounts = {acc.id: polled.get(acc.id) or unpolled(acc, now, "") for acc in rt.pool.accounts}
    return ObservedState.model_construct(now=now, pool=rt.pool, pool_digest=decision_digest(rt.pool), store=store,
                                         settings=settings, accounts=accounts, helper_command=rt.helper)
