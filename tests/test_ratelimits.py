"""Rate-limit truth through the installed command: every window in `list`, 429 evidence from the
stop-failure hook, and the session-start hook's live, bounded, light look. Real files, the real
fake API on 127.0.0.1, `claude-pool` as a subprocess."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

ALICE, BOB = "alice@example.com", "bob@example.com"


def stop_failure(message: str, *, error: str = "rate_limit", transcript: Path | None = None) -> str:
    return json.dumps({"session_id": "s-1", "hook_event_name": "StopFailure", "prompt_id": "p-1",
                       "transcript_path": str(transcript or "/nonexistent/t.jsonl"), "cwd": "/",
                       "effort": "medium", "error": error, "last_assistant_message": message})


def session_start(model: str | None = None) -> str:
    data = {"session_id": "s-1", "hook_event_name": "SessionStart", "source": "startup",
            "transcript_path": "/nonexistent/t.jsonl", "cwd": "/"}
    if model:
        data["model"] = model
    return json.dumps(data)


def test_list_shows_every_window_and_keeps_them_in_the_pool(sandbox, fake) -> None:
    week = time.time() + 3 * 86400
    fake.add_account(ALICE, five_hour=12, seven_day=40,
                     scoped=[{"name": "Opus", "pct": 100, "resets_at": week},
                             {"name": "Fable", "pct": None, "resets_at": None, "legacy": False}],
                     extra_usage={"enabled": True, "used": 1000, "limit": 5000, "pct": 20})
    fake.add_account(BOB, five_hour=5, usage_mode="limits", scoped=[{"name": "Opus", "pct": 10, "resets_at": week}])
    sandbox.seed(ALICE, BOB)
    sandbox.write_settings({"model": "sonnet"})
    text = sandbox.ok("list").stdout
    line = next(l for l in text.splitlines() if "alice" in l)
    assert "12%/" in line and "40%/" in line and "Opus 100%/2d" in line and "Fable ?" in line, text
    assert "extra usage on (20% spent)" in line, text
    assert "Opus 10%/" in next(l for l in text.splitlines() if " bob " in l), text
    stored = sandbox.pool_account("alice")["usage"]
    assert {s["name"]: s["pct"] for s in stored["scoped"]} == {"Opus": 100.0, "Fable": None}
    assert stored["extra_usage"]["enabled"] is True
    listed = sandbox.list_json()["accounts"][0]
    assert [(s["name"], s["pct"], s["source"]) for s in listed["usage"]["scoped"]] == [
        ("Fable", None, "limits"), ("Opus", 100.0, "limits")]
    assert listed["usage"]["extra_usage"]["pct"] == 20.0 and listed["blocked"] is None


def test_the_model_in_settings_decides(sandbox, fake) -> None:
    week = time.time() + 3 * 86400
    fake.add_account(ALICE, five_hour=10, seven_day=20, scoped=[{"name": "Opus", "pct": 100, "resets_at": week}])
    fake.add_account(BOB, five_hour=40, seven_day=40, scoped=[{"name": "Opus", "pct": 10, "resets_at": week}])
    sandbox.seed(ALICE, BOB)
    sandbox.write_settings({"model": "sonnet"})
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "alice"
    sandbox.write_settings({"model": "opus"})
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "bob"
    assert "alice at 100% (Opus)" in [e for e in sandbox.audit() if e.get("event") == "run"][-1]["reason"]


def test_a_429_blocks_the_held_account_until_the_reset_it_names(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB)
    proc = sandbox.run("hook", "stop-failure", input=stop_failure("You've hit your session limit · resets 11:59pm (UTC)"))
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert sandbox.pool()["current"] == "bob"
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.access(BOB)
    block = sandbox.pool_account("alice")["block"]
    assert block["source"] == "message" and block["until"].endswith("23:59:00Z") or block["until"].endswith("00:00:00Z")
    assert "session limit" in block["reason"]
    # the usage API says alice is at 20%: a live reconcile does not move back, and says why
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "bob"
    listed = sandbox.ok("list").stdout
    assert "blocked" in next(l for l in listed.splitlines() if "alice" in l) and "reset from message" in listed
    assert sandbox.list_json()["accounts"][0]["blocked"]["source"] == "message"
    plan = sandbox.ok("plan").stdout
    assert "alice: blocked until" in plan
    events = [e for e in sandbox.audit() if e.get("event") == "rate_limited"]
    assert events and events[-1]["target"] == "alice" and events[-1]["source"] == "message"


def test_a_429_with_no_reset_falls_back_to_the_window_then_a_cooldown(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 1800)
    fake.add_account(BOB, five_hour=30, five_hour_resets_at=None, seven_day_resets_at=None)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")       # caches alice's windows
    sandbox.run("hook", "stop-failure", input=stop_failure("You've hit your session limit"))
    assert sandbox.pool_account("alice")["block"]["source"] == "window"
    # bob, now held, takes the next prompt and hits a limit with nothing to go on (no reset said,
    # none cached): a bounded cooldown
    sandbox.run("hook", "prompt-submit", input=json.dumps({"session_id": "s-1", "prompt": "next"}))
    sandbox.run("hook", "stop-failure", input=stop_failure("You've hit your session limit"))
    assert sandbox.pool_account("bob")["block"]["source"] == "cooldown"


def test_a_429_that_is_no_usage_limit_message_blocks_nothing(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB)
    sandbox.run("hook", "stop-failure", input=stop_failure("API Error: 429 rate_limit_error"))
    assert sandbox.pool()["current"] == "alice" and sandbox.pool_account("alice").get("block") is None
    assert [e for e in sandbox.audit() if e.get("event") == "rate_limited"][-1]["result"] == "unknown"


def test_a_server_side_429_moves_nothing_and_is_audited(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=50)
    fake.add_account(BOB, five_hour=5)
    sandbox.seed(ALICE, BOB)
    before = sandbox.state()
    proc = sandbox.run("hook", "stop-failure", input=stop_failure(
        "API Error: Server is temporarily limiting requests (not your usage limit) · Rate limited"))
    assert proc.returncode == 0 and proc.stdout == ""
    assert sandbox.state() == before
    assert "block" not in sandbox.pool_account("alice") or sandbox.pool_account("alice")["block"] is None
    event = [e for e in sandbox.audit() if e.get("event") == "rate_limited"][-1]
    assert event["result"] == "server" and "not your usage limit" in event["reason"]


def test_the_failing_sessions_transcript_names_the_model(sandbox, fake, tmp_path: Path) -> None:
    """An Opus-only refusal blocks the account for Opus; the transcript says the session is Opus."""
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=40)
    sandbox.seed(ALICE, BOB)
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("\n".join(json.dumps(e) for e in [
        {"type": "assistant", "message": {"model": "claude-opus-4-8", "content": []}},
        {"type": "assistant", "message": {"model": "<synthetic>", "content": []}}]) + "\n")
    sandbox.run("hook", "stop-failure", input=stop_failure("You've hit your Opus limit · resets Dec 31, 9am (UTC)",
                                                           transcript=transcript))
    assert sandbox.pool_account("alice")["block"]["model"] == "opus"
    assert sandbox.pool()["current"] == "bob"
    run = [e for e in sandbox.audit() if e.get("event") == "run"][-1]
    assert run["model"] == "claude-opus-4-8"


def test_expired_blocks_are_forgotten(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=40)
    pool = sandbox.seed(ALICE, BOB)
    pool["accounts"][0]["block"] = {"until": "2020-01-01T00:00:00Z", "source": "message", "reason": "old"}
    sandbox.write_pool(pool)
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "alice"
    assert sandbox.pool_account("alice").get("block") is None


def test_session_start_looks_live_right_after_a_list(sandbox, fake) -> None:
    """The active account goes to 100% seconds after `list` filled the cache."""
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")
    fake.set_usage(ALICE, five_hour=100)
    calls = fake.account(ALICE).usage_calls
    proc = sandbox.run("hook", "session-start", input=session_start())
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert fake.account(ALICE).usage_calls == calls + 1       # one live look, not two
    assert sandbox.pool()["current"] == "bob"


def test_session_start_with_nothing_to_change_saves_the_reading(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=10, scoped=[{"name": "Opus", "pct": 50, "resets_at": None}])
    fake.add_account(BOB, five_hour=2)
    sandbox.seed(ALICE, BOB)
    status_before = sandbox.status()
    proc = sandbox.run("hook", "session-start", input=session_start("claude-opus-4-8"))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    acc = sandbox.pool_account("alice")
    assert acc["usage"]["five_hour"]["pct"] == 10.0 and acc["usage"]["scoped"][0]["name"] == "Opus"
    assert acc["usage_at"].endswith("Z")
    assert fake.account(BOB).usage_calls == 0
    assert sandbox.status() == status_before
    # status.json was carried over to the pool file just written: `status` stays on its fast path
    from claude_pool.providers.sidecars import current_identity

    assert json.loads(sandbox.status_path.read_text())["pool"] == current_identity(sandbox.pool_path)
    # with the threshold from config.toml, 10% is too much: the full engine moves (to bob, the
    # one account under that threshold)
    sandbox.write_config("[policy]\nthreshold = 0.05\n")
    sandbox.run("hook", "session-start", input=session_start("claude-opus-4-8"))
    assert sandbox.pool()["current"] == "bob"


def test_session_start_model_window_full_moves(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=10, scoped=[{"name": "Opus", "pct": 100, "resets_at": time.time() + 86400}])
    fake.add_account(BOB, five_hour=40)
    sandbox.seed(ALICE, BOB)
    sandbox.run("hook", "session-start", input=session_start("claude-sonnet-5"))
    assert sandbox.pool()["current"] == "alice"
    sandbox.run("hook", "session-start", input=session_start("claude-opus-4-8"))
    assert sandbox.pool()["current"] == "bob"


class Silent:
    """A server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["accounts", "empty", "cached"])
