"""The pool lock, for every run (`poolfile.PoolFile.hold`) and the hot paths alike: stdlib only.

It is `fcntl.flock(LOCK_EX)` on `pool.json.lock` (on Windows `msvcrt.locking` of its first byte),
leaving the file in place: the very lock filelock's FileLock takes on the same file, which earlier
claude-pool versions used, so a run of either excludes the other; the test suite proves it against
filelock itself.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


class LockTimeout(Exception):
    pass


class HotLock:
    def __init__(self, path: Path, wait: float = 10.0) -> None:
        self.path = path
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> "HotLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        delay = 0.005
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockTimeout(f"the pool lock {self.path} stayed busy for {self.wait:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self.fd = fd
        return self

    def acquire(self) -> "HotLock":
        """`__enter__` by name (LockTimeout after `wait` seconds); `release` gives it back."""
        return self.__enter__()

    def release(self) -> None:
        self.__exit__()

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            _unlock(self.fd)
            os.close(self.fd)
            self.fd = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
