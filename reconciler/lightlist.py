"""`claude-pool list --json` on the light path: standard library + cryptography only.

The full engine's `list --json` (reconciler/commands.py `cmd_list`: a dry run with no network,
then schema/listing.py `build` dumped by pydantic) is printed here byte for byte, from the pool
file's raw JSON decrypted with the hot paths' codec, whenever this module can be sure of every
byte; otherwise `render` answers None and the caller runs the full engine (correct beats fast).

Sure means: no config.toml (the full engine validates it with pydantic), Claude Code's login in a
plain file, a pool whose every field has exactly the type pydantic would keep unchanged (anything
it would coerce or refuse: not sure), nothing the engine would learn and save on a cached run (an
expired block, the statusline's newer reading, an identity to take), and `pending_changes` 0:
Claude Code's store holds the active account's very blob (or nothing, on API keys), settings.json
agrees with the mode, `.claude.json` shows that account, and the policy's ranking on the cached
readings (reconciler/decision.py, the functions the policy itself asks) keeps the current
credential. tests/test_lightlist.py compares this with the full engine on many random pools.

The listing's fields are declared once below (ACCOUNT_FIELDS, KEY_FIELDS, LISTING_FIELDS, in
schema/listing.py's order): a new field of AccountView is one line here.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from claude_pool.providers import credstore, crypto, paths, poolcodec
from claude_pool.providers.base import ProviderError
from claude_pool.reconciler import decision
from claude_pool.reconciler.deadlines import blob_deadline_ms
from claude_pool.schema import backoff
from claude_pool.schema.timefmt import format_optional, format_time, is_never, parse_time


class Unsure(Exception):
    """Not sure of every byte: the full engine answers."""


# ---- the pool, validated as pydantic would keep it (schema/pool.py), or Unsure -------------------

def _str(v: Any) -> str:
    if type(v) is not str:
        raise Unsure("not a string")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: pydantic's own business
        raise Unsure("surrogates") from None
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise Unsure("not a bool")
    return v


def _float(v: Any) -> float:
    if type(v) not in (int, float):
        raise Unsure("not a number")
    try:
        out = float(v)
    except OverflowError:
        raise Unsure("out of range") from None
    if not math.isfinite(out):
        raise Unsure("not finite")
    return out


def _opt_float(v: Any) -> float | None:
    return None if v is None else _float(v)


def _opt_bool(v: Any) -> bool | None:
    return None if v is None else _bool(v)


def _time(v: Any) -> datetime | None:
    if is_never(v):
        return None
    found = parse_time(v)
    if found is None:
        raise Unsure("not a time")
    return found


def _int(v: Any) -> int:
    if type(v) is not int:
        raise Unsure("not an int")
    return v


# A model: (field, validate, default) in declaration order; its unknown keys are kept (extra="allow")
# and dumped after the declared ones, in the file's order. REQUIRED: no default.
REQUIRED = object()
Model = tuple[tuple[str, Callable[[Any], Any], Any], ...]


def _validate(model: Model, data: Any) -> dict:
    if type(data) is not dict:
        raise Unsure("not an object")
    out: dict = {}
    for name, check, default in model:
        if name in data:
            out[name] = check(data[name])
        elif default is REQUIRED:
            raise Unsure(f"{name} missing")
        else:
            out[name] = default() if callable(default) else default
    names = {m[0] for m in model}
    extra = {}
    for k, v in data.items():
        if k not in names:
            if k.startswith(("_", "model_")):
                raise Unsure("a key pydantic may treat apart")
            extra[k] = v
    out["__extra__"] = extra
    return out


def _sub(model: Model, *, nullable: bool = False, none_is_empty: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and nullable:
            return None
        if v is None and none_is_empty:
            v = {}
        return _validate(model, v)
    return check


def _list_of(model: Model) -> Callable[[Any], list]:
    def check(v: Any) -> list:
        if v is None:
            return []
        if type(v) is not list:
            raise Unsure("not a list")
        return [_validate(model, x) for x in v]
    return check


WINDOW: Model = (("pct", _float, 0.0), ("resets_at", _time, None))
SCOPED: Model = (("name", _str, REQUIRED), ("source", _str, ""), ("pct", _opt_float, None),
                 ("resets_at", _time, None), ("active", _opt_bool, None), ("severity", _str, ""))
EXTRA_USAGE: Model = (("enabled", _bool, False), ("pct", _opt_float, None), ("used", _opt_float, None),
                      ("limit", _opt_float, None), ("disabled_reason", _str, ""))
USAGE: Model = (("five_hour", _sub(WINDOW), lambda: _validate(WINDOW, {})),
                ("seven_day", _sub(WINDOW), lambda: _validate(WINDOW, {})),
                ("scoped", _list_of(SCOPED), list), ("extra_usage", _sub(EXTRA_USAGE, nullable=True), None))
BLOCK: Model = (("until", _time, None), ("source", _str, ""), ("reason", _str, ""), ("model", _str, ""),
                ("at", _time, None))


def _blob(v: Any) -> str:
    """schema/credentials.py `normalized_blob` would rewrite a non-integer expiresAt: not sure."""
    v = _str(v)
    try:
        data = json.loads(v)
    except (ValueError, RecursionError):
        return v
    inner = data.get("claudeAiOauth") if isinstance(data, dict) else None
    if isinstance(inner, dict) and "expiresAt" in inner and type(inner["expiresAt"]) is not int:
        raise Unsure("an expiresAt pydantic would rewrite")
    return v


def _backoff(v: Any) -> Any:
    return backoff.clean_backoff(v)


def _calls(v: Any) -> Any:
    return backoff.clean_calls(v)


def _oauth_account(v: Any) -> Any:
    return v if isinstance(v, dict) and v else None


def _priority(v: Any) -> Any:
    return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 99 else None


def _threshold(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 else None


PAUSE: Model = (("at", _time, None), ("until", _time, None), ("reason", _str, ""))


def _pause(v: Any) -> Any:
    """schema/pool.py: anything but an object is "not paused"; an object pydantic might refuse
    (and so clean to None) or coerce: not sure."""
    return _validate(PAUSE, v) if isinstance(v, dict) else None


ACCOUNT: Model = (("id", _str, REQUIRED), ("email", _str, ""), ("blob", _blob, ""),
                  ("usage", _sub(USAGE, none_is_empty=True), lambda: _validate(USAGE, {})),
                  ("usage_at", _time, None), ("usage_source", _str, ""), ("needs_relogin", _bool, False),
                  ("relogin_reason", _str, ""), ("block", _sub(BLOCK, nullable=True), None),
                  ("usage_backoff", _backoff, None), ("usage_calls", _calls, list),
                  ("oauth_account", _oauth_account, None), ("priority", _priority, None),
                  ("threshold", _threshold, None), ("paused", _pause, None))
HELD: Model = (("at", _time, None), ("before", _str, ""), ("after", _str, ""))
API_KEY: Model = (("id", _str, REQUIRED), ("key", _str, ""))


def _mode(v: Any) -> str:
    v = "account" if v in (None, "") else v
    if v not in ("account", "apikey"):
        raise Unsure("mode")
    return v


POOL: Model = (("mode", _mode, "account"), ("current", _str, ""), ("current_key", _str, ""),
               ("key_cursor", _int, 0), ("saved_api_key_helper", _str, ""), ("switched_at", _time, None),
               ("switches", _list_of(HELD), list), ("accounts", _list_of(ACCOUNT), list),
               ("api_keys", _list_of(API_KEY), list))


def validate_pool(raw: Any) -> dict:
    """The pool as schema/pool.py's Pool would hold it, or Unsure."""
    pool = _validate(POOL, raw)
    for acc in pool["accounts"]:
        if acc["usage_calls"] is not None and type(acc["usage_calls"]) is not list:
            raise Unsure("usage_calls")
        for t in acc["usage_calls"]:
            _float(t)
        if acc["usage_backoff"] is not None and type(acc["usage_backoff"]) is not dict:
            raise Unsure("usage_backoff")
    return pool


