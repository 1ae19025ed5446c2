"""config.toml (optional; docs/ARCHITECTURE.md §3). Read with tomllib, written with tomli-w."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from claude_pool.reconciler.lightconfig import DEFAULT_API_BASE, DEFAULT_HTTP_TIMEOUT  # noqa: E402 (one constant each)
DEFAULT_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
# The five-hour line of the ranking (docs/ARCHITECTURE.md §6 rules 3 and 4): an account whose
# five-hour window is at this fraction or above is left for one under it; `reconcile --if-needed`
# (what the hooks run) stays while the active account is under it. 0.95, not higher: the prompt
# hook's reconcile runs detached and sessions share the account (§6, after the rules). The one
# default lives in reconciler/decision.py: config.toml's [policy] threshold overrides it, --threshold both.
from claude_pool.reconciler.decision import DEFAULT_THRESHOLD, DEFAULT_TTL_SECONDS  # noqa: E402


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoints(_Strict):
    api_base: str = DEFAULT_API_BASE
    token_url: str = DEFAULT_TOKEN_URL


class PolicyConfig(_Strict):
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0, description="--if-needed: stay while the current account is under this")
    usage_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, ge=0, description="a cached usage younger than this is reused, not re-polled")
    overage: Literal["after_keys", "before_keys"] = Field(
        "after_keys", description="when every account is at 100%: API keys first, or accounts' paid extra usage first")


class HttpConfig(_Strict):
    timeout_seconds: float = Field(DEFAULT_HTTP_TIMEOUT, gt=0, le=60)
    max_connections: int = Field(64, ge=1, le=256)


class LogConfig(_Strict):
    max_bytes: int = Field(1_048_576, ge=4096, description="the audit log rotates past this size")
    keep: int = Field(3, ge=0, le=20, description="rotated audit logs kept")


class StoreConfig(_Strict):
    credential_store: str = "auto"

    @field_validator("credential_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        from claude_pool.providers.credstore import choices   # the one table of store kinds

        if value not in choices():
            raise ValueError(f"expected one of: {', '.join(choices())}")
        return value


class Config(_Strict):
    endpoints: Endpoints = Field(default_factory=Endpoints)
    store: StoreConfig = Field(default_factory=StoreConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    log: LogConfig = Field(default_factory=LogConfig)


DEFAULT_CONFIG_TOML = f"""\
# claude-pool configuration. Every setting is optional; shown here with its default.

[endpoints]
# Environment variables CLAUDE_POOL_API_BASE_URL / CLAUDE_POOL_OAUTH_TOKEN_URL win over these.
# Plain http:// is refused unless the host is loopback.
api_base = "https://api.anthropic.com"
token_url = "https://platform.claude.com/v1/oauth/token"

[store]
# Where Claude Code keeps its login: "auto" (the Keychain on macOS, the file elsewhere),
# "keychain" or "file". The environment variable CLAUDE_POOL_CREDENTIAL_STORE wins over this.
credential_store = "auto"

[policy]
# The hooks stay on the current account while its five-hour window is under this fraction (and
# no window is full); an account at or above it is left for one under it. Working one session
# at a time, 0.99 uses a little more of each window (docs/ARCHITECTURE.md §6).
threshold = {DEFAULT_THRESHOLD}
# A usage reading younger than this many seconds is reused instead of polled again.
usage_ttl_seconds = 60
# When every account is at 100%, an account with paid extra usage (overage) turned on keeps
# working, billed. "after_keys": use your API keys first (the default); "before_keys": use
# the accounts' extra usage first, API keys after.
overage = "after_keys"

[http]
# Every call to Anthropic gives up after this many seconds (a hook has seconds, not minutes).
timeout_seconds = 5.0
# At most this many accounts are polled at once (one connection each).
max_connections = 64

[log]
# The audit log (JSON lines) rotates past this size, keeping this many old files.
max_bytes = 1048576
keep = 3
"""
