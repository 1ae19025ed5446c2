"""Rate-limit facts with the standard library only (the session-start hook's light path uses them).

* `parse_windows`: the usage API's answer, both shapes, as plain dicts: `five_hour`, `seven_day`,
  every per-model weekly window (`scoped`) and paid overage (`extra_usage`).
* `families` / `scope_applies`: which windows bind a request for a given model.
* `parse_refusal`: what Claude Code's rate-limit message says (which limit, when it resets, or
  that the server is limiting everyone and the account is not at fault).

Which limits count (see the README's "Which limits count"): five_hour and seven_day always; a
per-model weekly window only for requests of its model. When the model is unknown, a per-model
window at 100% does not make the account exhausted (it still serves other models), but the
account ranks after every account with no exhausted window at all.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from .timefmt import parse_time

# limits[].kind -> our window name (the legacy keys five_hour / seven_day)
LIMIT_KINDS = {"session": "five_hour", "weekly_all": "seven_day"}
SCOPED_KIND = "weekly_scoped"
LEGACY_SCOPED_PREFIX = "seven_day_"
# legacy `seven_day_*` keys that are not a model's window
NOT_A_MODEL = {"oauth_apps", "cowork"}


def _percent(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return min(max(value, 0.0), 100.0)


def _scope_name(item: dict) -> str:
    scope = item.get("scope")
    if isinstance(scope, dict):
        model = scope.get("model")
        if isinstance(model, dict):
            for key in ("display_name", "id", "name"):
                if isinstance(model.get(key), str) and model[key].strip():
                    return model[key].strip()
        if isinstance(model, str) and model.strip():
            return model.strip()
        for key in ("display_name", "name"):
            if isinstance(scope.get(key), str) and scope[key].strip():
                return scope[key].strip()
    if isinstance(scope, str) and scope.strip():
        return scope.strip()
    return ""


def _legacy_name(key: str) -> str:
    tail = key[len(LEGACY_SCOPED_PREFIX):]
    return tail.replace("_", " ").strip().title()


def parse_windows(body: Any) -> dict[str, Any] | None:
    """Every window the usage answer carries, or None when it has neither five_hour nor seven_day.

    Result: {"five_hour": {"pct", "resets_at"}, "seven_day": {...}, "scoped": [{"name", "source",
    "pct" (None: unknown), "resets_at", "active", "severity"}], "extra_usage": {...} or absent}.
    `resets_at` values are aware datetimes or None. A five_hour window that has not started
    (absent, null, no number, or no `session` entry in limits[]) is left out: the caller reads
    it as "not open, 0 %" (tests/test_usage_shapes.py has every shape).
    """
    if not isinstance(body, dict):
        return None
    out: dict[str, Any] = {}
    for name in ("five_hour", "seven_day"):
        raw = body.get(name)
        if isinstance(raw, dict):
            pct = _percent(raw.get("utilization"))
            if pct is not None:
                out[name] = {"pct": pct, "resets_at": parse_time(raw.get("resets_at"))}
    scoped: dict[str, dict[str, Any]] = {}
    for key, raw in body.items():
        if not (isinstance(key, str) and key.startswith(LEGACY_SCOPED_PREFIX)) or not isinstance(raw, dict):
            continue
        if key[len(LEGACY_SCOPED_PREFIX):] in NOT_A_MODEL:
            continue
        name = _legacy_name(key)
        if not name:
            continue
        scoped[name.lower()] = {"name": name, "source": key, "pct": _percent(raw.get("utilization")),
                                "resets_at": parse_time(raw.get("resets_at")), "active": None, "severity": ""}
    limits = body.get("limits")
    if isinstance(limits, list):
        for item in limits:
            if not isinstance(item, dict):
                continue
            kind = item.get("kind")
            if not isinstance(kind, str):
                continue
            pct = _percent(item.get("percent", item.get("utilization")))
            resets = parse_time(item.get("resets_at"))
            if kind in LIMIT_KINDS:
                name = LIMIT_KINDS[kind]
                if name not in out and pct is not None:
                    out[name] = {"pct": pct, "resets_at": resets}
                continue
            if kind != SCOPED_KIND:
                continue  # unknown kinds (inactive_pool, ...) are tolerated and ignored
            name = _scope_name(item)
            if not name:
                continue
            active = item.get("is_active")
            severity = item.get("severity")
            entry = {"name": name, "source": "limits", "pct": pct, "resets_at": resets,
                     "active": active if isinstance(active, bool) else None,
                     "severity": severity if isinstance(severity, str) else ""}
            old = scoped.get(name.lower())
            if old is not None:
                # both shapes name the same window: keep the legacy number when limits[] has none
                entry["name"] = old["name"] if old["source"] != "limits" else name
                if entry["pct"] is None:
                    entry["pct"] = old["pct"]
                if entry["resets_at"] is None:
                    entry["resets_at"] = old["resets_at"]
            scoped[name.lower()] = entry
    if "five_hour" not in out and "seven_day" not in out:
        return None
    out["scoped"] = sorted(scoped.values(), key=lambda s: s["name"].lower())
    extra = parse_extra_usage(body)
    if extra is not None:
        out["extra_usage"] = extra
    return out


def _money(value: Any) -> float | None:
    if isinstance(value, dict):
        for key in ("amount", "value", "cents"):
            if key in value:
                return _money(value[key])
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def parse_extra_usage(body: dict) -> dict[str, Any] | None:
    """Paid overage: `extra_usage` (is_enabled, monthly_limit, used_credits, utilization) or
    `spend` (enabled, used, limit, percent). None when neither is present."""
    extra = body.get("extra_usage")
    spend = body.get("spend")
    if not isinstance(extra, dict) and not isinstance(spend, dict):
        return None
    enabled = False
    pct: float | None = None
    used: float | None = None
    limit: float | None = None
    reason = ""
    if isinstance(extra, dict):
        enabled = extra.get("is_enabled") is True
        pct = _percent(extra.get("utilization"))
        used = _money(extra.get("used_credits"))
        limit = _money(extra.get("monthly_limit"))
    if isinstance(spend, dict):
        enabled = enabled or spend.get("enabled") is True
        pct = pct if pct is not None else _percent(spend.get("percent"))
        used = used if used is not None else _money(spend.get("used"))
        limit = limit if limit is not None else _money(spend.get("limit"))
        if isinstance(spend.get("disabled_reason"), str):
            reason = spend["disabled_reason"]
    if pct is None and used is not None and limit:
        pct = _percent(used / limit * 100)
    return {"enabled": enabled, "pct": pct, "used": used, "limit": limit, "disabled_reason": reason}


# ---- models ---------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    """Runs of ASCII letters and digits, lowercased ("Opus 4.8" -> ["opus", "4", "8"])."""
    out, cur = [], []
    for ch in text.lower():
        if ("a" <= ch <= "z") or ("0" <= ch <= "9"):
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


# Claude Code's model aliases that name more than one family
_ALIASES = {"opusplan": frozenset({"opus", "sonnet"})}
_UNKNOWN = {"", "default", "inherit"}


def families(model: str | None) -> frozenset[str] | None:
    """The words a model is known by ("claude-opus-4-8" -> {claude, opus, 4, 8}); None: unknown."""
    if not isinstance(model, str):
        return None
    text = model.strip().lower()
    if text.endswith("]") and "[" in text:   # "opus[1m]"
        text = text[:text.rindex("[")]
    if text in _UNKNOWN:
        return None
    if text in _ALIASES:
        return _ALIASES[text]
    words = frozenset(_words(text))
    return words or None


def scope_applies(scope_name: str, model_words: frozenset[str] | None) -> bool:
    """Does a per-model window named `scope_name` ("Opus", "Opus 4.8") bind a request of that
    model? Every word of the scope's name must be among the model's words."""
    if model_words is None:
        return False
    words = _words(scope_name)
    return bool(words) and all(w in model_words for w in words)


def model_of(value: Any) -> str | None:
    """A model named by Claude Code's JSON: a string, or {"id": ..., "display_name": ...}."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in ("id", "display_name"):
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key].strip()
    return None


