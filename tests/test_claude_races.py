"""End-to-end: the racy moments of issue 16, in the REAL Claude Code against the fake API.

Each test drives the real `claude` binary (tmux for an interactive session, `-p` where that shows
the same) with the plugin's hooks running the installed claude-pool, and asserts on what the fake
received (which credential each POST /v1/messages carried, its status, when it was answered) and
on the pool and the audit log:

1. a request in flight on bob while the prompt hook's reconcile moves the session to alice comes
   back 429: bob is blocked, not alice; alice answers the next prompt; no API key is used;
2. the pool already knows the held account is out (`list` read it at 100%): the next prompt goes
   out on the other account, and no 429 reaches the fake;
3. one long agentic turn crosses the threshold mid-turn: its later requests go out on the other
   account (the PostToolUse hook's reconcile), and the turn ends with no 429;
4. claude-pool run under a clock 2 days ahead (libfaketime, see `_faketime`), then the clock
   back: `--live` calls the usage API, and the account that reset is used again, not the key.

Fixtures, the Sandbox (Claude Code's environment) and the Tmux driver come from
test_claude_e2e.py; the fake's knobs for these (`messages_delay`, `tool_turns`, `messages_step`)
from tests/fakeapi.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from datetime import datetime
from typing import Callable

import pytest

from fakeapi import USAGE_PATH
from test_claude_e2e import (ALICE, BOB, CLAUDE, PLUGIN, REPO, Sandbox, Tmux, _answer, _assert_answered,
                             _new_api_key, _wait_until, fake, sandbox)  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("claude_races")]

HOUR = 3600.0


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _events(box: Sandbox, **match: str) -> list[dict]:
    return [e for e in box.audit() if all(e.get(k) == v for k, v in match.items())]


def _key_requests(server) -> list[dict]:
    return [m for m in server.messages_requests() if m["auth_kind"] == "x-api-key" or m["email"] is None]


def _timeline(box: Sandbox) -> str:
    """The hooks' audit lines and the fake's /v1/messages requests in time order (for failures)."""
    rows = [(_epoch(e["time"]), " ".join(str(e.get(k)) for k in ("trigger", "event", "action", "target", "result")))
            for e in box.audit() if str(e.get("trigger", "")).startswith("hook")]
    rows += [(m["time"], f"POST /v1/messages {m['email']} -> {m['status']} "
                          f"(answered after {m.get('answered', m['time']) - m['time']:.2f}s)")
             for m in box.fake.messages_requests()]
    rows.sort()
    return "\n".join(f"  {t:.3f} {what}" for t, what in rows)


def _warm(box: Sandbox) -> None:
    """One full run as a process before the timed part. The tests' processes keep their byte code
    under a fresh PYTHONPYCACHEPREFIX (conftest), so the first run that loads the engine compiles
    it and its libraries (seconds); an installed claude-pool has it compiled already (pip does at
    install), and the hooks' budgets are for that."""
    proc = box.run("reconcile", "--if-needed", subprocess=True)
    assert proc.returncode == 0, proc.stderr


class _Session:
    """One interactive Claude Code session (tmux) in the sandbox, with the plugin."""

    def __init__(self, box: Sandbox) -> None:
        if shutil.which("tmux") is None or shutil.which("timeout") is None:
            pytest.skip("the interactive tests need tmux and timeout")
        self.box, self.term = box, Tmux(box)

    def __enter__(self) -> "_Session":
        _warm(self.box)
        looks = self.box.fake.count(USAGE_PATH)
        self.term.start(f"exec timeout --foreground 120 {shlex.quote(CLAUDE)} --plugin-dir {shlex.quote(str(PLUGIN))}")
        try:
            _wait_until("the prompt", lambda: "? for shortcuts" in self.term.screen() or "❯" in self.term.screen(),
                        45, self.context)
            # The prompt shows before the session-start hook is done: it looks at the active
            # account (one usage call), then ends.
            _wait_until("the session-start hook's look", lambda: self.box.fake.count(USAGE_PATH) > looks, 30,
                        self.context)
            self.box.wait_quiet()
        except BaseException:
            self.term.kill()
            raise
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.term.kill()

    def context(self) -> str:
        return f"screen:\n{self.term.screen()}\n{self.box.report()}\ntimeline:\n{_timeline(self.box)}"

    def answered(self, label: str, after: int) -> Callable[[], bool]:
        fake = self.box.fake
        return lambda: (any(m["status"] == 200 and m["email"] == label for m in fake.messages_requests()[after:])
                        and _answer(label) in self.term.screen())


