"""The Anthropic HTTP APIs (docs/ARCHITECTURE.md §4): usage, profile, token refresh. httpx, short timeouts.

httpx is imported when the first client is made (a run that never calls pays nothing for it), and
a TLS context with the CA bundle is built only when an endpoint is https (`_verify`).

Errors come in two types: `TransientError` (timeouts, 429, 5xx, garbage: "unknown", never
exhaustion; a 429 is `Throttled`, with the `retry-after` it named) and `InvalidGrant` (the
refresh token is dead: the account needs a fresh login).
Messages never contain a token.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, TypeVar
from urllib.parse import urlsplit

from claude_pool.schema.backoff import parse_retry_after
from claude_pool.schema.config import Config
from claude_pool.schema.pool import Usage
from claude_pool.schema.usage import UsageFormatError, parse_usage

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
LATE_ANSWER_SECONDS = 60.0   # how long a token refresh's answer is still read after the run gave up on it
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
OAUTH_BETA = "oauth-2025-04-20"


class ApiError(Exception):
    """Base: one line, no secret. `status`: the HTTP status of the answer (None: no answer)."""

    status: int | None = None


class TransientError(ApiError):
    """Try again later: timeout, connection failure, 429, 5xx, an unreadable answer."""


class Throttled(TransientError):
    """HTTP 429: the endpoint asks us to wait, `retry_after` seconds when it said (header
    `retry-after`, seconds or an HTTP-date; None: it did not). schema/backoff.py decides how long."""

    status = 429

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stalled(TransientError):
    """The call was given up on at its deadline; its answer may still come. `when_answered(f)`:
    `f(result)` runs in the call's own thread if the answer does come (a token refresh the server
    has already rotated must not be lost: reconciler/harvest.py keeps it as a rescue)."""

    def __init__(self, message: str, box: dict) -> None:
        super().__init__(message)
        self._box = box

    def when_answered(self, callback: Callable[[object], None]) -> None:
        with self._box["lock"]:
            if "ok" in self._box:          # it came in the meantime
                late = self._box["ok"]
            else:
                self._box["late"] = callback
                return
        callback(late)


class Unauthorized(ApiError):
    """401/403 on usage or profile: the access token is not (or no longer) accepted."""


class InvalidGrant(ApiError):
    """The refresh token was rejected: logged out, revoked, or rotated elsewhere."""


class EndpointError(ValueError):
    """A configured endpoint URL is not acceptable."""


def check_endpoint(url: str) -> str:
    """https anywhere; plain http only to a loopback host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.rstrip("/")
    if parts.scheme == "http" and host:
        loopback = host == "localhost"
        try:
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if loopback:
            return url.rstrip("/")
        raise EndpointError(f"refusing plain http:// to a non-loopback host ({host}); use https://")
    raise EndpointError(f"not an http(s) URL: {url!r}")


@dataclass(frozen=True)
class ApiUrls:
    api_base: str
    token_url: str

    @classmethod
    def from_config(cls, config: Config) -> "ApiUrls":
        base = os.environ.get("CLAUDE_POOL_API_BASE_URL") or config.endpoints.api_base
        token = os.environ.get("CLAUDE_POOL_OAUTH_TOKEN_URL") or config.endpoints.token_url
        return cls(api_base=check_endpoint(base), token_url=check_endpoint(token))


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str | None
    refresh_token_expires_in: object = None  # the login's lifetime (s) as sent; reconciler/deadlines.py reads it


