"""`claude-pool status`: one JSON line for a statusline, on every render. No network.

It reads `status.json`, the plaintext summary every pool save writes, with the standard
library only. The summary names the pool file it was made from (size, mtime in ns, inode); when the
pool is no longer that file (the Go tool, or anything else, wrote it), it is rebuilt from the pool.
"""

from __future__ import annotations

import json
import os
import sys
import time

from claude_pool.providers import paths, sidecars


def duration(seconds: float) -> str:
    """A short span of time: `3d4h`, `4h05m`, `12m`, `45s` (the one format of `list`, the statusline
    badge and the age of a reading)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 60}m"


def summary() -> dict[str, object] | None:
    return sidecars.read_status()  # type: ignore[return-value]


def _slow_summary() -> dict[str, object]:
    if not os.path.exists(paths.pool_file()):
        return {"mode": "empty", "name": ""}
    from claude_pool.providers.poolfile import PoolFile, status_summary

    pool_file = PoolFile()
    pool = pool_file.observe()
    data = status_summary(pool)
    try:
        if pool_file.exists():
            pool_file.write_status(pool)
    except OSError as exc:
        from claude_pool.providers.fsutil import NotRegularFile

        if isinstance(exc, NotRegularFile):   # never replaced, so every call comes this slow way: say why
            sys.stderr.write(f"claude-pool: cannot write {exc.filename}: {exc.strerror}\n")
    return data


def current() -> dict[str, object] | None:
    """The summary, rebuilt from the pool when status.json is missing or older than the pool (a pool
    the Go tool wrote); None, with one line on stderr, when even the pool cannot be read."""
    try:
        data = summary()
    except OSError as exc:   # HOME unset (providers/paths.py HomeNotSet): one line
        sys.stderr.write(f"claude-pool: {exc}\n")
        return None
    if data is None:
        try:
            data = _slow_summary()
        except Exception as exc:  # one line, never a traceback on a statusline
            sys.stderr.write(f"claude-pool: {exc}\n")
            return None
    return data


def main(argv: list[str]) -> int:
    data = current()
    if data is None:
        return 1
    out = {"mode": data.get("mode", "account"), "name": data.get("name", "")}
    if out["mode"] == "apikey" and isinstance(data.get("resets_at"), str):
        out["resets_at"] = data["resets_at"]
        when = data.get("resets_at_epoch")
        if isinstance(when, (int, float)):
            out["reset_in_seconds"] = max(0, int(when - time.time()))
    try:
        ahead = forecasts(time.time())
    except Exception:  # noqa: BLE001 - a broken cache never breaks a statusline
        ahead = {}
    if ahead:
        out["forecast"] = ahead
    bypassed = bypassed_by(str(out["mode"]))
    if bypassed:
        out["bypassed_by"] = bypassed
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def bypassed_by(mode: str) -> str:
    """The variable this session sends instead of the pool's credential (providers/authenv.py
    `in_effect`), or ''; in API-key mode a login variable is outranked by the pool's own helper.
    Looked up only when a variable of those families is set at all: this runs on every statusline
    render, and the common environment has none."""
    if not any(k.startswith(("ANTHROPIC_A", "CLAUDE_CODE_OAUTH")) for k in os.environ):
        return ""
    from claude_pool.providers import authenv

    try:
        name = authenv.in_effect(os.environ)
    except Exception:  # noqa: BLE001 - never breaks a statusline
        return ""
    return "" if mode == "apikey" and name in authenv.LOGIN_ONLY else name


def forecasts(now: float) -> dict[str, dict]:
    """{account id: its forecast} (reconciler/forecast.py `for_script`) for the accounts the history
    can say one of: read from the small cache the history's writer keeps (providers/history.py),
    never from the history itself (this runs on every statusline render)."""
    from claude_pool.providers import history

    from . import forecast

    out = {}
    for aid, per_window in history.forecasts().items():
        main = forecast.main_one(per_window, now)
        if main is not None:
            out[aid] = forecast.for_script(main, now)
    return out
