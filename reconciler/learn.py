"""What a run learns, written into its in-memory pool (saved with the run: by apply, or by the
engine when nothing else changed). Each function is one engine step; none reads or writes
anything outside the run: what they learn from comes in as an argument.

- a 429 block whose time has passed is forgotten;
- the statusline's reading of the active account counts as a cached poll;
- an account marked "needs re-login" whose new login Claude Code holds is usable again;
- a refused request (the stop-failure hook) blocks the account that sent it until its reset;
- the usage readings observe made are kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from claude_pool.schema.limits import families, parse_refusal, scope_applies
from claude_pool.schema.pool import Account, Block, Usage, UsageWindow
from claude_pool.schema.state import StoreObs
from claude_pool.schema.timefmt import format_time

from .audit import REDACTOR, log
from .intents import Refusal
from .runtime import Runtime


def forget_expired_blocks(rt: Runtime, now: datetime) -> None:
    """A 429 block whose time has passed says nothing any more: drop it."""
    for acc in rt.pool.accounts:
        if acc.block is not None and (acc.block.until is None or acc.block.until <= now):
            acc.block = None
            rt.usage_dirty = True


FEED_SETTLE = timedelta(seconds=30)


def take_feed(rt: Runtime, feed: dict | None) -> None:
    """Take the statusline's free reading of the active account's usage as a cached poll.

    Only for the account active when it was recorded, and not in the first seconds after a
    switch (the statusline may still show the previous credential's last response).
    """
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


def notice_relogin(rt: Runtime, store: StoreObs) -> None:
    """An account marked "needs re-login" whose new login Claude Code now holds (the user ran /login
    again) is usable in this very run: it is polled with that login, and the adopt action saves it
    and clears the mark (docs/ARCHITECTURE.md §6: harvest first)."""
    acc = rt.pool.account(store.account) if store.account else None
    if acc is not None and acc.needs_relogin and store.valid and store.fresher_than_pool:
        acc.needs_relogin, acc.relogin_reason = False, ""


def take_readings(rt: Runtime, readings: dict[str, Usage], now: datetime) -> None:
    """Usage read this run replaces the cached reading."""
    for aid, usage in readings.items():
        acc = rt.pool.account(aid)
        if acc is not None:
            acc.usage, acc.usage_at = usage, now
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


def take_refusal(rt: Runtime, refusal: Refusal, held: str, now: datetime) -> None:
    """Claude Code's request on the account it holds was refused: keep the evidence."""
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
    acc.block = block
    rt.usage_dirty = True
    log().warning("rate_limited", action="block", target=acc.id, result="ok",
                  until=format_time(block.until), source=block.source, reason=block.reason,
                  model=refusal.model or "",
                  say=f"{acc.id} refused a request ({block.reason or 'rate limit'}); not used again "
                      f"before {format_time(block.until)} (reset from {block.source})")
