"""Hardening: hostile input from every side, through the installed command.

1. hook payloads (and the statusline's) that are empty, not JSON, the wrong JSON, not UTF-8, noise;
   also with a corrupt pool and a settings.json that is not JSON: never exit 2, never stdout;
2. a usage API that answers HTML, `{}`, nulls, garbage, slowly, 429, 500, or bodies built to
   crash a parser: nothing changes, no traceback, and the accounts that answer well are used;
3. hostile ids, keys and credential files: one clear line, exit 1, nothing changed;
4. no secret in the argv (or environment) of any process claude-pool starts;
5. a refresh token revoked elsewhere: "needs re-login" on the first invalid_grant, never retried,
   the others go on, and a fresh login clears it.

Everything runs against the fake Anthropic API on 127.0.0.1 in a temp HOME (tests/conftest.py).
Every process claude-pool leaves behind (detached reconciles, wake sleepers) is found by the HOME
in its environment and ended at teardown.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import fp
from fakeapi import _Handler
from claude_pool.providers import crypto
from proctools import end_processes, procs_with_env

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
KEY1 = "sk-ant-api03-HARDENKEY1-" + "a1" * 20
KEY2 = "sk-ant-api03-HARDENKEY2-" + "b2" * 20


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def run_bytes(sandbox, *args: str, input: bytes = b"", env: dict[str, str] | None = None,  # type: ignore[no-untyped-def]
              timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """Like sandbox.run, with raw bytes on stdin (invalid UTF-8, NULs, noise)."""
    proc = subprocess.run([sandbox.exe, *args], env=dict(sandbox.env, **(env or {})), input=input,
                          capture_output=True, timeout=timeout, cwd=sandbox.home)
    sandbox.transcript.append((tuple(args), proc.stdout.decode(errors="replace"),
                               proc.stderr.decode(errors="replace")))
    return proc


def sleepers(home: Path) -> list[int]:
    """Live wake sleepers (`python -m claude_pool wake EPOCH`) of this HOME."""
    found = []
    for pid in procs_with_env(f"HOME={home}"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"claude_pool" in argv and b"wake" in argv:
            found.append(pid)
    return found


@pytest.fixture
def reaper(sandbox):  # type: ignore[no-untyped-def]
    """Ends every process left running with this sandbox's HOME (before the fake stops)."""
    yield sandbox
    for pid in sleepers(sandbox.home):        # a sleeper waits minutes: no grace for it
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    end_processes(f"HOME={sandbox.home}", grace=8.0)
    assert procs_with_env(f"HOME={sandbox.home}") == []




def minted(fake) -> set[str]:  # type: ignore[no-untyped-def]
    """Every token the fake ever issued, current or rotated out."""
    found: set[str] = set()
    for acc in fake.accounts():
        found |= {acc.access_token, acc.refresh_token}
        found |= acc.previous_access_tokens | acc.previous_refresh_tokens
    return {s for s in found if s}


