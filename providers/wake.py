"""The recovery wake (docs/ARCHITECTURE.md §6 rule 7): one detached one-shot reconcile at the earliest known reset.

A marker file beside the pool (`wake.json`: the time and the sleeper's pid) deduplicates: while a
live sleeper is due no later than the time wanted, no other is started; one due later is replaced
(killed), and a sleeper that wakes to find the marker is no longer its own exits quietly.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from . import paths, spawn
from .fsutil import atomic_write
from .sessions import pid_alive


def marker_path() -> Path:
    return Path(paths.wake_file())


def read_marker(path: Path | None = None) -> dict | None:
    try:
        data = json.loads((path or marker_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def schedule(at: float, *, path: Path | None = None) -> str:
    """Make sure one sleeper is due at `at` (epoch seconds). Returns "scheduled" or "already"."""
    path = path or marker_path()
    current = read_marker(path)
    if current is not None:
        pid = int(current.get("pid") or 0)
        if pid_alive(pid):
            # A live sleeper due no later than `at` covers it: when it wakes, that reconcile
            # schedules again if the pool is still on API keys.
            if float(current.get("at") or 0) <= at + 1:
                return "already"
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    pid = spawn.detached(spawn.self_argv("wake", f"{at:.3f}"), trigger="wake")
    atomic_write(path, json.dumps({"at": at, "pid": pid}).encode(), mode=0o600)
    return "scheduled"


class ProcessWake:
    """The wake scheduler of a real run (providers/world.py `Wake`): a detached sleeper process.
    `enabled=False` (CLAUDE_POOL_WAKE=0): nothing is scheduled and `schedule` answers None."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def schedule(self, at: float) -> str | None:
        return schedule(at) if self.enabled else None


def sleep_then_reconcile(at: float, *, path: Path | None = None) -> int:
    """The sleeper's body: wait, check the marker is still ours, then become `reconcile`."""
    path = path or marker_path()
    argv = spawn.lasting_argv("reconcile")
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 60))
        if not os.path.exists(argv[0]):
            return 0  # claude-pool was uninstalled meanwhile: nothing left to wake
    marker = read_marker(path)
    if marker is None or int(marker.get("pid") or 0) != os.getpid():
        return 0
    try:
        path.unlink()
    except OSError:
        pass
    if not os.path.exists(argv[0]):
        return 0
    os.environ["CLAUDE_POOL_TRIGGER"] = "wake"
    os.execv(argv[0], argv)
    return 0  # not reached
