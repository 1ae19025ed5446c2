"""When each Claude Code session last sent a prompt: one empty file per session in the state
dir (`turns/<session id>`), its mtime the time of the prompt. Standard library only: the prompt
hook writes it on every prompt (one small file, no lock: each session writes its own), and the
stop-failure hook reads it to tell which account a refused request went out with (the account
held when the turn began, or one switched to since: reconciler/learn.py `senders`).
"""

from __future__ import annotations

import os
import re
import time

from . import paths

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
KEEP_SECONDS = 2 * 86400   # a turn record older than this is swept by the next prompt hook, now and then


def _path(session_id: object) -> str | None:
    if not isinstance(session_id, str) or not _SAFE.match(session_id):
        return None
    return os.path.join(paths.state_dir(), "turns", session_id)


def mark(session_id: object, now: float | None = None) -> None:
    """A prompt of this session is about to go out (never raises)."""
    path = _path(session_id)
    if path is None:
        return
    try:
        try:
            os.utime(path, (now, now) if now is not None else None)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            _sweep(os.path.dirname(path))
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            if now is not None:
                os.utime(path, (now, now))
    except OSError:
        return


def started(session_id: object) -> float | None:
    """When this session's current turn began (epoch seconds), if the prompt hook said so."""
    path = _path(session_id)
    try:
        return os.stat(path).st_mtime if path is not None else None
    except OSError:
        return None


def _sweep(folder: str) -> None:
    """Forget sessions that ended long ago (run when a new session's first prompt comes)."""
    cutoff = time.time() - KEEP_SECONDS
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    continue
    except OSError:
        return


def due(session_id: object, every: float, now: float | None = None) -> bool:
    """At most once per `every` seconds per session (a nudge marker beside the turn record):
    True, and the marker moved to now, when the last one is older."""
    path = _path(session_id)
    path = path + ".nudge" if path is not None else os.path.join(paths.state_dir(), "turns", "unknown.nudge")
    now = time.time() if now is None else now
    try:
        if now - os.stat(path).st_mtime < every:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        try:
            os.utime(path, (now, now))
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            os.utime(path, (now, now))
    except OSError:
        return False
    return True
