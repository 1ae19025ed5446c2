"""Finding and ending the processes a test started, by a marker in their environment (Linux /proc).

Detached reconciles and wake sleepers outlive the command that started them, so a test finds them
by `HOME=<its sandbox>` and ends what is left, bounded, at teardown.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable


def alive(pid: int) -> bool:
    """Running (not a zombie, not dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def procs_with_env(entry: str) -> list[int]:
    """Pids of live processes whose environment holds exactly `entry` (e.g. HOME=/tmp/x)."""
    needle = os.fsencode(entry)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(int(name)):
            found.append(int(name))
    return found


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return []


def end_processes(entry: str, grace: float) -> None:
    """Let the processes carrying `entry` finish within `grace` s, then end them (bounded)."""
    deadline = time.monotonic() + grace
    while procs_with_env(entry) and time.monotonic() < deadline:
        time.sleep(0.1)
    for sig, pause in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.5)):
        left = procs_with_env(entry)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + pause
        while procs_with_env(entry) and time.monotonic() < end:
            time.sleep(0.05)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it is truthy (returned) or `timeout` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def find_claude() -> str | None:
    """The real Claude Code binary for the end-to-end tests: CLAUDE_POOL_TEST_CLAUDE, else what
    `./dev test` installed from npm into .cache/claude-code."""
    configured = os.environ.get("CLAUDE_POOL_TEST_CLAUDE")
    if configured:
        return configured
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           ".cache", "claude-code", "node_modules", ".bin", "claude")
    return default if os.path.exists(default) else None
