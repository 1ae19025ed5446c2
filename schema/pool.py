"""The pool file's JSON, compatible with the Go claude-pool 0.3 (docs/ARCHITECTURE.md §3.1).

Every model keeps fields it does not know (`extra="allow"`), so a pool written by a newer or
older tool survives a load/save round trip. Fields added here are new keys the Go tool ignores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from .timefmt import format_optional, format_time, is_never, parse_time


def _time_field(value: Any) -> datetime | None:
    """A pool time: "never" is None; anything else must be a time (a corrupt pool is refused)."""
    if is_never(value):
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("not a time")
    return parsed


# Written as Go's zero time when unset (the Go tool's own habit for usage_at).
GoTime = Annotated[datetime | None, BeforeValidator(_time_field), PlainSerializer(format_time, return_type=str)]
# Written as null when unset.
OptTime = Annotated[datetime | None, BeforeValidator(_time_field), PlainSerializer(format_optional)]


class _Keep(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class UsageWindow(_Keep):
    pct: float = 0.0
    resets_at: OptTime = None


class ScopedWindow(_Keep):
    """A per-model weekly window (`seven_day_opus`, or a `limits[]` entry of kind weekly_scoped)."""

    name: str                      # the model's name as the API gives it: "Opus", "Fable"
    source: str = ""               # "seven_day_opus" or "limits"
    pct: float | None = None       # None: the API gave no number
    resets_at: OptTime = None
    active: bool | None = None     # limits[].is_active, when given
    severity: str = ""


class ExtraUsage(_Keep):
    """Paid overage (`extra_usage` / `spend`): past 100% the account keeps working, billed."""

    enabled: bool = False
    pct: float | None = None       # of the monthly spend limit
    used: float | None = None
    limit: float | None = None
    disabled_reason: str = ""

    def available(self) -> bool:
        return self.enabled and (self.pct is None or self.pct < 100.0)


class Usage(_Keep):
    five_hour: UsageWindow = Field(default_factory=UsageWindow)
    seven_day: UsageWindow = Field(default_factory=UsageWindow)
    # Added by this implementation (the Go tool ignores and drops them):
    scoped: list[ScopedWindow] = Field(default_factory=list)
    extra_usage: ExtraUsage | None = None

    @field_validator("scoped", mode="before")
    @classmethod
    def _null_scoped(cls, v: object) -> object:
        return [] if v is None else v

    # The rules over a reading live in reconciler/decision.py (stdlib only, shared with the light
    # paths); these methods ask it.
    def binding(self, model_words: frozenset[str] | None = None, now: datetime | None = None) -> float:
        """The utilization that binds a request of that model, in percent (decision.binding)."""
        from claude_pool.reconciler.decision import binding

        return binding(self, model_words, now)

    def binding_window(self, model_words: frozenset[str] | None = None,
                       now: datetime | None = None) -> tuple[str, UsageWindow | ScopedWindow]:
        """(label, window) of the window that binds: "5h", "7d" or a model's name."""
        from claude_pool.reconciler.decision import binding_window

        return binding_window(self, model_words, now)

    def full_scoped(self, now: datetime | None = None) -> list[ScopedWindow]:
        """Per-model windows at 100% (whatever the model)."""
        from claude_pool.reconciler.decision import full_scoped

        return full_scoped(self, now)


class Block(_Keep):
    """Evidence that the account refuses requests until `until`: a 429 Claude Code got."""

    until: OptTime = None
    source: str = ""               # "message" (the reset the 429 named), "window" (the binding
                                   # window's reset), "cooldown" (neither was known)
    reason: str = ""               # what Claude Code said, e.g. "You've hit your session limit"
    model: str = ""                # a model word, when the limit was one model's own
    at: OptTime = None             # when the 429 was seen


class Pause(_Keep):
    """`claude-pool pause`: the account is never chosen while this lasts (still shown, its token
    still refreshed). `until` None: until `claude-pool resume`; a pause past its end says nothing."""

    at: OptTime = None             # when it was paused
    until: OptTime = None          # when it ends by itself (None: never)
    reason: str = ""               # the user's words (`pause --reason`), shown by list and plan


