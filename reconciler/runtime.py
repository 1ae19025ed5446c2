"""What one run works on (`Runtime`), and how a run is set up: config, our helper command, the
world (`build`).

Secrets live in the Runtime (the decrypted pool, the store's raw blob, a key being added) and
nowhere else: observed state, plans and logs carry ids and fingerprints only.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from claude_pool.providers import fsutil, paths
from claude_pool.providers.base import ProviderError
from claude_pool.providers.world import PoolStore, World, real_world
from claude_pool.schema.config import Config
from claude_pool.schema.pool import Pool

from .audit import REDACTOR
from .errors import UserError


def load_config(path: Path | None = None) -> Config:
    path = path or Path(paths.config_file())
    try:
        text = fsutil.read_text(path)   # a FIFO in its place: one line, never a hang
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    import tomllib   # only when there is a config.toml

    try:
        return Config.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        given = first.get("input")
        # the value given, when it is a number or a truth value (a string is not repeated: a
        # secret pasted into the wrong key must not reach the terminal)
        got = f" (it says {given!r})" if isinstance(given, (int, float, bool)) else ""
        more = f"; and {len(errors) - 1} more" if len(errors) > 1 else ""
        raise UserError(f"{path}: {where}: {first.get('msg', 'invalid')}{got}{more}") from None


def helper_command(platform: str | None = None, executable: str | None = None) -> str:
    """What goes into settings.json `apiKeyHelper`: our absolute path + ` helper`."""
    platform = platform or sys.platform
    exe = executable or _our_executable()
    if platform == "win32":
        return f'"{exe}" helper'
    return f"{shlex.quote(exe)} helper"


def _our_executable() -> str:
    if paths.managed_install():
        # Installed by the plugin's bootstrap: the path that survives updates, never the versioned
        # folder this process runs from (an update removes it) nor the plugin's own folders.
        return paths.stable_program()
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.startswith("claude-pool") and argv0.exists():
        return str(argv0.resolve())
    found = shutil.which("claude-pool")
    if found:
        return str(Path(found).resolve())
    bindir = Path(sys.executable).parent / "claude-pool"
    return str(bindir)


def is_our_helper(command: str | None, ours: str) -> bool:
    return paths.is_our_helper(command, ours)


def call_timeout(configured: float) -> float:
    """The HTTP timeout, cut to what is left of a hook's time budget (`CLAUDE_POOL_DEADLINE`,
    epoch seconds, set by the session-start hook)."""
    import os
    import time

    try:
        deadline = float(os.environ.get("CLAUDE_POOL_DEADLINE", ""))
    except ValueError:
        return configured
    return max(0.05, min(configured, deadline - time.time()))


def lock_wait() -> dict[str, float]:
    """How long a run waits for the pool lock (as `hold`'s keyword): the store's own default, or
    what is left of a hook's time budget (`CLAUDE_POOL_DEADLINE`): the session-start hook must
    not wait a minute behind a run stuck on a slow server."""
    import os
    import time

    try:
        deadline = float(os.environ.get("CLAUDE_POOL_DEADLINE", ""))
    except ValueError:
        return {}
    return {"timeout": max(0.0, deadline - time.time())}


@dataclass
class Runtime:
    """What one run works on, in memory: the pool being changed, Claude Code's blob as read, a key
    being added, and the run's config and trigger. Everything outside the run is reached through
    the world (providers/world.py), built beside it by `build`."""

    config: Config
    trigger: str
    helper: str
    pool: Pool = field(default_factory=Pool)
    store_raw: str | None = None
    new_secrets: dict[str, str] = field(default_factory=dict)   # key id -> key being added
    usage_dirty: bool = False                                   # readings to save with the run
    save_lock: threading.Lock = field(default_factory=threading.Lock)
    #: accounts renamed in this run, old id -> new id: the pool's save carries their history of
    #: readings over to the new name (providers/history.py `record`)
    renamed: dict[str, str] = field(default_factory=dict)

    def remember_secrets(self) -> None:
        REDACTOR.add(*self.pool.secrets())
        from claude_pool.schema.credentials import blob_secrets

        REDACTOR.add(*blob_secrets(self.store_raw))
        REDACTOR.add(*self.new_secrets.values())

    def save_pool(self, pools: PoolStore) -> None:
        """Save the in-memory pool now (also from the harvest's threads)."""
        with self.save_lock:
            if self.renamed:
                pools.write(self.pool, renamed=dict(self.renamed))
            else:
                pools.write(self.pool)


def build(trigger: str, config: Config | None = None) -> tuple[World, Runtime]:
    """This machine's world and a fresh run, once per run."""
    config = config or load_config()
    try:
        world = real_world(config, timeout=call_timeout)
    except ProviderError as exc:
        raise UserError(str(exc)) from None
    return world, Runtime(config=config, trigger=trigger, helper=helper_command())