# ---- the dump, as pydantic's model_dump_json(indent=2) writes it ---------------------------------

def _dumped(model: Model, value: dict | None) -> Any:
    """A validated model's JSON: its fields in order (times as schema/timefmt.py writes them,
    sub-models likewise), then its unknown keys as they came."""
    if value is None:
        return None
    out: dict = {}
    for name, check, _ in model:
        v = value[name]
        if check is _time:
            v = format_optional(v)
        elif name in _NESTED and v is not None:
            v = _NESTED[name](v)
        out[name] = v
    out.update(value["__extra__"])
    return out


_NESTED: dict[str, Callable[[Any], Any]] = {
    "five_hour": lambda v: _dumped(WINDOW, v),
    "seven_day": lambda v: _dumped(WINDOW, v),
    "scoped": lambda v: [_dumped(SCOPED, s) for s in v],
    "extra_usage": lambda v: _dumped(EXTRA_USAGE, v),
}


def _safe(value: Any) -> None:
    """Every number prints alike in pydantic and in json.dumps (a float in exponent form with a
    negative exponent does not: 1e-05 vs 0.00001)."""
    if type(value) is float:
        if not math.isfinite(value) or "e-" in repr(value):
            raise Unsure("a float pydantic writes its own way")
    elif type(value) is str:
        _str(value)
    elif type(value) is dict:
        for k, v in value.items():
            _str(k)
            _safe(v)
    elif type(value) is list:
        for v in value:
            _safe(v)
    elif value is not None and type(value) not in (bool, int):
        raise Unsure("a value of another type")


