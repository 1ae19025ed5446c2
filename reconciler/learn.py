"""What a run learns, written into its in-memory pool (saved with the run: by apply, or by the
engine when nothing else changed). Each function is one engine step; none reads or writes
anything outside the run: what they learn from comes in as an argument.

- a 429 block whose time has passed is forgotten;
- the statusline's reading of the active account counts as a cached poll;
- an account marked "needs re-login" whose new login Claude Code holds is usable again;
- a refused request (the stop-failure hook) blocks the account that sent it until its reset;
- an account with no identity yet takes the one Claude Code shows while it holds that account;
- the usage readings observe made are kept;
- every usage call is counted per account and hour, and a 429 from the usage endpoint backs
  that account's polls off (a good reading ends it).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from claude_pool.schema.limits import families, parse_refusal, scope_applies
from claude_pool.schema.pool import Account, Block, Pool, Usage, UsageWindow
from claude_pool.schema.state import StoreObs
from claude_pool.schema.timefmt import format_time
from claude_pool.providers.anthropic import ApiError, Throttled
from claude_pool.providers.claude_json import identity_key, same_identity
from claude_pool.schema import backoff

from . import decision
from .audit import REDACTOR, log
from .intents import Refusal
from .runtime import Runtime


def forget_expired_blocks(rt: Runtime, now: datetime) -> None:
    """A 429 block whose time has passed says nothing any more: drop it. So does a pause past its
    end (`claude-pool pause --until`)."""
    for acc in rt.pool.accounts:
        if acc.block is not None and (acc.block.until is None or acc.block.until <= now):
            acc.block = None
            rt.usage_dirty = True
        if acc.paused is not None and acc.paused.until is not None and acc.paused.until <= now:
            acc.paused = None
            rt.usage_dirty = True



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
    if since is not None and at - since < decision.FEED_SETTLE:
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
    # the feed has the five-hour and seven-day windows only: the per-model ones and the overage
    # of the last API reading stay as they were
    acc.usage = acc.usage.model_copy(update=windows)
    acc.usage_at, acc.usage_source = at, "feed"
    rt.usage_dirty = True


def notice_relogin(rt: Runtime, store: StoreObs) -> None:
    """An account marked "needs re-login" whose new login Claude Code now holds (the user ran /login
    again) is usable in this very run: it is polled with that login, and the adopt action saves it
    and clears the mark (docs/ARCHITECTURE.md §6: harvest first)."""
    acc = rt.pool.account(store.account) if store.account else None
    if acc is not None and acc.needs_relogin and store.valid and store.fresher_than_pool:
        acc.needs_relogin, acc.relogin_reason = False, ""


def take_identity(rt: Runtime, store: StoreObs) -> None:
    """The account Claude Code shows is the one it holds: a pool account with no identity yet
    (imported before claude-pool kept one) takes `.claude.json`'s `oauthAccount` while Claude Code
    holds its login and shows its email, unless that identity is already another account's (one
    email, two organizations)."""
    acc = rt.pool.account(store.account) if store.account else None
    shown = store.shown
    key = identity_key(shown)
    if acc is None or acc.oauth_account or key is None or not acc.email or key[0] != acc.email.lower():
        return
    if any(same_identity(other.oauth_account, shown) for other in rt.pool.accounts if other is not acc):
        return
    acc.oauth_account = dict(shown)  # type: ignore[arg-type]
    rt.usage_dirty = True


def take_readings(rt: Runtime, readings: dict[str, Usage], now: datetime) -> None:
    """Usage read this run replaces the cached reading."""
    for aid, usage in readings.items():
        acc = rt.pool.account(aid)
        if acc is not None:
            acc.usage, acc.usage_at, acc.usage_source = usage, now, ""
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


# A refused request is answered at once (Claude Code does not retry a 429 on a login), so it went
# out moments before the stop-failure hook runs: with the credential held then, or since.
IN_FLIGHT = timedelta(seconds=60)
MATCH = timedelta(minutes=3)       # the reset a message names vs an account's known reset (shown to the minute)


def senders(pool: Pool, held: str, since: datetime | None, now: datetime) -> list[str]:
    """What a refused request may have gone out with: the credential held when it was sent and
    every one held since. It was sent at most IN_FLIGHT ago, and not before its session's turn
    began (`since`, the prompt hook's record); Claude Code reads its credential before each
    request, so a move earlier in the turn changed the sender already. Account ids, "" for API keys."""
    start = now - IN_FLIGHT
    if since is not None and start < since <= now:
        start = since
    later = [h for h in pool.switches if h.at is not None and start < h.at <= now]
    if not later:
        return [held if pool.mode == "account" else ""]
    out: list[str] = []
    for aid in [later[0].before, *(h.after for h in later)]:
        if aid not in out:
            out.append(aid)
    return out


def _windows_named(acc: Account, said: dict) -> list:
    u = acc.usage
    if said["window"] == "five_hour":
        return [u.five_hour]
    if said["window"] == "seven_day":
        return [u.seven_day]
    if said["model"]:
        return [s for s in u.scoped if scope_applies(s.name, frozenset({said["model"]}))]
    return [u.five_hour, u.seven_day, *u.scoped]


def attribute(pool: Pool, candidates: list[str], message: str, now: datetime) -> tuple[str | None, str]:
    """(the sender to blame, how it was told; None: it cannot be told). One candidate is the
    sender. Of several, the one whose known reset is the one the message names; else the only
    one whose reading of the window the message names was near its limit (an account blocked
    already has had its refusal)."""
    if len(candidates) == 1:
        return candidates[0], "the only credential held since the turn began"
    said = parse_refusal(message, now)
    if said["kind"] != "usage":
        return candidates[-1], "not a usage-limit message: nothing to blame"
    accounts = [a for a in (pool.account(c) for c in candidates if c) if a is not None]
    when = said.get("resets_at")
    if when is not None:
        match = [a for a in accounts if decision.trusted_reading(a, now) and any(
            w.resets_at is not None and abs(w.resets_at - when) <= MATCH for w in _windows_named(a, said))]
        if len(match) == 1:
            return match[0].id, f"the reset the message names is {match[0].id}'s"
    near = [a for a in accounts if decision.live_block(a, now) is None and decision.trusted_reading(a, now) and any(
        w.pct is not None and decision.window_pct(w, now) >= decision.NEAR for w in _windows_named(a, said))]
    if len(near) == 1 and "" not in candidates:
        return near[0].id, f"{near[0].id} was the only one near that limit"
    return None, "held in turn: " + ", ".join(c or "API keys" for c in candidates)


def take_refusal(rt: Runtime, refusal: Refusal, held: str, now: datetime) -> None:
    """A request of Claude Code's was refused: keep the evidence, on the credential that sent it
    (not necessarily the one held now: the pool may have moved while the request was out)."""
    candidates = senders(rt.pool, held, refusal.since, now)
    blamed, how = attribute(rt.pool, candidates, refusal.message, now)
    kind = parse_refusal(refusal.message, now)["kind"]
    if blamed is None:
        log().warning("rate_limited", action="block", target="credentials", result="unattributed",
                      model=refusal.model or "", candidates=candidates,
                      reason=f"the refused request may have gone out with any of these ({how}): nothing is blocked",
                      say="a request was refused, but which account sent it cannot be told (the pool moved "
                          "during the turn): nothing is blocked; looking again")
        return
    acc = rt.pool.account(blamed) if blamed else None
    if acc is None:
        log().info("rate_limited", action="block", target=blamed or "api-key", result="skipped",
                   reason="the request went out with an API key" if not blamed
                   else "the login that sent it is not a pool account")
        return
    block = refusal_block(refusal.message, acc, now, families(refusal.model))
    if block is None:
        log().info("rate_limited", action="look", target=acc.id, result=kind, model=refusal.model or "",
                   reason="the server is limiting requests, not this account's usage: nothing is blocked"
                   if kind == "server" else "not a usage-limit message: nothing is blocked; reconciling live")
        return
    acc.block = block
    rt.usage_dirty = True
    log().warning("rate_limited", action="block", target=acc.id, result="ok",
                  until=format_time(block.until), source=block.source, reason=block.reason,
                  model=refusal.model or "", held=held, attributed=how,
                  say=f"{acc.id} refused a request ({block.reason or 'rate limit'}); not used again "
                      f"before {format_time(block.until)} (reset from {block.source})"
                      + ("" if acc.id == held else f"; {held or 'the key'} is held now and stays"))


def note_usage_calls(rt: Runtime, results: dict[str, Usage | Exception], now: datetime) -> None:
    """The usage calls observe made (docs/ARCHITECTURE.md §4, the endpoint's own limit), per
    account: the call's time is kept (the last hour's), a 429 sets or doubles the backoff and a
    good reading clears it (schema/backoff.py), and one audit event says the HTTP outcome and
    the account's calls in the last hour. A result that is neither a reading nor an API error
    (an unreadable stored login) made no call."""
    for aid, result in results.items():
        acc = rt.pool.account(aid)
        if acc is None or not isinstance(result, (Usage, ApiError)):
            continue
        reading = isinstance(result, Usage)
        status = 200 if reading else result.status  # type: ignore[union-attr]
        retry = result.retry_after if isinstance(result, Throttled) else None
        acc.usage_backoff, acc.usage_calls = backoff.after_call(
            acc.usage_backoff, acc.usage_calls, now, status=status, retry_after=retry, reading=reading)
        rt.usage_dirty = True
        event = {"http": status, "calls_last_hour": backoff.calls_last_hour(acc.usage_calls, now)}
        if reading:
            log().info("usage_call", action="poll", target=aid, result="ok", **event)
        elif isinstance(result, Throttled):
            wait = acc.usage_backoff or {}
            log().info("usage_call", action="poll", target=aid, result="throttled", error=str(result),
                       retry_after=retry, backoff_seconds=wait.get("delay"), next_look=wait.get("until"), **event)
        else:
            log().info("usage_call", action="poll", target=aid, result="failed", error=str(result), **event)
