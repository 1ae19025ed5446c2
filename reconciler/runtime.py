"""Everything one run works with: the providers, the config, the clock, the in-memory pool.

Secrets live here (the decrypted pool, the store's raw blob, a key being added) and nowhere
else: observed state, plans and logs carry ids and fingerprints only.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from claude_pool.providers import paths
from claude_pool.providers.anthropic import AnthropicApi, EndpointError, ApiUrls
from claude_pool.providers.base import Provider, ProviderError
from claude_pool.providers.credstore import default_store
from claude_pool.providers.poolfile import PoolFile
from claude_pool.providers.settings import SettingsFile
from claude_pool.schema.config import Config
from claude_pool.schema.pool import Pool

from .audit import REDACTOR
from .errors import UserError


def load_config(path: Path | None = None) -> Config:
    path = path or Path(paths.config_file())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Config.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise UserError(f"{path}: {where}: {first.get('msg', 'invalid')}") from None


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
    if not command:
        return False
    if command.strip() == ours:
        return True
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return len(words) >= 2 and words[-1] == "helper" and Path(words[-2].strip('"')).name.startswith("claude-pool")


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


@dataclass
class Runtime:
    config: Config
    pool_file: PoolFile
    store: Provider[str | None, str]
    settings: SettingsFile
    trigger: str
    helper: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    # in-memory state, filled by observe
    pool: Pool = field(default_factory=Pool)
    store_raw: str | None = None
    new_secrets: dict[str, str] = field(default_factory=dict)   # key id -> key being added
    usage_dirty: bool = False
    save_lock: threading.Lock = field(default_factory=threading.Lock)
    api_lock: threading.Lock = field(default_factory=threading.Lock)
    _api: AnthropicApi | None = None

    @classmethod
    def default(cls, trigger: str, config: Config | None = None) -> "Runtime":
        config = config or load_config()
        try:
            store = default_store(config.store.credential_store)
        except ProviderError as exc:
            raise UserError(str(exc)) from None
        return cls(
            config=config,
            pool_file=PoolFile(),
            store=store,
            settings=SettingsFile(),
            trigger=trigger,
            helper=helper_command(),
        )

    def api(self) -> AnthropicApi:
        """The HTTP client, created once (thread-safe) with one connection per account polled at once."""
        with self.api_lock:
            return self._make_api()

    def _make_api(self) -> AnthropicApi:
        if self._api is None:
            try:
                endpoints = ApiUrls.from_config(self.config)
            except EndpointError as exc:
                raise UserError(f"endpoint: {exc}") from None
            size = max(1, min(len(self.pool.accounts), self.config.http.max_connections))
            self._api = AnthropicApi(endpoints, timeout=call_timeout(self.config.http.timeout_seconds),
                                     max_connections=size)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def remember_secrets(self) -> None:
        REDACTOR.add(*self.pool.secrets())
        from claude_pool.schema.credentials import blob_secrets

        REDACTOR.add(*blob_secrets(self.store_raw))
        REDACTOR.add(*self.new_secrets.values())

    def save_pool(self) -> None:
        """Save the in-memory pool now (rotated tokens and dead marks are saved the moment they
        are known; docs/ARCHITECTURE.md §7)."""
        with self.save_lock:
            self.pool_file.write(self.pool)
