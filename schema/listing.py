"""What `claude-pool list` shows: one model, rendered as text or as JSON (`list --json`), so the
two cannot disagree. Never a secret: keys appear masked and by fingerprint."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .pool import Block, GoTime, OptTime, Usage


# Built at the first `list`, not at import (issue 19): every run imports this module (render.py), few list.
_DEFERRED = ConfigDict(defer_build=True)


class PauseView(BaseModel):
    """`claude-pool pause`, while it lasts: the account is never chosen."""

    model_config = _DEFERRED

    at: OptTime = None                  # when it was paused
    until: OptTime = None               # when it ends by itself (null: at `claude-pool resume`)
    reason: str = ""                    # the user's words (`pause --reason`), "" when none


class AccountView(BaseModel):
    model_config = _DEFERRED

    id: str
    email: str = ""
    active: bool = False
    needs_relogin: bool = False
    usage: Usage = Field(default_factory=Usage)   # the last reading (usage_at None: never read)
    usage_at: GoTime = None
    blocked: Block | None = None        # a 429 block that still lasts
    poll: str = "skipped"               # this run: ok | cached | error | skipped | dead
    error: str = ""                     # why the poll failed (shown, not used to decide)
    usage_throttled_until: OptTime = None   # the usage endpoint's backoff (a 429): no look before this
    login_ends: OptTime = None          # the login's deadline (refreshTokenExpiresAt); null: unknown
    relogin_reason: str = ""            # why it needs re-login ("login expired on DATE: ..." past the deadline)
    # the user's preferences (issue 20), last so the older keys keep their order:
    priority: int | None = None         # its tier (`claude-pool priority`); null: the default tier
    threshold: float | None = None      # its own threshold, a fraction (`claude-pool threshold`); null: the global one
    paused: PauseView | None = None     # `claude-pool pause`, while it lasts; null: not paused


class KeyView(BaseModel):
    model_config = _DEFERRED

    id: str
    active: bool = False
    masked: str
    fingerprint: str


class Listing(BaseModel):
    model_config = _DEFERRED

    mode: Literal["account", "apikey"] = "account"
    current: str = ""
    current_key: str = ""
    now: OptTime = None
    accounts: list[AccountView] = Field(default_factory=list)
    api_keys: list[KeyView] = Field(default_factory=list)
    pending_changes: int = 0            # what `claude-pool plan` would change now


def mask_key(key: str) -> str:
    if len(key) <= 12:
        return "…" + key[-2:] if key else ""
    prefix = key[:10] if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}…{key[-4:]}"


def build(pool, observed, now: datetime, pending: int = 0) -> Listing:  # type: ignore[no-untyped-def]
    """The listing of `pool` as this run observed it (`observed`: schema/state.py ObservedState)."""
    from claude_pool.reconciler.deadlines import blob_deadline_ms

    from claude_pool.reconciler.decision import paused

    from .credentials import fingerprint
    from .pool import live_block, usage_throttled

    accounts = []
    for acc in pool.accounts:
        obs = observed.accounts.get(acc.id) if observed is not None else None
        accounts.append(AccountView(
            id=acc.id, email=acc.email, active=pool.mode == "account" and acc.id == pool.current,
            needs_relogin=acc.needs_relogin, usage=acc.usage, usage_at=acc.usage_at,
            blocked=live_block(acc, now, strict=False), poll=obs.poll if obs is not None else "skipped",
            error=obs.error if obs is not None and obs.poll == "error" else "",
            usage_throttled_until=usage_throttled(acc, now),
            login_ends=_epoch_ms(blob_deadline_ms(acc.blob)),
            relogin_reason=acc.relogin_reason if acc.needs_relogin else "",
            priority=acc.priority, threshold=acc.threshold,
            paused=PauseView(at=acc.paused.at, until=acc.paused.until, reason=acc.paused.reason)
            if paused(acc, now) else None))
    keys = [KeyView(id=k.id, active=pool.mode == "apikey" and k.id == pool.current_key, masked=mask_key(k.key),
                    fingerprint=fingerprint(k.key)) for k in pool.api_keys]
    return Listing(mode=pool.mode, current=pool.current, current_key=pool.current_key, now=now,
                   accounts=accounts, api_keys=keys, pending_changes=pending)


def _epoch_ms(ms: int | None) -> datetime | None:
    from datetime import timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms is not None else None
