"""Integration tests for the Claude Code side of claude-pool (docs/ARCHITECTURE.md §5-§8).

Real parts only: the fake Anthropic HTTP server (tests/fakeapi.py) on a loopback port, real
files in a temporary HOME, and the installed `claude-pool` command. The set-up steps (import, key
add, apply) run in-process (conftest.py's Sandbox); what these tests are about runs as real
processes where a process is the point: the helper and the hooks as Claude Code starts them, their
exit codes and stdout, concurrent helpers, the lock, the detached reconcile, the wake sleeper,
--launch's exec. Every process a test starts (including the detached reconciles, wake sleepers and
plugin bootstraps that claude-pool itself starts) is found by the HOME it runs with and ended at
teardown.
"""

from __future__ import annotations

import collections
import json
import os
import random
import secrets
import shutil
import string
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import filelock
import pytest

import claude_pool
from conftest import CLAUDE_POOL, fp, sandbox_env
from conftest import Sandbox as BaseSandbox
from fakeapi import FakeAnthropic
from claude_pool.providers import crypto
from claude_pool.providers.hotlock import HotLock
from claude_pool.schema.timefmt import format_time
from proctools import alive, cmdline, end_processes, wait_for

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugin"


EXE = CLAUDE_POOL
YELLOW = "\x1b[33m"
ALICE, BOB = "alice@example.com", "bob@example.com"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------



def served(sb: "Sandbox", stdout: str) -> str | None:
    """The id of the key the helper printed, when stdout is exactly that key and a newline."""
    for key_id, key in sb.keys.items():
        if stdout == key + "\n":
            return key_id
    return None


def leaks(text: str, *secret_values: str) -> bool:
    return any(v and v in text for v in secret_values)


def statusline_payload(home: Path, rate_limits: dict | None) -> str:
    data: dict[str, Any] = {
        "session_id": "5d1f8a0c-0000-4000-8000-000000000001",
        "transcript_path": str(home / ".claude" / "projects" / "x" / "t.jsonl"),
        "cwd": str(home),
        "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
        "workspace": {"current_dir": str(home), "project_dir": str(home)},
        "version": "2.1.197",
        "cost": {"total_cost_usd": 0.01, "total_duration_ms": 1200},
        "context_window": {"total_input_tokens": 1000, "context_window_size": 200000},
    }
    if rate_limits is not None:
        data["rate_limits"] = rate_limits
    return json.dumps(data)


def hook_payload(event: str, home: Path) -> str:
    base = {"session_id": "5d1f8a0c-0000-4000-8000-000000000002",
            "transcript_path": str(home / ".claude" / "projects" / "x" / "t.jsonl"),
            "cwd": str(home)}
    if event == "session-start":
        base.update(hook_event_name="SessionStart", source="startup", model="claude-sonnet-4-5")
    elif event == "prompt-submit":
        base.update(hook_event_name="UserPromptSubmit", prompt_id="p-1", permission_mode="default",
                    prompt="refactor the parser please")
    else:
        base.update(hook_event_name="StopFailure", prompt_id="p-1", effort="medium", error="rate_limit",
                    last_assistant_message="API Error: 429 rate_limit_error")
    return json.dumps(base)


