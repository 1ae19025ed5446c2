"""Claude Code's own refresh lock: `<Claude Code dir>/.oauth_refresh.lock`, a directory.

Claude Code (through proper-lockfile) takes it by creating the directory, treats it as stale when
its mtime is over 10 s old, and re-reads the credential store inside it. Taking it the same way
means a Claude Code refresh and ours never interleave. Re-entrant within one process.

While held, a heartbeat thread touches the directory every quarter of the stale age, so a slow
refresh plus a slow `security` (each may take seconds) never lets Claude Code take it over.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

STALE_SECONDS = 10.0
DEFAULT_WAIT = 12.0


def heartbeat_interval() -> float:
    """How often a held lock is touched: well inside the stale age."""
    return STALE_SECONDS / 4

_held: dict[tuple[str, int], int] = {}
_guard = threading.Lock()


class ClaudeLockTimeout(Exception):
    pass


class ClaudeLockUnavailable(ClaudeLockTimeout):
    """The lock cannot be taken at all (Claude Code's folder is not writable, the disk is full):
    treated like a busy lock (the login Claude Code holds is not refreshed or written this run),
    so a command that only reads goes on."""


def _unavailable(path: Path, exc: OSError) -> ClaudeLockUnavailable:
    import errno

    from .fsutil import explain

    folder = os.path.dirname(os.fspath(path))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"{exc.strerror}; make {folder} writable by you (Claude Code needs that too)"
    else:
        why = explain(exc)
    return ClaudeLockUnavailable(f"cannot take Claude Code's refresh lock {path}: {why}; until then the login "
                                 "Claude Code holds is neither refreshed nor replaced")


def _try_take(path: Path) -> bool:
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: try again at once
        if age > STALE_SECONDS:
            try:
                os.rmdir(path)
            except OSError:
                pass
        return False
    except OSError as exc:  # not writable, full, read-only: no amount of waiting helps
        raise _unavailable(path, exc) from None


@contextlib.contextmanager
def hold(path: Path, wait: float = DEFAULT_WAIT) -> Iterator[None]:
    """Take the lock directory (re-entrant per thread; other threads and processes wait)."""
    key = (str(path), threading.get_ident())
    with _guard:
        depth = _held.get(key, 0)
        if depth:
            _held[key] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unavailable(path, exc) from None
    deadline = time.monotonic() + wait
    while not _try_take(path):
        if time.monotonic() >= deadline:
            raise ClaudeLockTimeout(f"Claude Code's refresh lock {path} stayed busy for {wait:.0f}s")
        time.sleep(0.05)
    with _guard:
        _held[key] = 1
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop, heartbeat_interval()),
                            name="claude-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with _guard:
            del _held[key]
        try:
            os.rmdir(path)
        except OSError:
            pass


def _heartbeat(path: Path, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        touch(path)


def touch(path: Path) -> None:
    """Keep a held lock fresh during a slow step."""
    with contextlib.suppress(OSError):
        os.utime(path)