# ------------------------------------------------------------------------------- 1. the race


def test_a_429_in_flight_during_a_move_blocks_the_account_that_sent_it(sandbox: Sandbox, fake) -> None:
    key = _new_api_key()
    fake.add_api_key(key)
    fake.add_account(ALICE, five_hour=5)
    fake.add_account(BOB, five_hour=10)
    sandbox.import_accounts(ALICE, BOB)                     # Claude Code holds bob's login
    sandbox.cp("key", "add", "--id", "k1", input=key + "\n")
    alice_token = fake.account(ALICE).access_token

    with _Session(sandbox) as s:
        # The pool's reading of bob: 90 %, near enough to be read again on every prompt, under the
        # threshold (the prompt hook does not wait). Then bob fills up, and his answers are slow.
        fake.set_usage(BOB, five_hour=90)
        sandbox.cp("list")
        fake.set_usage(BOB, five_hour=100, five_hour_resets_at=time.time() + HOUR, messages_delay=3.0)
        seen = len(fake.messages_requests())
        s.term.type("race prompt")

        _wait_until("bob's 429", lambda: [m for m in fake.messages_requests()[seen:]
                                           if m["email"] == BOB and m["status"] == 429], 30, s.context)
        event = _wait_until("the stop-failure hook's rate_limited audit",
                            lambda: _events(sandbox, trigger="hook:stop-failure", event="rate_limited"), 20,
                            s.context)[-1]
        sandbox.wait_quiet()
        # The race happened: the prompt hook's reconcile moved Claude Code to alice while bob's
        # request was out, and the 429 came back after the move.
        moved = _events(sandbox, trigger="hook:prompt-submit", action="write_credential")
        assert moved and moved[-1]["target"] == "alice", s.context()
        on_bob = [m for m in fake.messages_requests()[seen:] if m["email"] == BOB]
        assert on_bob and all(m["status"] == 429 for m in on_bob), s.context()
        assert all(m["time"] < _epoch(moved[-1]["time"]) < m["answered"] for m in on_bob), s.context()
        # ... and the refusal is blamed on bob, who sent it, not on alice, who is held now.
        assert event["result"] == "ok" and event["target"] == "bob" and event.get("held") == "alice", event
        assert sandbox.pool_account_block("bob"), s.context()
        assert not sandbox.pool_account_block("alice"), s.context()
        assert sandbox.held_token() == alice_token and sandbox.status()["name"] == "alice", s.context()

        seen = len(fake.messages_requests())
        s.term.type("next prompt")
        _wait_until("alice's answer", s.answered(ALICE, seen), 30, s.context)
        assert all(m["email"] == ALICE for m in fake.messages_requests()[seen:]), s.context()
    assert not _key_requests(fake), sandbox.report()
    assert sandbox.status()["mode"] == "account", sandbox.report()


# ---------------------------------------------------------------------- 2. a known wall, no 429


def test_a_prompt_into_a_wall_the_pool_knows_goes_out_on_another_account(sandbox: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=20)
    fake.add_account(ALICE, five_hour=10)
    sandbox.import_accounts(BOB, ALICE)                     # Claude Code holds alice's login
    # The prompt hook waits up to 1 s for the move (its reconcile takes ~0.5 s here when idle,
    # ~0.9 s with the suite's 3 workers on 2 CPUs): the test checks that it waits, with room.
    sandbox.env["CLAUDE_POOL_WALL_BUDGET"] = "10"

    with _Session(sandbox) as s:
        fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=time.time() + HOUR)
        assert "100%" in sandbox.cp("list").stdout          # the pool knows: alice is out
        seen = len(fake.messages_requests())
        s.term.type("after the list")
        first = _wait_until("the prompt's first answer", lambda: [m for m in fake.messages_requests()[seen:]
                                                                  if m["status"]], 30, s.context)
        assert all(m["email"] == BOB for m in first), "the prompt went out on alice, known to be out\n" + s.context()
        _wait_until("bob's answer", s.answered(BOB, seen), 30, s.context)
        sent = fake.messages_requests()[seen:]
        assert all(m["email"] == BOB and m["status"] == 200 for m in sent), s.context()
        moved = _events(sandbox, trigger="hook:prompt-submit", action="write_credential")
        assert moved and moved[-1]["target"] == "bob", s.context()
    assert not [m for m in fake.messages_requests() if m["status"] == 429], sandbox.report()


# ------------------------------------------------------------------------------ 3. a long turn