# ---- the listing: schema/listing.py's fields, each declared once -----------------------------------

def mask_key(key: str) -> str:
    """schema/listing.py `mask_key` (that module imports pydantic)."""
    if len(key) <= 12:
        return "…" + key[-2:] if key else ""
    prefix = key[:10] if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}…{key[-4:]}"


def fingerprint(secret: str | None) -> str:
    """schema/credentials.py `fingerprint`."""
    import hashlib

    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12] if secret else ""


def _login_ends(acc: dict) -> str | None:
    ms = blob_deadline_ms(acc["blob"])
    return format_optional(datetime.fromtimestamp(ms / 1000, tz=timezone.utc)) if ms is not None else None


def _blocked(acc: dict, now: datetime) -> Any:
    return _dumped(BLOCK, acc["block"]) if decision.live_block(_light(acc), now, strict=False) is not None else None


def _paused(acc: dict, now: datetime) -> Any:
    """schema/listing.py's PauseView (no unknown keys), while the pause lasts."""
    p = acc["paused"]
    if p is None or not decision.paused(_light(acc), now):
        return None
    return {"at": format_optional(p["at"]), "until": format_optional(p["until"]), "reason": p["reason"]}


def _poll(acc: dict) -> str:
    return "dead" if acc["needs_relogin"] else ("cached" if acc["usage_at"] else "skipped")


# (field, value from (pool, account, now)) in AccountView's order
ACCOUNT_FIELDS: tuple[tuple[str, Callable[[dict, dict, datetime], Any]], ...] = (
    ("id", lambda p, a, now: a["id"]),
    ("email", lambda p, a, now: a["email"]),
    ("active", lambda p, a, now: p["mode"] == "account" and a["id"] == p["current"]),
    ("needs_relogin", lambda p, a, now: a["needs_relogin"]),
    ("usage", lambda p, a, now: _dumped(USAGE, a["usage"])),
    ("usage_at", lambda p, a, now: format_time(a["usage_at"])),
    ("blocked", lambda p, a, now: _blocked(a, now)),
    ("poll", lambda p, a, now: _poll(a)),
    ("error", lambda p, a, now: ""),   # no poll: no error
    ("usage_throttled_until", lambda p, a, now: format_optional(backoff.throttled_until(a["usage_backoff"], now))),
    ("login_ends", lambda p, a, now: _login_ends(a)),
    ("relogin_reason", lambda p, a, now: a["relogin_reason"] if a["needs_relogin"] else ""),
    ("priority", lambda p, a, now: a["priority"]),
    ("threshold", lambda p, a, now: a["threshold"]),
    ("paused", lambda p, a, now: _paused(a, now)),
)
# KeyView's order
KEY_FIELDS: tuple[tuple[str, Callable[[dict, dict], Any]], ...] = (
    ("id", lambda p, k: k["id"]),
    ("active", lambda p, k: p["mode"] == "apikey" and k["id"] == p["current_key"]),
    ("masked", lambda p, k: mask_key(k["key"])),
    ("fingerprint", lambda p, k: fingerprint(k["key"])),
)
# Listing's order
LISTING_FIELDS: tuple[tuple[str, Callable[[dict, datetime, int], Any]], ...] = (
    ("mode", lambda p, now, n: p["mode"]),
    ("current", lambda p, now, n: p["current"]),
    ("current_key", lambda p, now, n: p["current_key"]),
    ("now", lambda p, now, n: format_time(now)),
    ("accounts", lambda p, now, n: [{f: get(p, a, now) for f, get in ACCOUNT_FIELDS} for a in p["accounts"]]),
    ("api_keys", lambda p, now, n: [{f: get(p, k) for f, get in KEY_FIELDS} for k in p["api_keys"]]),
    ("pending_changes", lambda p, now, n: n),
)