@dataclass(frozen=True)
class Profile:
    """The profile endpoint's answer: the login's email, and `oauth_account`, the identity Claude
    Code keeps as `oauthAccount` in its `.claude.json` and shows (banner, `/status`), built from
    the answer exactly as Claude Code builds it (no secret in it; providers/claude_json.py)."""

    email: str
    oauth_account: dict


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_profile(body: object) -> "Profile | None":
    """A profile answer as Claude Code reads it (2.1.197): `account.uuid`, `account.email`
    (`email_address` in older answers), `account.display_name`, `account.created_at`,
    `organization.uuid`, and the organization's billing facts. None without an email."""
    account = body.get("account") if isinstance(body, dict) else None
    if not isinstance(account, dict):
        return None
    email = _text(account.get("email")) or _text(account.get("email_address"))
    if email is None:
        return None
    org = body.get("organization")  # type: ignore[union-attr]
    org = org if isinstance(org, dict) else {}
    shown: dict = {"accountUuid": _text(account.get("uuid")), "emailAddress": email,
                   "organizationUuid": _text(org.get("uuid"))}
    extra = org.get("has_extra_usage_enabled")
    shown["hasExtraUsageEnabled"] = extra if isinstance(extra, bool) else False
    for key, value in (("billingType", org.get("billing_type")), ("accountCreatedAt", account.get("created_at")),
                       ("subscriptionCreatedAt", org.get("subscription_created_at"))):
        if _text(value) is not None:      # Claude Code leaves these out when the answer has none
            shown[key] = value
    flags = org.get("cc_onboarding_flags")
    shown["ccOnboardingFlags"] = flags if isinstance(flags, dict) else {}
    for key, value in (("claudeCodeTrialEndsAt", org.get("claude_code_trial_ends_at")),
                       ("claudeCodeTrialDurationDays", org.get("claude_code_trial_duration_days")),
                       ("seatTier", org.get("seat_tier"))):
        shown[key] = value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    name = _text(account.get("display_name"))
    if name is not None:
        shown["displayName"] = name
    if _text(org.get("name")) is not None:
        shown["organizationName"] = org["name"]
    return Profile(email=email, oauth_account={k: v for k, v in shown.items()
                                               if v is not None or k in ("claudeCodeTrialEndsAt",
                                                                         "claudeCodeTrialDurationDays", "seatTier")})


def _status_error(resp: "httpx.Response", what: str) -> ApiError:
    exc: ApiError
    if resp.status_code in (401, 403):
        exc = Unauthorized(f"{what}: HTTP {resp.status_code}")
    elif resp.status_code == 429:
        retry = parse_retry_after(resp.headers.get("retry-after"), datetime.now(timezone.utc))
        return Throttled(f"{what}: throttled (HTTP 429{f', retry after {retry:.0f}s' if retry else ''})", retry)
    else:
        exc = TransientError(f"{what}: HTTP {resp.status_code}")
    exc.status = resp.status_code
    return exc


def _answered(exc: ApiError) -> ApiError:
    """An error about a 200 answer we could not use."""
    exc.status = 200
    return exc


def _verify(endpoints: ApiUrls) -> "bool | object":
    """httpx's `verify`: True (its default: a context with the CA bundle, checked hostnames) when
    any endpoint is https. With only plain http:// (loopback: check_endpoint allows nothing
    else, and redirects are not followed) no TLS connection is ever made, so no CA bundle is
    loaded (about 25 ms): a bare client context, which still verifies and trusts nobody."""
    if any(urlsplit(url).scheme != "http" for url in (endpoints.api_base, endpoints.token_url)):
        return True
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED, check_hostname, no CA: no https ever passes


