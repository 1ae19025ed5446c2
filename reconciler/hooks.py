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
EVENTS = ("session-start", "prompt-submit", "stop-failure", "post-tool-use")


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
# The session-start hook blocks the session's first request: the engine's calls (and its wait for
# the pool lock) are cut at this many seconds (CLAUDE_POOL_DEADLINE), so the hook is done within
# 3 s whatever the network does; only a change to settings.json adds the settle
# wait above (Claude Code would otherwise send the first request with the old credential).
SESSION_START_BUDGET = 2.5
EMPTY_POOL_BUDGET = 1.4
# The light path's own usage call may use this much of it; the rest is for the full engine.
LIGHT_CALL_SHARE = 1.3


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def session_start(payload: dict | None = None, stdout: object = None) -> int:
    """A live look at the active account before the session's first request; the full engine
    only when something needs to change (see reconciler/quicklook.py)."""
    from claude_pool.providers import paths

    from .deadlines import session_notice
    from .model import ENV as MODEL_ENV, detect

    start = time.monotonic()
    session_notice(stream=stdout)  # logins ending within 3 days (once a day), the wrapper's: one systemMessage
    try:
        from claude_pool.providers import sidecars

        sidecars.note_claude_dir(time.time())   # which folder these sessions use (policy.bypass_notes)
    except OSError:
        pass
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
        # never cut: without it the session's first request goes out on the old credential
        time.sleep(SETTINGS_SETTLE)
    return code


def _pool_is_empty(path: object) -> bool:
    try:
        return not os.path.exists(path) or os.path.getsize(path) == 0  # type: ignore[arg-type]
    except OSError:
        return False


# The prompt hook waits at most this long (of its own time) for a move the pool already knows
# it needs: the prompt then goes out on the new credential instead of into a 429 (environment
# CLAUDE_POOL_WALL_BUDGET: seconds, at most 30, for a slow machine).
WALL_BUDGET = 1.0
# The statusline and PostToolUse start a reconcile at most this often per session (mid-turn moves).
NUDGE_EVERY = 10.0
# Facts under this are nowhere near a wall: the hooks decide so without importing the decision
# (a conservative gate over raw numbers: decision.NEAR, or the configured threshold if lower;
# tests/test_wall.py holds it equal to decision.NEAR).
_GATE_PCT = 85.0


def _near(numbers: object, gate: float) -> bool:
    """Any window's `pct` in this raw JSON (a usage reading, or the feed) is at `gate` or above."""
    if isinstance(numbers, dict):
        pct = numbers.get("pct")
        if isinstance(pct, (int, float)) and not isinstance(pct, bool) and pct >= gate:
            return True
        return any(_near(v, gate) for k, v in numbers.items() if isinstance(v, (dict, list)))
    if isinstance(numbers, list):
        return any(_near(v, gate) for v in numbers)
    return False


def _threshold() -> float | None:
    """config.toml's threshold (a fraction), read only when the file exists; None: the default."""
    from claude_pool.providers import paths

    if not os.path.exists(paths.config_file()):
        return None
    from .lightconfig import read_config

    threshold = read_config().get("threshold")
    return float(threshold) if isinstance(threshold, (int, float)) else None


def _gate(threshold: float | None = None) -> float:
    """_GATE_PCT, or the configured threshold when it is lower."""
    return min(_GATE_PCT, threshold * 100) if threshold is not None else _GATE_PCT


def known_wall(now: float | None = None, *, near: bool = False) -> bool:
    """The pool's own facts (status.json's reading of the held account, its block, the
    statusline's feed) say the held account cannot take the next request (reconciler/decision.py
    `cannot_serve`); with `near`, that it is close enough to a limit to look again."""
    from claude_pool.providers import sidecars

    data = sidecars.read_status()   # as it is: a summary to rebuild (another tool wrote the pool) is "nothing known"
    if not data or data.get("mode") != "account" or not isinstance(data.get("held"), dict):
        return False
    held = data["held"]
    if held.get("id") != data.get("name"):
        return False
    feed = sidecars.read_feed()
    if not isinstance(feed, dict) or feed.get("name") != held.get("id") or feed.get("since") != data.get("since"):
        feed = None
    configured = _threshold()
    gate = _gate(configured)
    own = held.get("threshold")   # the account's own threshold (`claude-pool threshold`) lowers the gate too
    if isinstance(own, (int, float)) and not isinstance(own, bool) and 0 < own <= 1:
        gate = min(gate, own * 100)
    if not (held.get("block") or held.get("paused") or _near(held.get("usage"), gate)
            or (feed is not None and _near(feed, gate))):
        return False    # nothing near a wall: the common case, decided without the decision module
    from datetime import datetime, timezone

    from . import decision

    when = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    acc = decision.light_account(held)
    feed_pct = None
    if feed is not None:
        pcts = [w.get("pct") for name in ("five_hour", "seven_day") for w in [feed.get(name)]
                if isinstance(w, dict) and isinstance(w.get("pct"), (int, float))
                and not (isinstance(w.get("resets_at"), (int, float)) and w["resets_at"] <= when.timestamp())]
        feed_pct = max(pcts) if pcts else None
    if near:
        return decision.near_limit(acc, None, when) or (feed_pct is not None and feed_pct >= decision.NEAR) \
            or decision.live_block(acc, when) is not None or decision.paused(acc, when)
    threshold = configured if configured is not None else decision.DEFAULT_THRESHOLD
    return decision.cannot_serve(acc, when, None, threshold, feed_pct)


