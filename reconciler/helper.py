"""`claude-pool helper`: Claude Code's apiKeyHelper (docs/ARCHITECTURE.md §6 rules 7 and 10). A hot path.

Under the pool lock: decrypt the pool, take the key at the round-robin cursor, advance the
cursor, re-encrypt. Print that key (the only thing this command ever prints on stdout), then
start a detached `reconcile` so the pool returns to a subscription account the moment one has
headroom. Outside API-key mode it prints nothing and exits 1.

Standard library + cryptography only: no pydantic, httpx, structlog or filelock here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from claude_pool.providers import crypto, paths, poolcodec, spawn
from claude_pool.providers.base import ProviderError
from claude_pool.providers.hotlock import HotLock, LockTimeout


def next_key(data: dict) -> tuple[str, str] | None:
    """Advance the cursor in `data` and return (key id, key) it served, or None."""
    if data.get("mode") != "apikey":
        return None
    keys = [k for k in data.get("api_keys") or [] if isinstance(k, dict) and k.get("key")]
    if not keys:
        return None
    try:
        cursor = int(data.get("key_cursor") or 0)
    except (TypeError, ValueError):
        cursor = 0
    chosen = keys[cursor % len(keys)]
    data["key_cursor"] = (cursor + 1) % len(keys)
    data["current_key"] = chosen.get("id", "")
    return str(chosen.get("id", "")), str(chosen["key"])


def _update_status(key_id: str) -> None:
    path = paths.status_file()
    try:
        with open(path, encoding="utf-8") as fh:
            summary = json.load(fh)
        if isinstance(summary, dict) and summary.get("mode") == "apikey" and summary.get("name") != key_id:
            summary["name"] = key_id
            poolcodec.write_status(Path(path), summary)
    except (OSError, ValueError):
        pass


def _lock_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("CLAUDE_POOL_HELPER_LOCK_WAIT", "10")))
    except ValueError:
        return 10.0


def serve() -> str | None:
    path = Path(paths.pool_file())
    try:
        with HotLock(Path(paths.pool_lock_file()), wait=_lock_wait()):
            data = poolcodec.read_bytes(path)
            if data is None:
                return None
            key = crypto.derive_key()
            pool = poolcodec.decode(data, key, path)
            served = next_key(pool)
            if served is None:
                return None
            poolcodec.write(path, pool, key)
            _update_status(served[0])
        return served[1]
    except LockTimeout:
        # A long run holds the pool (say, one waiting for Claude Code's refresh lock). Claude Code
        # without a key fails its request, so serve the key at the cursor without advancing it: the
        # pool is only ever replaced by an atomic rename, so an unlocked read sees a whole file.
        data = poolcodec.read_bytes(path)
        if data is None:
            return None
        served = next_key(poolcodec.decode(data, crypto.derive_key(), path))
        if served is not None:
            sys.stderr.write("claude-pool helper: the pool is busy; serving the current key without rotating\n")
        return served[1] if served else None


def main(argv: list[str]) -> int:
    try:
        secret = serve()
    except (ProviderError, LockTimeout, OSError) as exc:
        sys.stderr.write(f"claude-pool helper: {exc}\n")
        return 1
    if secret is None:
        sys.stderr.write("claude-pool helper: the pool is not in API-key mode; no key to give\n")
        return 1
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    if os.environ.get("CLAUDE_POOL_HELPER_NO_RECONCILE") != "1":
        try:
            spawn.detached(spawn.self_argv("reconcile"), trigger="helper")
        except OSError as exc:
            sys.stderr.write(f"claude-pool helper: could not start the background reconcile: {exc.strerror}\n")
    return 0