class Sandbox(BaseSandbox):
    """conftest's Sandbox plus the API keys it registered (to tell which one the helper served)."""

    def __init__(self, home: Path, fake: FakeAnthropic, pycache: Path, *, wake: bool = False) -> None:
        super().__init__(home, fake, pycache, wake=wake)
        self.keys: dict[str, str] = {}

    # ---- setting up ---------------------------------------------------------------------
    def add_account(self, email: str, **usage: Any) -> None:
        """Log Claude Code in as `email` (a new fake account) and `claude-pool import` it."""
        self.fake.add_account(email, **usage)
        self.login(email)
        self.ok("import")

    def add_key(self, key_id: str) -> str:
        key = "sk-ant-api03-" + secrets.token_urlsafe(32)
        self.fake.add_api_key(key)
        self.ok("key", "add", "--id", key_id, input=key + "\n")
        self.keys[key_id] = key
        return key

    def exhaust(self, email: str, resets_in: float) -> None:
        self.fake.set_usage(email, five_hour=100, five_hour_resets_at=time.time() + resets_in)

    # ---- reading ------------------------------------------------------------------------
    def write_pool(self, pool: dict) -> None:  # type: ignore[override]
        data = crypto.encrypt(json.dumps(pool).encode(), self.key)
        tmp = self.pool_path.with_name("pool.json.test-tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.pool_path)  # atomic: a concurrent reader never sees half a pool

    def settings(self) -> dict:
        return json.loads(self.settings_path.read_text()) if self.settings_path.exists() else {}

    def audit(self) -> list[dict]:
        out = []
        for line in self.audit_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being appended right now
        return out

    def creds_fp(self) -> str:
        return fp(json.loads(self.creds_path.read_text())["claudeAiOauth"]["accessToken"])

    def access_fp(self, email: str) -> str:
        return fp(self.fake.account(email).access_token)


@pytest.fixture
def make_sandbox(tmp_path: Path, fake: FakeAnthropic, pycache_dir: Path):
    made: list[Sandbox] = []

    def make(*, api: FakeAnthropic | None = None, wake: bool = False, name: str = "home") -> Sandbox:
        home = tmp_path / name
        home.mkdir()
        sb = Sandbox(home, api or fake, pycache_dir, wake=wake)
        made.append(sb)
        return sb

    yield make
    for sb in made:  # before the fake servers stop (fixture teardown order)
        sb.cleanup()


@pytest.fixture
def sb(make_sandbox) -> Sandbox:
    return make_sandbox()


def apikey_pool(sb: Sandbox, *, keys: int = 1, resets: dict[str, float] | None = None) -> None:
    """Accounts (email -> seconds to their 5h reset) all exhausted, `keys` API keys, applied."""
    resets = resets or {ALICE: 3600}
    for email in resets:
        sb.add_account(email)
    for i in range(keys):
        sb.add_key(f"k{i + 1}")
    for email, seconds in resets.items():
        sb.exhaust(email, seconds)
    sb.ok("apply")
    assert sb.pool()["mode"] == "apikey"
    assert sb.settings().get("apiKeyHelper") == f"{EXE} helper"


# ---------------------------------------------------------------------------------------------
# 1. the apiKeyHelper
# ---------------------------------------------------------------------------------------------

def test_helper_outside_apikey_mode_prints_nothing(sb: Sandbox) -> None:
    proc = sb.run("helper", subprocess=True)  # no pool at all
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr

    sb.add_account(ALICE)
    sb.add_key("k1")
    proc = sb.run("helper", subprocess=True)  # a healthy account: account mode
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert not leaks(proc.stderr, *sb.keys.values())


@pytest.mark.slow
def test_helper_round_robin_sequential(sb: Sandbox) -> None:
    apikey_pool(sb, keys=3)
    order = []
    for _ in range(7):
        proc = sb.run("helper", subprocess=True)
        assert proc.returncode == 0, proc.stderr
        key_id = served(sb, proc.stdout)
        assert key_id is not None, f"stdout is not exactly one key and a newline ({len(proc.stdout)} chars)"
        assert not leaks(proc.stderr, *sb.keys.values())
        order.append(key_id)
    assert sorted(order[:3]) == ["k1", "k2", "k3"], order
    assert sorted(order[3:6]) == ["k1", "k2", "k3"], order
    assert order[3:6] == order[:3] and order[6] == order[0], order
    assert sb.status()["name"] == order[-1]


@pytest.mark.slow
def test_helper_concurrent_calls_lose_no_update(sb: Sandbox) -> None:
    apikey_pool(sb, keys=3)
    before = sb.pool()
    assert before.get("key_cursor", 0) == 0
    env = {"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"}
    procs = [sb.start("helper", env=env) for _ in range(30)]
    counts: collections.Counter[str] = collections.Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err
        key_id = served(sb, out)
        assert key_id is not None, f"stdout is not exactly one key and a newline ({len(out)} chars)"
        counts[key_id] += 1
    assert counts == {"k1": 10, "k2": 10, "k3": 10}

    after = sb.pool()  # still decrypts with this machine's key
    assert after.get("key_cursor", 0) == 30 % 3
    assert after["mode"] == "apikey"
    assert {k["id"]: fp(k["key"]) for k in after["api_keys"]} == {i: fp(v) for i, v in sb.keys.items()}
    assert [a["id"] for a in after["accounts"]] == [a["id"] for a in before["accounts"]]
    assert oct(sb.pool_path.stat().st_mode & 0o777) == oct(0o600)


# ---------------------------------------------------------------------------------------------
# 2. the helper's lock is filelock's lock
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_helper_waits_for_filelock(sb: Sandbox) -> None:
    apikey_pool(sb, keys=1)
    held = filelock.FileLock(str(sb.lock_path))
    held.acquire(timeout=5)
    try:
        proc = sb.start("helper", env={"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"})
        time.sleep(1.2)
        assert proc.poll() is None, "the helper finished while another process held the pool lock"
    finally:
        released = time.monotonic()
        held.release()
    out, err = proc.communicate(timeout=10)
    took = time.monotonic() - released
    assert proc.returncode == 0, err
    assert served(sb, out) == "k1"
    assert took < 2.0, f"the helper needed {took:.2f}s after the lock was released"


@pytest.mark.slow
def test_helper_serves_a_key_when_the_pool_stays_locked(sb: Sandbox) -> None:
    """A run that holds the pool too long must not leave Claude Code without a key: after its wait
    the helper serves the key the cursor points to next, read-only (the cursor does not move).
    Entering API-key mode announced k2 (the key after cursor 0, as the Go tool counts)."""
    apikey_pool(sb, keys=2)
    before = sb.pool_path.read_bytes()
    held = filelock.FileLock(str(sb.lock_path))
    held.acquire(timeout=5)
    try:
        env = {"CLAUDE_POOL_HELPER_NO_RECONCILE": "1", "CLAUDE_POOL_HELPER_LOCK_WAIT": "0.5"}
        first = sb.start("helper", env=env).communicate(timeout=10)
        second = sb.start("helper", env=env).communicate(timeout=10)
    finally:
        held.release()
    assert sb.pool()["current_key"] == "k2"
    assert served(sb, first[0]) == served(sb, second[0]) == "k2"
    assert "busy" in first[1] and "Traceback" not in first[1]
    assert sb.pool_path.read_bytes() == before, "the pool was written without the lock"
    out, _ = sb.start("helper", env={"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"}).communicate(timeout=10)
    assert served(sb, out) == "k2" and served(sb, sb.start("helper", env={
        "CLAUDE_POOL_HELPER_NO_RECONCILE": "1"}).communicate(timeout=10)[0]) == "k1"


def test_hotlock_excludes_filelock(tmp_path: Path) -> None:
    lock_path = tmp_path / "cfg" / "pool.json.lock"
    with HotLock(lock_path, wait=2):
        started = time.monotonic()
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(str(lock_path), timeout=0.5).acquire()
        assert time.monotonic() - started >= 0.45
    other = filelock.FileLock(str(lock_path), timeout=0.5)
    other.acquire()  # free again once released
    other.release()


# ---------------------------------------------------------------------------------------------
# 3. the helper's detached reconcile
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_helper_detached_reconcile_leaves_apikey_mode(sb: Sandbox) -> None:
    apikey_pool(sb, keys=1, resets={ALICE: 3600, BOB: 2})
    assert sb.status()["mode"] == "apikey"
    # bob's cached reset passes, and bob really has headroom again
    wait_for(lambda: time.time() > sb.fake.account(BOB).five_hour_resets_at + 0.5, 10, "bob's reset")
    sb.fake.set_usage(BOB, five_hour=5, five_hour_resets_at=time.time() + 4 * 3600)

    started = time.monotonic()
    proc = sb.start("helper")
    out, err = proc.communicate(timeout=10)
    took = time.monotonic() - started
    assert proc.returncode == 0, err
    assert proc.poll() == 0  # the helper has exited
    assert served(sb, out) == "k1"
    assert took < 3.0, f"the helper took {took:.2f}s"

    def back() -> bool:
        return "apiKeyHelper" not in sb.settings() and json.loads(sb.ok("status").stdout)["mode"] == "account"

    wait_for(back, 20, "the detached reconcile to leave API-key mode")
    assert sb.status() == {"mode": "account", "name": "bob"}
    assert sb.pool()["mode"] == "account"
    assert sb.creds_fp() == sb.access_fp(BOB)
    helper_events = wait_for(lambda: [e for e in sb.audit() if e.get("trigger") == "helper"], 10,
                             "audit events with trigger helper")
    assert any(e.get("action") == "write_settings" for e in helper_events), helper_events


# ---------------------------------------------------------------------------------------------
# 4. the recovery wake
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reset_in", [600, 5, 7 * 3600], ids=["reset+30s", "at-least-60s", "over-6h"])
def test_wake_scheduled_once(make_sandbox, reset_in: float) -> None:
    sb = make_sandbox(wake=True)
    assert "CLAUDE_POOL_WAKE" not in sb.env
    sb.add_account(ALICE)
    sb.add_key("k1")
    sb.exhaust(ALICE, reset_in)
    reset_at = sb.fake.account(ALICE).five_hour_resets_at
    before = time.time()
    sb.ok("apply")
    after = time.time()
    assert sb.pool()["mode"] == "apikey"

    if reset_in > 6 * 3600:
        assert sb.wake_marker() is None
        assert sb.wake_sleepers() == []
        return

    marker = sb.wake_marker()
    assert marker is not None, "entering API-key mode wrote no wake.json"
    at, pid = float(marker["at"]), int(marker["pid"])
    if reset_in == 600:
        assert abs(at - (reset_at + 30)) < 1.5, (at, reset_at)
    else:
        assert before + 60 - 1 <= at <= after + 60 + 1, (at, before, after)
    assert at >= time.time() + 55
    assert alive(pid)
    argv = cmdline(pid)
    assert "claude_pool" in argv and "wake" in argv, argv
    assert sb.wake_sleepers() == [pid]

    if reset_in == 600:  # while still in API-key mode, no second sleeper
        sb.ok("apply")
        sb.ok("reconcile")
        assert sb.pool()["mode"] == "apikey"
        again = sb.wake_marker()
        assert again is not None and int(again["pid"]) == pid and abs(float(again["at"]) - at) < 1
        assert alive(pid)
        assert sb.wake_sleepers() == [pid]


# ---------------------------------------------------------------------------------------------
# 5. hooks
# ---------------------------------------------------------------------------------------------

def _stdins(home: Path) -> dict[str, Callable[[str], str]]:
    rng = random.Random(1234)
    noise = "".join(rng.choices(string.printable, k=300 * 1024))
    return {
        "empty": lambda event: "",
        "not-json": lambda event: "not json",
        "truncated": lambda event: '{"session_id": "x", ',
        "noise-300k": lambda event: noise,
        "valid": lambda event: hook_payload(event, home),
    }


@pytest.mark.slow
def test_hooks_never_exit_2_never_print(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    sb.add_account(BOB)
    stdins = _stdins(sb.home)
    cases = [(event, name) for event in ("session-start", "prompt-submit", "stop-failure") for name in stdins]

    def one(case: tuple[str, str]) -> tuple[tuple[str, str], subprocess.CompletedProcess]:
        event, name = case
        return case, sb.run("hook", event, input=stdins[name](event), timeout=60, subprocess=True)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, cases))
    codes = {}
    for (event, name), proc in results:
        assert proc.returncode != 2, f"hook {event} with {name} stdin exited 2: {proc.stderr}"
        assert proc.returncode in (0, 1), f"hook {event} with {name} stdin exited {proc.returncode}"
        assert proc.stdout == "", f"hook {event} with {name} stdin printed on stdout"
        assert "Traceback" not in proc.stderr
        codes[(event, name)] = proc.returncode
    # a healthy pool: the payload, whatever it is, is tolerated
    assert all(code == 0 for code in codes.values()), {k: v for k, v in codes.items() if v}

    proc = sb.run("hook", "no-such-event", input=hook_payload("session-start", sb.home), subprocess=True)
    assert proc.returncode == 1
    assert proc.stdout == ""
    proc = sb.run("hook", input="", subprocess=True)
    assert proc.returncode == 1
    assert proc.stdout == ""


