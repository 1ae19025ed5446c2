"""`claude-pool hook EVENT`: the plugin's entry (SessionStart, UserPromptSubmit, StopFailure).

Claude Code feeds the hook's stdout of SessionStart and UserPromptSubmit to the model, and exit
code 2 from UserPromptSubmit erases the user's prompt. So, whatever happens: nothing on stdout,
exit 0 or 1, never 2, and a short reason on stderr. The payload on stdin is read (bounded) and
tolerated whatever it is; it is never trusted for state (level-triggered: a hook only says
"look again").

`prompt-submit` runs on every prompt: it starts a detached `reconcile --if-needed` and returns at
once, importing nothing heavy.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from claude_pool.providers import spawn

MAX_STDIN = 1 << 20
EVENTS = ("session-start", "prompt-submit", "stop-failure")


def read_payload(stream: object = None, limit: int = MAX_STDIN, wait: float = 0.5) -> dict:
    """The hook's JSON, or {} for anything else (a TTY, nothing, garbage, too much)."""
    stream = stream or sys.stdin
    try:
        if stream is None or stream.isatty():  # type: ignore[attr-defined]
            return {}
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return {}
    chunks: list[bytes] = []
    size = 0
    try:
        import select

        while size <= limit:
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (OSError, ValueError):
        return {}
    if size > limit:
        return {}
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        return {}
    return data if isinstance(data, dict) else {}


def _full(argv: list[str], trigger: str) -> int:
    os.environ["CLAUDE_POOL_TRIGGER"] = trigger
    from claude_pool.reconciler import commands

    code = commands.main(argv)
    return 0 if code == 0 else 1


# Claude Code adopts a settings.json change only once the file has been stable for about 1 s
# (checked on Claude Code 2.1.197): a session-start that changed it waits this long, or the
# session's first request would still go out with the old credential.
SETTINGS_SETTLE = 1.5


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def session_start() -> int:
    from claude_pool.providers import paths

    trigger = "hook:session-start"
    settings = os.path.realpath(paths.settings_file())
    before = _mtime(settings)
    code = 0
    if _pool_is_empty(paths.pool_file()):
        code = _full(["import"], trigger)  # the login Claude Code holds starts the pool
    # no --threshold: `reconcile` takes config.toml's [policy] threshold (one default, schema/config.py)
    code = max(code, _full(["reconcile", "--if-needed"], trigger))
    if _mtime(settings) != before:
        time.sleep(SETTINGS_SETTLE)
    return code


def _pool_is_empty(path: object) -> bool:
    try:
        return not os.path.exists(path) or os.path.getsize(path) == 0  # type: ignore[arg-type]
    except OSError:
        return False


def prompt_submit() -> int:
    spawn.detached(spawn.self_argv("reconcile", "--if-needed"), trigger="hook:prompt-submit")
    return 0


def stop_failure(payload: dict) -> int:
    # The payload's "error" (rate_limit, authentication_failed) only says "look again, now".
    return _full(["reconcile", "--live"], "hook:stop-failure")


def main(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing this hook does may reach the model's context
    try:
        payload = read_payload()
        if event == "session-start":
            return session_start()
        if event == "prompt-submit":
            return prompt_submit()
        if event == "stop-failure":
            return stop_failure(payload)
        sys.stderr.write(f"claude-pool hook: unknown event {event!r} (expected one of {', '.join(EVENTS)})\n")
        return 1
    except BaseException as exc:  # noqa: BLE001 - a hook must never fail Claude Code's prompt
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        text = re.sub(r"sk-ant-\S+", "[redacted]", str(exc))[:300]
        sys.stderr.write(f"claude-pool hook {event}: {type(exc).__name__}: {text}\n")
        return 1
    finally:
        sys.stdout = real_stdout