def ago(seconds: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cache(sandbox, account_id: str, five: float, seven: float = 0, at: str | None = None,  # type: ignore[no-untyped-def]
          five_reset: str | None = None) -> None:
    """Give a pool account a cached usage reading (as an earlier poll would have left it)."""
    pool = sandbox.pool()
    for acc in pool["accounts"]:
        if acc["id"] == account_id:
            acc["usage"] = {"five_hour": {"pct": five, "resets_at": five_reset},
                            "seven_day": {"pct": seven, "resets_at": None}}
            acc["usage_at"] = at or ago(1)
    sandbox.write_pool(pool)


def usage_cache(sandbox) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Each account's cached reading, by value (a run that saves the pool, say to count a usage
    call, writes the same reading in its own JSON form)."""
    from claude_pool.schema.pool import Usage
    from claude_pool.schema.timefmt import parse_time

    return {a["id"]: (Usage.model_validate(a.get("usage") or {}).model_dump(mode="json"), parse_time(a.get("usage_at")))
            for a in sandbox.pool()["accounts"]}


def changes(before: dict, after: dict) -> list[str]:
    """What differs between two sandbox.state() (or snapshot()) results, by name only, so an
    assertion message never shows a token."""
    out = []
    for part in sorted(set(before) | set(after)):
        a, b = before.get(part), after.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key == "accounts":
                    ids = sorted({x[0] for x in (a.get(key) or []) + (b.get(key) or [])})
                    old = {x[0]: x for x in a.get(key) or []}
                    new = {x[0]: x for x in b.get(key) or []}
                    out += [f"{part}.account {i}" for i in ids if old.get(i) != new.get(i)]
                elif a.get(key) != b.get(key):
                    out.append(f"{part}.{key}")
        elif a != b:
            out.append(part)
    return out


def no_traceback(proc: subprocess.CompletedProcess) -> bool:  # type: ignore[type-arg]
    out = proc.stdout + proc.stderr
    return (b"Traceback" not in out) if isinstance(out, bytes) else ("Traceback" not in out)


# ---------------------------------------------------------------------------------------------
# 1. hostile hook input
# ---------------------------------------------------------------------------------------------

_rng = random.Random(20240601)
NOISE_300K = _rng.randbytes(300 * 1024)
NOISE_2M = _rng.randbytes(2 * 1024 * 1024)            # past the hooks' 1 MB read limit
DEEP = b"[" * 100_000 + b"]" * 100_000                # valid JSON, nested past the recursion limit

HOOK_STDINS: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b" \n\t\r\n",
    "not JSON": b"not json at all {{{",
    "truncated JSON": b'{"session_id": "5d1f8a0c", "hook_event_name": "UserPromptSub',
    "JSON list": b'["session-start", 1, null, {"error": "rate_limit"}]',
    "JSON number": b"42",
    "JSON string": b'"prompt-submit"',
    "JSON null": b"null",
    "fields of the wrong type": json.dumps({
        "session_id": [], "hook_event_name": 7, "error": {"type": "rate_limit"}, "prompt": None, "cwd": 5,
        "rate_limits": "full", "transcript_path": {"a": 1}}).encode(),
    "statusline rate_limits of the wrong type": json.dumps({"rate_limits": {
        "five_hour": {"used_percentage": "42", "resets_at": "soon"},
        "seven_day": [1, 2, 3]}}).encode(),
    "NaN and infinities": b'{"error": NaN, "rate_limits": {"five_hour": {"used_percentage": Infinity, '
                          b'"resets_at": -Infinity}, "seven_day": {"used_percentage": 5, "resets_at": NaN}}}',
    "invalid UTF-8": b'{"prompt": "\xff\xfe\xc3\x28 caf\xe9", "error": "rate_limit"}',
    "NUL bytes": b'{"prompt": "a\x00b"}\x00\x00\x00',
    "deeply nested JSON": DEEP,
    "300 KB of random noise": NOISE_300K,
    "2 MB of random noise": NOISE_2M,
}
HOOK_EVENTS = ("session-start", "prompt-submit", "stop-failure", "post-tool-use")


def valid_payload(event: str, home: Path) -> bytes:
    base = {"session_id": "5d1f8a0c-0000-4000-8000-000000000002",
            "transcript_path": str(home / ".claude" / "projects" / "x" / "t.jsonl"), "cwd": str(home)}
    if event == "session-start":
        base.update(hook_event_name="SessionStart", source="startup", model="claude-sonnet-4-5")
    elif event == "prompt-submit":
        base.update(hook_event_name="UserPromptSubmit", prompt="refactor the parser please")
    elif event == "stop-failure":
        base.update(hook_event_name="StopFailure", error="rate_limit",
                    last_assistant_message="API Error: 429 rate_limit_error")
    else:
        base.update(model={"id": "claude-sonnet-4-5"}, version="2.1.197")
    return json.dumps(base).encode()


def _run_all(sandbox, cases: list[tuple[tuple[str, ...], bytes]]) -> list[subprocess.CompletedProcess[bytes]]:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda c: run_bytes(sandbox, *c[0], input=c[1], timeout=60), cases))


def check_hook(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    """The hook contract: exit 0 or 1 (never 2), nothing on stdout, no traceback."""
    assert proc.returncode != 2, f"{what}: exit 2 (would erase the user's prompt)"
    assert proc.returncode in (0, 1), f"{what}: exit {proc.returncode}"
    assert proc.stdout == b"", f"{what}: printed on stdout (the model would read it)"
    assert no_traceback(proc), f"{what}: traceback on stderr"
    lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
    if proc.returncode == 1:
        assert lines, f"{what}: failed without a word"


def check_statusline(proc: subprocess.CompletedProcess[bytes], what: str) -> str:
    """Not a hook: it prints a badge. But always exit 0, one line, no traceback."""
    assert proc.returncode == 0, f"{what}: statusline exited {proc.returncode}"
    assert no_traceback(proc), f"{what}: traceback"
    out = proc.stdout.decode()
    assert out.count("\n") == 1 and out.startswith("pool:"), f"{what}: badge {out!r}"
    return out


def _healthy_pool(sandbox, fake) -> None:  # type: ignore[no-untyped-def]
    """One account and a key (one account keeps the ~70 live runs below cheap), converged."""
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE, current="alice", keys={"k1": KEY1})
    cache(sandbox, "alice", 10)
    sandbox.ok("reconcile")                     # converged: nothing pending
    sandbox.ok("status")                        # writes status.json (a seeded, Go-written pool has none)
    assert (sandbox.pool_dir / "status.json").exists()


# What every hook event gets (each such run costs a full reconcile: a subset keeps this quick);
# the statusline and the unknown events, which cost little, get every input above.
HOOK_SUBSET = ["empty", "not JSON", "truncated JSON", "JSON list", "JSON number", "JSON string", "invalid UTF-8",
               "deeply nested JSON", "300 KB of random noise"]
UNKNOWN_EVENTS = ["no-such-event", "", "SessionStart", "../../etc/passwd", "session-start\n", "--help",
                  "stop-failure\x1b[2J", "\udcff"]


@pytest.mark.slow
def test_hostile_hook_payloads_on_a_healthy_pool(reaper, fake):
    sandbox = reaper
    _healthy_pool(sandbox, fake)
    before = sandbox.state()
    cases: list[tuple[tuple[str, ...], str, bytes]] = []
    for event in HOOK_EVENTS:
        cases += [(("hook", event), name, HOOK_STDINS[name]) for name in HOOK_SUBSET]
        cases.append((("hook", event), "valid payload", valid_payload(event, sandbox.home)))
    cases += [(("statusline",), name, data) for name, data in HOOK_STDINS.items()]
    cases.append((("statusline",), "valid payload", valid_payload("statusline", sandbox.home)))
    for event in UNKNOWN_EVENTS:
        cases += [(("hook", event), name, HOOK_STDINS[name]) for name in ("empty", "300 KB of random noise")]
        cases.append((("hook", event), "valid payload", valid_payload("session-start", sandbox.home)))
    cases.append((("hook",), "empty", b""))

    procs = _run_all(sandbox, [(args, data) for args, _, data in cases])
    for (args, name, _), proc in zip(cases, procs):
        what = f"{' '.join(args)!r} with {name}"
        if args[0] == "statusline":
            assert check_statusline(proc, what) == "pool: alice\n", what
            continue
        check_hook(proc, what)
        if len(args) > 1 and args[1] in HOOK_EVENTS:
            # the payload only says "look again": whatever it is, the hook does its job
            assert proc.returncode == 0, f"{what}: exit 1: {proc.stderr[-300:]!r}"
        else:
            assert proc.returncode == 1, what
            lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
            assert len(lines) == 1 and "unknown event" in lines[0], what
            assert "\x1b" not in lines[0], f"{what}: a raw escape sequence reached the terminal"

    end_processes(f"HOME={sandbox.home}", grace=15)   # the detached reconciles prompt-submit started
    assert changes(before, sandbox.state()) == []     # a healthy, converged pool: nothing to change
    events = [e for e in sandbox.audit() if e.get("trigger") == "hook:prompt-submit" and e.get("event") == "run"]
    assert len(events) == len(HOOK_SUBSET) + 1 and all(e.get("result") == "ok" for e in events)


CORRUPT_POOL = b"CPL1" + random.Random(7).randbytes(120)


@pytest.mark.slow
def test_hooks_with_broken_files(reaper, fake):
    sandbox = reaper
    _healthy_pool(sandbox, fake)
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=None)   # a run that works would change things
    good_pool = sandbox.pool_bytes()
    for damage in ("corrupt pool", "settings.json not JSON"):
        if damage == "corrupt pool":
            sandbox.write_pool(CORRUPT_POOL)
        else:
            sandbox.write_pool(good_pool)
            sandbox.write_settings('{"model": "opus", "env": {')
        before = sandbox.snapshot()
        stdins = {"valid payload": None, "300 KB of noise": NOISE_300K}
        cases = [(("hook", event), data if data is not None else valid_payload(event, sandbox.home))
                 for event in HOOK_EVENTS for data in stdins.values()]
        cases.append((("statusline",), NOISE_300K))
        names = list(stdins) * len(HOOK_EVENTS) + ["300 KB of noise"]
        for (args, _), name, proc in zip(cases, names, _run_all(sandbox, cases)):
            what = f"{' '.join(args)} with {name} ({damage})"
            if args[0] == "statusline":
                check_statusline(proc, what)
                continue
            check_hook(proc, what)
            if args[1] in ("session-start", "stop-failure"):
                # the run could not do its job: exit 1 and one line saying why
                assert proc.returncode == 1, what
                err = proc.stderr.decode()
                assert ("pool" if damage == "corrupt pool" else "settings.json") in err, what
            else:
                assert proc.returncode == 0, what      # prompt-submit only starts a detached reconcile
        end_processes(f"HOME={sandbox.home}", grace=15)
        assert changes(before, sandbox.snapshot()) == [], damage


def test_a_poisoned_statusline_feed_never_breaks_a_run(reaper, fake):
    """The statusline records its free usage reading for the next reconcile: NaN, infinities and
    far-off years in it (from Claude Code's payload, or written into the file) are ignored."""
    sandbox = reaper
    _healthy_pool(sandbox, fake)
    before = sandbox.state()
    feed_path = sandbox.pool_dir / "usage-feed.json"
    poisons = [
        b'{"rate_limits": {"five_hour": {"used_percentage": 20, "resets_at": NaN}, '
        b'"seven_day": {"used_percentage": 5, "resets_at": 1e300}}}',
        b'{"rate_limits": {"five_hour": {"used_percentage": 20, "resets_at": -1e300}, '
        b'"seven_day": {"used_percentage": 5, "resets_at": Infinity}}}',
        json.dumps({"rate_limits": {"five_hour": {"used_percentage": 20, "resets_at": 10 ** 30},
                                    "seven_day": {"used_percentage": 5, "resets_at": True}}}).encode(),
    ]
    written = [  # the feed file itself, damaged
        b'{"name": "alice", "at": %f, "since": null, "five_hour": {"pct": NaN, "resets_at": 1e300}, '
        b'"seven_day": {"pct": 50, "resets_at": -Infinity}}' % time.time(),
        b'{"name": "alice", "at": NaN, "since": null, "five_hour": {"pct": 5, "resets_at": null}}',
        b'{"name": "alice", "at": 1e300, "since": null, "five_hour": {"pct": 5, "resets_at": null}}',
        b'{"name": "alice", "at": %f, "since": null, "five_hour": {"pct": 1e300, "resets_at": 1}, '
        b'"seven_day": {"pct": "x", "resets_at": "y"}}' % time.time(),
        b'{"name": ["alice"], "at": "now", "five_hour": [1]}',
        b"[1, 2, 3]",
        NOISE_300K[:4096],
        DEEP,
    ]
    tried = 0
    for payload in poisons:
        check_statusline(run_bytes(sandbox, "statusline", input=payload), "statusline with a poisoned payload")
        assert feed_path.exists()
        assert b"NaN" not in feed_path.read_bytes() and b"Infinity" not in feed_path.read_bytes()
        proc = sandbox.run("reconcile")
        assert (proc.returncode, no_traceback(proc)) == (0, True), proc.stderr
        tried += 1
    commands = (("reconcile",), ("reconcile", "--if-needed"), ("list",))
    for i, content in enumerate(written):
        feed_path.write_bytes(content)
        args = commands[i % len(commands)]
        proc = sandbox.run(*args)
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{args} with a damaged feed: {proc.stderr}"
        tried += 1
    assert tried == len(poisons) + len(written)
    assert changes(before, sandbox.state()) == []
    alice = sandbox.pool_account("alice")["usage"]
    assert 0 <= alice["five_hour"]["pct"] <= 100 and 0 <= alice["seven_day"]["pct"] <= 100


# ---------------------------------------------------------------------------------------------
# 2. a hostile usage API
# ---------------------------------------------------------------------------------------------

USAGE_FAILURES = ["html", "empty", "nulls", "garbage", "timeout", "429", "500"]
FAST_HTTP = "[http]\ntimeout_seconds = 0.5\n"


def _two_cached_accounts(sandbox, fake, **usage) -> None:  # type: ignore[no-untyped-def]
    """alice (active) and bob, each with a 10-minute-old cached reading; bob's looks better."""
    fake.add_account(ALICE, five_hour=30, **usage)
    fake.add_account(BOB, five_hour=5, **usage)
    sandbox.write_config(FAST_HTTP)
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": KEY1})
    cache(sandbox, "alice", 30, at=ago(600))
    cache(sandbox, "bob", 5, at=ago(600))
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"


@pytest.mark.slow
def test_a_failing_usage_api_changes_nothing(reaper, fake):
    """Neither 0% nor 100%: a stale cached reading is not trusted either, so nobody moves.
    (test_cli.py runs `plan` against each mode; here: reconcile and list, and what they keep.)"""
    sandbox = reaper
    fake.timeout_mode_seconds = 3.0          # the fake's "slow" answer; our timeout is 0.5 s
    _two_cached_accounts(sandbox, fake)
    before, cached = sandbox.state(), usage_cache(sandbox)
    for mode in USAGE_FAILURES:
        fake.set_usage(ALICE, usage_mode=mode)
        fake.set_usage(BOB, usage_mode=mode)
        calls = fake.account(ALICE).usage_calls + fake.account(BOB).usage_calls
        started = time.monotonic()
        for args in (("reconcile",), ("list",)) if mode in ("html", "timeout", "429") else (("reconcile",),):
            proc = sandbox.run(*args)
            what = f"{' '.join(args)} ({mode})"
            assert proc.returncode == 0, f"{what}: exit {proc.returncode}: {proc.stderr}"
            assert no_traceback(proc), what
            assert changes(before, sandbox.state()) == [], what
            assert usage_cache(sandbox) == cached, f"{what}: a reading was invented"
            if args == ("list",):
                lines = {who: next(line for line in proc.stdout.splitlines() if f" {who} " in line)
                         for who in ("alice", "bob")}
                said = "usage endpoint throttled" if mode == "429" else "poll failed"   # a 429: no look for a while
                assert said in lines["alice"] and said in lines["bob"], proc.stdout
                assert "30%" in lines["alice"] and "5%" in lines["bob"]     # the old readings, shown as old
        assert time.monotonic() - started < 15, mode
        if mode != "timeout":
            assert fake.account(ALICE).usage_calls + fake.account(BOB).usage_calls >= calls + 2, mode
        if mode == "429":   # the backoff it set (the fake's retry-after: 60 s) passes
            pool = sandbox.pool()
            for acc in pool["accounts"]:
                acc["usage_backoff"] = None
            sandbox.write_pool(pool)
    assert sandbox.pool()["mode"] == "account" and not sandbox.settings_path.exists()
    fake.set_usage(BOB, usage_mode="ok")                 # the check can fail: a good answer moves
    sandbox.ok("reconcile")
    assert sandbox.pool()["current"] == "bob"


def test_a_failing_usage_api_does_not_end_api_key_mode(reaper, fake):
    """On API keys every run re-polls; an unreadable answer is not headroom."""
    sandbox = reaper
    fake.timeout_mode_seconds = 3.0
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=None)
    fake.add_account(BOB, five_hour=100, five_hour_resets_at=None)
    sandbox.write_config(FAST_HTTP)
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": KEY1})
    sandbox.ok("apply")
    assert sandbox.pool()["mode"] == "apikey"
    before = sandbox.state()
    for mode in ("html", "timeout", "500"):
        fake.set_usage(ALICE, usage_mode=mode)
        fake.set_usage(BOB, usage_mode=mode)
        calls = fake.account(ALICE).usage_calls
        proc = sandbox.run("reconcile")
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{mode}: {proc.stderr}"
        assert changes(before, sandbox.state()) == [], mode
        if mode != "timeout":
            assert fake.account(ALICE).usage_calls > calls, mode      # it did ask
    fake.set_usage(BOB, usage_mode="ok", five_hour=20)                 # and a good answer ends it
    sandbox.ok("reconcile")
    assert sandbox.pool()["mode"] == "account" and sandbox.pool()["current"] == "bob"