def test_hook_session_start_imports_the_login_into_an_empty_pool(sb: Sandbox) -> None:
    sb.fake.add_account(ALICE)
    sb.login(ALICE)
    assert not sb.pool_path.exists()
    proc = sb.run("hook", "session-start", input=hook_payload("session-start", sb.home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    listed = sb.list_json()
    assert [(a["id"], a["email"]) for a in listed["accounts"]] == [("alice", ALICE)]
    assert listed["current"] == "alice"
    assert sb.creds_fp() == sb.access_fp(ALICE)


@pytest.mark.slow
def test_hook_prompt_submit_returns_at_once_and_reconciles_after(make_sandbox) -> None:
    slow = FakeAnthropic(usage_delay=3).start()
    sb = make_sandbox(api=slow)
    try:
        sb.add_account(ALICE)
        usage_before = slow.count("/api/oauth/usage")
        started = time.monotonic()
        proc = sb.run("hook", "prompt-submit", input=hook_payload("prompt-submit", sb.home), timeout=10)
        took = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        assert took < 1.5, f"prompt-submit took {took:.2f}s"
        events = wait_for(lambda: [e for e in sb.audit() if e.get("trigger") == "hook:prompt-submit"
                                   and e.get("event") == "run"], 20,
                          "the detached reconcile's audit event (trigger hook:prompt-submit)")
        assert events[0].get("result") == "ok", events
        assert slow.count("/api/oauth/usage") > usage_before  # it really polled, behind the hook's back
    finally:
        sb.cleanup()
        slow.stop()


def test_hook_stop_failure_switches_before_exit(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    sb.add_account(BOB)  # bob is active
    assert sb.creds_fp() == sb.access_fp(BOB)
    sb.exhaust(BOB, 3600)
    proc = sb.run("hook", "stop-failure", input=hook_payload("stop-failure", sb.home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert sb.creds_fp() == sb.access_fp(ALICE)  # already switched when the hook returned
    assert sb.pool()["current"] == "alice"


# ---------------------------------------------------------------------------------------------
# 6. running sessions
# ---------------------------------------------------------------------------------------------

def test_swap_tells_about_running_sessions(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    sb.add_account(BOB)
    sb.sessions_dir.mkdir(parents=True, exist_ok=True)
    me = os.getpid()
    (sb.sessions_dir / f"{me}.json").write_text(json.dumps(
        {"pid": me, "sessionId": "s-alive", "cwd": str(sb.home), "startedAt": int(time.time() * 1000),
         "procStart": "12345", "version": "2.1.197", "kind": "interactive", "status": "idle"}))
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not alive(dead.pid)
    (sb.sessions_dir / f"{dead.pid}.json").write_text(json.dumps(
        {"pid": dead.pid, "sessionId": "s-dead", "cwd": str(sb.home), "procStart": "1"}))

    sb.exhaust(BOB, 3600)
    proc = sb.ok("apply")
    assert sb.creds_fp() == sb.access_fp(ALICE)
    assert "1 running Claude Code session " in proc.stderr, proc.stderr
    assert "2 running" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 7. statusline
# ---------------------------------------------------------------------------------------------

def _shift_back(sb: Sandbox, seconds: float) -> str:
    """Make the pool's last switch and every usage reading `seconds` older (time passing)."""
    pool = sb.pool()
    for holder, key in [(pool, "switched_at")] + [(a, "usage_at") for a in pool["accounts"]]:
        value = holder.get(key)
        if value and not value.startswith("0001-"):
            when = datetime.fromisoformat(value.replace("Z", "+00:00")) - timedelta(seconds=seconds)
            holder[key] = format_time(when)  # the pool's own RFC 3339 form
    sb.write_pool(pool)
    status = json.loads(sb.status_path.read_text())
    status["since"] = pool["switched_at"]
    time.sleep(0.01)
    sb.status_path.write_text(json.dumps(status))
    return pool["switched_at"]


def test_statusline_feed_and_badge(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    sb.add_account(BOB)  # bob is active
    sb.fake.set_usage(BOB, five_hour=7, seven_day=3)
    five_reset, seven_reset = int(time.time()) + 3 * 3600, int(time.time()) + 5 * 86400
    limits = {"five_hour": {"used_percentage": 42, "resets_at": five_reset},
              "seven_day": {"used_percentage": 10, "resets_at": seven_reset}}

    # right after a switch the feed is recorded but not trusted yet (settling time); a real process,
    # as Claude Code runs it
    proc = sb.ok("statusline", input=statusline_payload(sb.home, limits), subprocess=True)
    assert proc.stdout.count("\n") == 1 and len(proc.stdout) < 60
    assert "bob" in proc.stdout and "\x1b[" not in proc.stdout
    feed = json.loads(sb.feed_path.read_text())
    status = json.loads(sb.status_path.read_text())
    assert feed["name"] == "bob" and feed["since"] == status["since"] and status["since"]
    assert feed["five_hour"]["pct"] == 42 and feed["seven_day"]["pct"] == 10
    assert abs(feed["at"] - time.time()) < 10
    assert oct(sb.feed_path.stat().st_mode & 0o777) == oct(0o600)
    calls = sb.fake.count("/api/oauth/usage")
    sb.ok("reconcile", "--if-needed")
    assert sb.fake.count("/api/oauth/usage") == calls + 1
    assert sb.list_json()["accounts"][1]["usage"]["five_hour"]["pct"] == 7

    # two minutes later: the statusline's reading replaces the poll
    since = _shift_back(sb, 120)
    sb.ok("statusline", input=statusline_payload(sb.home, limits))
    assert json.loads(sb.feed_path.read_text())["since"] == since
    calls = sb.fake.count("/api/oauth/usage")
    sb.ok("reconcile", "--if-needed")
    assert sb.fake.count("/api/oauth/usage") == calls, "the usage API was called despite the fresh feed"
    bob = next(a for a in sb.list_json()["accounts"] if a["id"] == "bob")
    assert bob["usage"]["five_hour"]["pct"] == 42 and bob["usage"]["seven_day"]["pct"] == 10
    got = datetime.fromisoformat(bob["usage"]["five_hour"]["resets_at"].replace("Z", "+00:00")).timestamp()
    assert abs(got - five_reset) < 1

    # on API keys: the key's name, in yellow, with the time until an account is back
    sb.add_key("k1")
    sb.exhaust(ALICE, 3600)
    sb.exhaust(BOB, 2 * 3600)
    sb.ok("apply")
    assert sb.pool()["mode"] == "apikey"
    proc = sb.ok("statusline", input=statusline_payload(sb.home, None))
    assert YELLOW in proc.stdout and "k1" in proc.stdout and "back in" in proc.stdout
    assert not leaks(proc.stdout, *sb.keys.values())
    plain = sb.ok("statusline", "--no-color", input=statusline_payload(sb.home, None))
    assert "\x1b" not in plain.stdout and "k1" in plain.stdout

    # a pool written by the Go tool has no status.json: the badge is rebuilt from the pool
    sb.status_path.unlink()
    plain = sb.ok("statusline", "--no-color", input=statusline_payload(sb.home, None))
    assert "k1" in plain.stdout and "empty" not in plain.stdout
    assert json.loads(sb.status_path.read_text())["mode"] == "apikey"


# ---------------------------------------------------------------------------------------------
# 8. the plugin
# ---------------------------------------------------------------------------------------------

def test_plugin_manifest_and_hooks() -> None:
    # The repository root is the plugin's root (so an install carries the package source); its
    # manifest says where the hooks and the slash commands live.
    manifest = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "claude-pool"
    assert manifest["version"] == claude_pool.__version__  # one number for the plugin and the package
    assert manifest["hooks"] == "./plugin/hooks/hooks.json"
    assert manifest["commands"] == "./plugin/commands"
    assert not (PLUGIN / ".claude-plugin").exists()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "claude_pool.__version__"}
    from importlib.metadata import version
    assert version("claude-pool") == claude_pool.__version__

    market = json.loads((REPO / ".claude-plugin" / "marketplace.json").read_text())
    assert [(p["name"], p["source"]) for p in market["plugins"]] == [("claude-pool", "./")]

    hooks = json.loads((PLUGIN / "hooks" / "hooks.json").read_text())["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "StopFailure", "PostToolUse"}
    wanted = {"SessionStart": "session-start", "UserPromptSubmit": "prompt-submit", "StopFailure": "stop-failure",
              "PostToolUse": "post-tool-use"}
    for event, arg in wanted.items():
        entries = hooks[event]
        assert len(entries) == 1
        if event == "StopFailure":
            assert entries[0]["matcher"] == "rate_limit|authentication_failed"
        for hook in entries[0]["hooks"]:
            assert hook["type"] == "command"
            assert isinstance(hook["timeout"], (int, float)) and 0 < hook["timeout"] <= 600
            assert "${CLAUDE_PLUGIN_ROOT}/plugin/scripts/claude-pool" in hook["command"]
            assert hook["command"].rstrip().endswith(f"hook {arg}")
    assert os.access(PLUGIN / "scripts" / "claude-pool", os.X_OK)
    assert os.access(PLUGIN / "scripts" / "bootstrap", os.X_OK)


# The tools the plugin's scripts use, without any Python: a PATH where Python 3.11+ is missing.
_SCRIPT_TOOLS = ("sh", "sed", "cat", "date", "mkdir", "cut", "find", "rmdir", "mv", "rm", "wc", "basename",
                 "dirname", "setsid", "nohup", "readlink", "ln", "mktemp", "cp", "grep", "sleep", "tr", "head")


def _path_without_python(tmp_path: Path) -> str:
    bindir = tmp_path / "nopython-bin"
    bindir.mkdir()
    for tool in _SCRIPT_TOOLS:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return str(bindir)


@pytest.mark.slow
def test_plugin_wrapper_without_python_says_so_once_a_session_and_backs_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    share = home / ".local" / "share" / "claude-pool"
    wrapper = str(PLUGIN / "scripts" / "claude-pool")
    env = sandbox_env(home, None)
    env.update(PATH=_path_without_python(tmp_path), CLAUDE_PLUGIN_ROOT=str(REPO),
               CLAUDE_PLUGIN_DATA=str(home / ".claude" / "plugins" / "data" / "claude-pool-claude-pool"))

    def call(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([wrapper, *args], env=dict(env, **(extra or {})), capture_output=True, text=True,
                              timeout=20, input=hook_payload("prompt-submit", home), cwd=home)

    def attempts() -> int:
        log = share / "bootstrap.log"
        return log.read_text().count("FAILED") if log.exists() else 0

    try:
        # a first prompt starts the install in the background and says nothing
        proc = call("hook", "prompt-submit")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        wait_for(lambda: attempts() == 1 and not (share / "bootstrap.lock").exists(), 20, "the failed attempt")
        failed = (share / "bootstrap.failed").read_text().splitlines()
        assert failed[1] == f"version {claude_pool.__version__}"
        assert failed[2] == "it needs Python 3.11 or newer, none is on PATH"

        # session start: told, in plain words, as the systemMessage Claude Code shows the user, exit 0
        proc = call("hook", "session-start")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert json.loads(proc.stdout) == {"systemMessage": (
            "claude-pool is not installed: it needs Python 3.11 or newer, none is on PATH. "
            "Log: ~/.local/share/claude-pool/bootstrap.log")}
        # prompts: silent, and no new attempt while it backs off
        for _ in range(3):
            proc = call("hook", "prompt-submit")
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        time.sleep(1.0)  # a wrongly started attempt would have logged by now
        assert attempts() == 1
        # by hand, outside Claude Code: the same sentence, exit 1
        proc = call("list")
        assert proc.returncode == 1 and "needs Python 3.11 or newer" in proc.stderr

        # a new plugin version tries again at once; a second failure doubles the wait
        proc = call("hook", "prompt-submit", extra={"CLAUDE_POOL_SOURCE": str(tmp_path / "elsewhere")})
        assert proc.returncode == 0
        wait_for(lambda: attempts() == 2 and not (share / "bootstrap.lock").exists(), 20, "the second attempt")
        first = (share / "bootstrap.failed").read_text().split()
        assert first[1] == "1"  # its own first attempt (another source)

        # a lock held by a running install: no second install starts
        (share / "bootstrap.failed").unlink()
        (share / "bootstrap.lock").mkdir()
        proc = call("hook", "prompt-submit")
        assert proc.returncode == 0
        time.sleep(1.0)
        assert attempts() == 2 and (share / "bootstrap.lock").is_dir()
        assert not (share / "current").exists()
    finally:
        end_processes(f"HOME={home}", grace=3.0)


def test_plugin_wrapper_stays_idle_after_claude_pool_uninstall(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = home / ".claude" / "plugins" / "data" / "claude-pool-claude-pool"
    data.mkdir(parents=True)
    (data / "uninstalled").write_text("claude-pool uninstall\n")
    env = sandbox_env(home, None)
    env.update(PATH=_path_without_python(tmp_path), CLAUDE_PLUGIN_ROOT=str(REPO), CLAUDE_PLUGIN_DATA=str(data))

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PLUGIN / "scripts" / "claude-pool"), *args], env=env, capture_output=True,
                              text=True, timeout=20, input="{}", cwd=home)

    proc = call("hook", "prompt-submit")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = call("hook", "session-start")
    assert proc.returncode == 0 and proc.stderr == "" and "the plugin is idle" in json.loads(proc.stdout)["systemMessage"]
    assert str(data / "uninstalled") in json.loads(proc.stdout)["systemMessage"]
    time.sleep(0.5)
    assert not (home / ".local" / "share" / "claude-pool").exists()  # no install was started


# ---------------------------------------------------------------------------------------------
# 9. reconcile --launch
# ---------------------------------------------------------------------------------------------

FAKE_CLAUDE = """#!{python}
import hashlib, json, os, sys
creds = os.path.join(os.environ["HOME"], ".claude", ".credentials.json")
try:
    token = json.load(open(creds))["claudeAiOauth"]["accessToken"]
    seen = hashlib.sha256(token.encode()).hexdigest()[:12]
except Exception:
    seen = None
with open(os.environ["FAKE_CLAUDE_OUT"], "w") as fh:
    json.dump({{"argv": sys.argv[1:], "pid": os.getpid(), "creds": seen}}, fh)
sys.exit(7)
"""


def _fake_claude(sb: Sandbox) -> tuple[dict[str, str], Path]:
    bindir = sb.home.parent / "fakebin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable))
    script.chmod(0o755)
    out = sb.home.parent / "claude-argv.json"
    return {"PATH": f"{bindir}{os.pathsep}{sb.env.get('PATH', '/usr/bin:/bin')}", "FAKE_CLAUDE_OUT": str(out)}, out


def test_reconcile_launch_execs_claude_after_the_pool_step(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    sb.add_account(BOB)  # bob is active, and exhausted
    sb.exhaust(BOB, 3600)
    env, out = _fake_claude(sb)
    proc = sb.start("reconcile", "--launch", "--", "-p", "hi", "--model", "x", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err  # claude's own exit status
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["-p", "hi", "--model", "x"]
    assert seen["pid"] == proc.pid  # exec, not a child
    assert seen["creds"] == sb.access_fp(ALICE)  # the pool step ran first
    assert sb.pool()["current"] == "alice"


def test_reconcile_launch_execs_claude_when_the_pool_step_fails(sb: Sandbox) -> None:
    sb.add_account(ALICE)
    corrupt = crypto.MAGIC + secrets.token_bytes(80)
    sb.pool_path.write_bytes(corrupt)
    env, out = _fake_claude(sb)
    proc = sb.start("reconcile", "--launch", "--", "-p", "hi", "--model", "x", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["-p", "hi", "--model", "x"]
    assert seen["pid"] == proc.pid
    assert "Traceback" not in err
    assert any(line.startswith("claude-pool") for line in err.splitlines()), err
    assert sb.pool_path.read_bytes() == corrupt  # never overwritten
