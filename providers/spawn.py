"""Start a fully detached claude-pool process: it outlives the hook or helper that started it,
holds none of its pipes (Claude Code would wait on them), and never holds up Claude Code."""

from __future__ import annotations

import os
import sys

# Windows: no console, its own process group, detached from ours.
WINDOWS_DETACH_FLAGS = 0x00000008 | 0x00000200 | 0x08000000  # DETACHED_PROCESS | NEW_PROCESS_GROUP | NO_WINDOW


def self_argv(*args: str) -> list[str]:
    """How to run this very claude-pool again (same interpreter, same install)."""
    return [sys.executable, "-m", "claude_pool", *args]


def lasting_argv(*args: str) -> list[str]:
    """How to run claude-pool later (a sleeper waking hours from now): the bootstrap's stable
    program when this install is the bootstrap's (an update may remove this very folder meanwhile),
    else this interpreter."""
    from . import paths

    if paths.managed_install():
        return [paths.stable_program(), *args]
    return self_argv(*args)


def detached(argv: list[str], *, trigger: str, platform: str | None = None) -> int:
    """Spawn `argv` in a new session with stdio on the null device; return its pid."""
    env = dict(os.environ)
    env["CLAUDE_POOL_TRIGGER"] = trigger
    if (platform or sys.platform) == "win32":
        import subprocess

        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, creationflags=WINDOWS_DETACH_FLAGS, close_fds=True)
        return proc.pid
    null = os.devnull
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0),
    ]
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    except NotImplementedError:  # a libc without POSIX_SPAWN_SETSID
        import subprocess

        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True).pid
