"""A refused request is evidence about the credential that sent it, not about the one held when
the stop-failure hook runs (reconciler/learn.py `senders` / `attribute`). The race of issue 16:
the prompt hook's reconcile moves Claude Code from bob (at 96 %) to alice while a request on bob
is in flight; bob's 429 must block bob, not alice, and no API key may be billed."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from claude_pool.reconciler.learn import attribute, senders
from claude_pool.schema.pool import Account, Held, Pool, Usage, UsageWindow
from test_ratelimits import ALICE, BOB, stop_failure

NOW = datetime(2026, 12, 2, 21, 0, tzinfo=timezone.utc)


def _said(epoch: float) -> str:
    t = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return f"{t.hour % 12 or 12}:{t.minute:02d}{'am' if t.hour < 12 else 'pm'} (UTC)"


def _mark_turn(sandbox, session: str = "s-1", at: float | None = None) -> None:
    """What the prompt hook records (providers/turns.py), without its detached reconcile."""
    path = sandbox.home / ".local" / "state" / "claude-pool" / "turns" / session
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    if at is not None:
        import os

        os.utime(path, (at, at))


def test_the_429_of_a_request_in_flight_blocks_the_account_that_sent_it(sandbox, fake) -> None:
    bob_reset = time.time() + 1800
    fake.add_account(ALICE, five_hour=20, five_hour_resets_at=time.time() + 4 * 3600)
    fake.add_account(BOB, five_hour=96, five_hour_resets_at=bob_reset)
    sandbox.seed(ALICE, BOB, current="bob", keys={"k1": "sk-ant-api03-blame-test-key-0123456789abcdef"})
    _mark_turn(sandbox)                                  # the prompt goes out on bob...
    sandbox.ok("reconcile", "--if-needed")               # ...the prompt hook's reconcile moves to alice
    assert sandbox.pool()["current"] == "alice"
    # bob's request, in flight during the move, comes back refused
    sandbox.ok("hook", "stop-failure", input=stop_failure(f"You've hit your session limit · resets {_said(bob_reset)}"))
    pool = sandbox.pool()
    assert pool["mode"] == "account" and pool["current"] == "alice", "alice is healthy: no key, no move"
    assert sandbox.pool_account("alice").get("block") is None
    assert sandbox.pool_account("bob")["block"]["source"] == "message"
    event = [e for e in sandbox.audit() if e.get("event") == "rate_limited"][-1]
    assert event["target"] == "bob" and "bob's" in event["attributed"], event
    assert "apiKeyHelper" not in (sandbox.settings() if sandbox.settings_path.exists() else {})


def test_a_refusal_that_cannot_be_attributed_blocks_nothing_and_says_so(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=40)
    sandbox.seed(ALICE, BOB, current="bob")
    sandbox.ok("list")
    _mark_turn(sandbox, at=time.time() - 5)
    sandbox.ok("switch", "alice")                         # moved during the turn
    sandbox.ok("hook", "stop-failure", input=stop_failure("You've hit your session limit"))
    assert sandbox.pool_account("alice").get("block") is None and sandbox.pool_account("bob").get("block") is None
    event = [e for e in sandbox.audit() if e.get("event") == "rate_limited"][-1]
    assert event["result"] == "unattributed" and set(event["candidates"]) == {"alice", "bob"}, event


def test_a_turn_that_began_after_the_move_blames_the_account_held() -> None:
    pool = Pool(mode="account", current="a", accounts=[Account(id="a"), Account(id="b")],
                switches=[Held(at=NOW - timedelta(seconds=20), before="b", after="a")])
    assert senders(pool, "a", NOW - timedelta(seconds=30), NOW) == ["b", "a"]   # turn began before it
    assert senders(pool, "a", NOW - timedelta(seconds=10), NOW) == ["a"]        # ... or after it
    assert senders(pool, "a", None, NOW + timedelta(minutes=5)) == ["a"], "a move long before the refusal"
    keys = pool.model_copy(update={"mode": "apikey", "switches": []})
    assert senders(keys, "a", None, NOW) == [""], "on API keys no account sent it"


def test_the_reset_the_message_names_picks_the_sender() -> None:
    def acc(aid: str, pct: float, reset: datetime) -> Account:
        return Account(id=aid, usage=Usage(five_hour=UsageWindow(pct=pct, resets_at=reset)),
                       usage_at=NOW - timedelta(minutes=1))

    pool = Pool(accounts=[acc("a", 100, NOW + timedelta(hours=2)), acc("b", 97, NOW + timedelta(minutes=43))])
    msg = "You've hit your session limit · resets 9:43pm (UTC)"
    assert attribute(pool, ["a", "b"], msg, NOW) == ("b", "the reset the message names is b's")
    blamed, how = attribute(pool, ["a", "b"], "You've hit your session limit", NOW)
    assert blamed is None, "both near the limit, no reset said: cannot tell"
    pool.accounts[0].usage.five_hour.pct = 30
    assert attribute(pool, ["a", "b"], "You've hit your session limit", NOW)[0] == "b"