def prompt_submit(payload: dict | None = None) -> int:
    """Start a detached `reconcile --if-needed` and return at once; when the pool already knows
    the held account cannot take this prompt, wait (up to WALL_BUDGET) for the move first."""
    from claude_pool.providers import turns

    turns.mark((payload or {}).get("session_id"))   # the stop-failure hook asks when this turn began
    start = time.monotonic()
    try:
        wall = known_wall()
    except Exception:  # noqa: BLE001 - a check that fails is "nothing known": detach as always
        wall = False
    pid = spawn.detached(spawn.self_argv("reconcile", "--if-needed"), trigger="hook:prompt-submit")
    if wall:
        try:
            budget = float(os.environ.get("CLAUDE_POOL_WALL_BUDGET", WALL_BUDGET))
        except ValueError:
            budget = WALL_BUDGET
        _wait(pid, start + min(max(budget, 0.0), 30.0))
    return 0


def _wait(pid: int, deadline: float) -> None:
    """Wait for our detached child until the deadline; past it, it goes on alone."""
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError, AttributeError):
            return
        if done:
            return
        time.sleep(0.02)


def nudge(session_id: object, trigger: str, *, near_only: bool = True) -> bool:
    """Mid-turn, start a detached `reconcile --if-needed`, at most once per NUDGE_EVERY per
    session: from the statusline (fresh rate limits after each response) only near a limit;
    from PostToolUse (`near_only=False`: a long agentic turn, no statusline needed) whatever the
    cached reading says, the reconcile's own TTL deciding whether to read. The policy decides
    whether to move (a move costs the session its prompt cache); this only asks."""
    from claude_pool.providers import turns

    if near_only and not known_wall(near=True):
        return False
    if not turns.due(session_id, NUDGE_EVERY):
        return False
    spawn.detached(spawn.self_argv("reconcile", "--if-needed"), trigger=trigger)
    return True


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
    code = commands.refused(message if isinstance(message, str) else "", detect(payload), payload.get("session_id"))
    return 0 if code == 0 else 1


def main(argv: list[str]) -> int:
    code = _event(argv)   # 0 or 1, never 2; stdout is back in place
    commands = sys.modules.get("claude_pool.reconciler.commands")
    # the full engine ran here (a change at session start, a failed request): end as the commands
    # do (commands.leave: streams flushed, no slow teardown; only when this process is the hook alone)
    return commands.leave(code) if commands is not None else code


def _event(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing this hook does may reach the model's context
    try:
        payload = read_payload()
        if event == "session-start":
            return session_start(payload, real_stdout)
        if event == "prompt-submit":
            return prompt_submit(payload)
        if event == "stop-failure":
            return stop_failure(payload)
        if event == "post-tool-use":
            nudge(payload.get("session_id"), "hook:post-tool-use", near_only=False)
            return 0
        sys.stderr.write(f"claude-pool hook: unknown event {event!r} (expected one of {', '.join(EVENTS)})\n")
        return 1
    except BaseException as exc:  # noqa: BLE001 - a hook must never fail Claude Code's prompt
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        text = re.sub(r"sk-ant-\S+", "[redacted]", str(exc))[:300]
        from .cli import error_line   # an OSError: the file and the fix; HOME unset: its own line
        sys.stderr.write(error_line(f"hook {event}", exc, lambda s: re.sub(r"sk-ant-\S+", "[redacted]", s)[:300])
                         if isinstance(exc, OSError) else f"claude-pool hook {event}: {type(exc).__name__}: {text}\n")
        return 1
    finally:
        sys.stdout = real_stdout
