"""`claude-pool statusline`: a statusLine command for Claude Code. A hot path (every render).

Reads Claude Code's statusLine JSON on stdin. Its `rate_limits` (present on a subscription login)
are free usage data for the active account: they are recorded in `usage-feed.json` beside the
pool (plaintext, no secret) and the next reconcile uses them instead of polling that account.
Prints a short badge: the account's name (with `· out, back in 2h59m` in a warning colour while
that account is out: every account is and there is no key, or the move is still to come), or, on
API keys, the key's name in a warning colour with the time until an account is back; and, while
an account's login ends within 3 days, which one and when (`pool: alice · bob: login ends in 1d23h`).
"""

from __future__ import annotations

import sys
import time

from claude_pool.providers import sidecars

from .deadlines import due, ends_text
from .hooks import read_payload
from .status import current, duration

YELLOW, DIM, RESET = "\033[33m", "\033[2m", "\033[0m"


def feed_from(payload: dict, active: str, since: str | None, now: float) -> dict | None:
    limits = payload.get("rate_limits")
    if not isinstance(limits, dict) or not active:
        return None
    feed: dict[str, object] = {"name": active, "at": now, "since": since}
    for name in ("five_hour", "seven_day"):
        window = limits.get(name)
        if not isinstance(window, dict):
            continue
        pct = window.get("used_percentage")
        if isinstance(pct, (int, float)) and not isinstance(pct, bool) and 0 <= pct <= 100:
            resets = window.get("resets_at")
            ok = isinstance(resets, (int, float)) and not isinstance(resets, bool) and 0 < resets < 1e11
            feed[name] = {"pct": float(pct), "resets_at": float(resets) if ok else None}  # no NaN, no inf
    model = payload.get("model")
    model = model.get("id") if isinstance(model, dict) else model
    if isinstance(model, str) and 0 < len(model) <= 200:
        feed["model"] = model   # the model this session's requests go out with (reconciler/model.py)
    return feed if ("five_hour" in feed or "seven_day" in feed) else None


def out_until(data: dict, payload: dict, now: float) -> float | None:
    """When the held account is back (epoch), if it is out now: by Claude Code's own rate limits
    of this render, or by the pool's last reading of it and its 429 block (status.json's `held`,
    asked of reconciler/decision.py `exhausted_until`, only when a window there is at 100%)."""
    found: list[float] = []
    limits = payload.get("rate_limits") if _settled(data, now) else None
    for name in ("five_hour", "seven_day"):
        w = limits.get(name) if isinstance(limits, dict) else None
        pct, resets = (w.get("used_percentage"), w.get("resets_at")) if isinstance(w, dict) else (None, None)
        if (isinstance(pct, (int, float)) and not isinstance(pct, bool) and pct >= 100
                and isinstance(resets, (int, float)) and not isinstance(resets, bool) and now < resets < 1e11):
            found.append(float(resets))
    held = data.get("held")
    if isinstance(held, dict) and held.get("id") == data.get("name") and (held.get("block") or _full(held.get("usage"))):
        from datetime import datetime, timezone

        from . import decision

        when = decision.exhausted_until(decision.light_account(held), datetime.fromtimestamp(now, tz=timezone.utc))
        if when is not None:
            found.append(when.timestamp())
    return max(found) if found else None


def _settled(data: dict, now: float) -> bool:
    """This render's rate limits are the held account's: no switch in the last FEED_SETTLE
    (before that they may still be the previous credential's last response)."""
    since = data.get("since")
    if not isinstance(since, str):
        return True
    from claude_pool.schema.timefmt import parse_time

    from .decision import FEED_SETTLE

    when = parse_time(since)
    return when is None or now - when.timestamp() >= FEED_SETTLE.total_seconds()


def _full(numbers: object) -> bool:
    """Any window's `pct` in this raw usage JSON is at 100 or above."""
    from .hooks import _near

    return _near(numbers, 100.0)


def badge(data: dict | None, now: float, color: bool = True, payload: dict | None = None) -> str:
    if data is None:
        return "pool: ?"          # the pool could not be read (`claude-pool list` says why)
    if not data or data.get("mode") == "empty":
        return "pool: empty"
    if data.get("mode") == "apikey":
        text = f"pool: API key {data.get('name', '')}"
        when = data.get("resets_at_epoch") if isinstance(data.get("resets_at_epoch"), (int, float)) else None
        if when is not None:
            text += f" · accounts back in {duration(when - now)}"
        text += " · Remote Control, /schedule off"   # what an apiKeyHelper turns off in Claude Code
        return (f"{YELLOW}{text}{RESET}" if color else text) + deadline_marker(data, now, color)
    text = f"pool: {data.get('name', '')}"
    back = out_until(data, payload or {}, now) if data.get("mode") == "account" else None
    if back is not None:   # every other account out too, or the move not made yet: say so
        out = f" · out, back in {duration(back - now)}"
        text += f"{YELLOW}{out}{RESET}" if color else out
    return text + deadline_marker(data, now, color)


def deadline_marker(data: dict, now: float, color: bool = True) -> str:
    """` · bob: login ends in 1d23h` (or `login expired`; `+N` more) while an account's login ends
    within 3 days or has ended (status.json's `logins_end`, reconciler/deadlines.py); else ''."""
    soon = due(data, now)
    if not soon:
        return ""
    aid, _, at = soon[0]
    text = f" · {aid}: {ends_text(at, now)}" + (f" +{len(soon) - 1}" if len(soon) > 1 else "")
    return f"{YELLOW}{text}{RESET}" if color else text


def _nudge(payload: dict) -> None:
    """The statusline runs after each response with fresh rate limits: a turn nearing the wall
    asks for a reconcile now, so the next request of the turn can go out on another account
    (reconciler/hooks.py `nudge`: at most once per 15 s per session; the policy decides)."""
    from .hooks import nudge

    try:
        nudge(payload.get("session_id"), "statusline")
    except Exception:  # noqa: BLE001 - the badge is printed whatever happens
        pass


def bypass_badge(data: dict | None, color: bool = True) -> str:
    """`pool: bypassed by ANTHROPIC_API_KEY` when this session sends a credential from its
    environment that outranks the pool's (providers/authenv.py), else ''."""
    from .status import bypassed_by

    name = bypassed_by(str((data or {}).get("mode", "account")))
    if not name:
        return ""
    text = f"pool: bypassed by {name}"
    return f"{YELLOW}{text}{RESET}" if color else text


def main(argv: list[str]) -> int:
    now = time.time()
    payload = read_payload()
    data = current()
    bypassed = bypass_badge(data, color="--no-color" not in argv)
    if bypassed:   # the session does not send the pool's credential: no feed, nothing to nudge
        sys.stdout.write(bypassed + "\n")
        return 0
    if data and data.get("mode") == "account":
        feed = feed_from(payload, str(data.get("name") or ""), data.get("since"), now)  # type: ignore[arg-type]
        if feed is not None:
            try:
                sidecars.write_feed(feed)  # type: ignore[arg-type]
            except OSError:
                pass
            else:
                _nudge(payload)
    sys.stdout.write(badge(data, now, color="--no-color" not in argv, payload=payload) + "\n")
    return 0