# Answers built to crash a parser (served by a handler that wraps the fake's).
HOSTILE_USAGE: dict[str, tuple[int, str, bytes]] = {
    "NaN and Infinity": (200, "application/json",
                         b'{"five_hour": {"utilization": NaN, "resets_at": null}, '
                         b'"seven_day": {"utilization": Infinity, "resets_at": null}}'),
    "utilization as strings": (200, "application/json",
                               b'{"five_hour": {"utilization": "42", "resets_at": "soon"}, '
                               b'"seven_day": {"utilization": "7%"}}'),
    "windows of the wrong type": (200, "application/json",
                                  b'{"five_hour": [20, null], "seven_day": "7", "limits": "session"}'),
    "limits of garbage": (200, "application/json",
                          b'{"limits": [null, 1, "x", {"kind": {"a": 1}}, {"kind": "session", "percent": "x"}]}'),
    "a JSON list": (200, "application/json", b'[{"five_hour": {"utilization": 20}}]'),
    "deeply nested JSON": (200, "application/json", DEEP),
    "invalid UTF-8": (200, "application/json", b'{"five_hour": {"utilization": 20, "resets_at": "\xff\xfe"}}'),
    "JSON behind a text/html 503": (503, "text/html", b"<html>upstream connect error</html>"),
    "a redirect elsewhere": (302, "text/html", b""),
    "a 418": (418, "application/json", b'{"type": "error"}'),
}
# Readable utilization with an unreadable reset time: the reading is used, the reset is unknown.
ODD_RESETS: dict[str, bytes] = {
    "reset in the year 1e300": b'{"five_hour": {"utilization": 20, "resets_at": 1e300}, '
                               b'"seven_day": {"utilization": 7, "resets_at": -1e300}}',
    "reset 10**30 seconds away": b'{"five_hour": {"utilization": 20, "resets_at": 1000000000000000000000000000000},'
                                 b' "seven_day": {"utilization": 7, "resets_at": "99999-01-01T00:00:00Z"}}',
    "reset as NaN and garbage": b'{"five_hour": {"utilization": 20, "resets_at": NaN}, '
                                b'"seven_day": {"utilization": 7, "resets_at": "2026-13-45T99:99:99Z"}}',
}


