"""The world: the one object through which a run touches anything outside itself.

Each part is a provider with a declared protocol (below), locks included. A run builds its world
once (`real_world`) and hands it to the engine, which hands it to the steps that need it; nothing
in reconciler/ reaches a file, the network, the clock or a process any other way. `plan` runs
apply through a recording world (reconciler/apply.py `recording`), tests through an in-memory one
(tests/world.py). docs/ARCHITECTURE.md §2.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:   # the models are only named here: building a world needs none of them
    from claude_pool.schema.config import Config
    from claude_pool.schema.pool import Pool, Usage

    from .anthropic import Profile, TokenGrant
    from .claude_json import ClaudeJsonView
    from .settings import SettingsView


@runtime_checkable
class PoolStore(Protocol):
    """The pool file (providers/poolfile.py)."""

    name: str

    def location(self) -> str: ...

    def observe(self) -> "Pool": ...

    def write(self, value: "Pool", into: Any = None, renamed: "dict[str, str] | None" = None) -> None:
        """Save the pool; `into`: a reservation `reserve` made (the rotated login's own spot);
        `renamed`: accounts renamed in this run (old id -> new id), whose history moves with them."""

    def reserve(self) -> contextlib.AbstractContextManager[Any]:
        """Proof that a write can be made, before a token refresh (poolfile.PoolUnwritable if not)."""

    def rescue(self, value: "Pool", spot: Any) -> None:
        """Write `value` into a reservation without renaming it (a token answer after the deadline)."""

    def hold(self, timeout: float = ...) -> contextlib.AbstractContextManager[None]:
        """The pool lock for one run; raises PoolBusy when another run keeps it too long."""


@runtime_checkable
class CredentialStore(Protocol):
    """Claude Code's credential store (providers/credstore*.py): its raw blob, verbatim."""

    name: str

    def location(self) -> str: ...

    def observe(self) -> str | None: ...

    def write(self, value: str) -> None: ...

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Claude Code's own refresh lock, held around a read-refresh-write of its login."""


@runtime_checkable
class SettingsStore(Protocol):
    """Claude Code's settings.json, `apiKeyHelper` only (providers/settings.py)."""

    name: str

    def location(self) -> str: ...

    def observe(self) -> "SettingsView": ...

    def write(self, value: str | None) -> None: ...


@runtime_checkable
class ClaudeJson(Protocol):
    """Claude Code's `.claude.json`, `oauthAccount` only: the account it shows (providers/claude_json.py).
    `write` raises claude_json.LeftAlone when the file is left as it is (missing, not a JSON
    object, kept changing under us)."""

    name: str

    def location(self) -> str: ...

    def observe(self) -> "ClaudeJsonView": ...

    def write(self, value: dict) -> None: ...


@runtime_checkable
class Feed(Protocol):
    """The statusline's reading of the active account (providers/sidecars.py); read only."""

    def observe(self) -> dict | None: ...


@runtime_checkable
class Api(Protocol):
    """Anthropic's usage, profile and token endpoints (providers/anthropic.py)."""

    def usage(self, access_token: str) -> "Usage": ...

    def profile(self, access_token: str) -> "Profile":
        """The login's email and the identity Claude Code shows for it."""

    def profile_email(self, access_token: str) -> str: ...

    def refresh(self, refresh_token: str) -> "TokenGrant": ...

    def close(self) -> None: ...


@runtime_checkable
class Wake(Protocol):
    """The recovery wake (providers/wake.py): "scheduled", "already", or None when off."""

    def schedule(self, at: float) -> str | None: ...


@runtime_checkable
class Sessions(Protocol):
    """Running Claude Code sessions (providers/sessions.py): their pids, and the folder Claude
    Code's last session start used (providers/sidecars.py `note_claude_dir`)."""

    def running(self) -> list[int]: ...

    def last_folder(self) -> dict | None:
        """{"dir", "at"} of the last session start, or None."""


@runtime_checkable
class Temps(Protocol):
    """Temp files a killed writer left behind (providers/fsutil.py): swept, count returned."""

    def sweep(self) -> int: ...


@dataclass(frozen=True)
class World:
    pool: PoolStore
    store: CredentialStore
    settings: SettingsStore
    feed: Feed
    api: Api
    clock: Callable[[], datetime]
    wake: Wake
    sessions: Sessions
    temps: Temps
    claude_json: ClaudeJson


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def real_world(config: "Config", *, timeout: Callable[[float], float] | None = None) -> World:
    """This machine's world. A bad `credential_store` raises ProviderError; a bad endpoint URL
    raises EndpointError at the first API call (a run that makes none is not refused)."""
    from . import paths
    from .anthropic import LazyApi
    from .claude_json import ClaudeJsonFile
    from .credstore import default_store
    from .fsutil import TempSweeper
    from .poolfile import PoolFile
    from .sessions import ClaudeSessions
    from .settings import SettingsFile
    from .sidecars import FeedFile
    from .wake import ProcessWake

    store = default_store(config.store.credential_store)
    pool = PoolFile()
    shown = ClaudeJsonFile()
    return World(
        pool=pool, store=store, settings=SettingsFile(),
        feed=FeedFile(str(pool.path.parent / os.path.basename(paths.feed_file()))),
        api=LazyApi(config, timeout), clock=utc_now,
        wake=ProcessWake(enabled=os.environ.get("CLAUDE_POOL_WAKE", "1") != "0"),
        sessions=ClaudeSessions(),
        temps=TempSweeper(pool.path.parent, Path(paths.claude_dir()), *shown.temp_dirs(Path(paths.claude_dir()))),
        claude_json=shown,
    )
