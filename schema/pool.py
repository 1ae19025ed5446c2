"""The pool file's JSON, compatible with the Go claude-pool 0.3 (docs/ARCHITECTURE.md §3.1).

Every model keeps fields it does not know (`extra="allow"`), so a pool written by a newer or
older tool survives a load/save round trip. Fields added here are new keys the Go tool ignores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from .limits import scope_applies
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

    def binding(self, model_words: frozenset[str] | None = None) -> float:
        """The utilization that binds a request of that model (its words, see schema/limits.py):
        the largest of five_hour, seven_day and the model's own weekly windows, in percent."""
        from .limits import scope_applies

        pcts = [self.five_hour.pct, self.seven_day.pct]
        pcts += [s.pct for s in self.scoped if s.pct is not None and scope_applies(s.name, model_words)]
        return max(pcts)

    def binding_window(self, model_words: frozenset[str] | None = None) -> tuple[str, UsageWindow | ScopedWindow]:
        """(label, window) of the window that binds: "5h", "7d" or a model's name."""
        from .limits import scope_applies

        best: tuple[str, UsageWindow | ScopedWindow] = (
            ("5h", self.five_hour) if self.five_hour.pct >= self.seven_day.pct else ("7d", self.seven_day))
        for s in self.scoped:
            if s.pct is not None and scope_applies(s.name, model_words) and s.pct > best[1].pct:  # type: ignore[operator]
                best = (s.name, s)
        return best

    def full_scoped(self) -> list[ScopedWindow]:
        """Per-model windows at 100% (whatever the model)."""
        return [s for s in self.scoped if s.pct is not None and s.pct >= 100.0]


class Block(_Keep):
    """Evidence that the account refuses requests until `until`: a 429 Claude Code got."""

    until: OptTime = None
    source: str = ""               # "message" (the reset the 429 named), "window" (the binding
                                   # window's reset), "cooldown" (neither was known)
    reason: str = ""               # what Claude Code said, e.g. "You've hit your session limit"
    model: str = ""                # a model word, when the limit was one model's own
    at: OptTime = None             # when the 429 was seen


class Account(_Keep):
    id: str
    email: str = ""
    blob: str = ""
    usage: Usage = Field(default_factory=Usage)
    usage_at: GoTime = None
    # Added by this implementation (the Go tool ignores unknown keys):
    needs_relogin: bool = False
    relogin_reason: str = ""
    block: Block | None = None     # a 429's evidence; a write by the Go tool drops it

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


def live_block(acc: Account | None, now: datetime, words: frozenset[str] | None = None, *,
               strict: bool = True) -> Block | None:
    """The account's 429 block, while it lasts and applies to the model (an expired block is
    forgotten). A block for one model's own limit applies to that model; with the model unknown
    it applies only when `strict` is False (it then ranks the account last instead)."""
    block = acc.block if acc is not None else None
    if block is None or block.until is None or block.until <= now:
        return None
    if block.model:
        if words is None:
            return None if strict else block
        if block.model not in words:
            return None
    return block


def exhausted_until(acc: Account, now: datetime, words: frozenset[str] | None = None) -> datetime | None:
    """The time the account is back, when its cached usage (the windows that bind `words`' model)
    or a 429 block proves it refuses requests until then. The one definition: the policy, the
    wake and `status` all ask this."""
    resets: list[datetime] = []
    if acc.usage_at:
        u = acc.usage
        resets += [w.resets_at for w in (u.five_hour, u.seven_day)
                   if w.pct >= 100.0 and w.resets_at is not None and w.resets_at > now]
        resets += [s.resets_at for s in u.scoped
                   if s.pct is not None and s.pct >= 100.0 and s.resets_at is not None and s.resets_at > now
                   and scope_applies(s.name, words)]
    block = live_block(acc, now, words)
    if block is not None and block.until is not None:
        resets.append(block.until)
    return max(resets) if resets else None