class HostileHandler(_Handler):
    """The fake's handler, with per-account hostile answers (fake.hostile_usage, fake.hostile_token)."""

    def _handle_usage(self, bearer):  # type: ignore[no-untyped-def]
        fake = self.server.fake
        acct = self._oauth_account(bearer)
        if acct is None:
            return
        answer = getattr(fake, "hostile_usage", {}).get(acct.email)
        if answer is None:
            return super()._handle_usage(bearer)
        with fake.lock:
            acct.usage_calls += 1
        status, ctype, body = answer
        headers = {"Location": "http://169.254.169.254/latest/meta-data/"} if status == 302 else None
        self._send(status, body, content_type=ctype, headers=headers)

    def _handle_token(self, body):  # type: ignore[no-untyped-def]
        fake = self.server.fake
        answer = getattr(fake, "hostile_token", None)
        if answer is None:
            return super()._handle_token(body)
        status, ctype, data = answer
        self._send(status, data, content_type=ctype)


@pytest.fixture
def hostile(fake):  # type: ignore[no-untyped-def]
    fake.hostile_usage, fake.hostile_token = {}, None
    fake._server.RequestHandlerClass = HostileHandler
    return fake


def test_usage_answers_built_to_crash_a_parser(reaper, hostile):
    sandbox, fake = reaper, hostile
    _two_cached_accounts(sandbox, fake)
    before, cached = sandbox.state(), usage_cache(sandbox)
    for i, (name, answer) in enumerate(HOSTILE_USAGE.items()):
        fake.hostile_usage = {ALICE: answer, BOB: answer}
        calls = fake.account(ALICE).usage_calls
        args = (("reconcile",), ("plan",), ("list",))[i % 3]
        proc = sandbox.run(*args)
        what = f"{' '.join(args)} with {name}"
        assert proc.returncode == 0, f"{what}: exit {proc.returncode}: {proc.stderr}"
        assert no_traceback(proc), what
        assert changes(before, sandbox.state()) == [], what
        assert usage_cache(sandbox) == cached, f"{what}: a reading was invented"
        assert fake.account(ALICE).usage_calls == calls + 1, name
        assert fake.count("/api/oauth/usage") == sum(a.usage_calls for a in fake.accounts())  # nothing followed


def test_an_unreadable_reset_time_keeps_the_reading(reaper, hostile):
    sandbox, fake = reaper, hostile
    _two_cached_accounts(sandbox, fake)
    fake.set_usage(BOB, five_hour=50)
    before = sandbox.state()
    for name, body in ODD_RESETS.items():
        fake.hostile_usage = {ALICE: (200, "application/json", body)}
        proc = sandbox.run("reconcile")
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{name}: {proc.stderr}"
        assert changes(before, sandbox.state()) == [], name     # alice at 20%, bob at 50%: no move...
        usage = sandbox.pool_account("alice")["usage"]
        assert (usage["five_hour"]["pct"], usage["seven_day"]["pct"]) == (20, 7), name   # ...but read
        assert sandbox.pool_account("alice")["usage_at"] > ago(60), name
    listed = sandbox.run("list")
    assert (listed.returncode, no_traceback(listed)) == (0, True)


def test_one_account_answering_garbage_does_not_stop_the_others(reaper, fake):
    sandbox = reaper
    fake.add_account(ALICE, five_hour=60)
    fake.add_account(BOB, usage_mode="garbage")
    fake.add_account(CAROL, usage_mode="nulls")
    sandbox.write_config(FAST_HTTP)
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"
    sandbox.seed(ALICE, BOB, CAROL, current="alice", keys={"k1": KEY1})
    cache(sandbox, "bob", 1, at=ago(600))        # old readings that look better than alice's
    cache(sandbox, "carol", 2, at=ago(600))

    def holds(email: str) -> bool:
        return sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.access(email)

    # bob and carol unknown: neither 0% (switch to them) nor 100% (go to keys): stay on alice
    for args in (("reconcile",), ("reconcile", "--if-needed"), ("apply",)):
        proc = sandbox.run(*args)
        assert (proc.returncode, no_traceback(proc)) == (0, True), proc.stderr
        assert sandbox.pool()["current"] == "alice" and sandbox.pool()["mode"] == "account" and holds(ALICE)
    assert sandbox.pool_account("alice")["usage"]["five_hour"]["pct"] == 60      # alice's reading was kept
    assert sandbox.pool_account("bob")["usage"]["five_hour"]["pct"] == 1         # bob's garbage was not

    # alice is exhausted: carol answers again (40%), bob still garbage -> carol, not bob, not keys
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    fake.set_usage(CAROL, usage_mode="ok", five_hour=40)
    sandbox.ok("reconcile", "--live")             # alice's 60% reading is younger than the TTL
    assert (sandbox.pool()["mode"], sandbox.pool()["current"]) == ("account", "carol") and holds(CAROL)
    listed = sandbox.ok("list").stdout
    bob_line = next(line for line in listed.splitlines() if " bob " in line)
    assert "poll failed" in bob_line

    # bob answers well again while carol's five-hour window passes the threshold: bob is used
    fake.set_usage(BOB, usage_mode="ok", five_hour=5)
    fake.set_usage(CAROL, five_hour=97)
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "bob" and holds(BOB)
    assert fake.account(ALICE).invalid_grants == 0 and fake.invalid_grants == 0


