"""`claude-pool helper`: Claude Code's apiKeyHelper (docs/ARCHITECTURE.md §6 rules 7 and 10). A hot path.

Under the pool lock: decrypt the pool, advance the round-robin cursor and take that key,
re-encrypt. Print that key (the only thing this command ever prints on stdout), then
start a detached `reconcile` so the pool returns to a subscription account the moment one has
headroom. Outside API-key mode it prints nothing and exits 1.

The cursor means what it means to the Go claude-pool: `key_cursor` is the index of the key last
served, and the helper serves `api_keys[(key_cursor + 1) % n]` and stores that index (entering
API-key mode announces that next key as `current_key`, so the first call serves it).

Standard library + cryptography only: no pydantic, httpx, structlog or filelock here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from claude_pool.providers import crypto, paths, poolcodec, sidecars, spawn
from claude_pool.providers.base import ProviderError
from claude_pool.providers.hotlock import HotLock, LockTimeout


def _cursor(data: dict) -> int:
    try:
        return int(data.get("key_cursor") or 0)
    except (TypeError, ValueError):
        return 0


def peek_key(data: dict) -> tuple[int, dict] | None:
    """The key the next call serves: the first one with a value after the cursor."""
    from .decision import key_order

    keys = data.get("api_keys") or []
    if not isinstance(keys, list) or not keys:
        return None
    order = key_order([isinstance(k, dict) and bool(k.get("key")) for k in keys], _cursor(data))
    return (order[0], keys[order[0]]) if order else None


def next_key(data: dict) -> tuple[str, str] | None:
    """Advance the cursor in `data` and return (key id, key) it served, or None."""
    if data.get("mode") != "apikey":
        return None
    found = peek_key(data)
    if found is None:
        return None
    index, chosen = found
    data["key_cursor"] = index
    data["current_key"] = chosen.get("id", "")
    return str(chosen.get("id", "")), str(chosen["key"])


def _lock_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("CLAUDE_POOL_HELPER_LOCK_WAIT", "10")))
    except ValueError:
        return 10.0


def serve() -> str | None:
    path = Path(paths.pool_file())
    try:
        with HotLock(Path(paths.pool_lock_file()), wait=_lock_wait()):
            found = poolcodec.read_with_identity(path)
            if found is None:
                return None
            data, read_from = found
            key = crypto.derive_key()
            pool = poolcodec.decode(data, key, path)
            before = (_cursor(pool), pool.get("current_key"))
            served = next_key(pool)
            if served is None:
                return None
            if (_cursor(pool), pool.get("current_key")) != before:
                # one key: nothing moved, nothing to write (status.json stays true)
                try:
                    written = poolcodec.write(path, pool, key)
                    sidecars.carry_status(read_from, written, name=served[0])
                except (OSError, ProviderError) as exc:
                    # rotation is best effort: Claude Code gets its key whatever the disk says
                    _unsaved(f"the key rotation could not be saved ({_why(exc)}); served {served[0]} anyway")
        return served[1]
    except LockTimeout:
        # A long run holds the pool (say, one waiting for Claude Code's refresh lock). Claude Code
        # without a key fails its request, so serve the key at the cursor without advancing it.
        served = _unrotated(path)
        if served is not None:
            sys.stderr.write("claude-pool helper: the pool is busy; serving the current key without rotating\n")
        return served[1] if served else None
    except OSError as exc:
        # the lock cannot even be taken (the pool's folder is not writable): serve without rotating
        served = _unrotated(path)
        if served is not None:
            _unsaved(f"the pool lock could not be taken ({_why(exc)}); served {served[0]} without rotating")
        return served[1] if served else None


def _unrotated(path: Path) -> tuple[str, str] | None:
    """The key at the cursor, read without the lock (the pool is only ever replaced by a rename,
    so an unlocked read sees a whole file), not advanced."""
    data = poolcodec.read_bytes(path)
    return next_key(poolcodec.decode(data, crypto.derive_key(), path)) if data is not None else None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _unsaved(reason: str) -> None:
    """One line on stderr and an audit event (the audit module is loaded only on this rare path)."""
    sys.stderr.write(f"claude-pool helper: {reason}\n")
    _audit("warning", "helper", action="rotate", target="pool", result="failed", reason=reason)


def _audit(level: str, event: str, **fields: object) -> None:
    """One audit event (structlog is loaded only on these rare paths); never fails the caller."""
    try:
        from .audit import configure, log

        configure(os.environ.get("CLAUDE_POOL_TRIGGER", "helper"), stderr_level="critical")
        getattr(log(), level)(event, **fields)
    except Exception:  # noqa: BLE001 - the key is served whatever the audit log says
        pass


# ---- the detached work after a call: "is any account back?", light; the full engine only to act ----

BACKGROUND = "--background"


def anyone_back(now: "datetime | None" = None) -> bool:
    """Would a full `reconcile` leave API keys now? Asked of the pool's cached facts (reconciler/
    decision.py), with at most one usage call per account that no reading or block proves
    exhausted until a future reset (the light GET of reconciler/quicklook.py; each reading saved,
    as the full engine saves it). True also whenever this cannot be sure (an expired token to
    refresh, a refused one, settings.json not naming our helper, config.toml unreadable...): the
    full engine then decides. False: the full engine would stay on keys, so it is not loaded; the
    recovery wake it would have scheduled is scheduled here (`_schedule_wake`). A dead or paused
    account is never read (never chosen; a pause's end counts for the wake)."""
    from datetime import datetime, timezone

    from claude_pool.schema import backoff
    from claude_pool.schema.limits import families, parse_windows
    from claude_pool.schema.timefmt import format_optional

    from . import decision
    from .lightconfig import read_config
    from .lightlist import Unsure, _ours, _settings_helper, _surely_live
    from .model import detect
    from .quicklook import EXPIRY_MARGIN_MS, _login, _pool_usage, _save_reading, bounded_usage_call

    config = read_config()
    if config.get("invalid"):
        return True
    path = Path(paths.pool_file())
    data = poolcodec.read_bytes(path)
    if data is None:
        return False   # no pool: nothing to move to
    key = crypto.derive_key()
    pool = poolcodec.decode(data, key, path)
    if pool.get("mode") != "apikey":
        return True    # the pool moved meanwhile: the engine looks
    try:
        helper = _settings_helper()
    except Unsure:
        return True
    if not _ours(helper) or not _surely_live(helper or ""):
        return True    # our helper removed or stale: the engine heals settings.json
    now = now or datetime.now(timezone.utc)
    words = families(detect())
    accounts = pool.get("accounts") or []
    if not isinstance(accounts, list):
        return True
    for i, acc in enumerate(accounts):
        if not isinstance(acc, dict):
            return True
        light = decision.light_account(acc)
        if light.needs_relogin or decision.paused(light, now):
            continue       # dead or paused: never chosen, so never read (a pause's end is in the wake)
        usage = acc.get("usage") if isinstance(acc.get("usage"), dict) else {}
        extra = usage.get("extra_usage") if isinstance(usage, dict) else None
        if isinstance(extra, dict) and extra.get("enabled"):
            return True    # paid extra usage: config.toml's `overage` decides, in the engine
        if decision.exhausted_until(light, now, words) is not None:
            continue       # provably exhausted until a future reset: no call
        if backoff.throttled_until(acc.get("usage_backoff"), now) is not None:
            # the usage endpoint asked to wait: the cached reading decides, as in the engine
            if light.usage_at is not None and decision.score(decision.light_obs(light), light, now, words) < 100:
                return True
            continue
        login = _login(acc.get("blob") if isinstance(acc.get("blob"), str) else None)
        token = login.get("accessToken") if login is not None else None
        expires = login.get("expiresAt") if login is not None else None
        if not isinstance(token, str) or not token:
            return True
        if isinstance(expires, (int, float)) and expires and now.timestamp() * 1000 >= expires - EXPIRY_MARGIN_MS:
            return True    # a refresh first: the engine's harvest
        retry_after = None
        try:
            status, body, retry_after = bounded_usage_call(config["api_base"], token, config["timeout"])
        except OSError:
            status, body = 0, None
        if status in (401, 403):
            return True    # refused: the engine refreshes and reads again
        found = parse_windows(body) if status == 200 else None
        after = backoff.after_call(acc.get("usage_backoff"), acc.get("usage_calls"), now, status=status or None,
                                   retry_after=backoff.parse_retry_after(retry_after, now), reading=found is not None)
        reading = _pool_usage(found) if found is not None else None
        _save_reading(path, key, str(light.id), reading, now, after)
        if reading is not None and decision.score(
                decision.LightObs(light.id, decision.light_usage(reading), "ok"), light, now, words) < 100:
            return True    # back: the engine moves (and reads it again, as every run on keys does)
        if reading is not None:   # still full: the wake below goes by this reading's resets
            accounts[i] = dict(acc, usage=reading, usage_at=format_optional(now), usage_source=None)
    _schedule_wake([decision.light_account(a) for a in accounts], now, words)
    return False


def _schedule_wake(accounts: list, now: "datetime", words: "frozenset[str] | None") -> None:
    """Nobody is back: the recovery wake the full reconcile would have (re)scheduled on keys
    (engine.after_apply), at the same time (decision.wake_at), through the same deduplicating
    sleeper (providers/wake.py); CLAUDE_POOL_WAKE=0: none. The audit log hears of a new sleeper
    or a failure (the engine also logs "already": not this light run, it runs on every call)."""
    from claude_pool.providers.wake import ProcessWake

    from . import decision

    at = decision.wake_at(accounts, now, words)
    if at is None:
        return
    try:
        result = ProcessWake(enabled=os.environ.get("CLAUDE_POOL_WAKE", "1") != "0").schedule(at.timestamp())
    except OSError as exc:
        _audit("warning", "wake", action="schedule", target="wake", result="failed", error=exc.strerror or "")
        return
    if result == "scheduled":
        _audit("info", "wake", action="schedule", target="wake", result=result, after=at.isoformat(),
               reason="a reconcile at the earliest known reset + 30 s")


def background() -> int:
    """The detached run a helper call starts: the full `reconcile` only when someone is back."""
    try:
        back = anyone_back()
    except Exception:  # noqa: BLE001 - not sure: the engine decides
        back = True
    where = os.environ.get("CLAUDE_POOL_RECORD_MODULES")
    if where:   # tests: the modules the light question loaded, and whether the engine comes next
        with open(where, "w", encoding="utf-8") as fh:
            fh.write("\n".join(sorted({m.split(".")[0] for m in sys.modules} | ({"+engine"} if back else set()))))
    if not back:
        return 0
    from . import commands

    return commands.main(["reconcile"])


def main(argv: list[str]) -> int:
    if argv == [BACKGROUND]:
        return background()
    try:
        secret = serve()
    except (ProviderError, LockTimeout, OSError) as exc:
        from .cli import error_line   # an OSError: the file and the fix
        sys.stderr.write(error_line("helper", exc) if isinstance(exc, OSError) else f"claude-pool helper: {exc}\n")
        return 1
    if secret is None:
        sys.stderr.write("claude-pool helper: the pool is not in API-key mode; no key to give\n")
        return 1
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    if os.environ.get("CLAUDE_POOL_HELPER_NO_RECONCILE") != "1":
        try:
            spawn.detached(spawn.self_argv("helper", BACKGROUND), trigger="helper")
        except OSError as exc:
            sys.stderr.write(f"claude-pool helper: could not start the background reconcile: {exc.strerror}\n")
    return 0
