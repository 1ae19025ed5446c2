"""Human views, rendered from the same models as the --json output so they cannot disagree."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from claude_pool.schema.plan import Plan
from claude_pool.schema.pool import Block, Usage, UsageWindow

from .deadlines import ends_text, expired_text
from .status import duration

if TYPE_CHECKING:   # `list`'s models: plan, apply and reconcile render no listing (their build is not paid)
    from claude_pool.schema.listing import Listing, PauseView


def plan_text(plan: Plan) -> str:
    lines: list[str] = []
    if plan.empty:
        lines.append(f"No changes: {plan.reason}." if plan.reason else "No changes.")
    else:
        n = len(plan.actions)
        lines.append(f"{n} change{'s' if n != 1 else ''}: {plan.reason}")
        width = max(len(a.type) for a in plan.actions)
        for a in plan.actions:
            arrow = ""
            if a.before or a.after:
                arrow = f"  ({a.before or '-'} -> {a.after or '-'})"
            lines.append(f"  {a.symbol} {a.type.ljust(width)}  {a.target}{arrow}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def percent(pct: float) -> str:
    """Floored, as the Go tool shows it: 99.6 is 99%, never 100% until it is 100."""
    return f"{math.floor(pct)}%" if math.isfinite(pct) else "?%"


def window(w: UsageWindow, now: datetime) -> str:
    text = percent(w.pct)
    if w.resets_at is not None and w.resets_at > now:
        text += "/" + duration((w.resets_at - now).total_seconds())
    return text


def windows_text(u: Usage, now: datetime) -> str:
    """`12%/2h05m 40%/3d  Opus 100%/3d  extra usage on (20%)`."""
    text = f"{window(u.five_hour, now)} {window(u.seven_day, now)}"
    scoped = []
    for s in u.scoped:
        if s.pct is None:
            scoped.append(f"{s.name} ?")
            continue
        part = f"{s.name} {percent(s.pct)}"
        if s.resets_at is not None and s.resets_at > now:
            part += "/" + duration((s.resets_at - now).total_seconds())
        scoped.append(part)
    if scoped:
        text += "  " + " ".join(scoped)
    extra = u.extra_usage
    if extra is not None and extra.enabled:
        text += "  extra usage on" + (f" ({extra.pct:.0f}% spent)" if extra.pct is not None else "")
    return text


def block_text(b: Block | None, now: datetime) -> str:
    if b is None or b.until is None or b.until <= now:
        return ""
    scope = f" for {b.model}" if b.model else ""
    said = f": {b.reason}" if b.reason else ""
    return f"blocked{scope} {duration((b.until - now).total_seconds())} (429{said}; reset from {b.source})"


def throttle_text(until: datetime, usage_at: datetime | None, now: datetime) -> str:
    """`(usage endpoint throttled, next look in 52m; reading from 8m ago)`."""
    age = f"; reading from {duration((now - usage_at).total_seconds())} ago" if usage_at is not None else ""
    return f"(usage endpoint throttled, next look in {duration((until - now).total_seconds())}{age})"


def pause_text(p: PauseView, now: datetime) -> str:
    """`paused for 2h59m (by hand: travel; never chosen)` / `paused until resumed (by hand)`."""
    when = f"for {duration((p.until - now).total_seconds())}" if p.until is not None else "until resumed"
    said = f": {p.reason}" if p.reason else ""
    return f"paused {when} (by hand{said}; never chosen)"


def list_text(view: Listing) -> str:
    now = view.now or datetime.now(timezone.utc)
    lines: list[str] = [f"mode: {'API keys' if view.mode == 'apikey' else 'accounts'}"]
    if not view.accounts and not view.api_keys:
        lines.append("the pool is empty: run `claude-pool import` after /login in Claude Code")
        return "\n".join(lines)
    if view.accounts:
        lines.append("accounts (5h / 7d usage, time to reset):")
    id_w = max([len(a.id) for a in view.accounts] + [2])
    em_w = max([len(a.email) for a in view.accounts] + [2])
    paces = forecasts()   # the history's forecasts (issue 20: pace in list)
    for acc in view.accounts:
        ended = acc.login_ends is not None and acc.login_ends <= now
        if acc.needs_relogin and ended:
            usage = expired_text(acc.login_ends.timestamp(), acc.email or acc.id)  # type: ignore[union-attr]
        elif acc.needs_relogin and acc.relogin_reason.startswith("moved to another machine"):
            usage = acc.relogin_reason   # `export --move` (reconciler/transfer.py): says where it went
        elif acc.needs_relogin:
            usage = "needs re-login (/login in Claude Code, then `claude-pool import`)"
        elif acc.usage_at is None:
            usage = "usage unknown"
        else:
            usage = windows_text(acc.usage, now)
        blocked = block_text(acc.blocked, now)
        if blocked and not acc.needs_relogin:
            usage += "  " + blocked
        if acc.error:
            usage += f"  (poll failed: {acc.error})"
        elif acc.usage_throttled_until is not None and not acc.needs_relogin:
            usage += "  " + throttle_text(acc.usage_throttled_until, acc.usage_at, now)
        if acc.paused is not None:
            usage += "  " + pause_text(acc.paused, now)
        prefs = [f"priority {acc.priority}"] if acc.priority is not None else []
        prefs += [f"threshold {acc.threshold * 100:.4g}%"] if acc.threshold is not None else []
        if prefs:
            usage += f"  ({', '.join(prefs)})"
        if acc.login_ends is not None and not acc.needs_relogin:   # shown whenever known
            usage += "  " + (expired_text(acc.login_ends.timestamp(), acc.email or acc.id) if ended
                             else ends_text(acc.login_ends.timestamp(), now.timestamp()))
        if not acc.needs_relogin and pace_text(paces.get(acc.id), now):
            usage += "  pace " + pace_text(paces.get(acc.id), now)
        lines.append(f" {'*' if acc.active else ' '} {acc.id.ljust(id_w)}  {acc.email.ljust(em_w)}  {usage}")
    if view.api_keys:
        lines.append("API keys:")
        for key in view.api_keys:
            lines.append(f" {'*' if key.active else ' '} {key.id}  {key.masked}")
    if view.pending_changes:
        lines.append(f"({view.pending_changes} pending change(s): `claude-pool plan` shows them)")
    hint = nowhere_to_go(len(view.accounts), len(view.api_keys))
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def nowhere_to_go(accounts: int, keys: int) -> str:
    """With one account and no API key the pool has nowhere to move: how to give it somewhere."""
    if accounts != 1 or keys:
        return ""
    return ("(one account and no API key: nowhere to move yet; /login as another account in Claude Code "
            "and run `claude-pool import`, or add a key with `claude-pool key add`)")


def forecasts() -> dict[str, dict]:
    """{account id: {window: forecast}} from the history's cache (providers/history.py); {} if none."""
    from claude_pool.providers import history

    return history.forecasts()


def pace_text(per_window: dict | None, now: datetime) -> str:
    """`7d: out in ~2d, resets in ~3d` for the window that matters (reconciler/forecast.py); ''."""
    from . import forecast

    return forecast.text(forecast.main_one(per_window, now.timestamp()), now.timestamp())