# A token endpoint that answers badly: none of it is "logged out" (only invalid_grant is).
HOSTILE_TOKEN: dict[str, tuple[int, str, bytes]] = {
    "garbage 200": (200, "application/json", b"not json at all {{{"),
    "HTML 200": (200, "text/html", b"<!DOCTYPE html><html><body>Just a moment...</body></html>"),
    "500": (500, "application/json", b'{"error": "server_error"}'),
    "400 that is not invalid_grant": (400, "application/json", b'{"error": "invalid_request"}'),
    "401 without a body": (401, "text/plain", b""),
    "invalid_grant inside a 200": (200, "application/json", b'{"error": "invalid_grant"}'),
    "access_token a number": (200, "application/json",
                              b'{"access_token": 12345, "refresh_token": ["x"], "expires_in": 3600}'),
    "deeply nested JSON": (200, "application/json", DEEP),
}
# A real rotation (the fake's), with one field of the answer made hostile.
ODD_GRANTS: dict[str, dict[str, object]] = {
    "expires_in NaN": {"expires_in": float("nan")},
    "expires_in Infinity": {"expires_in": float("inf")},
    "scope a list": {"scope": ["user:inference"]},
    "no refresh_token": {"refresh_token": None},
}


class GrantPatcher(HostileHandler):
    def _handle_token(self, body):  # type: ignore[no-untyped-def]
        fake = self.server.fake
        patch = getattr(fake, "grant_patch", None)
        if patch is None or not isinstance(body, dict):
            return super()._handle_token(body)
        grant = fake._refresh(body.get("refresh_token") or "")
        if grant is None:
            return self._send(400, {"error": "invalid_grant"})
        if patch.get("refresh_token", "") is None:           # the server kept the old refresh token
            with fake.lock:
                acct = fake._accounts[grant["account"]["email_address"]]
                acct.refresh_token = body["refresh_token"]
                acct.previous_refresh_tokens.discard(body["refresh_token"])
        grant.update({k: v for k, v in patch.items() if v is not None})
        grant = {k: v for k, v in grant.items() if not (k in patch and patch[k] is None)}
        self._send(200, json.dumps(grant).encode())


def test_a_failing_token_endpoint_is_not_a_logout(reaper, hostile):
    sandbox, fake = reaper, hostile
    fake._server.RequestHandlerClass = GrantPatcher
    fake.add_account(ALICE, five_hour=10)
    sandbox.write_config(FAST_HTTP)
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"
    sandbox.seed(ALICE, current="alice", keys={"k1": KEY1})
    fake.expire_access_token(ALICE)              # every run must refresh alice
    before = sandbox.state()
    for i, (name, answer) in enumerate(HOSTILE_TOKEN.items()):
        fake.hostile_token = answer
        args = (("reconcile",), ("plan",), ("list",))[i % 3]
        proc = sandbox.run(*args)
        what = f"{' '.join(args)} with a token endpoint answering {name}"
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{what}: {proc.stderr}"
        assert changes(before, sandbox.state()) == [], what
        assert sandbox.pool_account("alice").get("needs_relogin", False) is False, what
    assert fake.count("/v1/oauth/token") >= len(HOSTILE_TOKEN)
    assert fake.invalid_grants == 0 and fake.account(ALICE).refreshes == 0

    fake.hostile_token = None
    for name, patch in ODD_GRANTS.items():
        fake.expire_access_token(ALICE)
        fake.grant_patch = patch
        refreshes = fake.account(ALICE).refreshes
        proc = sandbox.run("reconcile", "--live")
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{name}: {proc.stderr}"
        assert fake.account(ALICE).refreshes - refreshes == 1, name
        oauth = sandbox.pool_oauth("alice")
        # the rotated login was kept (losing it would log alice out), with a usable expiry
        assert oauth["refreshToken"] == sandbox.refresh_token(ALICE), name
        assert oauth["accessToken"] == sandbox.access(ALICE), name
        assert isinstance(oauth["expiresAt"], int) and not isinstance(oauth["expiresAt"], bool), name
        assert time.time() * 1000 < oauth["expiresAt"] < (time.time() + 10 * 86400) * 1000, name
        assert isinstance(oauth.get("scopes"), list) and all(isinstance(s, str) for s in oauth["scopes"]), name
        assert sandbox.creds()["claudeAiOauth"]["refreshToken"] == sandbox.refresh_token(ALICE), name
        assert sandbox.pool_account("alice").get("needs_relogin", False) is False, name
    assert fake.invalid_grants == 0

    fake.grant_patch = None                     # the real thing, to show the check above can fail
    fake.expire_access_token(ALICE)
    fake.revoke(ALICE)
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool_account("alice")["needs_relogin"] is True


# ---------------------------------------------------------------------------------------------
# 3. hostile ids, keys and credential files
# ---------------------------------------------------------------------------------------------

# test_bad_input.py covers: empty, "work/alice", "alice\nbob", "alice\x1b[31m", "..", 300 chars.
BAD_IDS = {
    "empty": "",
    "slash": "../../etc/passwd",
    "dot-dot": "..",
    "dot": ".",
    "backslash": "work\\alice",
    "newline": "alice\nbob",
    "carriage return": "alice\rbob",
    "tab": "alice\tbob",
    "ANSI escape": "alice\x1b[2J",
    "DEL": "alice\x7f",
    "C1 control (CSI)": "alice\x9b31m",
    "C1 control (NEL)": "alice\x85bob",
    "line separator": "alice\u2028bob",
    "right-to-left override": "\u202eecila",
    "zero-width space": "ali\u200bce",
    "byte-order mark": "\ufeffalice",
    "not UTF-8 (a lone byte 0xff)": "alice\udcff",
    "leading space": " alice",
    "trailing space": "alice ",
    "only spaces": "   ",
    "65 chars": "a" * 65,
    "300 chars": "b" * 300,
}
ID_SAMPLE = ["slash", "dot", "tab", "C1 control (CSI)", "right-to-left override", "not UTF-8 (a lone byte 0xff)",
             "trailing space", "65 chars"]
ID_COMMANDS = {
    "import --id": lambda bad: (("import", "--id", bad), None),
    "key add --id": lambda bad: (("key", "add", "--id", bad), f"sk-ant-api03-ID{fp(bad)}-{'k' * 30}\n"),
    "switch": lambda bad: (("switch", bad), None),
    "rm": lambda bad: (("rm", bad), None),
}


def _pool_for_ids(sandbox, fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_account(ALICE)
    fake.add_account(BOB)
    sandbox.seed(ALICE, keys={"k0": KEY1})
    sandbox.login(BOB)                                  # a login `import` could take
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"


@pytest.mark.parametrize("command", list(ID_COMMANDS))
def test_hostile_ids_are_refused(sandbox, fake, command):
    """Every hostile id through the commands that create a name; switch and rm (the same check,
    each run costs a full start-up) get a sample of each kind."""
    _pool_for_ids(sandbox, fake)
    before = sandbox.snapshot()
    names = list(BAD_IDS) if command in ("import --id", "key add --id") else ID_SAMPLE
    cases = [ID_COMMANDS[command](BAD_IDS[name]) for name in names]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda c: sandbox.run(*c[0], input=c[1]), cases))
    accepted = [name for name, proc in zip(names, procs) if proc.returncode == 0]
    assert accepted == [], f"{command} accepted hostile ids"
    for name, proc in zip(names, procs):
        line = sandbox.assert_refused(proc)
        assert line.isprintable(), f"{command} {name}: the error line carries raw control characters"
        assert "Traceback" not in proc.stderr and "internal error" not in line, f"{command} {name}: {line}"
    assert changes(before, sandbox.snapshot()) == [], command
    assert [a["id"] for a in sandbox.pool()["accounts"]] == ["alice"]
    assert [k["id"] for k in sandbox.pool()["api_keys"]] == ["k0"]