# ---- Claude Code's rate-limit messages ------------------------------------------------------

SERVER_LIMIT = r"not your usage limit|temporarily limiting requests"
_LIMIT_NAME = r"hit your ([\w .-]*?)limit"
_RESETS = r"resets?\s+(?:at\s+)?(.+?)\s*(?:\(([^()]+)\))?\s*(?:[·.]|$)"
_CLOCK = r"^(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\.?$"
_CLOCK24 = r"^(\d{1,2}):(\d{2})$"
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                           "oct", "nov", "dec"))}
_DATE = r"^([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2})(?:,?\s+(\d{4}))?$"


def _zone(name: str | None) -> Any:
    if not name:
        return None
    name = name.strip()
    if name.upper() in ("UTC", "GMT", "Z"):
        return timezone.utc
    m = re.fullmatch(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", name, re.I)
    if m:
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
        return timezone(delta if m.group(1) == "+" else -delta)
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _clock(text: str) -> time | None:
    text = text.strip()
    m = re.match(_CLOCK, text, re.I)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if not (1 <= hour <= 12 and minute < 60):
            return None
        hour = hour % 12 + (12 if m.group(3).lower() == "p" else 0)
        return time(hour, minute)
    m = re.match(_CLOCK24, text)
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return time(int(m.group(1)), int(m.group(2)))
    return None


def parse_reset(text: str, zone_name: str | None, now: datetime) -> datetime | None:
    """"4:56pm" (the next one after `now`) or "Jan 15, 2027, 8am" / "Jan 15, 8am", in the named
    zone (UTC when none is named or it is unknown)."""
    tz = _zone(zone_name) or timezone.utc
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        return None
    clock = _clock(parts[-1])
    if clock is None:
        return None
    local_now = now.astimezone(tz)
    head = " ".join(parts[:-1])
    if not head:
        when = datetime.combine(local_now.date(), clock, tzinfo=tz)
        if when <= local_now:
            when = datetime.combine(local_now.date() + timedelta(days=1), clock, tzinfo=tz)
        return when.astimezone(timezone.utc)
    m = re.match(_DATE, head)
    if not m or m.group(1).lower() not in _MONTHS:
        return None
    month, day = _MONTHS[m.group(1).lower()], int(m.group(2))
    year = int(m.group(3)) if m.group(3) else local_now.year
    try:
        when = datetime.combine(date(year, month, day), clock, tzinfo=tz)
    except ValueError:
        return None
    if not m.group(3) and when < local_now - timedelta(days=1):
        try:
            when = when.replace(year=year + 1)
        except ValueError:
            return None
    return when.astimezone(timezone.utc)


def parse_refusal(message: Any, now: datetime) -> dict[str, Any]:
    """What a rate-limited request's message says.

    {"kind": "server"}: the server is limiting requests, not the account's usage.
    {"kind": "unknown"}: not a message Claude Code shows for a usage limit (nothing to go on).
    {"kind": "usage", "limit": "session" | "weekly" | "<model> weekly" | "", "window": "five_hour" |
    "seven_day" | "", "model": a model word the limit names or "", "resets_at": datetime or None}.
    """
    text = message if isinstance(message, str) else ""
    text = " ".join(text.split())[:2000]
    if re.search(SERVER_LIMIT, text, re.I):
        return {"kind": "server"}
    limit = ""
    m = re.search(_LIMIT_NAME, text, re.I)
    if m:
        limit = m.group(1).strip().lower()
    elif not re.search(r"usage limit|limit reached", text, re.I):
        return {"kind": "unknown"}
    window = ""
    if "session" in limit or "5-hour" in limit or "five" in limit:
        window = "five_hour"
    elif "week" in limit:
        window = "seven_day"
    model = ""
    for word in _words(limit):
        if word not in ("session", "weekly", "week", "usage", "your", "the", "5", "hour", "daily", "limit"):
            model = word
            break
    if model:
        window = ""   # a per-model limit: its reset is that model's window's, not seven_day's
    resets_at = None
    r = re.search(_RESETS, text, re.I)
    if r:
        resets_at = parse_reset(r.group(1), r.group(2), now)
    return {"kind": "usage", "limit": limit, "window": window, "model": model, "resets_at": resets_at}