def listing_json(pool: dict, now: datetime, pending: int = 0) -> str:
    """The listing of a validated pool, as `Listing.model_dump_json(indent=2)` writes it."""
    view = {name: get(pool, now, pending) for name, get in LISTING_FIELDS}
    _safe(view)
    return json.dumps(view, indent=2, ensure_ascii=False)


# ---- the decision's light data -----------------------------------------------------------------------

def _window(w: dict, name: str = "") -> decision.Window:
    return decision.Window(pct=w["pct"], resets_at=w["resets_at"], name=name)


class _Record:
    """An account or a pause by attribute, as reconciler/decision.py reads them (duck-typed)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _light(acc: dict) -> Any:
    u = acc["usage"]
    usage = decision.LightUsage(five_hour=_window(u["five_hour"]), seven_day=_window(u["seven_day"]),
                                scoped=tuple(_window(s, s["name"]) for s in u["scoped"]))
    b = acc["block"]
    block = decision.LightBlock(until=b["until"], model=b["model"], at=b["at"]) if b is not None else None
    p = acc["paused"]
    return _Record(id=acc["id"], usage=usage, usage_at=acc["usage_at"], block=block,
                   needs_relogin=acc["needs_relogin"], usage_source=acc["usage_source"],
                   priority=acc["priority"], threshold=acc["threshold"],
                   paused=_Record(at=p["at"], until=p["until"], reason=p["reason"]) if p is not None else None)


# ---- what `plan` would change now, on cached readings: 0, or Unsure ---------------------------------

def _read(path: str) -> bytes | None:
    from claude_pool.providers.fsutil import read_regular

    try:
        return read_regular(path)
    except OSError:
        raise Unsure("unreadable") from None


def _settings_helper() -> str | None:
    """settings.json's apiKeyHelper as providers/settings.py reads it (an error: Unsure)."""
    raw = _read(paths.settings_file())
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsure("settings.json") from None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise Unsure("settings.json") from None
    if not isinstance(data, dict):
        raise Unsure("settings.json")
    helper = data.get("apiKeyHelper")
    return helper if isinstance(helper, str) else None


def _ours(command: str | None) -> bool:
    """Our helper's shape, whichever install of ours wrote it (providers/paths.py `is_our_helper`)."""
    return paths.is_our_helper(command)


def _surely_live(command: str) -> bool:
    """reconciler/observe.py `_stale_helper` says False whatever our own command is: the program
    exists and is not in Claude Code's plugin folders."""
    return paths.helper_program_stale(command) is False


def _refresh_token(blob: str) -> Any:
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    inner = data.get("claudeAiOauth") if isinstance(data, dict) else None
    return inner.get("refreshToken") if isinstance(inner, dict) else None