def test_ids_that_look_like_options_are_refused_with_exit_1(sandbox, fake):
    _pool_for_ids(sandbox, fake)
    before = sandbox.snapshot()
    for args in (("switch", "-alice"), ("rm", "--all"), ("import", "--id"), ("key", "add", "--id")):
        proc = sandbox.run(*args, input=KEY2)
        assert (proc.returncode, no_traceback(proc), proc.stdout) == (1, True, ""), args
        assert changes(before, sandbox.snapshot()) == [], args


def test_unusual_but_fine_ids_are_accepted(sandbox, fake):
    """The refusals above are not a blanket ban: printable names of any script work."""
    _pool_for_ids(sandbox, fake)
    good = ["café-ключ", "名前-" + "a" * 61]
    for i, key_id in enumerate(good):
        sandbox.ok("key", "add", "--id", key_id, input=f"sk-ant-api03-GOODID{i}-{'c' * 30}\n")
    assert [k["id"] for k in sandbox.pool()["api_keys"]] == ["k0", *good]
    sandbox.ok("rm", good[0])
    sandbox.ok("import", "--id", "名前-bob")
    assert sandbox.pool()["current"] == "名前-bob"


BAD_KEYS: dict[str, tuple[tuple[str, ...], bytes]] = {
    "empty argument": (("",), b""),
    "whitespace argument": (("   \t ",), b""),
    "empty stdin": ((), b""),
    "only newlines on stdin": ((), b"\n\n\r\n"),
    "'-' and empty stdin": (("-",), b"   \n"),
    "a space inside": (("sk-ant-api03-abc def0123456789",), b""),
    "a tab inside": ((), b"sk-ant-api03-abc\tdef0123456789\n"),
    "two keys pasted": ((), (KEY2 + "\n" + KEY2.replace("2", "3") + "\n").encode()),
    "a NUL inside": ((), b"sk-ant-api03-abc\x00def0123456789\n"),
    "an escape sequence": ((), b"sk-ant-api03-abc\x1b[2Jdef0123456789\n"),
    "a no-break space inside": (("sk-ant-api03-abc\u00a0def0123456789",), b""),
    "a zero-width space inside": ((), "sk-ant-api03-\u200babcdef0123456789\n".encode()),
    "not ASCII": (("sk-ant-api03-ключ0123456789",), b""),
    "not UTF-8 on stdin": ((), b"sk-ant-api03-\xff\xfe\xfd0123456789\n"),
    "300 KB of noise on stdin": ((), NOISE_300K),
}


@pytest.mark.slow
def test_hostile_keys_are_refused(sandbox, fake):
    _pool_for_ids(sandbox, fake)
    before = sandbox.snapshot()
    cases = [(("key", "add", "--id", f"k9-{i}", *arg), data) for i, (arg, data) in enumerate(BAD_KEYS.values())]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda c: run_bytes(sandbox, *c[0], input=c[1]), cases))
    accepted = [name for name, proc in zip(BAD_KEYS, procs) if proc.returncode == 0]
    assert accepted == [], "key add accepted hostile keys"
    for name, proc in zip(BAD_KEYS, procs):
        text = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))
        line = sandbox.assert_refused(text)
        assert "internal error" not in line, f"key add with {name}: {line}"
        assert line.isprintable(), f"key add with {name}: raw control characters on stderr"
    assert changes(before, sandbox.snapshot()) == []
    assert [k["id"] for k in sandbox.pool()["api_keys"]] == ["k0"]
    sandbox.ok("key", "add", "--id", "k9", input=KEY2 + "\n")   # the same command with a good key works
    assert [k["id"] for k in sandbox.pool()["api_keys"]] == ["k0", "k9"]


# test_bad_input.py covers: not JSON, JSON without claudeAiOauth, claudeAiOauth a string, the blank stub.
def _oauth(**fields: object) -> bytes:
    inner = {"accessToken": "sk-ant-oat01-" + "x" * 40, "refreshToken": "sk-ant-ort01-" + "y" * 40,
             "expiresAt": int((time.time() + 3600) * 1000), "scopes": ["user:inference"], "subscriptionType": "max"}
    inner.update(fields)
    return json.dumps({"claudeAiOauth": inner}).encode()


BAD_CREDENTIALS: dict[str, bytes] = {
    "an empty file": b"",
    "JSON null": b"null",
    "a JSON list": b'[{"claudeAiOauth": {}}]',
    "claudeAiOauth null": b'{"claudeAiOauth": null}',
    "claudeAiOauth a list": b'{"claudeAiOauth": ["sk-ant-oat01-x"]}',
    "accessToken a number": _oauth(accessToken=12345),
    "refreshToken a list": _oauth(refreshToken=["sk-ant-ort01-y"]),
    "tokens null": _oauth(accessToken=None, refreshToken=None),
    "expiresAt a word": _oauth(expiresAt="soon"),
    "expiresAt NaN": _oauth().replace(b'"expiresAt": ', b'"expiresAt": NaN, "x": '),
    "scopes a string": _oauth(scopes="user:inference"),
    "not UTF-8": b'{"claudeAiOauth": {"accessToken": "\xff\xfe"}}',
    "deeply nested JSON": DEEP,
    "300 KB of noise": NOISE_300K,
}


@pytest.mark.slow
def test_import_of_a_hostile_credentials_file_is_refused(sandbox, fake, pycache_dir):
    fake.add_account(BOB)
    homes = []
    for i, content in enumerate(BAD_CREDENTIALS.values()):   # one HOME each, so they can run side by side
        box = type(sandbox)(sandbox.home.parent / f"creds-{i}", fake, pycache_dir)
        box.home.mkdir()
        box.env["CLAUDE_POOL_WAKE"] = "0"
        box.seed(BOB, login=False, keys={"k0": KEY1})
        box.write_creds(content)
        homes.append((box, content, box.snapshot()))

    def attempt(item):  # type: ignore[no-untyped-def]
        i, (box, _, _) = item
        args = ("import",) if i % 2 else ("import", "--id", "new")
        # then the hooks' path meets the same file
        return box.run(*args), box.run("reconcile")

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(attempt, enumerate(homes)))
    for name, (box, content, before), (imported, reconciled) in zip(BAD_CREDENTIALS, homes, results):
        line = box.assert_refused(imported)
        assert "internal error" not in line, f"import of {name}: {line}"
        # the run after it carries on with the pool (and may give Claude Code the active account's
        # login in place of the unusable one), never crashes
        assert (reconciled.returncode, no_traceback(reconciled)) == (0, True), \
            f"reconcile with {name}: {reconciled.stderr}"
        if box.creds_bytes() != content:
            assert box.creds()["claudeAiOauth"]["refreshToken"] == box.refresh_token(BOB), name
        assert [a["id"] for a in box.pool()["accounts"]] == ["bob"], name
        assert changes(before, box.snapshot()) in ([], ["creds"]), name


DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def test_files_nested_too_deep_for_the_parser(sandbox, fake):
    """JSON nested past Python's recursion limit, in each file claude-pool reads that others write."""
    fake.add_account(ALICE, five_hour=97)   # past the threshold: reconcile moves to bob
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"
    # Claude Code's running sessions: one unreadable, while a swap is being announced
    sessions = sandbox.claude_dir / "sessions"
    sessions.mkdir()
    (sessions / "4242.json").write_bytes(DEEP_OBJECT)
    proc = sandbox.run("reconcile")
    assert (proc.returncode, no_traceback(proc)) == (0, True), proc.stderr
    assert sandbox.pool()["current"] == "bob"
    # settings.json: never rewritten, one clear line (the hook: exit 1, nothing on stdout)
    good_pool = sandbox.pool_bytes()
    deep_settings = '{"a":' * 50_000 + "1" + "}" * 50_000
    sandbox.write_settings(deep_settings)
    sandbox.assert_refused(sandbox.run("reconcile"), "settings.json")
    hook = run_bytes(sandbox, "hook", "session-start", input=valid_payload("session-start", sandbox.home))
    check_hook(hook, "session-start with settings.json nested too deep")
    assert hook.returncode == 1 and b"settings.json" in hook.stderr
    assert sandbox.settings_path.read_text() == deep_settings and sandbox.pool_bytes() == good_pool
    # the pool file itself (plaintext and encrypted): refused as corrupt, left untouched
    for content in (DEEP_OBJECT, crypto.encrypt(DEEP_OBJECT, sandbox.key)):
        original = sandbox.write_pool(content)
        for args in (("list", "--json"), ("reconcile",), ("import",), ("key", "add", "--id", "k2")):
            line = sandbox.assert_refused(sandbox.run(*args, input=KEY2), "pool")
            assert "internal error" not in line, f"{args}: {line}"
        assert sandbox.pool_path.read_bytes() == original


# ---------------------------------------------------------------------------------------------
# 4. no secret in the argv (or environment) of any process claude-pool starts
# ---------------------------------------------------------------------------------------------

# Put on PYTHONPATH: every Python process of the run (the command, and each child it starts,
# which inherits PYTHONPATH) logs its own start and every process it spawns or execs.
SITECUSTOMIZE = r'''
import json, os, sys

_LOG = os.environ.get("HARDEN_SPAWN_LOG")


def _record(entry):
    try:
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)
    except Exception:
        pass


def _text(x):
    return os.fsdecode(x) if isinstance(x, bytes) else str(x)


def _hook(event, args):
    if event not in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn", "os.system"):
        return
    try:
        if event == "subprocess.Popen":
            exe, argv, _cwd, env = args
        elif event == "os.spawn":
            _mode, exe, argv, env = args
        elif event == "os.system":
            exe, argv, env = None, [args[0]], None
        else:
            exe, argv, env = args
        if isinstance(argv, (str, bytes)):
            argv = [argv]
        values = (env if env is not None else os.environ).values()
        _record({"pid": os.getpid(), "event": event, "exe": _text(exe) if exe is not None else None,
                 "argv": [_text(a) for a in argv], "env": [_text(v) for v in values]})
    except Exception as exc:
        _record({"pid": os.getpid(), "event": event, "error": repr(exc)})


if _LOG:
    sys.addaudithook(_hook)
    _record({"pid": os.getpid(), "ppid": os.getppid(), "event": "start", "argv": list(getattr(sys, "argv", [])),
             "orig_argv": list(getattr(sys, "orig_argv", []))})
'''

CLAUDE_STAND_IN = """#!{python}
import json, os, sys
with open(os.environ["HARDEN_CLAUDE_LOG"], "a") as fh:
    fh.write(json.dumps({{"pid": os.getpid(), "argv": sys.argv[1:], "env": list(os.environ.values())}}) + "\\n")
"""


@pytest.mark.slow
def test_no_secret_in_any_child_process_argv(reaper, fake, tmp_path):
    sandbox = reaper
    sandbox.subprocess = True  # what is checked is every real process's argv and environment
    key_a = "sk-ant-api03-" + os.urandom(24).hex()
    key_b = "sk-ant-api03-" + os.urandom(24).hex()
    helper_key = "sk-ant-api03-" + os.urandom(24).hex()
    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=60)
    fake.add_api_key(key_a)
    fake.add_api_key(key_b)
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": key_a, "k2": key_b})
    sandbox.write_settings({"model": "opus", "apiKeyHelper": f"echo {helper_key}"})
    planted = {key_a, key_b, helper_key} | minted(fake)
    fake.expire_access_token(ALICE)              # the first poll of alice refreshes: new tokens minted

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").write_text(CLAUDE_STAND_IN.format(python=sys.executable))
    (bindir / "claude").chmod(0o755)
    spawn_log, claude_log = tmp_path / "spawn.jsonl", tmp_path / "claude.jsonl"
    sandbox.env.update(PYTHONPATH=str(site), HARDEN_SPAWN_LOG=str(spawn_log), HARDEN_CLAUDE_LOG=str(claude_log),
                       PATH=f"{bindir}{os.pathsep}{sandbox.env['PATH']}")
    sandbox.env.pop("CLAUDE_POOL_WAKE", None)    # the wake is part of what is checked

    def settle() -> None:
        """Wait (bounded) until only wake sleepers are left of this HOME's processes."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if set(procs_with_env(f"HOME={sandbox.home}")) <= set(sleepers(sandbox.home)):
                return
            time.sleep(0.1)

    home = sandbox.home
    assert sandbox.run("hook", "session-start", input=valid_payload("session-start", home).decode()).returncode == 0
    assert fake.account(ALICE).refreshes == 1
    assert sandbox.run("hook", "prompt-submit", input=valid_payload("prompt-submit", home).decode()).returncode == 0
    settle()
    # every account exhausted for 10 minutes: API keys, and a wake sleeper for the reset
    for email in (ALICE, BOB):
        fake.set_usage(email, five_hour=100, five_hour_resets_at=time.time() + 600)
    sandbox.ok("apply")
    assert sandbox.pool()["mode"] == "apikey"
    assert len(sleepers(home)) == 1
    served = {sandbox.ok("helper").stdout.strip() for _ in range(2)}
    assert served == {key_a, key_b}             # the helper really handed out the keys
    settle()
    sandbox.run("hook", "stop-failure", input=valid_payload("stop-failure", home).decode())
    proc = sandbox.run("reconcile", "--launch", "--", "-p", "hello there", "--model", "opus")
    assert proc.returncode == 0, proc.stderr
    # bob's window resets (time passes) and he has headroom: the next prompt's reconcile leaves keys
    settle()
    cache(sandbox, "bob", 100, at=ago(700), five_reset=ago(5))
    fake.set_usage(BOB, five_hour=5, five_hour_resets_at=time.time() + 3600)
    sandbox.run("hook", "prompt-submit", input=valid_payload("prompt-submit", home).decode())
    settle()
    assert sandbox.pool()["mode"] == "account" and sandbox.pool()["current"] == "bob"
    for pid in sleepers(home):
        os.kill(pid, signal.SIGKILL)

    entries = [json.loads(line) for line in spawn_log.read_text().splitlines()]
    starts = {e["pid"]: e for e in entries if e["event"] == "start"}
    spawns = [e for e in entries if e["event"] != "start"]
    assert not [e for e in spawns if "error" in e], "the audit hook could not read a spawn"

    def parent_argv(e: dict) -> list[str]:
        return starts.get(e["pid"], {}).get("argv", [])

    def spawned(parent: str, child: str) -> list[dict]:
        return [e for e in spawns if parent in parent_argv(e) and child in e["argv"]]

    # the children that matter were all seen (so the check below has something to check)
    assert spawned("helper", "--background"), "no detached background run from the helper was logged"
    assert spawned("prompt-submit", "reconcile"), "no detached reconcile from prompt-submit was logged"
    assert [e for e in spawns if "wake" in e["argv"]], "no wake sleeper was logged"
    assert [e for e in spawns if e["event"] == "os.exec" and e["argv"][:1] == ["claude"]], "no exec of claude"
    # ...and the grandchildren log too: the detached reconciles ran with the audit hook
    assert [s for s in starts.values() if "reconcile" in s["orig_argv"] and "-m" in s["orig_argv"]]
    launched = [json.loads(line) for line in claude_log.read_text().splitlines()]
    assert [c["argv"] for c in launched] == [["-p", "hello there", "--model", "opus"]]

    secrets = planted | minted(fake)
    assert fake.account(ALICE).refreshes >= 1 and len(secrets) >= 7
    texts = [(f"{e['event']} by pid {e['pid']}", s) for e in spawns for s in e["argv"] + e["env"] + [e["exe"] or ""]]
    texts += [(f"start of pid {s['pid']}", a) for s in starts.values() for a in s["argv"] + s["orig_argv"]]
    texts += [("claude's argv or environment", s) for c in launched for s in c["argv"] + c["env"]]
    assert len(texts) > 100
    leaks = sorted({where for where, text in texts for secret in secrets if secret[:24] in text})
    assert leaks == [], "a token or key reached a child process's argv or environment"
    # the secrets were real: the pool holds them, so a leak would have had something to leak
    pool_text = json.dumps(sandbox.pool())
    assert key_a in pool_text and sandbox.refresh_token(ALICE) in pool_text


# ---------------------------------------------------------------------------------------------
# 5. a login revoked elsewhere
# ---------------------------------------------------------------------------------------------

def _expire_in_pool(sandbox, account_id: str, held: bool) -> None:  # type: ignore[no-untyped-def]
    """Make the pool's copy of an account's login expired (and Claude Code's, when it holds it)."""
    pool = sandbox.pool()
    for acc in pool["accounts"]:
        if acc["id"] == account_id:
            blob = json.loads(acc["blob"])
            blob["claudeAiOauth"]["expiresAt"] = int((time.time() - 3600) * 1000)
            acc["blob"] = json.dumps(blob)
            if held:
                sandbox.write_creds(acc["blob"])
    sandbox.write_pool(pool)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["expired login, active", "token refused, not active"])
