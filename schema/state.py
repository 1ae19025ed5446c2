"""Observed and desired state: what the reconciler saw, and what the policy wants."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .pool import Pool, Usage

PollResult = Literal["ok", "cached", "error", "skipped", "dead"]

# The run makes these from trusted parts (`model_construct`: reconciler/observe.py, policy.py), so
# their validators are built only if something validates one (defer_build): not in a run.
_INTERNAL = ConfigDict(defer_build=True)


class AccountObs(BaseModel):
    """One account as observed this run (no secrets)."""

    model_config = _INTERNAL

    id: str
    email: str = ""
    usage: Usage | None = None          # fresh or cached usage we trust for this decision
    usage_at: datetime | None = None
    poll: PollResult = "skipped"
    error: str = ""                     # why the poll failed (one line, no secret)
    dead: bool = False                  # refresh token rejected: needs /login + import


class StoreObs(BaseModel):
    """Claude Code's credential store."""

    model_config = _INTERNAL

    present: bool = False
    valid: bool = False                 # a parseable OAuth blob with a non-empty access token
    fingerprint: str = ""
    account: str = ""                   # the pool account it belongs to, if any
    fresher_than_pool: bool = False     # Claude Code refreshed this account's token itself
    email: str = ""                     # profile email, when an unknown credential was identified
    error: str = ""
    # The account Claude Code shows (`.claude.json` `oauthAccount`; no secret):
    shown_file: bool = False            # .claude.json is a JSON object claude-pool may rewrite
    shown: dict | None = None           # its oauthAccount now (None: none)
    identity: dict | None = None        # this login's oauthAccount, when an unknown login was identified


class SettingsObs(BaseModel):
    model_config = _INTERNAL

    present: bool = False
    api_key_helper: str | None = None
    ours: bool = False                  # the helper in settings is claude-pool's
    stale: bool = False                 # ours, but a program that is gone or in a folder Claude Code deletes
    error: str = ""                     # not JSON / not an object: never rewritten
    # credentials that outrank the pool's (providers/authenv.py; names only): set in its `env`
    # object, and set in this run's own environment (a hook's is Claude Code's)
    overrides: list[str] = []
    env_overrides: list[str] = []
    env_is_claude_codes: bool = False   # Claude Code started this run (CLAUDECODE=1): the environment is its
    # the folder Claude Code's last session start used, when it is not this run's (CLAUDE_CONFIG_DIR)
    sessions_claude_dir: str = ""
    claude_dir: str = ""                # this run's


class ObservedState(BaseModel):
    model_config = _INTERNAL

    now: datetime
    pool: Pool
    pool_digest: str
    store: StoreObs
    settings: SettingsObs
    accounts: dict[str, AccountObs] = Field(default_factory=dict)
    helper_command: str

    def digest(self) -> str:
        """What a saved plan remembers: the parts of the world a plan's actions depend on."""
        import hashlib

        parts = [self.pool_digest, self.store.fingerprint, str(self.settings.api_key_helper)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class DesiredState(BaseModel):
    model_config = _INTERNAL

    mode: Literal["account", "apikey"]
    current: str = ""
    current_key: str = ""
    saved_api_key_helper: str = ""
    store_account: str = ""             # the account whose login Claude Code should hold ("" = leave)
    api_key_helper: str | None = None   # the apiKeyHelper settings.json should have
    touch_settings: bool = False        # False: leave settings.json as it is
    adopt: list[str] = Field(default_factory=list)     # accounts to take Claude Code's fresher blob from
    add_accounts: list[str] = Field(default_factory=list)
    remove_accounts: list[str] = Field(default_factory=list)
    add_keys: list[str] = Field(default_factory=list)
    remove_keys: list[str] = Field(default_factory=list)
    # the user's preferences to set (`claude-pool priority/threshold/pause/resume`): account id ->
    # {"priority": int | None, "threshold": float | None, "paused": {"until", "reason"} | None}
    prefs: dict[str, dict] = Field(default_factory=dict)
    renames: list[tuple[str, str]] = Field(default_factory=list)   # (old id, new id), `claude-pool rename`
    wake_at: datetime | None = None
    reason: str = ""
    notes: list[str] = Field(default_factory=list)
