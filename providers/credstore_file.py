"""Claude Code's credential store as a file: `<Claude Code dir>/.credentials.json` (Linux,
WSL, Windows). Mode 0600, replaced atomically, written under Claude Code's refresh lock."""

from __future__ import annotations

import contextlib
from pathlib import Path

from . import claude_lock, paths
from .base import ProviderError
from .fsutil import atomic_write


class FileCredentialStore:
    name = "credentials"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(paths.credentials_file())

    @property
    def lock_path(self) -> Path:
        return self.path.parent / ".oauth_refresh.lock"

    def hold(self) -> "contextlib.AbstractContextManager[None]":
        """Claude Code's refresh lock: held around a read-refresh-write of its login."""
        return claude_lock.hold(self.lock_path)

    def location(self) -> str:
        return str(self.path)

    def observe(self) -> str | None:
        try:
            # not UTF-8: as unusable as not JSON (and treated alike), not a reason to fail every run
            return self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProviderError(f"cannot read {self.path}: {type(exc).__name__}") from None

    def write(self, value: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with claude_lock.hold(self.lock_path):
                atomic_write(self.path, value.encode("utf-8"), mode=0o600)
        except claude_lock.ClaudeLockTimeout as exc:
            raise ProviderError(str(exc)) from None
        except OSError as exc:
            raise ProviderError(f"cannot write {self.path}: {exc.strerror or type(exc).__name__}") from None
