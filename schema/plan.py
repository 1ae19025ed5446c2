"""The plan: a versioned, serializable list of typed actions. Never a secret in it.

An action is one model per type in a discriminated union (`type` is the discriminator), with typed
parameters; `reconciler/apply.py` has exactly one handler per type (a test checks both ways).
Accounts and keys are named by id, logins by fingerprint (docs/ARCHITECTURE.md §7).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: 2: typed actions (one model per type) replaced `detail: dict[str, str]`.
PLAN_FORMAT_VERSION = 2

SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}


class PlanFormatError(ValueError):
    """A saved plan that this version cannot apply. The message is one line."""


class HelperValue(str, Enum):
    """What `write_settings` puts into settings.json's apiKeyHelper."""

    OURS = "ours"        # claude-pool's helper command
    SAVED = "saved"      # the foreign helper the pool saved when it entered API-key mode
    REMOVE = "remove"    # no apiKeyHelper at all


class SavedHelper(str, Enum):
    """What `save_pool_state` does with the pool's saved foreign helper."""

    KEEP = "keep"
    FROM_SETTINGS = "from_settings"   # save the helper settings.json names now (entering API-key mode)
    CLEAR = "clear"                   # restored (leaving API-key mode): forget it


class _Action(BaseModel):
    # defer_build: a model's validator and serializer are built at its first use, not at import: a
    # run with nothing to change makes no action, and the plan is built by diff.py from trusted
    # parts (`model_construct`), so plan/apply/reconcile pay for these only to validate a saved plan
    # or to write one as JSON.
    model_config = ConfigDict(extra="forbid", use_enum_values=False, defer_build=True)

    type: str                            # each model narrows it to its Literal (the discriminator)
    change: Literal["create", "update", "delete"]
    target: str                          # an account id, key id, "pool", "settings.json"
    reason: str
    before: str = ""                     # fingerprint or non-secret value
    after: str = ""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.change]

    def done(self) -> str:
        """What applying it did, in words (the apply log line and the error prefix)."""
        raise NotImplementedError


class AdoptCredential(_Action):
    """pool <- Claude Code's fresher login of the same account."""

    type: Literal["adopt_credential"] = "adopt_credential"

    def done(self) -> str:
        return f"took Claude Code's refreshed login into {self.target}"


class ImportAccount(_Action):
    """The pool gains (or, for an existing id, replaces) the login Claude Code holds."""

    type: Literal["import_account"] = "import_account"
    email: str = ""                      # the profile email of the login being imported
    previous_email: str = ""             # update: the email the account had
    # the account as Claude Code shows it (its `oauthAccount`: ids, email, names; no secret),
    # from `.claude.json` when it names this login, else from the profile call; None: unknown
    identity: dict[str, Any] | None = None

    def done(self) -> str:
        return f"{'updated' if self.change == 'update' else 'imported'} {self.target}"


class RemoveAccount(_Action):
    type: Literal["remove_account"] = "remove_account"

    def done(self) -> str:
        return f"removed account {self.target}"


class AddKey(_Action):
    """An API key joins the pool; its value is the run's (never the plan's)."""

    type: Literal["add_key"] = "add_key"

    def done(self) -> str:
        return f"{'replaced' if self.change == 'update' else 'added'} API key {self.target}"


class RemoveKey(_Action):
    type: Literal["remove_key"] = "remove_key"

    def done(self) -> str:
        return f"removed API key {self.target}"


class SavePoolState(_Action):
    """The pool's own state: mode, active account, active key, saved foreign helper."""

    type: Literal["save_pool_state"] = "save_pool_state"
    mode: Literal["account", "apikey"]
    current: str = ""
    current_key: str = ""
    saved_api_key_helper: SavedHelper = SavedHelper.KEEP

    def done(self) -> str:
        return f"pool: {self.before} -> {self.after}"


class WriteSettings(_Action):
    """settings.json's apiKeyHelper."""

    type: Literal["write_settings"] = "write_settings"
    value: HelperValue

    def done(self) -> str:
        said = f"settings.json apiKeyHelper: {self.before} -> {self.after}"
        if self.value is HelperValue.OURS:
            # an apiKeyHelper turns off Claude Code's claude.ai features (its changelog, 2.1.139)
            said += f" (billed; {API_KEY_MODE_COST})"
        return said


#: what API-key mode costs beyond money, said wherever the pool goes to keys
API_KEY_MODE_COST = "Remote Control, /schedule and claude.ai connectors are off until an account is back"


class WriteCredential(_Action):
    """Claude Code's credential store <- the login of account `target`."""

    type: Literal["write_credential"] = "write_credential"

    def done(self) -> str:
        return f"Claude Code's login -> {self.target}"


class WriteIdentity(_Action):
    """Claude Code's `.claude.json` `oauthAccount` <- the identity of account `target` (what its
    banner and `/status` show). Cosmetic: a file that cannot be written is left alone and the
    run goes on (one audit line)."""

    type: Literal["write_identity"] = "write_identity"

    def done(self) -> str:
        return f"the account Claude Code shows -> {self.target}"


class SetPreference(_Action):
    """One preference of account `target` (`claude-pool priority / threshold / pause / resume`), a
    new key of the pool the Go tool ignores; reconciler/decision.py honours it."""

    type: Literal["set_preference"] = "set_preference"
    field: Literal["priority", "threshold", "paused"] = "priority"
    priority: int | None = None          # field priority: the tier (None: the default tier)
    threshold: float | None = None       # field threshold: a fraction (None: the global one)
    paused: bool = False                 # field paused: paused (False: resumed)
    until: datetime | None = None        # a pause's end (None: until resumed)
    pause_reason: str = ""               # a pause's reason, the user's words

    def done(self) -> str:
        return f"{self.target}: {self.before} -> {self.after}"


class Rename(_Action):
    """Account or API key `target` is called `new_id` from now on (`current`/`current_key` follow)."""

    type: Literal["rename"] = "rename"
    kind: Literal["account", "key"] = "account"
    new_id: str = ""

    def done(self) -> str:
        return f"renamed {'API key' if self.kind == 'key' else 'account'} {self.target} to {self.new_id}"


Action = Annotated[
    Union[AdoptCredential, ImportAccount, RemoveAccount, AddKey, RemoveKey, SavePoolState, WriteSettings,
          WriteCredential, WriteIdentity, SetPreference, Rename],
    Field(discriminator="type"),
]

#: every action model, in the union's order
ACTION_MODELS: tuple[type[_Action], ...] = get_args(get_args(Action)[0])


class Plan(BaseModel):
    model_config = ConfigDict(defer_build=True)   # as _Action's

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


def load_plan(data: bytes | str, where: str = "the plan") -> Plan:
    """Parse a saved plan; a plan of another format version is refused in one line."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise PlanFormatError(f"{where} is not a claude-pool plan") from None
    if not isinstance(raw, dict) or "actions" not in raw:
        raise PlanFormatError(f"{where} is not a claude-pool plan")
    version = raw.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        made_by = f" (made by claude-pool {raw['tool_version']})" if isinstance(raw.get("tool_version"), str) \
            and raw.get("tool_version") else ""
        raise PlanFormatError(f"{where} has plan format {version!r}{made_by}; this claude-pool applies format "
                              f"{PLAN_FORMAT_VERSION} only: run `claude-pool plan --out FILE` again")
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise PlanFormatError(f"{where} is not a valid claude-pool plan ({loc}: {first.get('msg', 'invalid')})") \
            from None
