"""Running interactive Claude Code sessions: `<Claude Code dir>/sessions/<pid>.json` whose pid is
alive. They pick up a new credential at their next request (Claude Code re-reads the store and
settings.json before each one)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import paths


def pid_alive(pid: int, platform: str | None = None) -> bool:
    if pid <= 0:
        return False
    if (platform or sys.platform) == "win32":  # pragma: no cover - Windows only
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_sessions(directory: Path | None = None) -> list[int]:
    directory = directory or Path(paths.sessions_dir())
    found: list[int] = []
    try:
        entries = list(directory.glob("*.json"))
    except OSError:
        return found
    for entry in entries:
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
            pid = int(data.get("pid") or entry.stem)
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            continue
        if pid_alive(pid):
            found.append(pid)
    return sorted(found)


class ClaudeSessions:
    """The running sessions, as the world a run sees them (providers/world.py `Sessions`)."""

    def running(self) -> list[int]:
        return running_sessions()

    def last_folder(self) -> dict | None:
        from .sidecars import claude_dir_seen

        return claude_dir_seen()
