"""The helper's detached work is light (issue 19): after serving a key, `helper --background` asks
"is any account back?" from the pool's cached facts and at most one usage call per account whose
reset has passed, and loads the full engine only to act. Real subprocesses of the installed
command, the fake Anthropic API on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from claude_pool.schema.timefmt import format_time

A, B = "alice@example.com", "bob@example.com"
KEY = "sk-ant-api03-" + "h" * 40
HEAVY = {"pydantic", "httpx", "structlog", "filelock", "argparse"}


def on_keys(sandbox, *, a_reset: timedelta, b_reset: timedelta = timedelta(hours=3)) -> None:
    """A pool on API keys, both accounts' cached readings at 100 % with these resets from now."""
    sandbox.seed(A, B, keys={"k1": KEY}, mode="apikey", current_key="k1")
    pool = sandbox.pool()
    now = datetime.now(timezone.utc)
    for acc, reset in zip(pool["accounts"], (a_reset, b_reset)):
        acc["usage"] = {"five_hour": {"pct": 100, "resets_at": format_time(now + reset)},
                        "seven_day": {"pct": 40, "resets_at": format_time(now + timedelta(days=3))}}
        acc["usage_at"] = format_time(now - timedelta(hours=4))
    sandbox.write_pool(pool)
    sandbox.write_settings({"apiKeyHelper": f"{sandbox.exe} helper"})


