"""The local fake Anthropic API that `claude-pool demo` runs against.

It listens on a real loopback port and answers the endpoints claude-pool itself calls:

* ``GET  /api/oauth/usage``    - subscription utilization windows (and failure modes)
* ``GET  /api/oauth/profile``  - account / organization profile
* ``POST /v1/oauth/token``     - refresh-token grant with strict rotation

Stdlib only. The tests extend it (tests/fakeapi.py) with what only they need: the Messages API
that the real Claude Code talks to, its SSE stream and rate-limit headers, and a control channel.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import uuid as uuid_mod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeAccount", "FakeAnthropic", "Handler"]

USAGE_PATH = "/api/oauth/usage"
PROFILE_PATH = "/api/oauth/profile"
TOKEN_PATH = "/v1/oauth/token"

OAUTH_SCOPES = ["user:inference", "user:profile", "user:sessions:claude_code"]
OAUTH_BETA = "oauth-2025-04-20"
USAGE_MODES = ("ok", "limits", "429", "500", "timeout", "garbage", "html", "empty", "nulls")
FIVE_HOUR_REPORTS = ("", "absent", "null", "unstarted")
# the usage endpoint's own limit and the unstarted five-hour window (FakeAccount has the meaning)
USAGE_SETTABLE = frozenset({"usage_retry_after", "five_hour_report"})
TIMEOUT_MODE_SECONDS = 30.0

_DISCONNECT_ERRORS = (ConnectionError, BrokenPipeError, TimeoutError, OSError)


def _access_token() -> str:
    """Return a fresh fake OAuth access token."""
    return "sk-ant-oat01-" + secrets.token_urlsafe(48)


def _refresh_token() -> str:
    """Return a fresh fake OAuth refresh token."""
    return "sk-ant-ort01-" + secrets.token_urlsafe(48)


def _iso(ts: float | None) -> str | None:
    """Format epoch seconds as ISO 8601 UTC with ``+00:00`` (or None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _session_as_reported(limits: list[dict], report: str) -> list[dict]:
    """limits[] with its `session` entry as FakeAccount.five_hour_report says."""
    if report == "absent":
        return [item for item in limits if item.get("kind") != "session"]
    if report in ("null", "unstarted"):
        return [dict(item, percent=None if report == "null" else 0, resets_at=None, is_active=False)
                if item.get("kind") == "session" else item for item in limits]
    return limits


def _error(kind: str, message: str) -> dict:
    """Build an Anthropic-style error body."""
    return {"type": "error", "error": {"type": kind, "message": message}}


@dataclass
class FakeAccount:
    """One fake Claude subscription account and its live credentials."""

    email: str
    uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    access_token: str = field(default_factory=_access_token, repr=False)
    refresh_token: str = field(default_factory=_refresh_token, repr=False)
    five_hour: float = 0.0
    seven_day: float = 0.0
    five_hour_resets_at: float | None = field(default_factory=lambda: time.time() + 3 * 3600)
    seven_day_resets_at: float | None = field(default_factory=lambda: time.time() + 4 * 86400)
    usage_mode: str = "ok"
    # The `retry-after` header of the usage endpoint's 429 (usage_mode "429"): seconds ("3600",
    # "0") or an HTTP-date; None: no header.
    usage_retry_after: str | None = "60"
    # How the five-hour window is reported when it has not started (the account idle since its
    # last reset) or the plan has none: "" as usual; "absent" (no five_hour key, no `session`
    # entry in limits[]); "null" (five_hour: null, the session entry's percent null and
    # is_active false); "unstarted" ({"utilization": 0, "resets_at": null}, the session entry
    # likewise with is_active false).
    five_hour_report: str = ""
    revoked: bool = False
    # When this login ends (epoch seconds): minted credentials carry it as refreshTokenExpiresAt,
    # every token answer states what is left of it as refresh_token_expires_in, and past it every
    # refresh gets invalid_grant. None (the default): an older login that states no deadline.
    login_deadline: float | None = None
    # Per-model weekly windows: [{"name": "Opus", "pct": 100, "resets_at": epoch or None,
    # "legacy": True (also sent as seven_day_<name>), "active": True}]. "pct" None: sent as null.
    # None (the default): the original answers (a constant Sonnet 1% / Opus 3% window, no limits[]
    # in the "ok" shape).
    scoped: list | None = None
    # Paid overage: {"enabled": bool, "used": credits, "limit": credits, "pct": percent} or None.
    extra_usage: dict | None = None
    org_uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    # Whether the *current* access token is accepted (see FakeAnthropic.expire_access_token).
    access_token_valid: bool = True
    # Access tokens from before a rotation; they stay valid.
    previous_access_tokens: set[str] = field(default_factory=set, repr=False)
    # Rotated-out refresh tokens; never valid, kept only to attribute log entries.
    previous_refresh_tokens: set[str] = field(default_factory=set, repr=False)
    # Per-account counters.
    usage_calls: int = 0
    profile_calls: int = 0
    refreshes: int = 0
    invalid_grants: int = 0

    def exhausted(self) -> bool:
        """True when either utilization window is at or above 100 %."""
        return self.five_hour >= 100 or self.seven_day >= 100

    def accepts_access_token(self, token: str | None) -> bool:
        """True if ``token`` is a currently accepted access token of this account."""
        if not token:
            return False
        if token == self.access_token:
            return self.access_token_valid
        return token in self.previous_access_tokens

    def summary(self) -> dict:
        """JSON-safe view without any credential."""
        return {
            "email": self.email,
            "uuid": self.uuid,
            "five_hour": self.five_hour,
            "seven_day": self.seven_day,
            "five_hour_resets_at": self.five_hour_resets_at,
            "seven_day_resets_at": self.seven_day_resets_at,
            "usage_mode": self.usage_mode,
            "usage_retry_after": self.usage_retry_after,
            "five_hour_report": self.five_hour_report,
            "revoked": self.revoked,
            "login_deadline": self.login_deadline,
            "scoped": [dict(w) for w in self.scoped] if self.scoped is not None else None,
            "extra_usage": dict(self.extra_usage) if self.extra_usage else None,
            "exhausted": self.exhausted(),
            "usage_calls": self.usage_calls,
            "profile_calls": self.profile_calls,
            "refreshes": self.refreshes,
            "invalid_grants": self.invalid_grants,
        }


class _Server(ThreadingHTTPServer):
    """Threading HTTP server that knows its FakeAnthropic and stays quiet."""

    daemon_threads = True
    request_queue_size = 64
    fake: "FakeAnthropic"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Swallow handler exceptions instead of printing tracebacks."""


class FakeAnthropic:
    """In-process fake of the Anthropic API, served over real HTTP.

    The socket is bound in the constructor so ``base_url`` is known at once;
    call :meth:`start` (or use ``with``) to begin serving.
    """

    handler_class: type["Handler"]
    account_class: type[FakeAccount] = FakeAccount
    #: the account fields set_usage may change
    settable = frozenset({"five_hour", "seven_day", "five_hour_resets_at", "seven_day_resets_at", "usage_mode",
                          "revoked", "scoped", "extra_usage", "login_deadline"}) | USAGE_SETTABLE

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        usage_delay: float = 0.0,
        expires_in: int = 28800,
        require_oauth_beta: bool = False,
    ) -> None:
        self.usage_delay = usage_delay
        self.token_delay = 0.0   # seconds the token endpoint waits after rotating, before it answers
        self.expires_in = expires_in
        self.require_oauth_beta = require_oauth_beta
        self.timeout_mode_seconds = TIMEOUT_MODE_SECONDS
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.invalid_grants = 0
        self._accounts: dict[str, FakeAccount] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = _Server((host, port), self.handler_class)
        self._server.fake = self
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.token_url = self.base_url + TOKEN_PATH

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "FakeAnthropic":
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-anthropic",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and drop open connections."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
        with self.lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- seeding

    def add_account(self, email: str, *, five_hour: float = 0.0, seven_day: float = 0.0, **kw: Any) -> FakeAccount:
        """Create an account (any FakeAccount field may be passed as keyword)."""
        acct = self.account_class(email=email, five_hour=five_hour, seven_day=seven_day, **kw)
        if acct.usage_mode not in USAGE_MODES:
            raise ValueError(f"unknown usage_mode {acct.usage_mode!r}")
        if acct.five_hour_report not in FIVE_HOUR_REPORTS:
            raise ValueError(f"unknown five_hour_report {acct.five_hour_report!r}")
        with self.lock:
            if email in self._accounts:
                raise ValueError(f"account {email!r} already exists")
            self._accounts[email] = acct
        return acct

    def account(self, email: str) -> FakeAccount:
        """Return the account for ``email`` (KeyError if unknown)."""
        with self.lock:
            return self._accounts[email]

    def accounts(self) -> list[FakeAccount]:
        """All accounts in insertion order."""
        with self.lock:
            return list(self._accounts.values())

    def set_usage(self, email: str, **kw: Any) -> FakeAccount:
        """Thread-safely update usage fields (five_hour, seven_day, usage_mode, ...)."""
        unknown = set(kw) - self.settable
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)}")
        if "usage_mode" in kw and kw["usage_mode"] not in USAGE_MODES:
            raise ValueError(f"unknown usage_mode {kw['usage_mode']!r}")
        if "five_hour_report" in kw and kw["five_hour_report"] not in FIVE_HOUR_REPORTS:
            raise ValueError(f"unknown five_hour_report {kw['five_hour_report']!r}")
        with self.lock:
            acct = self._accounts[email]
            for name, value in kw.items():
                setattr(acct, name, value)
            return acct

    def revoke(self, email: str) -> None:
        """Revoke the account's refresh token: every refresh gets invalid_grant."""
        self.set_usage(email, revoked=True)

    def expire_access_token(self, email: str) -> None:
        """Make the account's current and previous access tokens stop working."""
        with self.lock:
            acct = self._accounts[email]
            acct.access_token_valid = False
            acct.previous_access_tokens.clear()

    def credential_blob(self, email: str, *, expires_at_ms: int | None = None) -> dict:
        """The ``.credentials.json`` content Claude Code would store for ``email``."""
        with self.lock:
            acct = self._accounts[email]
            access, refresh, deadline = acct.access_token, acct.refresh_token, acct.login_deadline
        if expires_at_ms is None:
            expires_at_ms = int((time.time() + self.expires_in) * 1000)
        oauth: dict[str, Any] = {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": expires_at_ms,
            "scopes": list(OAUTH_SCOPES),
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
        }
        if deadline is not None:  # as Claude Code stores the login's refresh_token_expires_in
            oauth["refreshTokenExpiresAt"] = int(deadline * 1000)
        return {"claudeAiOauth": oauth}

    # --------------------------------------------------------- observation

    def count(self, path: str) -> int:
        """Number of logged requests to ``path`` (query string ignored)."""
        path = urlsplit(path).path
        with self.lock:
            return sum(1 for r in self.requests if r["path"] == path)

    def reset_log(self) -> None:
        """Clear the request log and all counters."""
        with self.lock:
            self.requests.clear()
            self.invalid_grants = 0
            for acct in self._accounts.values():
                acct.usage_calls = acct.profile_calls = acct.refreshes = 0
                acct.invalid_grants = 0

    # ------------------------------------------------- internals (locked)

    def _account_by_access_locked(self, token: str | None) -> FakeAccount | None:
        for acct in self._accounts.values():
            if acct.accepts_access_token(token):
                return acct
        return None

    def _account_by_refresh_locked(self, token: str | None) -> FakeAccount | None:
        """Find the account owning ``token`` as current *or* rotated-out refresh token."""
        if not token:
            return None
        for acct in self._accounts.values():
            if token == acct.refresh_token or token in acct.previous_refresh_tokens:
                return acct
        return None

    def _log(self, method: str, path: str, auth_kind: str | None, token: str | None, body: Any) -> dict:
        """Append a request record and return it (status is filled in later)."""
        with self.lock:
            acct: FakeAccount | None
            if path == TOKEN_PATH and isinstance(body, dict):
                acct = self._account_by_refresh_locked(body.get("refresh_token"))
            else:
                acct = self._account_by_access_locked(token)
            rec = {
                "method": method,
                "path": path,
                "auth_kind": auth_kind,
                "token": token,
                "body": body,
                "email": acct.email if acct else None,
                "time": time.time(),
                "status": None,
            }
            self.requests.append(rec)
            return rec

    def _refresh(self, refresh_token: str) -> dict | None:
        """Rotate tokens for the owner of ``refresh_token``; None means invalid_grant."""
        with self.lock:
            for acct in self._accounts.values():
                ended = acct.login_deadline is not None and time.time() >= acct.login_deadline
                if refresh_token == acct.refresh_token and not acct.revoked and not ended:
                    if acct.access_token_valid:
                        acct.previous_access_tokens.add(acct.access_token)
                    acct.previous_refresh_tokens.add(acct.refresh_token)
                    acct.access_token = _access_token()
                    acct.refresh_token = _refresh_token()
                    acct.access_token_valid = True
                    acct.refreshes += 1
                    answer = {
                        "token_type": "Bearer",
                        "access_token": acct.access_token,
                        "expires_in": self.expires_in,
                        "refresh_token": acct.refresh_token,
                        "scope": " ".join(OAUTH_SCOPES),
                        "account": {"uuid": acct.uuid, "email_address": acct.email},
                        "organization": {"uuid": acct.org_uuid},
                    }
                    if acct.login_deadline is not None:
                        answer["refresh_token_expires_in"] = max(1, int(acct.login_deadline - time.time()))
                    return answer
            self.invalid_grants += 1
            owner = self._account_by_refresh_locked(refresh_token)
            if owner is not None:
                owner.invalid_grants += 1
            return None

class Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning FakeAnthropic (a subclass adds routes: `routes`, `_route`)."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeAnthropic/1.0"
    server: _Server
    _rec: dict | None = None
    #: path -> the methods it answers
    routes: dict[str, tuple[str, ...]] = {
        "/": ("GET", "HEAD"),
        USAGE_PATH: ("GET",),
        PROFILE_PATH: ("GET",),
        TOKEN_PATH: ("POST",),
    }

    # -------------------------------------------------- plumbing / quiet

    def version_string(self) -> str:
        """Value of the Server header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Never write access logs to stderr."""

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server.fake.lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except _DISCONNECT_ERRORS:
            pass
        finally:
            with self.server.fake.lock:
                self.server.fake._connections.discard(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _DISCONNECT_ERRORS:
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _read_body(self) -> bytes | None:
        """Read the request body (Content-Length or chunked); None if malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            return None
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes | str | dict | list, *,
              content_type: str = "application/json", headers: dict | None = None) -> None:
        """Write a complete response with a correct Content-Length."""
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        if self._rec is not None:
            self._rec["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake" + secrets.token_hex(12))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body go out in one write to avoid Nagle/delayed-ACK stalls.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    def _abort(self) -> None:
        """Drop the connection without answering."""
        self.close_connection = True

    # ------------------------------------------------------------ routing

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        self._rec = None
        path = urlsplit(self.path).path or "/"
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send(400, _error("invalid_request_error", "Malformed request body"))
            return
        body = self._parse_body(raw)
        if self._unlogged(method, path, body):
            return

        bearer = self._bearer()
        api_key = self.headers.get("x-api-key") or None
        if api_key:
            kind, token = "x-api-key", api_key
        elif bearer:
            kind, token = "bearer", bearer
        else:
            kind, token = None, None
        self._rec = fake._log(method, path, kind, token, body)

        if path not in self.routes:
            self._send(404, _error("not_found_error", f"Not found: {path}"))
            return
        if method not in self.routes[path]:
            self._send(405, _error("invalid_request_error", f"Method {method} not allowed"))
            return
        self._route(path, kind, token, body)

    def _unlogged(self, method: str, path: str, body: Any) -> bool:
        """Answer a request that stays out of the request log; False: not one of those."""
        return False

    def _route(self, path: str, kind: str | None, token: str | None, body: Any) -> None:
        """Answer a logged request to a known path with an allowed method."""
        if path == "/":
            self._send(200, {})
        elif path == USAGE_PATH:
            self._handle_usage(self._bearer())
        elif path == PROFILE_PATH:
            self._handle_profile(self._bearer())
        elif path == TOKEN_PATH:
            self._handle_token(body)

    def _parse_body(self, raw: bytes) -> Any:
        """JSON if possible, else form-encoded dict for form posts, else None."""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            pass
        if "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            try:
                return dict(parse_qsl(raw.decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                return None
        return None

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None

    def _oauth_account(self, bearer: str | None) -> FakeAccount | None:
        """Resolve a bearer token to an account or send the 401 reply."""
        fake = self.server.fake
        with fake.lock:
            acct = fake._account_by_access_locked(bearer)
        if acct is None:
            self._send(401, _error("authentication_error", "Invalid bearer token"))
            return None
        if fake.require_oauth_beta and OAUTH_BETA not in self.headers.get("anthropic-beta", ""):
            self._send(401, _error("authentication_error", "OAuth authentication is currently not supported."))
            return None
        return acct

    # ---------------------------------------------------------- endpoints

    def _handle_usage(self, bearer: str | None) -> None:
        fake = self.server.fake
        acct = self._oauth_account(bearer)
        if acct is None:
            return
        if fake.usage_delay > 0 and fake._stopping.wait(fake.usage_delay):
            self._abort()
            return
        with fake.lock:
            acct.usage_calls += 1
            mode = acct.usage_mode
            five, seven = acct.five_hour, acct.seven_day
            five_reset, seven_reset = acct.five_hour_resets_at, acct.seven_day_resets_at
            legacy_default = acct.scoped is None
            scoped = [dict(w) for w in acct.scoped or []]
            extra = dict(acct.extra_usage) if acct.extra_usage else None
            report, retry_after = acct.five_hour_report, acct.usage_retry_after
        limits = [
            {"kind": "session", "group": "session", "percent": five, "severity": "normal",
             "resets_at": _iso(five_reset), "scope": None, "is_active": True},
            {"kind": "weekly_all", "group": "weekly", "percent": seven, "severity": "normal",
             "resets_at": _iso(seven_reset), "scope": None, "is_active": True},
        ] + [
            {"kind": "weekly_scoped", "group": "weekly", "percent": w.get("pct"), "severity": "normal",
             "resets_at": _iso(w.get("resets_at")), "is_active": w.get("active", True),
             "scope": {"model": {"id": None, "display_name": w["name"]}}}
            for w in scoped
        ] + [{"kind": "inactive_pool", "percent": None, "resets_at": None}]
        if legacy_default:
            limits = limits[:2] + [{"kind": "weekly_scoped", "scope": "opus", "percent": 3,
                                    "resets_at": _iso(seven_reset)}]
            limits = [{k: v for k, v in item.items() if k in ("kind", "percent", "resets_at", "scope")}
                      for item in limits]
        limits = _session_as_reported(limits, report)

        if mode == "ok":
            body: dict = {
                "five_hour": {"utilization": float(five), "resets_at": _iso(five_reset)},
                "seven_day": {"utilization": float(seven), "resets_at": _iso(seven_reset)},
                "seven_day_opus": None,
                "seven_day_sonnet": None,
                "seven_day_oauth_apps": None,
                "seven_day_cowork": None,
                "extra_usage": {"is_enabled": False, "monthly_limit": None,
                                "used_credits": None, "utilization": None},
            }
            for w in scoped:
                if w.get("legacy", True):
                    body["seven_day_" + w["name"].lower().replace(" ", "_")] = {
                        "utilization": w.get("pct"), "resets_at": _iso(w.get("resets_at"))}
            if extra:
                body["extra_usage"] = {"is_enabled": bool(extra.get("enabled")),
                                       "monthly_limit": extra.get("limit"), "used_credits": extra.get("used"),
                                       "utilization": extra.get("pct")}
                body["spend"] = {"enabled": bool(extra.get("enabled")), "percent": extra.get("pct"),
                                 "used": {"amount": extra.get("used"), "currency": "USD"},
                                 "limit": {"amount": extra.get("limit"), "currency": "USD"},
                                 "disabled_reason": None if extra.get("enabled") else "disabled"}
            if legacy_default:
                body["seven_day_sonnet"] = {"utilization": 1.0, "resets_at": None}
            else:
                body["limits"] = limits
            if report == "absent":
                del body["five_hour"]
            elif report == "null":
                body["five_hour"] = None
            elif report == "unstarted":
                body["five_hour"] = {"utilization": 0.0, "resets_at": None}
            self._send(200, body)
        elif mode == "limits":
            body = {"limits": limits}
            if extra:
                body["spend"] = {"enabled": bool(extra.get("enabled")), "percent": extra.get("pct"),
                                 "used": {"amount": extra.get("used")}, "limit": {"amount": extra.get("limit")}}
            self._send(200, body)
        elif mode == "429":
            self._send(429, _error("rate_limit_error", "Rate limited. Please try again later."),
                       headers={"Retry-After": retry_after} if retry_after is not None else None)
        elif mode == "timeout":
            fake._stopping.wait(fake.timeout_mode_seconds)
            self._abort()
        elif mode == "garbage":
            self._send(200, b"not json at all {{{")
        elif mode == "html":
            self._send(200, "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                            "<body><h1>Please wait</h1></body></html>",
                       content_type="text/html; charset=utf-8")
        elif mode == "empty":
            self._send(200, {})
        elif mode == "nulls":
            self._send(200, {"five_hour": None, "seven_day": None})
        else:  # "500" and anything unexpected
            self._send(500, _error("api_error", "Internal server error"))

    def _handle_profile(self, bearer: str | None) -> None:
        fake = self.server.fake
        acct = self._oauth_account(bearer)
        if acct is None:
            return
        with fake.lock:
            acct.profile_calls += 1
        local = acct.email.split("@", 1)[0]
        # The fields Claude Code (2.1.197) reads from this answer into `oauthAccount` in its
        # .claude.json: account.uuid/email/display_name/created_at, organization.uuid and the
        # billing facts below (`email_address`: the same email under its older name).
        self._send(200, {
            "account": {
                "uuid": acct.uuid,
                "email": acct.email,
                "email_address": acct.email,
                "full_name": local.replace(".", " ").title(),
                "display_name": local,
                "has_claude_max": True,
                "has_claude_pro": False,
                "created_at": "2025-03-14T09:26:53.589793Z",
            },
            "organization": {
                "uuid": acct.org_uuid,
                "name": f"{acct.email}'s Organization",
                "organization_type": "claude_max",
                "rate_limit_tier": "default_claude_max_20x",
                "billing_type": "stripe_subscription",
                "has_extra_usage_enabled": bool(acct.extra_usage and acct.extra_usage.get("enabled")),
                "subscription_created_at": "2025-06-01T17:02:11.104934Z",
                "cc_onboarding_flags": {},
                "claude_code_trial_ends_at": None,
                "claude_code_trial_duration_days": None,
                "seat_tier": None,
            },
        })

    def _handle_token(self, body: Any) -> None:
        if not isinstance(body, dict) or not body.get("grant_type"):
            self._send(400, {"error": "invalid_request", "error_description": "Missing grant_type"})
            return
        if body["grant_type"] != "refresh_token":
            self._send(400, {"error": "unsupported_grant_type",
                             "error_description": f"Unsupported grant_type {body['grant_type']!r}"})
            return
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            self._send(400, {"error": "invalid_request", "error_description": "Missing refresh_token"})
            return
        fake = self.server.fake
        result = fake._refresh(refresh)
        # a slow answer after the rotation (tests: the server already rotated when the client gives up)
        if result is not None and fake.token_delay > 0 and fake._stopping.wait(fake.token_delay):
            return
        if result is None:
            self._send(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
        else:
            self._send(200, result)


FakeAnthropic.handler_class = Handler
