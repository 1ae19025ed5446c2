"""The session-start hook's light path: one live usage look at the active account, bounded in
time, with the standard library and cryptography only (no pydantic, httpx or structlog).

It answers "stay" when nothing needs to change: the pool is in account mode, Claude Code holds
exactly the pool's login of the active account (no fresher token to adopt, none expired), no
apiKeyHelper is in settings.json, and, with the live reading of the active account (saved into
the pool) and the others' cached readings, the policy's own stay rule keeps the active account
without a wider look (`stays` below asks reconciler/decision.py, the very functions the full
engine's policy asks; tests/test_decision.py holds them together on thousands of random pools).
Anything else is "change" (the full engine decides, and its HTTP calls get what is left of the
time budget), or "offline" when the usage call failed and the cached readings do not allow
staying (the full engine then decides on cached data, without the network).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from claude_pool.providers import credstore, crypto, fsutil, paths, poolcodec, sidecars
from claude_pool.providers.base import ProviderError
from claude_pool.providers.hotlock import HotLock, LockTimeout
from claude_pool.schema import backoff
from claude_pool.schema.limits import families, parse_windows
from claude_pool.schema.timefmt import format_optional, parse_time

from . import decision
from .decision import DEFAULT_THRESHOLD  # noqa: F401 (tests: one constant for the default)
from .lightconfig import read_config
from .status import duration

EXPIRY_MARGIN_MS = 5 * 60 * 1000
OAUTH_BETA = "oauth-2025-04-20"


class Look:
    """The outcome: `verdict` is "stay", "change" or "offline"; `why` says why, for stderr."""

    def __init__(self, verdict: str, why: str = "", polled: bool = False) -> None:
        self.verdict = verdict
        self.why = why
        self.polled = polled      # a live reading of the active account was saved

    def __repr__(self) -> str:
        return f"Look({self.verdict!r}, {self.why!r})"


def stays(accounts: list[dict], active: str, reading: dict | None, now: datetime,
          words: frozenset[str] | None, threshold: float) -> bool:
    """The policy's "no change" for `reconcile --if-needed`, asked of the pool file's raw JSON:
    the active account read live (`reading`, the pool's JSON form of a usage; None: the look
    failed and its cached reading stands in, as the full engine does offline), the others as
    cached. False when the engine would read another account first (a reset its reading
    reported has passed) or its stay rule would look wider."""
    accs = {str(a.get("id", "")): decision.light_account(a) for a in accounts}
    mine = accs.get(active)
    if mine is None:
        return False
    live = decision.light_usage(reading) if reading is not None else None
    if live is not None:
        accs[active] = mine = decision.LightAccount(mine.id, live, now, mine.block, mine.needs_relogin,
                                                    priority=mine.priority, threshold=mine.threshold,
                                                    paused=mine.paused)
    if decision.others_due(accs.values(), active, now, words):
        return False
    observed = {aid: decision.light_obs(a, live if aid == active else None) for aid, a in accs.items()}
    return not decision.must_look_wider(observed, accs, active, now, words, threshold)


def _login(raw: str | None) -> dict | None:
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return None
    inner = data.get("claudeAiOauth") if isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else None


def _split_base(api_base: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, Host header, path prefix) of the API base URL."""
    scheme, sep, rest = api_base.strip().rstrip("/").partition("://")
    if not sep or scheme not in ("http", "https"):
        raise OSError("the API base URL is not http(s)")
    hostport, slash, path = rest.partition("/")
    hostport = hostport.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    try:
        port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    except ValueError:
        raise OSError("the API base URL has a bad port") from None
    if not host:
        raise OSError("the API base URL has no host")
    return scheme, host, port, hostport, ("/" + path if slash else "")


def _dechunk(body: bytes) -> bytes:
    out, i = [], 0
    while True:
        end = body.find(b"\r\n", i)
        if end < 0:
            raise OSError("a truncated chunked answer")
        size = int(body[i:end].split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2:end + 2 + size])
        i = end + 2 + size + 2


