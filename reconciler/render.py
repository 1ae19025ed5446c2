"""Human views, rendered from the same models as the --json output so they cannot disagree."""

from __future__ import annotations

import math
from datetime import datetime

from claude_pool.schema.plan import Plan
from claude_pool.schema.pool import Account, Pool, UsageWindow
from claude_pool.schema.state import ObservedState

from .status import duration


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


def windows_text(acc: Account, now: datetime) -> str:
    """`12%/2h05m 40%/3d  Opus 100%/3d  extra usage on (20%)  blocked 1h59m (429 message)`."""
    u = acc.usage
    text = f"{window(u.five_hour, now)} {window(u.seven_day, now)}"
    scoped = []
    for s in u.scoped:
        if s.pct is None:
            scoped.append(f"{s.name} ?")
            continue
        part = f"{s.name} {s.pct:.0f}%"
        if s.resets_at is not None and s.resets_at > now:
            part += "/" + duration((s.resets_at - now).total_seconds())
        scoped.append(part)
    if scoped:
        text += "  " + " ".join(scoped)
    extra = u.extra_usage
    if extra is not None and extra.enabled:
        text += "  extra usage on" + (f" ({extra.pct:.0f}% spent)" if extra.pct is not None else "")
    return text


def block_text(acc: Account, now: datetime) -> str:
    b = acc.block
    if b is None or b.until is None or b.until <= now:
        return ""
    scope = f" for {b.model}" if b.model else ""
    said = f": {b.reason}" if b.reason else ""
    return f"blocked{scope} {duration((b.until - now).total_seconds())} (429{said}; reset from {b.source})"


def mask_key(key: str) -> str:
    if len(key) <= 12:
        return "…" + key[-2:] if key else ""
    prefix = key[:10] if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}…{key[-4:]}"


def list_text(pool: Pool, observed: ObservedState | None, now: datetime) -> str:
    lines: list[str] = []
    mode = "API keys" if pool.mode == "apikey" else "accounts"
    lines.append(f"mode: {mode}")
    if not pool.accounts and not pool.api_keys:
        lines.append("the pool is empty: run `claude-pool import` after /login in Claude Code")
        return "\n".join(lines)
    if pool.accounts:
        lines.append("accounts (5h / 7d usage, time to reset):")
    id_w = max([len(a.id) for a in pool.accounts] + [2])
    em_w = max([len(a.email) for a in pool.accounts] + [2])
    for acc in pool.accounts:
        mark = "*" if pool.mode == "account" and acc.id == pool.current else " "
        if acc.needs_relogin:
            usage = "needs re-login (/login in Claude Code, then `claude-pool import`)"
        elif acc.usage_at is None:
            usage = "usage unknown"
        else:
            usage = windows_text(acc, now)
        blocked = block_text(acc, now)
        if blocked and not acc.needs_relogin:
            usage += "  " + blocked
        obs = observed.accounts.get(acc.id) if observed else None
        if obs is not None and obs.poll == "error":
            usage += f"  (poll failed: {obs.error})"
        lines.append(f" {mark} {acc.id.ljust(id_w)}  {acc.email.ljust(em_w)}  {usage}")
    if pool.api_keys:
        lines.append("API keys:")
        for key in pool.api_keys:
            mark = "*" if pool.mode == "apikey" and key.id == pool.current_key else " "
            lines.append(f" {mark} {key.id}  {mask_key(key.key)}")
    return "\n".join(lines)