def test_a_long_turn_that_crosses_the_threshold_finishes_on_the_other_account(sandbox: Sandbox, fake) -> None:
    # alice is at 93 %; every request she answers adds 3 points, slowly (1.5 s: the prompt hook's
    # own look at her is done by then, at 93 %): the turn's first answer takes her past the
    # threshold (95 %), a fourth would be refused. The turn is five requests: four tool calls
    # (`echo`, which Claude Code runs without asking), then the final text. Print mode: a
    # plugin's PostToolUse hooks fire there too.
    fake.add_account(BOB, five_hour=10, tool_turns=4)
    fake.add_account(ALICE, five_hour=93, five_hour_resets_at=time.time() + HOUR, tool_turns=4,
                     messages_step=3, messages_delay=1.5)
    sandbox.import_accounts(BOB, ALICE)                     # Claude Code holds alice's login
    _warm(sandbox)

    proc = sandbox.claude_p("a long task")

    _assert_answered(sandbox, proc, BOB)                   # the turn's final text came from bob
    sent = fake.messages_requests()
    turn = [m for m in sent if m["body"].get("tools")]
    assert [m["status"] for m in sent] == [200] * len(sent), sandbox.report()
    assert len(turn) == 5 and turn[0]["email"] == ALICE, sandbox.report()
    assert any(m["email"] == BOB for m in turn[1:-1]), "no tool round of the turn went out on bob\n" + sandbox.report()
    first_bob = next(i for i, m in enumerate(turn) if m["email"] == BOB)
    assert all(m["email"] == BOB for m in turn[first_bob:]), sandbox.report()
    moved = _events(sandbox, trigger="hook:post-tool-use", action="write_credential")
    assert moved and moved[-1]["target"] == "bob", sandbox.report()


# ----------------------------------------------------------------------------- 4. clock moved


def _faketime() -> str | None:
    """libfaketime (Debian's `libfaketime`): $CLAUDE_POOL_TEST_FAKETIME, the system's, or one
    unpacked without root into .cache/faketime (`apt-get download libfaketime` then
    `dpkg -x libfaketime_*.deb .cache/faketime`)."""
    lib = "usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    for path in (os.environ.get("CLAUDE_POOL_TEST_FAKETIME", ""), "/" + lib, str(REPO / ".cache" / "faketime" / lib)):
        if path and os.path.exists(path):
            return path
    return None


def test_a_clock_two_days_ahead_and_back_bills_nothing_while_an_account_has_room(sandbox: Sandbox, fake) -> None:
    lib = _faketime()
    if lib is None:
        pytest.skip("libfaketime not found: apt-get download libfaketime && dpkg -x libfaketime_*.deb .cache/faketime")
    key = _new_api_key()
    fake.add_api_key(key)
    week_end = time.time() + 3 * 86400                      # beyond the shifted clock too
    fake.add_account(BOB, five_hour=10, seven_day=100, seven_day_resets_at=week_end)
    fake.add_account(ALICE, five_hour=10, seven_day=100, seven_day_resets_at=week_end)
    sandbox.import_accounts(BOB, ALICE)                     # no reading yet
    sandbox.cp("key", "add", "--id", "k1", input=key + "\n")

    def calls() -> int:
        return fake.account(ALICE).usage_calls + fake.account(BOB).usage_calls

    # The command under a clock 2 days ahead (a laptop waking with a wrong time): both logins look
    # expired (refreshed, in one run), both accounts are read (every one out: API-key mode), and
    # the readings are stamped 2 days in the future.
    ahead = sandbox.run("reconcile", "--live", subprocess=True, env={"LD_PRELOAD": lib, "FAKETIME": "+2d"})
    assert ahead.returncode == 0, ahead.stderr
    assert calls() >= 2 and fake.account(ALICE).refreshes and fake.account(BOB).refreshes, sandbox.report()
    assert min(_epoch(a["usage_at"]) for a in sandbox.pool()["accounts"]) > time.time() + 86400, \
        "the shifted clock did not reach the command"
    assert sandbox.status()["mode"] == "apikey", sandbox.report()

    # The clock is right again, and alice's week has reset since.
    fake.set_usage(ALICE, seven_day=0, seven_day_resets_at=time.time() + 7 * 86400)
    proc = sandbox.claude_p()
    _assert_answered(sandbox, proc, ALICE)
    assert not _key_requests(fake), "a billed request while alice had room\n" + sandbox.report()
    assert sandbox.status()["name"] == "alice", sandbox.report()

    before = calls()
    sandbox.ok("reconcile", "--live")
    assert calls() >= before + 1, "`reconcile --live` made no usage call\n" + sandbox.report()