def _usage_call(api_base: str, token: str, timeout: float) -> tuple[int, Any, str | None]:
    """GET /api/oauth/usage over one short HTTP/1.1 connection: (HTTP status, parsed JSON or
    None). Raises OSError on any failure. Plain http only to a loopback host (as the full
    engine); https verifies the certificate with the system's trust store."""
    import socket

    scheme, host, port, host_header, prefix = _split_base(api_base)
    if scheme == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError("plain http:// is refused to a non-loopback host")
    try:
        request = (f"GET {prefix}/api/oauth/usage HTTP/1.1\r\nHost: {host_header}\r\n"
                   f"Authorization: Bearer {token}\r\nanthropic-beta: {OAUTH_BETA}\r\n"
                   "user-agent: claude-pool\r\naccept: application/json\r\nConnection: close\r\n\r\n"
                   ).encode("ascii")
    except UnicodeEncodeError:
        raise OSError("the access token cannot be sent in a header") from None
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if scheme == "https":
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(request)
        data = b""
        while len(data) <= (1 << 20):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = _content_length(head)
                if length is not None and len(body) >= length:
                    break
                if length is None and b"chunked" in head.lower() and body.endswith(b"0\r\n\r\n"):
                    break
    finally:
        sock.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError("not an HTTP answer")
    status = int(status_line[1])
    if b"transfer-encoding: chunked" in head.lower():
        try:
            body = _dechunk(body)
        except ValueError:
            raise OSError("a garbled chunked answer") from None
    else:
        length = _content_length(head)
        body = body[:length] if length is not None else body
    retry_after = _header(head, b"retry-after")
    try:
        return status, json.loads(body), retry_after
    except (ValueError, RecursionError):
        return status, None, retry_after


