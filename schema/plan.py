"""The plan: a versioned, serializable list of typed actions. Never a secret in it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PLAN_FORMAT_VERSION = 1

ActionType = Literal[
    "adopt_credential",      # pool <- Claude Code's fresher login of the same account
    "import_account",        # pool gains the login Claude Code holds
    "remove_account",
    "add_key",
    "remove_key",
    "save_pool_state",       # mode / current / current_key / saved helper
    "write_settings",        # settings.json apiKeyHelper
    "write_credential",      # Claude Code's credential store <- an account's login
]

SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}


class Action(BaseModel):
    type: ActionType
    change: Literal["create", "update", "delete"]
    target: str                          # an account id, key id, "pool", "settings.json", "credentials"
    reason: str
    before: str = ""                     # fingerprint or non-secret value
    after: str = ""
    detail: dict[str, str] = Field(default_factory=dict)   # non-secret parameters (ids, modes)

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.change]


class Plan(BaseModel):
    format_version: int = PLAN_FORMAT_VERSION
    tool_version: str = ""
    created_at: str = ""
    trigger: str = ""
    observed_digest: str = ""
    reason: str = ""
    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.actions
