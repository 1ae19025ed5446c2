"""Claude Code's credential store as a file: `<Claude Code dir>/.credentials.json` (Linux,
WSL, Windows). Mode 0600, replaced atomically, written under Claude Code's refresh lock.

A symlinked file is written through to its target; a file the user made read-only or that is not
theirs is not replaced (one line: make it writable, or /login in Claude Code)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from . import claude_lock, paths
from .base import ProviderError
from .fsutil import WriteRefused, atomic_write, check_respected, describe, read_regular


class FileCredentialStore:
    name = "credentials"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(paths.credentials_file())

    @property
    def lock_path(self) -> Path:
        return self.path.parent / ".oauth_refresh.lock"

    def hold(self) -> "contextlib.AbstractContextManager[None]":
        """Claude Code's refresh lock: held around a read-refresh-write of its login. A file that
        will not be replaced (read-only, not the user's) fails here, before a refresh whose
        rotated token could not be written back."""
        try:
            check_respected(self.path)
        except WriteRefused as exc:
            raise ProviderError(self._refused(exc)) from None
        except OSError:
            pass   # the write says why, if it comes to that
        return claude_lock.hold(self.lock_path)

    def _refused(self, exc: WriteRefused) -> str:
        return (f"cannot write Claude Code's credentials file {exc.where()}: it {exc.strerror}, so claude-pool "
                "left it as it is; make it writable by you, or /login in Claude Code as the account you want")

    def location(self) -> str:
        return str(self.path)

    def observe(self) -> str | None:
        try:
            raw = read_regular(self.path)   # a FIFO in its place: one line, never a hang
        except OSError as exc:
            raise ProviderError(describe(exc, "read", self.path)) from None
        # not UTF-8: as unusable as not JSON (and treated alike), not a reason to fail every run
        return None if raw is None else raw.decode("utf-8", errors="replace")

    def write(self, value: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with claude_lock.hold(self.lock_path):
                atomic_write(self.path, value.encode("utf-8"), mode=0o600, respect=True)
        except claude_lock.ClaudeLockTimeout as exc:
            raise ProviderError(str(exc)) from None
        except WriteRefused as exc:
            raise ProviderError(self._refused(exc)) from None
        except OSError as exc:
            raise ProviderError(describe(exc, "write", self.path)) from None