class Account(_Keep):
    id: str
    email: str = ""
    blob: str = ""
    usage: Usage = Field(default_factory=Usage)
    usage_at: GoTime = None
    # Added by this implementation (the Go tool ignores unknown keys):
    usage_source: str = ""         # "feed": the reading came from the statusline, not the usage API
    needs_relogin: bool = False
    relogin_reason: str = ""
    block: Block | None = None     # a 429's evidence; a write by the Go tool drops it
    # The usage endpoint's own limit (schema/backoff.py has the shapes and the rules):
    usage_backoff: dict[str, Any] | None = None   # {until, delay, at, retry_after} after its 429
    usage_calls: list[float] = Field(default_factory=list)   # epoch seconds of the last hour's calls
    # The account as Claude Code shows it: its `.claude.json` `oauthAccount` for this login
    # (accountUuid, emailAddress, organizationUuid, displayName...; no secret), None: unknown
    oauth_account: dict[str, Any] | None = None
    # The user's preferences (`claude-pool priority/threshold/pause`; reconciler/decision.py reads them):
    priority: int | None = None    # the tier: 1 is spent first (None: decision.DEFAULT_TIER)
    threshold: float | None = None  # this account's threshold, a fraction (None: config.toml's)
    paused: Pause | None = None    # never chosen while it lasts

    @field_validator("priority", mode="before")
    @classmethod
    def _clean_priority(cls, v: object) -> object:
        # best effort, like every field of ours: a value the tool would not write means "unset"
        return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 99 else None

    @field_validator("threshold", mode="before")
    @classmethod
    def _clean_threshold(cls, v: object) -> object:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
        return float(v) if ok else None  # type: ignore[arg-type]

    @field_validator("paused", mode="before")
    @classmethod
    def _clean_pause(cls, v: object) -> object:
        if not isinstance(v, dict):
            return None
        try:
            Pause.model_validate(v)
        except ValueError:
            return None
        return v

    @field_validator("usage", mode="before")
    @classmethod
    def _null_usage(cls, v: object) -> object:
        return {} if v is None else v

    @field_validator("usage_backoff", mode="before")
    @classmethod
    def _clean_backoff(cls, v: object) -> object:
        from .backoff import clean_backoff

        return clean_backoff(v)

    @field_validator("oauth_account", mode="before")
    @classmethod
    def _only_an_object(cls, v: object) -> object:
        return v if isinstance(v, dict) and v else None   # cosmetic: anything else is "unknown"

    @field_validator("usage_calls", mode="before")
    @classmethod
    def _clean_calls(cls, v: object) -> object:
        from .backoff import clean_calls

        return clean_calls(v)

    @field_validator("blob")
    @classmethod
    def _int_expiry(cls, v: str) -> str:
        from .credentials import normalized_blob

        return normalized_blob(v)


class Held(_Keep):
    """A change of what Claude Code's requests go out with (the stop-failure hook asks which
    account a refused request used): account ids, "" for API keys."""

    at: OptTime = None
    before: str = ""
    after: str = ""


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
    # Added by this implementation: the last changes of the held account, newest last (bounded).
    switches: list[Held] = Field(default_factory=list)
    accounts: list[Account] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_default(cls, v: object) -> object:
        return "account" if v in (None, "") else v

    @field_validator("accounts", "api_keys", "switches", mode="before")
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
        """Key ids in the order the helper would serve them from now on (decision.key_order)."""
        from claude_pool.reconciler.decision import key_order

        order = key_order([bool(k.key) for k in self.api_keys], self.key_cursor)
        return [self.api_keys[i].id for i in order if self.api_keys[i].id != skip]

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


# The one definition of both lives with the rest of the decision (reconciler/decision.py).
from claude_pool.reconciler.decision import exhausted_until, live_block  # noqa: E402,F401


def usage_throttled(acc: Account | None, now: datetime) -> datetime | None:
    """While the usage endpoint's backoff on this account lasts (a 429 said wait): its end; else
    None (schema/backoff.py `throttled_until`)."""
    from .backoff import throttled_until

    return throttled_until(acc.usage_backoff, now) if acc is not None else None
