"""The user's preferences (issue 20) with the real Claude Code in print mode (`claude -p`, our
plugin, the fake API): a priority, a pause and a per-account threshold each change which
account's token the fake API receives. Two accounts at the same weekly pace; without the
preference the pool stays on alice (the account it holds, its five-hour window open), so each
test fails when its preference is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from test_claude_e2e import ALICE, BOB, Sandbox, _assert_answered  # skips the module without Claude Code

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("claude_e2e")]


@pytest.fixture
def box(tmp_path_factory: pytest.TempPathFactory, fake, pycache_dir: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path_factory.mktemp("prefs"), fake, pycache_dir)
    try:
        yield sandbox
    finally:
        try:
            sandbox.wait_quiet(timeout=10)
        except pytest.fail.Exception:
            pass
        sandbox.cleanup()


def _only(box: Sandbox, fake, email: str) -> None:
    msgs = fake.messages_requests()
    assert msgs, box.report()
    assert all(m["auth_kind"] == "bearer" and m["token"] == fake.account(email).access_token and m["status"] == 200
               for m in msgs), box.report()


def test_a_priority_sends_the_requests_to_the_lower_tier(box: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=30)
    fake.add_account(ALICE, five_hour=10)
    box.import_accounts(BOB, ALICE)                  # alice active; no reading of either yet
    out = box.cp("priority", "alice", "2").stdout    # bob is in the default tier 1
    assert out == "alice: priority 2 (was: default priority).\n"   # nothing known of bob: no move yet
    assert box.held_token() == fake.account(ALICE).access_token

    proc = box.claude_p()                            # the hooks read bob (a lower tier never read) and move

    _assert_answered(box, proc, BOB)
    _only(box, fake, BOB)
    assert fake.account(ALICE).messages == 0
    assert box.status()["name"] == "bob"


def test_a_paused_account_is_left_and_never_chosen(box: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=30)
    fake.add_account(ALICE, five_hour=10)            # the emptier one: the pool would pick it
    box.import_accounts(BOB, ALICE)
    box.cp("list")                                   # every reading cached
    out = box.cp("pause", "alice", "--until", "2d").stdout.splitlines()
    assert out[0].startswith("alice: paused until ") and out[1] == "Claude Code now uses account bob: alice is paused."

    proc = box.claude_p()                            # the hooks see alice with the most room, paused

    _assert_answered(box, proc, BOB)
    _only(box, fake, BOB)
    assert fake.account(ALICE).messages == 0
    assert box.status()["name"] == "bob"


def test_a_per_account_threshold_moves_before_the_global_one(box: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=10)
    fake.add_account(ALICE, five_hour=60)            # under the global 95 %: the pool would stay
    box.import_accounts(BOB, ALICE)
    out = box.cp("threshold", "alice", "50%").stdout
    assert out == "alice: threshold 50% (was: default threshold).\n"   # alice never read: no move yet
    assert box.held_token() == fake.account(ALICE).access_token

    proc = box.claude_p()                            # the session start reads alice at 60 %: past her 50 %

    _assert_answered(box, proc, BOB)
    _only(box, fake, BOB)
    assert box.status()["name"] == "bob"