def test_session_start_is_bounded_whatever_the_network_does(sandbox, fake, pool: str) -> None:
    silent = Silent()
    try:
        fake.add_account(ALICE, five_hour=10)
        fake.add_account(BOB, five_hour=30)
        if pool == "empty":
            sandbox.login(ALICE)
        else:
            sandbox.seed(ALICE, BOB)
            if pool == "cached":
                sandbox.ok("list")
        env = {"CLAUDE_POOL_API_BASE_URL": silent.url, "CLAUDE_POOL_OAUTH_TOKEN_URL": silent.url + "/t"}
        # What this machine needs right now to start the command at all (shared, loaded machines
        # take seconds): the bound is on what the hook adds to that.
        start = time.monotonic()
        sandbox.run("config", "show", subprocess=True)
        startup = time.monotonic() - start
        start = time.monotonic()
        proc = sandbox.run("hook", "session-start", input=session_start(), env=env, timeout=30,
                           subprocess=True)   # the bound includes the interpreter and its imports
        took = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        assert took - startup < 3.0, (f"hook session-start took {took:.2f}s against an API that never answers "
                                      f"(starting the command takes {startup:.2f}s here)")
        if pool != "empty":
            assert "usage check of alice failed" in proc.stderr
            assert ("using the cached reading" in proc.stderr) == (pool == "cached")
            assert sandbox.pool()["current"] == "alice"
    finally:
        silent.close()
