"""What a run was asked to do. The policy turns (observed state, intent) into a desired state."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from claude_pool.schema.config import DEFAULT_THRESHOLD

from .errors import UserError

MAX_ID_LEN = 64
_BAD_ID = re.compile(r"[\x00-\x1f\x7f/\\]")
# C1 controls (Cc), bidi overrides, zero-width and BOM (Cf), undecodable argv bytes (Cs: Python's
# surrogate escapes), line and paragraph separators (Zl, Zp): an id is shown, logged and stored.
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def check_id(value: str, what: str = "id") -> str:
    if value is None or value == "":
        raise UserError(f"the {what} is empty")
    if len(value) > MAX_ID_LEN:
        raise UserError(f"the {what} is too long ({len(value)} characters; at most {MAX_ID_LEN})")
    if _BAD_ID.search(value) or any(unicodedata.category(c) in _INVISIBLE for c in value):
        raise UserError(f"the {what} may not contain '/', '\\', control or invisible characters")
    if value.strip() != value or value in (".", ".."):
        raise UserError(f"the {what} {value!r} is not allowed")
    return value


@dataclass(frozen=True)
class Reconcile:
    if_needed: bool = False
    threshold: float | None = None     # None: config.toml's [policy] threshold (engine.with_context)
    live: bool = False      # a person asked (plan, apply, list): poll even a fresh cached reading
    model: str | None = None           # the model requests go out with (None: unknown)
    overage: str = "after_keys"        # paid extra usage after API keys, or "before_keys"
    refusal: "Refusal | None" = None   # a 429 Claude Code just got (the stop-failure hook)
    name = "reconcile"


def threshold_of(intent: object) -> float:
    """The intent's threshold (a fraction): its own, else the default (tests and the simulator
    build intents by hand; the engine fills the configured one)."""
    value = getattr(intent, "threshold", None)
    return DEFAULT_THRESHOLD if value is None else value


@dataclass(frozen=True)
class Refusal:
    """Claude Code's words for a rate-limited request (StopFailure's last_assistant_message),
    and the model it was for."""

    message: str = ""
    model: str | None = None
    since: "datetime | None" = None    # when the session's turn began (the prompt hook's record)


@dataclass(frozen=True)
class Switch:
    target: str
    name = "switch"


@dataclass(frozen=True)
class Import:
    new_id: str | None = None
    name = "import"


@dataclass(frozen=True)
class AddKey:
    key_id: str
    then: Reconcile | None = None      # the reconcile that follows in the same run (engine.with_context)
    name = "key add"


@dataclass(frozen=True)
class Remove:
    target: str
    then: Reconcile | None = None      # the reconcile that follows in the same run (engine.with_context)
    name = "rm"


@dataclass(frozen=True)
class Prefer:
    """`claude-pool priority / threshold / pause / resume`: one preference of one account, part of
    the desired state (the policy's decision honours it: reconciler/decision.py)."""

    target: str
    field: str                         # "priority" | "threshold" | "paused"
    priority: int | None = None        # field priority: the tier (None: the default tier)
    threshold: float | None = None     # field threshold: a fraction (None: the global one)
    paused: bool = False               # field paused: pause (False: resume)
    until: "datetime | None" = None    # a pause's end (None: until resumed)
    reason: str = ""                   # a pause's reason, the user's words
    then: Reconcile | None = None      # the reconcile that follows in the same run (engine.with_context)
    name = "prefer"


@dataclass(frozen=True)
class Rename:
    """`claude-pool rename OLD NEW`: an account or API key gets another id."""

    old: str
    new: str
    then: Reconcile | None = None      # the reconcile that follows in the same run (engine.with_context)
    name = "rename"


Intent = Reconcile | Switch | Import | AddKey | Remove | Prefer | Rename