def pending_is_zero(pool: dict, now: datetime) -> None:
    """Returns when a cached run of the full engine would learn nothing to save and plan nothing;
    raises Unsure otherwise (which includes every case with changes)."""
    from claude_pool.providers import sidecars
    from claude_pool.providers.claude_json import ClaudeJsonFile, identity_key, same_identity
    from claude_pool.schema.limits import families

    from .model import detect

    accounts, keys = pool["accounts"], pool["api_keys"]
    if not accounts and not keys:
        raise Unsure("an empty pool")
    mode, current = pool["mode"], pool["current"]
    byid = {a["id"]: a for a in accounts}
    if len(byid) != len(accounts):
        raise Unsure("two accounts with one id")
    # learn.forget_expired_blocks: the engine would drop (and save) an expired block
    if any(a["block"] is not None and (a["block"]["until"] is None or a["block"]["until"] <= now)
           for a in accounts):
        raise Unsure("an expired block")
    # ... and a pause past its end (`claude-pool pause --until`)
    if any(a["paused"] is not None and a["paused"]["until"] is not None and a["paused"]["until"] <= now
           for a in accounts):
        raise Unsure("an expired pause")
    mine = byid.get(current)
    if mine is None:
        raise Unsure("no current account")
    # learn.take_feed: the statusline's newer reading of the active account would be taken
    feed = sidecars.read_feed()
    if feed is not None and mode == "account" and str(feed.get("name", "")) == current \
            and not mine["needs_relogin"]:
        try:
            at = datetime.fromtimestamp(float(feed["at"]), tz=timezone.utc)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            at = None
        if at is not None and (mine["usage_at"] is None or mine["usage_at"] < at):
            raise Unsure("a newer statusline reading")
    # Claude Code's store: the active account's very blob (no other account shares its login), or
    # nothing on API keys
    if not credstore.REGISTRY[credstore.store_kind("auto")].plain_file:
        raise Unsure("a store the full engine reads")
    raw_bytes = _read(paths.credentials_file())
    raw = None if raw_bytes is None else raw_bytes.decode("utf-8", errors="replace")
    if raw is None:
        if mode != "apikey":
            raise Unsure("no login in Claude Code's store")
    else:
        if raw != mine["blob"] or not raw:
            raise Unsure("Claude Code holds another login")
        token = _refresh_token(raw)
        for a in accounts:
            if a is not mine and (a["blob"] == raw or (token and _refresh_token(a["blob"]) == token)):
                raise Unsure("two accounts share a login")
    # .claude.json: the account Claude Code shows (learn.take_identity; diff's write_identity)
    shown = ClaudeJsonFile().observe()
    key = identity_key(shown.account) if shown.present else None
    if raw is not None and mine["oauth_account"] is None and key is not None and mine["email"] \
            and key[0] == mine["email"].lower():
        raise Unsure("an identity the engine would take")
    helper = _settings_helper()
    ours = _ours(helper)
    words = families(detect())
    threshold = decision.DEFAULT_THRESHOLD
    light = {a["id"]: _light(a) for a in accounts}
    obs = [decision.light_obs(a) for a in light.values()]
    # a paused account is never chosen (`claude-pool pause`): not usable (policy.decide_reconcile)
    usable = [o for o in obs if not o.dead and not decision.paused(light[o.id], now)]
    trusted = decision.trusted(usable)
    best = decision.best(trusted, light, now, current if mode == "account" else "", words, line=threshold * 100)
    best_score = decision.score(best, light[best.id], now, words) if best is not None else 100.0
    if best is not None and best_score < 100:
        # policy: stay on (or move to) `best` in account mode
        if mode != "account" or best.id != current or ours:
            raise Unsure("a change")
        if shown.present and mine["oauth_account"] and not same_identity(shown.account, mine["oauth_account"]):
            raise Unsure("an identity to write")
        return
    if any(a["usage"]["extra_usage"] is not None and a["usage"]["extra_usage"]["enabled"] for a in accounts):
        raise Unsure("paid extra usage")
    blocked_all = [o for o in usable if o.poll not in ("ok", "cached")
                   and decision.live_block(light[o.id], now, words) is not None]
    keep = (best is None and usable and len(blocked_all) < len(usable)) or not keys
    if mode == "account":
        if not keep or ours:
            raise Unsure("a change")
        return
    # API-key mode: our helper, still working, and the key the helper serves
    if not ours or not _surely_live(helper or ""):
        raise Unsure("settings.json")
    if not keep:
        first = pool["current_key"] if pool["current_key"] and any(
            k["id"] == pool["current_key"] for k in keys) else None
        if first is None:
            raise Unsure("a key to announce")


# ---- the command --------------------------------------------------------------------------------------

def render(now: datetime | None = None) -> str | None:
    """`list --json`'s output, or None when the full engine must answer."""
    try:
        if os.path.lexists(paths.config_file()):
            return None
        path = Path(paths.pool_file())
        found = poolcodec.read_with_identity(path)
        if found is None:
            return None
        now = now or datetime.now(timezone.utc)
        pool = validate_pool(poolcodec.decode(found[0], crypto.derive_key(), path))
        pending_is_zero(pool, now)
        return listing_json(pool, now, 0)
    except (Unsure, ProviderError, OSError, ValueError):
        return None


def main(argv: list[str]) -> int | None:
    """`list --json`: 0 after printing, None when the full engine must answer."""
    text = render()
    if text is None:
        return None
    import sys

    sys.stdout.write(text + "\n")
    return 0