class AnthropicApi:
    name = "anthropic"

    def __init__(self, endpoints: ApiUrls, *, timeout: float = 5.0, max_connections: int = 16) -> None:
        import httpx

        self.endpoints = endpoints
        self.timeout = timeout
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"anthropic-beta": OAUTH_BETA, "user-agent": "claude-pool"},
            follow_redirects=False,
            verify=_verify(endpoints),
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "AnthropicApi":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_json(self, path: str, access_token: str, what: str) -> object:
        import httpx

        try:
            resp = self.client.get(self.endpoints.api_base + path,
                                   headers={"authorization": f"Bearer {access_token}"})
        except httpx.TimeoutException:
            raise TransientError(f"{what}: timed out") from None
        except (httpx.HTTPError, UnicodeEncodeError) as exc:  # UnicodeEncodeError: a token not fit for a header
            raise TransientError(f"{what}: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise _status_error(resp, what)
        try:
            return resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            raise _answered(TransientError(f"{what}: the answer is not JSON")) from None

    def usage(self, access_token: str) -> Usage:
        body = self._get_json("/api/oauth/usage", access_token, "usage")
        try:
            return parse_usage(body)
        except UsageFormatError as exc:
            raise _answered(TransientError(f"usage: {exc}")) from None

    def profile(self, access_token: str) -> "Profile":
        """Who this login is: its email and the identity Claude Code shows (`Profile`)."""
        body = self._get_json("/api/oauth/profile", access_token, "profile")
        found = parse_profile(body)
        if found is None:
            raise TransientError("profile: the answer has no account email")
        return found

    def profile_email(self, access_token: str) -> str:
        return self.profile(access_token).email

    def refresh(self, refresh_token: str) -> TokenGrant:
        import httpx

        payload = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        try:
            # The server rotates the moment it takes the request: a slow answer must still be read
            # (LazyApi gives up on it at the run's deadline and keeps it if it comes), so the
            # connection itself waits longer than any deadline.
            resp = self.client.post(self.endpoints.token_url, json=payload,
                                    timeout=httpx.Timeout(self.timeout, read=LATE_ANSWER_SECONDS))
        except httpx.TimeoutException:
            raise TransientError("token refresh: timed out") from None
        except (httpx.HTTPError, UnicodeEncodeError) as exc:
            raise TransientError(f"token refresh: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            body = None
        if resp.status_code in (400, 401) and isinstance(body, dict) and body.get("error") == "invalid_grant":
            raise InvalidGrant("token refresh: invalid_grant (the refresh token is no longer valid)")
        if resp.status_code != 200:
            raise _status_error(resp, "token refresh") if resp.status_code not in (401, 403) else \
                TransientError(f"token refresh: HTTP {resp.status_code}")
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise TransientError("token refresh: the answer has no access_token")
        expires = body.get("expires_in")
        return TokenGrant(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else "",
            expires_in=int(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool)
            and math.isfinite(expires) else 3600,  # a NaN here must not lose the rotated refresh token
            scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
            refresh_token_expires_in=body.get("refresh_token_expires_in"),
        )


class LazyApi:
    """The API of a real run (providers/world.py `Api`): the HTTP client is made at the first
    call (a run that never calls pays nothing), once, thread-safe, with one connection per
    account polled at once. A bad endpoint URL raises EndpointError at that first call."""

    name = "anthropic"

    def __init__(self, config: Config, timeout: Callable[[float], float] | None = None) -> None:
        self.config = config
        self._timeout = timeout or (lambda configured: configured)
        self._api: AnthropicApi | None = None
        self._lock = threading.Lock()

    def client(self) -> AnthropicApi:
        with self._lock:
            if self._api is None:
                self._api = AnthropicApi(ApiUrls.from_config(self.config),
                                         timeout=self._timeout(self.config.http.timeout_seconds),
                                         max_connections=self.config.http.max_connections)
            return self._api

    # The client is made (httpx imported) before a call's budget starts: the budget is the network's.
    def usage(self, access_token: str) -> Usage:
        api = self.client()
        return self._bounded(lambda: api.usage(access_token), "usage")

    def profile(self, access_token: str) -> "Profile":
        api = self.client()
        return self._bounded(lambda: api.profile(access_token), "profile")

    def profile_email(self, access_token: str) -> str:
        return self.profile(access_token).email

    def refresh(self, refresh_token: str) -> TokenGrant:
        api = self.client()
        return self._bounded(lambda: api.refresh(refresh_token), "token refresh")

    def _bounded(self, call: Callable[[], "T"], what: str) -> "T":
        """The call, given up after its whole budget (the configured timeout, cut to a hook's
        deadline) whatever the server does: httpx's timeout is per read, and a server that
        trickles a byte a second never trips it. The call runs in a daemon thread; one that is
        given up is left to die with the process (its connection is never reused: `close` then
        drops the client without waiting on it), so no lock we hold waits on it."""
        budget = self._timeout(self.config.http.timeout_seconds)
        box: dict[str, object] = {"lock": threading.Lock()}

        def work() -> None:
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc
                return
            with box["lock"]:  # type: ignore[attr-defined]
                box["ok"] = result
                late = box.get("late")
            if late is not None:
                try:
                    late(result)  # type: ignore[operator]
                except Exception:  # noqa: BLE001 - best effort, in a thread nobody waits on
                    pass

        worker = threading.Thread(target=work, name=f"claude-pool {what}", daemon=True)
        worker.start()
        worker.join(budget + 0.05)
        if worker.is_alive():
            self.stalled = True
            raise Stalled(f"{what}: no complete answer within {budget:.1f}s", box)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["ok"]  # type: ignore[return-value]

    #: a call was given up on: its thread may still hold a connection of the client
    stalled = False

    def close(self) -> None:
        with self._lock:
            if self._api is not None and not self.stalled:
                self._api.close()
            self._api = None
