"""The pool file's JSON, compatible with the Go claude-pool 0.3 (docs/ARCHITECTURE.md §3.1).

Every model keeps fields it does not know (`extra="allow"`), so a pool written by a newer or
older tool survives a load/save round trip. Fields added here are new keys the Go tool ignores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .timefmt import GoTime, OptTime  # noqa: F401


class _Keep(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class UsageWindow(_Keep):
    pct: float = 0.0
    resets_at: OptTime = None


class Usage(_Keep):
    five_hour: UsageWindow = Field(default_factory=UsageWindow)
    seven_day: UsageWindow = Field(default_factory=UsageWindow)

    def binding(self) -> float:
        """The utilization that binds: the larger of the two windows, in percent."""
        return max(self.five_hour.pct, self.seven_day.pct)


class Account(_Keep):
    id: str
    email: str = ""
    blob: str = ""
    usage: Usage = Field(default_factory=Usage)
    usage_at: GoTime = None
    # Added by this implementation (the Go tool ignores unknown keys):
    needs_relogin: bool = False
    relogin_reason: str = ""

    @field_validator("usage", mode="before")
    @classmethod
    def _null_usage(cls, v: object) -> object:
        return {} if v is None else v

    @field_validator("blob")
    @classmethod
    def _int_expiry(cls, v: str) -> str:
        from .credentials import normalized_blob

        return normalized_blob(v)


class ApiKey(_Keep):
    id: str
    key: str = ""


class Pool(_Keep):
    mode: Literal["account", "apikey"] = "account"
    current: str = ""
    current_key: str = ""
    key_cursor: int = 0
    saved_api_key_helper: str = ""
    # Added by this implementation: when mode/current last changed (the statusline feed needs it).
    switched_at: OptTime = None
    accounts: list[Account] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_default(cls, v: object) -> object:
        return "account" if v in (None, "") else v

    @field_validator("accounts", "api_keys", mode="before")
    @classmethod
    def _null_list(cls, v: object) -> object:
        return [] if v is None else v

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)

    def key(self, key_id: str) -> ApiKey | None:
        return next((k for k in self.api_keys if k.id == key_id), None)

    # Key rotation, the Go tool's meaning: `key_cursor` is the index of the key last served; the
    # helper serves api_keys[(key_cursor + 1) % n].

    def key_order(self, skip: str = "") -> list[str]:
        """Key ids in the order the helper would serve them from now on."""
        n = len(self.api_keys)
        start = self.key_cursor + 1 if n else 0
        order = [self.api_keys[(start + i) % n] for i in range(n)]
        return [k.id for k in order if k.id != skip and k.key]

    def next_key_id(self, skip: str = "") -> str:
        """The key the next helper call serves (what entering API-key mode announces)."""
        order = self.key_order(skip)
        return order[0] if order else ""

    def serve_next(self, key_id: str) -> None:
        """Point the cursor so that the next helper call serves `key_id`."""
        ids = [k.id for k in self.api_keys]
        if key_id in ids:
            self.key_cursor = (ids.index(key_id) - 1) % len(ids)
        elif self.key_cursor >= len(ids):
            self.key_cursor = 0

    def secrets(self) -> list[str]:
        """Every secret string the pool holds, for the log redactor."""
        from .credentials import blob_secrets

        found: list[str] = [k.key for k in self.api_keys if k.key]
        for acc in self.accounts:
            found.extend(blob_secrets(acc.blob))
        return found