def _header(head: bytes, wanted: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == wanted:
            return value.strip().decode("latin-1")
    return None


def _content_length(head: bytes) -> int | None:
    value = _header(head, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def bounded_usage_call(api_base: str, token: str, timeout: float) -> tuple[int, Any, str | None]:
    """The call, given up after `timeout` seconds whatever the network does (a server that
    trickles bytes keeps a socket timeout from ever firing): it runs in a daemon thread."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["ok"] = _usage_call(api_base, token, timeout)
        except OSError as exc:
            result["error"] = str(exc) or type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - reported as a failed look, never a crash
            result["error"] = type(exc).__name__

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout + 0.05)
    if "ok" in result:
        return result["ok"]
    raise OSError(result.get("error") or f"no answer within {timeout:.1f}s")


def _save_reading(path: Path, key: bytes, account_id: str, usage: dict | None, now: datetime,
                  after: tuple[Any, Any]) -> None:
    """Keep the live reading (None: the call brought none) and what the call taught about the
    usage endpoint's own limit (`after`: schema/backoff.py's backoff and call times) in the pool
    (a short wait for the lock; busy: skip, it is a cache)."""
    try:
        with HotLock(Path(paths.pool_lock_file()), wait=0.3):
            found = poolcodec.read_with_identity(path)
            if found is None:
                return
            data, read_from = found
            pool = poolcodec.decode(data, key, path)
            acc = next((a for a in pool.get("accounts") or [] if isinstance(a, dict) and a.get("id") == account_id), None)
            if acc is None:
                return
            if usage is not None:
                acc["usage"] = usage
                acc["usage_at"] = format_optional(now)
                acc.pop("usage_source", None)
            acc["usage_backoff"], acc["usage_calls"] = after
            written = poolcodec.write(path, pool, key)
            sidecars.carry_status(read_from, written)
            if usage is not None:   # the reading's history and forecast (issue 20; stdlib, never raises)
                from claude_pool.providers import history

                history.record([acc])
    except (LockTimeout, OSError, Exception):  # noqa: BLE001 - a cache write never fails the hook
        return


def _pool_usage(found: dict) -> dict:
    """parse_windows' result in the pool's JSON form (schema/pool.py's Usage)."""
    out: dict[str, Any] = {}
    for name in ("five_hour", "seven_day"):
        w = found.get(name) or {"pct": 0.0, "resets_at": None}
        out[name] = {"pct": w["pct"], "resets_at": format_optional(w["resets_at"])}
    out["scoped"] = [dict(s, resets_at=format_optional(s["resets_at"])) for s in found.get("scoped", [])]
    out["extra_usage"] = found.get("extra_usage")
    return out


def look(model: str | None, deadline: float, now: datetime | None = None) -> Look:
    """One live look at the active account. `deadline` is a time.monotonic() value."""
    config = read_config()
    if config.get("invalid"):
        return Look("change", "config.toml needs the full engine")
    try:
        kind = credstore.store_kind(config["store"])
    except ProviderError:
        return Look("change", "config.toml needs the full engine")
    if not credstore.REGISTRY[kind].plain_file:
        return Look("change", f"the {kind} credential store is read by the full engine")
    now = now or datetime.now(timezone.utc)
    pool_path = Path(paths.pool_file())
    data = poolcodec.read_bytes(pool_path)
    if data is None:
        return Look("change", "no pool")
    key = crypto.derive_key()
    pool = poolcodec.decode(data, key, pool_path)
    if pool.get("mode", "account") not in ("account", "", None):
        return Look("change", "API-key mode")
    accounts = [a for a in pool.get("accounts") or [] if isinstance(a, dict)]
    try:
        raw = fsutil.read_text(paths.credentials_file())   # a FIFO in its place: an error, never a hang
    except (OSError, UnicodeDecodeError):
        return Look("change", "Claude Code holds no readable login")
    held = _login(raw)
    if held is None or not held.get("accessToken"):
        return Look("change", "Claude Code holds no usable login")
    acc = None
    for a in accounts:
        mine = _login(a.get("blob") if isinstance(a.get("blob"), str) else None)
        if a.get("blob") == raw or (mine is not None and mine.get("refreshToken") == held.get("refreshToken")
                                    and mine.get("accessToken") == held.get("accessToken")):
            acc = a
            break
    if acc is None or acc.get("id") != pool.get("current"):
        return Look("change", "the login Claude Code holds is not the pool's active one")
    if acc.get("needs_relogin"):
        return Look("change", "the active account needs re-login")
    try:
        settings = json.loads(fsutil.read_text(paths.settings_file()))
    except FileNotFoundError:
        settings = {}
    except (OSError, ValueError, RecursionError):
        return Look("change", "settings.json needs the full engine")
    if not isinstance(settings, dict) or "apiKeyHelper" in settings:
        return Look("change", "an apiKeyHelper is set")
    expires = held.get("expiresAt")
    if isinstance(expires, (int, float)) and expires and now.timestamp() * 1000 >= expires - EXPIRY_MARGIN_MS:
        return Look("change", "the access token needs a refresh")
    words = families(model)
    threshold = config["threshold"]
    timeout = min(config["timeout"], deadline - time.monotonic())
    error = ""
    waiting = backoff.throttled_until(acc.get("usage_backoff"), now)
    if waiting is not None:
        error = f"the usage endpoint asked to wait until {waiting:%H:%M} UTC"   # its own limit: no call
    elif timeout <= 0.05:
        error = "no time left"
    else:
        retry_after = None
        try:
            status, body, retry_after = bounded_usage_call(config["api_base"], str(held["accessToken"]), timeout)
        except OSError as exc:
            status, body, error = 0, None, str(exc)
        found = parse_windows(body) if status == 200 else None
        after = backoff.after_call(acc.get("usage_backoff"), acc.get("usage_calls"), now, status=status or None,
                                   retry_after=backoff.parse_retry_after(retry_after, now), reading=found is not None)
        if status in (401, 403):
            return Look("change", "the access token was refused")
        if status and status != 200:
            error = f"HTTP {status}"
            _save_reading(pool_path, key, str(acc["id"]), None, now, after)
        elif status == 200:
            if found is None:
                error = "the answer has no usage window"
                _save_reading(pool_path, key, str(acc["id"]), None, now, after)
            else:
                usage = _pool_usage(found)
                _save_reading(pool_path, key, str(acc["id"]), usage, now, after)
                pct = decision.binding(decision.light_usage(usage), words, now)
                if stays(accounts, str(acc["id"]), usage, now, words, threshold):
                    return Look("stay", f"{acc['id']} at {pct:.0f}%", polled=True)
                return Look("change", f"{acc['id']} at {pct:.0f}%: the policy looks wider", polled=True)
    # the look failed: decide on what is cached, and say so
    cached = acc.get("usage") if isinstance(acc.get("usage"), dict) else None
    at = parse_time(acc.get("usage_at"))
    if cached is None or at is None:
        # errors are not exhaustion: with nothing else known, the session stays where it is
        sys.stderr.write(f"claude-pool: the usage check of {acc['id']} failed ({error}) and there is no cached "
                         "reading\n")
    else:
        sys.stderr.write(f"claude-pool: the usage check of {acc['id']} failed ({error}); using the cached reading "
                         f"from {duration((now - at).total_seconds())} ago\n")
    if stays(accounts, str(acc["id"]), None, now, words, threshold):
        return Look("stay", f"{acc['id']} (cached)")
    return Look("offline", error)