def test_a_revoked_login_needs_relogin_once_and_the_rest_goes_on(reaper, fake, how):
    sandbox = reaper
    sandbox.env.update(CLAUDE_POOL_WAKE="0")
    fake.add_account(ALICE, five_hour=5)
    fake.add_account(BOB, five_hour=50)
    fake.add_account(CAROL, five_hour=100, five_hour_resets_at=time.time() + 3600)
    active = "alice" if how.endswith(", active") else "carol"
    sandbox.seed(ALICE, BOB, CAROL, current=active, keys={"k1": KEY1})
    if how.startswith("expired"):
        _expire_in_pool(sandbox, "alice", held=active == "alice")
    else:
        fake.expire_access_token(ALICE)       # the API refuses the token alice's login still holds
    fake.revoke(ALICE)                        # logged out elsewhere: the refresh token is dead

    def holds(email: str) -> bool:
        return sandbox.creds()["claudeAiOauth"]["refreshToken"] == sandbox.refresh_token(email)

    # the first invalid_grant marks it; the others are used (alice 5% is out; bob 50% beats carol 100%)
    proc = sandbox.run("reconcile")
    assert (proc.returncode, no_traceback(proc)) == (0, True), proc.stderr
    assert fake.account(ALICE).invalid_grants == 1
    assert sandbox.pool_account("alice")["needs_relogin"] is True
    assert sandbox.pool()["current"] == "bob" and holds(BOB)
    listed = sandbox.ok("list").stdout
    assert "needs re-login" in next(line for line in listed.splitlines() if " alice " in line)
    assert {a["id"]: a["needs_relogin"] for a in sandbox.list_json()["accounts"]} == \
        {"alice": True, "bob": False, "carol": False}

    # never retried, whatever runs
    token_calls = fake.count("/v1/oauth/token")
    for args in (("reconcile",), ("reconcile",), ("reconcile", "--live"), ("plan",), ("list",)):
        proc = sandbox.run(*args)
        assert (proc.returncode, no_traceback(proc)) == (0, True), f"{args}: {proc.stderr}"
    assert sandbox.run("hook", "stop-failure", input=valid_payload("stop-failure", sandbox.home).decode()).returncode == 0
    assert sandbox.run("switch", "alice").returncode == 1
    assert fake.account(ALICE).invalid_grants == 1 and fake.invalid_grants == 1
    assert fake.count("/v1/oauth/token") == token_calls
    assert sandbox.pool()["current"] == "bob" and holds(BOB)
    if not how.startswith("expired"):
        return                                 # the rest does not depend on how the token died

    # every other account exhausted: API keys, and the helper serves them (alice is no obstacle)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=time.time() + 3600)
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["mode"] == "apikey"
    helper = sandbox.run("helper", env={"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"})
    assert (helper.returncode, helper.stdout == KEY1 + "\n") == (0, True)
    assert fake.account(ALICE).invalid_grants == 1

    # the user logs in again as alice (/login: new tokens in Claude Code's store); the next hook
    # run finds it (harvest, no `import` needed), clears the mark, and alice's headroom is used
    fake.set_usage(ALICE, revoked=False)
    with fake.lock:                            # what /login does server-side: a fresh token pair
        acc = fake._accounts[ALICE]
        acc.previous_refresh_tokens.add(acc.refresh_token)
        acc.access_token, acc.refresh_token = "sk-ant-oat01-" + os.urandom(24).hex(), "sk-ant-ort01-" + os.urandom(24).hex()
        acc.access_token_valid = True
    sandbox.login(ALICE)
    # one run: adopting the new login, polling alice with it, and choosing her
    assert sandbox.run("hook", "session-start", input=valid_payload("session-start", sandbox.home).decode()).returncode == 0
    assert sandbox.pool_account("alice")["needs_relogin"] is False
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)
    assert (sandbox.pool()["mode"], sandbox.pool()["current"]) == ("account", "alice") and holds(ALICE)
    assert {a["id"]: a["needs_relogin"] for a in sandbox.list_json()["accounts"]}["alice"] is False
    assert "needs re-login" not in sandbox.ok("list").stdout
    assert fake.account(ALICE).invalid_grants == 1      # the dead token was never tried again
