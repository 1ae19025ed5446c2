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

    def secrets(self) -> list[str]:
        """Every secret string the pool holds, for the log redactor."""
        from .credentials import blob_secrets

        found: list[str] = [k.key for k in self.api_keys if k.key]
        for acc in self.accounts:
            found.extend(blob_secrets(acc.blob))
        return found
