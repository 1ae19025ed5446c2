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


def _full(argv: list[str], trigger: str, env: dict[str, str] | None = None) -> int:
    os.environ["CLAUDE_POOL_TRIGGER"] = trigger
    os.environ.update(env or {})
    from claude_pool.reconciler import commands

    code = commands.main(argv)
    return 0 if code == 0 else 1


# Claude Code adopts a settings.json change only once the file has been stable for about 1 s
# (checked on Claude Code 2.1.197): a session-start that changed it waits this long, or the
# session's first request would still go out with the old credential.
SETTINGS_SETTLE = 1.5
# The session-start hook blocks the session's first request: whatever the network does, it is
# done within this many seconds (the settle wait above, after a change, comes on top).
SESSION_START_BUDGET = 2.0
EMPTY_POOL_BUDGET = 1.4
# The light path's own usage call may use this much of it; the rest is for the full engine.
LIGHT_CALL_SHARE = 1.3


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def session_start(payload: dict | None = None) -> int:
    """A live look at the active account before the session's first request; the full engine
    only when something needs to change (see reconciler/quicklook.py)."""
    from claude_pool.providers import paths

    from .model import ENV as MODEL_ENV, detect

    start = time.monotonic()
    trigger = "hook:session-start"
    model = detect(payload)
    env = {"CLAUDE_POOL_DEADLINE": repr(time.time() + SESSION_START_BUDGET)}
    if model:
        env[MODEL_ENV] = model
    if not _pool_is_empty(paths.pool_file()):
        from . import quicklook

        found = quicklook.look(model, start + LIGHT_CALL_SHARE)
        if found.verdict == "stay":
            return 0
        argv = ["reconcile", "--if-needed"]
        if found.verdict == "offline":
            env["CLAUDE_POOL_NO_NETWORK"] = "1"   # the API did not answer: decide on cached data
        elif not found.polled:
            argv.append("--live")                 # the look never reached the API: the engine's is live
        return _change(argv, trigger, env)
    # An empty pool: the login Claude Code holds starts it. With one account and no key there is
    # nothing to move to, so no reconcile follows (its profile call gets a shorter budget: the
    # interpreter still has the full engine to load).
    env["CLAUDE_POOL_DEADLINE"] = repr(time.time() + EMPTY_POOL_BUDGET)
    return _change(["import"], trigger, env)


def _change(argv: list[str], trigger: str, env: dict[str, str]) -> int:
    from claude_pool.providers import paths

    settings = os.path.realpath(paths.settings_file())
    before = _mtime(settings)
    code = _full(argv, trigger, env)
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
    """A request failed. `authentication_failed`: look again, now. `rate_limit`: the message says
    whether the account is at fault (a usage limit: block it until the reset it names, and
    move) or the server is limiting everyone (stay; the audit log says so)."""
    if payload.get("error") != "rate_limit":
        return _full(["reconcile", "--live"], "hook:stop-failure")
    from .model import detect

    os.environ["CLAUDE_POOL_TRIGGER"] = "hook:stop-failure"
    from claude_pool.reconciler import commands

    message = payload.get("last_assistant_message")
    code = commands.refused(message if isinstance(message, str) else "", detect(payload))
    return 0 if code == 0 else 1


def main(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing this hook does may reach the model's context
    try:
        payload = read_payload()
        if event == "session-start":
            return session_start(payload)
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
