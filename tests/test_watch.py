"""Issue 20 "see it live": `claude-pool watch`. `--once` on a 5-account pool (blocks, a paused
account, a login deadline, keys, switches and 429s in the audit log), plain text when stdout is not
a terminal; fewer columns on a narrow terminal; the live loop in a real pseudo-terminal quits on `q`
and restores the terminal."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

import pytest

from claude_pool.providers import history
from claude_pool.reconciler import watch
from claude_pool.schema.timefmt import format_time

H = 3600.0
D = 86400.0
EMAILS = [f"{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin")]
KEY = "sk-ant-api03-watch-test-key-0123456789abcdefABCDEF"


def iso(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, tz=timezone.utc))


def five_account_pool(sandbox, fake, now: float) -> None:
    """alice held, bob blocked by a 429, carol paused until tomorrow, dave's login ends in 2 days,
    erin with an Opus weekly window; one API key; switches and 429s in the audit log; a history
    that gives alice a forecast."""
    for email in EMAILS:
        fake.add_account(email)
    sandbox.seed(*EMAILS, keys={"k1": KEY})
    pool = sandbox.pool()
    usage = {"alice": (62, 30), "bob": (100, 55), "carol": (5, 12), "dave": (40, 80), "erin": (20, 90)}
    for acc in pool["accounts"]:
        five, seven = usage[acc["id"]]
        acc["usage"] = {"five_hour": {"pct": five, "resets_at": iso(now + 2 * H + 300)},
                        "seven_day": {"pct": seven, "resets_at": iso(now + 3 * D + 4 * H)}, "scoped": []}
        acc["usage_at"] = iso(now - 60)
    by_id = {a["id"]: a for a in pool["accounts"]}
    by_id["bob"]["block"] = {"until": iso(now + 2 * H), "source": "message", "reason": "You've hit your session limit",
                             "at": iso(now - 600)}
    by_id["carol"]["paused"] = {"at": iso(now - H), "until": iso(now + D), "reason": "holiday"}
    by_id["carol"]["priority"] = 2
    blob = json.loads(by_id["dave"]["blob"])
    blob["claudeAiOauth"]["refreshTokenExpiresAt"] = int((now + 2 * D) * 1000)
    by_id["dave"]["blob"] = json.dumps(blob)
    by_id["erin"]["usage"]["scoped"] = [{"name": "Opus", "source": "limits", "pct": 97,
                                         "resets_at": iso(now + 3 * D)}]
    pool["switches"] = [{"at": iso(now - 3 * H), "before": "alice", "after": ""},
                        {"at": iso(now - 2 * H), "before": "", "after": "alice"}]
    sandbox.write_pool(pool)
    sandbox.audit_path.parent.mkdir(parents=True, exist_ok=True)
    events = [
        {"event": "apply", "action": "save_pool_state", "result": "ok", "before": "account:alice",
         "after": "apikey:k1", "reason": "every account is near its limit", "time": iso(now - 3 * H)},
        {"event": "rate_limited", "action": "block", "result": "ok", "target": "bob",
         "reason": "You've hit your session limit", "until": iso(now + 2 * H), "time": iso(now - 2.5 * H)},
        {"event": "apply", "action": "save_pool_state", "result": "ok", "before": "apikey:k1",
         "after": "account:alice", "reason": "alice has room again", "time": iso(now - 2 * H)},
    ]
    with sandbox.audit_path.open("a") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")
    state = str(sandbox.audit_path.parent)
    for i in range(13):   # alice's 5h rising 10 points an hour for two hours
        t = now - 2 * H + i * 600
        history.record([{"id": "alice", "usage": {"five_hour": {"pct": 42 + 10 * i / 6, "resets_at": iso(now + 2 * H + 300)},
                                                  "seven_day": {"pct": 30, "resets_at": iso(now + 3 * D + 4 * H)}},
                         "usage_at": iso(t)}], now=t, state_dir=state)


def test_watch_once_shows_the_pool_as_plain_text(sandbox, fake) -> None:
    now = time.time()
    five_account_pool(sandbox, fake, now)
    fake_calls = len(fake.requests) if hasattr(fake, "requests") else None
    out = sandbox.ok("watch", "--once", env={"COLUMNS": "160"}).stdout
    assert "\x1b[" not in out, "escape codes when stdout is not a terminal"
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines()[1:] if line.strip() and line.split()[0] in ("*", "alice", "bob", "carol", "dave", "erin")}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin"}, out
    assert rows["alice"].startswith("* alice"), out          # the held one is marked
    assert not rows["bob"].startswith("*")
    assert "5h [######----] 62% 2h0" in rows["alice"] and "7d [###-------] 30% 3d" in rows["alice"], out
    assert "blocked" in rows["bob"] and "(429)" in rows["bob"], out
    assert "paused until" in rows["carol"] and "(holiday)" in rows["carol"] and "tier 2" in rows["carol"], out
    assert "login ends" in rows["dave"], out
    assert "Opus [##########] 97%" in rows["erin"], out
    assert "pace 5h: ~83% at its reset in ~2h" in rows["alice"], out   # 10 points an hour from 62%
    assert "keys: k1" in out and "billed-key time today:" in out
    assert "429 on bob" in out and "alice -> keys (k1)" in out and "keys (k1) -> alice" in out, out
    assert KEY not in out and "sk-ant" not in out and "accessToken" not in out
    assert "hooks:" not in out   # no run Claude Code started in this sandbox's audit log
    if fake_calls is not None:
        assert len(fake.requests) == fake_calls, "watch made a network call"
    sandbox.ok("reconcile", "--if-needed", env={"CLAUDE_POOL_TRIGGER": "hook:session-start"})
    last = sandbox.ok("watch", "--once", env={"COLUMNS": "160"}).stdout.splitlines()[-1]
    assert last.startswith("hooks: the last ran ") and last.endswith(" ago (session-start)"), last


def test_watch_once_on_a_narrow_terminal_drops_columns(sandbox, fake) -> None:
    now = time.time()
    five_account_pool(sandbox, fake, now)
    wide = sandbox.ok("watch", "--once", env={"COLUMNS": "160"}).stdout
    narrow = sandbox.ok("watch", "--once", env={"COLUMNS": "60"}).stdout
    assert "[" in wide and "[#" not in narrow and "[-" not in narrow, narrow   # no bars
    assert all(len(line) <= 60 for line in narrow.splitlines()), narrow
    assert "alice" in narrow and "62%" in narrow and "erin" in narrow


def test_the_frame_in_colour_and_an_empty_pool() -> None:
    snap = watch.Snapshot(now=1_800_000_000.0, pool={"mode": "account", "current": "", "accounts": []})
    assert "the pool is empty" in watch.frame(snap)
    snap = watch.Snapshot(now=1_800_000_000.0, pool={"mode": "account", "current": "a", "accounts": [
        {"id": "a", "usage": {"five_hour": {"pct": 95, "resets_at": None}, "seven_day": {"pct": 10}},
         "usage_at": "2027-01-15T08:00:00Z"}]})
    coloured = watch.frame(snap, 120, color=True)
    assert "\x1b[31m" in coloured and "\x1b[32m" in coloured   # red 95%, green 10%
    assert "\x1b[" not in watch.frame(snap, 120, color=False)


def test_billed_key_time_counts_the_stretches_on_keys() -> None:
    now = 1_800_000_000.0
    events = [{"t": now - 5 * H, "kind": "switch", "before": "account:a", "after": "apikey:k"},
              {"t": now - 4 * H, "kind": "switch", "before": "apikey:k", "after": "account:a"},
              {"t": now - H, "kind": "switch", "before": "account:a", "after": "apikey:k"}]
    assert watch.key_seconds({"mode": "apikey"}, events, now - 6 * H, now) == 2 * H
    assert watch.key_seconds({"mode": "apikey"}, events, now - 4.5 * H, now) == 1.5 * H
    assert watch.key_seconds({"mode": "account"}, [], now - 6 * H, now) == 0
    assert watch.key_seconds({"mode": "apikey"}, [], now - 6 * H, now) == 6 * H


def controlling_terminal() -> None:
    """In the child (a new session): the pty on stdin becomes its terminal, so a Ctrl-C typed there
    is a SIGINT to it, as in a real terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_the_live_loop_quits_and_restores_the_terminal(sandbox, fake, key: bytes) -> None:
    import pty
    import select
    import subprocess
    import termios

    now = time.time()
    five_account_pool(sandbox, fake, now)
    leader, follower = pty.openpty()
    before = termios.tcgetattr(follower)
    proc = subprocess.Popen([sandbox.exe, "watch", "--interval", "1"], stdin=follower, stdout=follower,
                            stderr=subprocess.PIPE, env=sandbox.full_env({"COLUMNS": "140", "LINES": "40"}),
                            cwd=sandbox.home, start_new_session=True, preexec_fn=controlling_terminal)
    sandbox.popen.append(proc)
    seen = b""
    try:
        while b"erin" not in seen:   # the first frame (bounded by the process, not a timer)
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no frame: {seen!r}"
            seen += os.read(leader, 65536)
        assert b"\x1b[2J" in seen and b"claude-pool watch" in seen
        os.write(leader, key)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    after = termios.tcgetattr(follower)
    assert after[3] == before[3], "the terminal's local modes (echo, canonical) were not restored"
    os.close(leader)
    os.close(follower)