def background(sandbox, tmp_path: Path) -> set[str]:
    """Run the detached work in the foreground; the top-level modules it loaded."""
    record = tmp_path / "modules.txt"
    env = dict(sandbox.env, CLAUDE_POOL_RECORD_MODULES=str(record), CLAUDE_POOL_TRIGGER="helper")
    proc = subprocess.run([sandbox.exe, "helper", "--background"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    return set(record.read_text().split())


def test_nobody_back_no_call_no_engine(sandbox, tmp_path: Path):
    sandbox.fake.add_account(A, five_hour=100)
    sandbox.fake.add_account(B, five_hour=100)
    on_keys(sandbox, a_reset=timedelta(hours=2))
    before = sandbox.pool_bytes()
    loaded = background(sandbox, tmp_path)
    assert not loaded & HEAVY and "+engine" not in loaded, sorted(loaded & HEAVY)
    assert sandbox.fake.account(A).usage_calls == 0 and sandbox.fake.account(B).usage_calls == 0
    assert sandbox.pool_bytes() == before


def test_a_reset_passed_but_still_full_one_call_no_engine(sandbox, tmp_path: Path):
    sandbox.fake.add_account(A, five_hour=100)
    sandbox.fake.add_account(B, five_hour=100)
    on_keys(sandbox, a_reset=-timedelta(minutes=5))
    loaded = background(sandbox, tmp_path)
    assert not loaded & HEAVY and "+engine" not in loaded, sorted(loaded & HEAVY)
    assert sandbox.fake.account(A).usage_calls == 1 and sandbox.fake.account(B).usage_calls == 0
    pool = sandbox.pool()
    assert pool["mode"] == "apikey"
    alice = sandbox.pool_account("alice")
    assert alice["usage"]["five_hour"]["pct"] == 100   # the reading is kept: the next call makes none
    assert datetime.fromisoformat(alice["usage_at"].replace("Z", "+00:00")) > datetime.now(timezone.utc) - timedelta(minutes=5)
    sandbox.fake.reset_log()
    background(sandbox, tmp_path)
    assert sandbox.fake.account(A).usage_calls == 0


def test_an_account_back_switches(sandbox, tmp_path: Path):
    sandbox.fake.add_account(A, five_hour=10)
    sandbox.fake.add_account(B, five_hour=100)
    on_keys(sandbox, a_reset=-timedelta(minutes=5))
    loaded = background(sandbox, tmp_path)
    assert "+engine" in loaded and not loaded & HEAVY    # the question was light; the engine acted
    pool = sandbox.pool()
    assert pool["mode"] == "account" and pool["current"] == "alice"
    assert "apiKeyHelper" not in sandbox.settings()
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.fake.account(A).access_token


def test_the_helper_starts_it(sandbox, tmp_path: Path):
    """`helper` serves the key, and its detached run moves the pool back to the account that is back."""
    sandbox.fake.add_account(A, five_hour=10)
    sandbox.fake.add_account(B, five_hour=100)
    on_keys(sandbox, a_reset=-timedelta(minutes=5))
    env = {k: v for k, v in sandbox.env.items() if k != "CLAUDE_POOL_HELPER_NO_RECONCILE"}
    proc = subprocess.run([sandbox.exe, "helper"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == KEY + "\n"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sandbox.pool()["mode"] != "account":
        time.sleep(0.1)
    assert sandbox.pool()["mode"] == "account" and sandbox.pool()["current"] == "alice"


def test_a_paused_account_is_not_read(sandbox, tmp_path: Path):
    """A paused account is never chosen, so the light question never reads it (no usage call) and
    never loads the engine because of it, even when its reset has passed and it has room."""
    sandbox.fake.add_account(A, five_hour=10)
    sandbox.fake.add_account(B, five_hour=100)
    on_keys(sandbox, a_reset=-timedelta(minutes=5))
    pool = sandbox.pool()
    pool["accounts"][0]["paused"] = {"at": format_time(datetime.now(timezone.utc)), "until": None, "reason": "travel"}
    sandbox.write_pool(pool)
    before = sandbox.pool_bytes()
    loaded = background(sandbox, tmp_path)
    assert not loaded & HEAVY and "+engine" not in loaded, sorted(loaded & HEAVY)
    assert sandbox.fake.account(A).usage_calls == 0 and sandbox.fake.account(B).usage_calls == 0
    assert sandbox.pool_bytes() == before and sandbox.pool()["mode"] == "apikey"


@pytest.mark.parametrize("paused", [False, True], ids=["reset", "pause-end"])
def test_nobody_back_schedules_the_wake(sandbox, tmp_path: Path, paused: bool):
    """Nobody back: the recovery wake the full reconcile scheduled on keys is scheduled by the light
    run, at the same time (the earliest reset or pause end + 30 s), once; the engine is not loaded."""
    sandbox.env.pop("CLAUDE_POOL_WAKE")
    sandbox.fake.add_account(A, five_hour=100)
    sandbox.fake.add_account(B, five_hour=10 if paused else 100)
    on_keys(sandbox, a_reset=timedelta(hours=2), b_reset=timedelta(hours=3))
    now = datetime.now(timezone.utc)
    want = now + timedelta(hours=2, seconds=30)   # A's reset
    if paused:   # B has room, but is paused for 90 minutes: its pause ends first
        pool = sandbox.pool()
        pool["accounts"][1]["usage"]["five_hour"]["pct"] = 10
        pool["accounts"][1]["paused"] = {"at": format_time(now), "until": format_time(now + timedelta(minutes=90)),
                                         "reason": ""}
        sandbox.write_pool(pool)
        want = now + timedelta(minutes=90, seconds=30)
    loaded = background(sandbox, tmp_path)
    assert not loaded & (HEAVY - {"structlog"}) and "+engine" not in loaded, sorted(loaded & HEAVY)
    assert sandbox.fake.account(A).usage_calls == 0 and sandbox.fake.account(B).usage_calls == 0
    marker = sandbox.wake_marker()
    assert marker is not None, "the light run scheduled no recovery wake"
    assert abs(float(marker["at"]) - want.timestamp()) < 5, (marker["at"], want)
    assert sandbox.wake_sleepers() == [int(marker["pid"])]
    events = [json.loads(line) for line in sandbox.audit_path.read_text().splitlines()]
    assert any(e.get("event") == "wake" and e.get("result") == "scheduled" for e in events), events
    background(sandbox, tmp_path)   # the next call: the same sleeper covers it
    again = sandbox.wake_marker()
    assert again == marker and sandbox.wake_sleepers() == [int(marker["pid"])]
