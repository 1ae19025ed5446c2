"""Claude Code's credential blob (docs/ARCHITECTURE.md §3.2), kept verbatim.

The blob is the exact JSON string Claude Code stores. We parse it to read it, and only a token
refresh changes it: four fields of `claudeAiOauth`, plus the login's deadline
(`refreshTokenExpiresAt`) when the blob had none and the server stated one
(reconciler/deadlines.py `after_refresh`, the one rule); nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

EXPIRY_MARGIN_MS = 5 * 60 * 1000


class CredentialError(ValueError):
    """Not a Claude Code OAuth credential."""


class OAuth(BaseModel):
    model_config = ConfigDict(extra="allow")

    accessToken: str = ""
    refreshToken: str = ""
    expiresAt: int | None = None

    @field_validator("expiresAt", mode="before")
    @classmethod
    def _ms(cls, v: object) -> object:
        ms = expires_ms(v)
        return ms if ms is not None else v
    scopes: list[str] | None = None
    subscriptionType: str | None = None
    rateLimitTier: str | None = None

    def valid(self) -> bool:
        """A usable login: Claude Code blanks the access token when its refresh failed. A token
        that could not even be sent in an HTTP header (spaces, controls, non-ASCII) is no login."""
        token = self.accessToken
        return bool(token) and token.isascii() and token.isprintable() and " " not in token

    def expired(self, now_ms: int | None = None) -> bool:
        """Expired 5 minutes before `expiresAt`; 0 or null means unknown, treated as valid."""
        if not self.expiresAt:
            return False
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return now_ms >= self.expiresAt - EXPIRY_MARGIN_MS


def expires_ms(value: object) -> int | None:
    """`expiresAt` as integer milliseconds, from an int, a float or a numeric string; None for
    anything else (null, a bool, garbage), which is left as it is."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                value = float(value.strip())
            except ValueError:
                return None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e18:
        return int(value)
    return None


def normalized_blob(raw: str) -> str:
    """The blob with `claudeAiOauth.expiresAt` stored as an integer of milliseconds (some blobs
    carry a float or a string, which the Go tool cannot read). Only that field changes; a blob
    that needs no change, or cannot be read, is returned exactly as it came."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return raw
    inner = data.get("claudeAiOauth") if isinstance(data, dict) else None
    if not isinstance(inner, dict) or "expiresAt" not in inner:
        return raw
    value = inner["expiresAt"]
    ms = expires_ms(value)
    if ms is None or type(value) is int:
        return raw
    inner["expiresAt"] = ms
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _load_object(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CredentialError("not JSON") from exc
    if not isinstance(data, dict):
        raise CredentialError("not a JSON object")
    return data


def parse_oauth(raw: str) -> OAuth:
    """The `claudeAiOauth` part of a blob; raises CredentialError on anything else."""
    data = _load_object(raw)
    inner = data.get("claudeAiOauth")
    if not isinstance(inner, dict):
        raise CredentialError("no claudeAiOauth object")
    try:
        return OAuth.model_validate(inner)
    except ValidationError:
        raise CredentialError("claudeAiOauth has fields of the wrong type") from None


def try_oauth(raw: str | None) -> OAuth | None:
    if not raw:
        return None
    try:
        return parse_oauth(raw)
    except CredentialError:
        return None


def refreshed_blob(raw: str, *, access_token: str, refresh_token: str, expires_in: int,
                   scope: str | None, now_ms: int, refresh_token_expires_in: object = None) -> str:
    """The blob after a refresh: the four fields a refresh changes, every other field kept; the
    login's deadline is never dropped nor extended, and set from `refresh_token_expires_in` only
    when the blob had none (reconciler/deadlines.py)."""
    from claude_pool.reconciler.deadlines import after_refresh  # stdlib-only: the rule lives there once

    data = _load_object(raw)
    before = data.get("claudeAiOauth") if isinstance(data.get("claudeAiOauth"), dict) else {}
    inner = dict(before)
    inner["accessToken"] = access_token
    if refresh_token:
        inner["refreshToken"] = refresh_token
    inner["expiresAt"] = now_ms + int(expires_in) * 1000
    if scope:
        inner["scopes"] = scope.split()
    after_refresh(before, inner, refresh_token_expires_in, now_ms)
    data["claudeAiOauth"] = inner
    return json.dumps(data, separators=(",", ":"))


def with_oauth_of(store_raw: str | None, account_blob: str) -> str:
    """What the credential store should hold for an account: the store's other top-level keys
    (Claude Code keeps MCP logins there too) with the account's `claudeAiOauth`."""
    account = _load_object(account_blob)
    if not store_raw:
        return account_blob
    try:
        store = _load_object(store_raw)
    except CredentialError:
        return account_blob
    merged = dict(store)
    merged["claudeAiOauth"] = account.get("claudeAiOauth")
    return json.dumps(merged, separators=(",", ":"))


def fingerprint(secret: str | None) -> str:
    """A short sha256 prefix: safe to print and log, enough to tell two credentials apart."""
    if not secret:
        return ""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def oauth_fingerprint(raw: str | None) -> str:
    """Fingerprint of the login a blob carries (its tokens), ignoring other top-level keys."""
    oauth = try_oauth(raw)
    if oauth is None:
        return fingerprint(raw) if raw else ""
    return fingerprint(f"{oauth.accessToken}\n{oauth.refreshToken}")


def same_login(a: OAuth | None, b: OAuth | None) -> bool:
    return a is not None and b is not None and bool(a.refreshToken) and a.refreshToken == b.refreshToken


def blob_secrets(raw: str | None) -> list[str]:
    oauth = try_oauth(raw)
    if oauth is None:
        return []
    return [s for s in (oauth.accessToken, oauth.refreshToken) if s]
