"""The usage endpoint's own limit (docs/ARCHITECTURE.md §4): `/api/oauth/usage` answers 429 per
account, with `retry-after` 0 or about an hour. After one, that account's usage is not asked for
again before the backoff ends (retry-after when over 0, else doubling from 60 s up to an hour); a
good reading ends it; decisions meanwhile use the cached reading and the statusline's feed; every
usage call is counted per account and hour in the audit log.

The rules (schema/backoff.py, stdlib only) by table; the engine in memory with a clock the test
moves (tests/world.py); and the installed command in-process against the real local fake API
(tests/fakeapi.py), with real files.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from world import Memory

from claude_pool.providers.anthropic import AnthropicApi, ApiUrls, Throttled, TransientError
from claude_pool.reconciler.audit import configure
from claude_pool.reconciler.intents import Reconcile
from claude_pool.schema import backoff
from claude_pool.schema.pool import Account, usage_throttled

ALICE, BOB = "alice@example.com", "bob@example.com"
IF_NEEDED = Reconcile(if_needed=True, model="claude-sonnet-5")
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


# ---- the rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("header, seconds", [
    ("3600", 3600.0), ("0", 0.0), (" 120 ", 120.0), ("1.5", 1.5),
    (format_datetime(T0 + timedelta(minutes=52), usegmt=True), 52 * 60.0),
    (format_datetime(T0 - timedelta(minutes=5), usegmt=True), 0.0),   # a date already past: ask now
    ("-5", None), ("soon", None), ("", None), (None, None), ("nan", None), ("inf", None),
])
def test_retry_after_is_read_in_seconds_or_as_an_http_date(header, seconds) -> None:
    assert backoff.parse_retry_after(header, T0) == seconds


def test_without_retry_after_the_backoff_doubles_from_a_minute_up_to_an_hour() -> None:
    delays, previous = [], None
    for _ in range(9):
        previous = backoff.next_backoff(previous, None)
        delays.append(previous)
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert backoff.next_backoff(None, 0) == 60          # "retry-after: 0" says nothing: doubling
    assert backoff.next_backoff(240, 0) == 480


def test_a_retry_after_over_zero_is_honoured_and_a_wild_one_is_cut() -> None:
    assert backoff.next_backoff(None, 3600) == 3600
    assert backoff.next_backoff(60, 90) == 90           # the server's word, not the doubling
    assert backoff.next_backoff(None, 30 * 86400) == backoff.RETRY_AFTER_MAX
    # after an hour's retry-after, a 429 that names none doubles from there, capped at an hour
    assert backoff.next_backoff(3600, None) == 3600


def test_a_backoff_lasts_until_its_end_and_a_good_reading_clears_it() -> None:
    b, calls = backoff.after_call(None, [], T0, status=429, retry_after=3600)
    assert b is not None and b["delay"] == 3600 and b["retry_after"] == 3600
    assert backoff.throttled_until(b, T0 + timedelta(minutes=59)) == T0 + timedelta(hours=1)
    assert backoff.throttled_until(b, T0 + timedelta(hours=1)) is None
    same, calls = backoff.after_call(b, calls, T0 + timedelta(hours=2), status=503)   # not a 429: kept
    assert same == b
    cleared, calls = backoff.after_call(b, calls, T0 + timedelta(hours=2), status=200, reading=True)
    assert cleared is None
    garbage, _ = backoff.after_call(b, calls, T0 + timedelta(hours=2), status=200, reading=False)
    assert garbage == b                                  # a 200 we could not read clears nothing


def test_a_backoff_from_another_clock_says_nothing() -> None:
    b = backoff.throttle(None, 3600, T0)
    assert backoff.throttled_until(b, T0 - timedelta(days=2)) is None       # the clock went back
    assert backoff.throttled_until(b, T0 - timedelta(seconds=30)) is not None  # a racing run: fine
    far = dict(b, until="2027-01-01T00:00:00Z")
    assert backoff.throttled_until(far, T0) is None                          # longer than any we set
    for bad in ("soon", 3, [], {"until": "x"}, {"until": "2026-11-27T13:00:00Z"}):
        assert backoff.throttled_until(bad, T0) is None


def test_call_times_keep_the_last_hour_only_and_stay_bounded() -> None:
    calls: list[float] = []
    for minute in range(0, 120, 10):
        calls = backoff.record_call(calls, T0 + timedelta(minutes=minute))
    now = T0 + timedelta(minutes=110)
    assert backoff.calls_last_hour(calls, now) == 6      # minutes 60..110
    assert len(calls) == 6
    for second in range(500):
        calls = backoff.record_call(calls, now + timedelta(seconds=second))
    assert len(calls) == backoff.CALLS_KEPT
    future = [(T0 + timedelta(days=1)).timestamp()]     # a call "from the future": another clock
    assert backoff.record_call(future, T0) == [T0.timestamp()]


def test_the_pool_keeps_the_shape_and_never_refuses_a_bad_value() -> None:
    acc = Account.model_validate({"id": "a", "usage_backoff": "soon", "usage_calls": [1, "x", None, True, 2.5]})
    assert acc.usage_backoff is None and acc.usage_calls == [1.0, 2.5]
    acc = Account.model_validate({"id": "a", "usage_backoff": backoff.throttle(None, 600, T0)})
    dumped = acc.model_dump(mode="json")
    assert dumped["usage_backoff"] == {"until": "2026-11-27T12:10:00Z", "delay": 600.0,
                                       "at": "2026-11-27T12:00:00Z", "retry_after": 600.0}
    assert usage_throttled(acc, T0) == T0 + timedelta(minutes=10)
    assert usage_throttled(acc, T0 + timedelta(minutes=10)) is None
    assert usage_throttled(None, T0) is None


# ---- the provider -------------------------------------------------------------------------------

@pytest.mark.parametrize("header, expect", [("3600", 3600.0), ("0", None), (None, None)])
def test_a_429_from_the_usage_endpoint_carries_its_retry_after(fake, header, expect) -> None:
    fake.add_account(ALICE, usage_mode="429", usage_retry_after=header)
    with AnthropicApi(ApiUrls(fake.base_url, fake.token_url), timeout=5) as api:
        with pytest.raises(Throttled) as raised:
            api.usage(fake.account(ALICE).access_token)
    assert isinstance(raised.value, TransientError) and raised.value.status == 429
    assert (raised.value.retry_after or None) == expect
    assert "HTTP 429" in str(raised.value) and fake.account(ALICE).access_token not in str(raised.value)


def test_an_http_date_retry_after_is_read(fake) -> None:
    when = datetime.now(timezone.utc) + timedelta(minutes=30)
    fake.add_account(ALICE, usage_mode="429", usage_retry_after=format_datetime(when, usegmt=True))
    with AnthropicApi(ApiUrls(fake.base_url, fake.token_url), timeout=5) as api:
        with pytest.raises(Throttled) as raised:
            api.usage(fake.account(ALICE).access_token)
    assert 28 * 60 < (raised.value.retry_after or 0) <= 30 * 60


def test_other_failures_carry_their_status(fake) -> None:
    fake.add_account(ALICE, usage_mode="500")
    fake.add_account(BOB, usage_mode="garbage")
    with AnthropicApi(ApiUrls(fake.base_url, fake.token_url), timeout=5) as api:
        for email, status in ((ALICE, 500), (BOB, 200)):
            with pytest.raises(TransientError) as raised:
                api.usage(fake.account(email).access_token)
            assert not isinstance(raised.value, Throttled) and raised.value.status == status


# ---- the engine, in memory, with a clock the test moves -------------------------------------------

@pytest.fixture()
def mem(tmp_path: Path) -> Memory:
    configure("test", stderr_level="critical", log_path=tmp_path / "audit.jsonl")
    m = Memory()
    m.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
    return m


def usage_calls(mem: Memory, email: str) -> int:
    return sum(1 for what, who in mem.journal if what == "api.usage" and who == email)


def audit_calls(mem: Memory) -> list[dict]:
    path: Path = mem.audit_path  # type: ignore[attr-defined]
    return [e for e in map(json.loads, path.read_text().splitlines()) if e.get("event") == "usage_call"]


def test_in_memory_the_backoff_doubles_then_a_good_reading_clears_it(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=30)
    mem.seed({"alice": a}, current="alice")
    mem.api.accounts[ALICE].usage_error = Throttled("usage: throttled (HTTP 429)", None)
    delays = []
    for _ in range(8):
        before = usage_calls(mem, ALICE)
        mem.run(IF_NEEDED)
        assert usage_calls(mem, ALICE) == before + 1          # the backoff had ended: one look
        delay = mem.pool.pool.account("alice").usage_backoff["delay"]  # type: ignore[union-attr,index]
        delays.append(delay)
        for _ in range(5):                                    # prompt hooks inside the backoff: none
            mem.clock.advance(seconds=delay / 6)
            mem.run(IF_NEEDED)
        assert usage_calls(mem, ALICE) == before + 1, f"asked again inside a {delay:.0f}s backoff"
        mem.clock.advance(seconds=delay / 6 + 1)
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]

    mem.api.accounts[ALICE].usage_error = None                # the endpoint answers again
    mem.run(IF_NEEDED)
    acc = mem.pool.pool.account("alice")
    assert acc is not None and acc.usage_backoff is None and acc.usage_at == mem.clock.now
    events = audit_calls(mem)
    assert [e["result"] for e in events] == ["throttled"] * 8 + ["ok"]
    assert events[0]["http"] == 429 and events[0]["backoff_seconds"] == 60 and events[-1]["http"] == 200
    # calls per account per hour: the first six looks fall within one hour; the last ones are
    # over an hour apart, so each is alone in its hour
    assert all(e["target"] == "alice" for e in events)
    assert [e["calls_last_hour"] for e in events] == [1, 2, 3, 4, 5, 6, 4, 1, 1]


def test_in_memory_the_count_of_calls_per_hour_is_in_the_audit_log(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=30)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a, "bob": b}, current="alice")
    for _ in range(5):
        mem.run(Reconcile(live=True, model="opus"))
        mem.clock.advance(minutes=10)
    events = audit_calls(mem)
    assert [(e["target"], e["calls_last_hour"]) for e in events if e["target"] == "alice"] == [
        ("alice", 1), ("alice", 2), ("alice", 3), ("alice", 4), ("alice", 5)]
    assert all(e["http"] == 200 and e["result"] == "ok" for e in events)
    mem.clock.advance(minutes=25)            # calls at minutes 0, 10, 20, 30, 40; now 75: two are past the hour
    mem.run(Reconcile(live=True, model="opus"))
    assert [e for e in audit_calls(mem) if e["target"] == "alice"][-1]["calls_last_hour"] == 4
    assert len(mem.pool.pool.account("alice").usage_calls) == 4  # type: ignore[union-attr]


def test_in_memory_a_throttled_active_account_is_decided_on_its_cached_reading(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=40)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a, "bob": b}, current="alice")
    mem.run(Reconcile(live=True, model="claude-sonnet-5"))   # both read: alice stays (40%, open window)
    assert mem.pool.pool.current == "alice"
    mem.clock.advance(minutes=5)
    mem.api.set_usage(ALICE, 97)                               # alice fills up ...
    mem.api.accounts[ALICE].usage_error = Throttled("usage: throttled (HTTP 429, retry after 3600s)", 3600.0)
    out = mem.run(IF_NEEDED)                                   # ... but the endpoint will not say so
    assert out.observed.accounts["alice"].poll == "error" and mem.pool.pool.current == "alice"
    # the statusline's feed tells (Claude Code's own headers, free): the cached reading is 97%
    pool = mem.pool.pool
    acc = pool.account("alice")
    assert acc is not None
    acc.usage.five_hour.pct = 97.0
    acc.usage_at = mem.clock.now
    mem.pool.text = pool.model_dump_json()
    mem.clock.advance(minutes=2)
    before = usage_calls(mem, ALICE)
    out = mem.run(IF_NEEDED)
    assert usage_calls(mem, ALICE) == before, "the throttled account was asked again"
    assert out.observed.accounts["alice"].poll == "cached"
    assert mem.pool.pool.current == "bob", out.plan.reason    # decided on the cached reading


# ---- the installed command against the real local fake API ----------------------------------------

def cache(sandbox, account_id: str, five: float, *, minutes_ago: float = 5,  # type: ignore[no-untyped-def]
          resets_in_h: float = 2) -> None:
    """Give a pool account a cached reading, as an earlier poll would have left it."""
    now = datetime.now(timezone.utc)
    pool = sandbox.pool()
    for acc in pool["accounts"]:
        if acc["id"] == account_id:
            acc["usage"] = {"five_hour": {"pct": five, "resets_at": (now + timedelta(hours=resets_in_h)).isoformat()},
                            "seven_day": {"pct": 10, "resets_at": (now + timedelta(days=4)).isoformat()}}
            acc["usage_at"] = (now - timedelta(minutes=minutes_ago)).isoformat()
    sandbox.write_pool(pool)


def statusline(sandbox, five_pct: float) -> None:  # type: ignore[no-untyped-def]
    """Claude Code's statusLine JSON with the active account's rate limits (the free feed)."""
    payload = {"session_id": "s-1", "model": {"id": "claude-sonnet-5", "display_name": "Sonnet 5"},
               "rate_limits": {"five_hour": {"used_percentage": five_pct, "resets_at": time.time() + 7200},
                               "seven_day": {"used_percentage": 10, "resets_at": time.time() + 4 * 86400}}}
    sandbox.ok("statusline", input=json.dumps(payload))


def test_thirty_prompt_hooks_ask_a_throttled_account_once_and_still_decide(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=40, usage_mode="429", usage_retry_after="3600")
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    cache(sandbox, "alice", 40)
    cache(sandbox, "bob", 10)
    for run in range(30):
        sandbox.ok("reconcile", "--if-needed")
        if run == 0:
            assert fake.account(ALICE).usage_calls == 1
            wait = sandbox.pool_account("alice")["usage_backoff"]
            assert wait["delay"] == 3600 and wait["retry_after"] == 3600
        if run == 14:
            statusline(sandbox, 97)     # alice fills up; only Claude Code's own headers say so
    assert fake.account(ALICE).usage_calls == 1, "a throttled account was asked again inside its backoff"
    pool = sandbox.pool()
    assert pool["current"] == "bob", "no decision was made on the cached data"
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == fake.account(BOB).access_token
    calls = [e for e in sandbox.audit() if e.get("event") == "usage_call"]
    alice = [e for e in calls if e["target"] == "alice"]
    assert len(alice) == 1 and alice[0]["http"] == 429 and alice[0]["result"] == "throttled"
    assert alice[0]["calls_last_hour"] == 1 and alice[0]["retry_after"] == 3600
    assert all(isinstance(e["calls_last_hour"], int) and e["calls_last_hour"] >= 1 for e in calls)
    assert fake.account(ALICE).access_token not in sandbox.audit_text()

    text = sandbox.ok("list").stdout                            # shown: the throttle and the reading's age
    line = next(line for line in text.splitlines() if " alice " in line)
    assert "usage endpoint throttled, next look in 59m" in line or "next look in 1h00m" in line, text
    assert "reading from" in line and "ago" in line, text
    assert fake.account(ALICE).usage_calls == 1                 # `list` waits too
    listed = next(a for a in sandbox.list_json()["accounts"] if a["id"] == "alice")
    assert listed["usage_throttled_until"] == wait["until"]


def test_a_good_reading_after_the_backoff_clears_it(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=40, usage_mode="429", usage_retry_after="0")
    sandbox.seed(ALICE)
    sandbox.ok("reconcile")
    wait = sandbox.pool_account("alice")["usage_backoff"]
    assert wait["delay"] == 60 and wait["retry_after"] == 0      # "retry-after: 0": a minute first
    sandbox.ok("reconcile")
    assert fake.account(ALICE).usage_calls == 1
    # the minute passes (the pool's stamps moved back instead of the clock forward)
    pool = sandbox.pool()
    acc = pool["accounts"][0]
    acc["usage_backoff"] = dict(acc["usage_backoff"], until=(datetime.now(timezone.utc) - timedelta(seconds=1)
                                                             ).isoformat())
    sandbox.write_pool(pool)
    sandbox.ok("reconcile")                                       # still 429: the delay doubles
    assert fake.account(ALICE).usage_calls == 2
    assert sandbox.pool_account("alice")["usage_backoff"]["delay"] == 120
    pool = sandbox.pool()
    acc = pool["accounts"][0]
    acc["usage_backoff"] = dict(acc["usage_backoff"], until=(datetime.now(timezone.utc) - timedelta(seconds=1)
                                                             ).isoformat())
    sandbox.write_pool(pool)
    fake.set_usage(ALICE, usage_mode="ok")
    sandbox.ok("reconcile")
    assert fake.account(ALICE).usage_calls == 3
    stored = sandbox.pool_account("alice")
    assert stored["usage_backoff"] is None and stored["usage"]["five_hour"]["pct"] == 40
    assert [e["http"] for e in sandbox.audit() if e.get("event") == "usage_call"] == [429, 429, 200]
    assert [e["calls_last_hour"] for e in sandbox.audit() if e.get("event") == "usage_call"] == [1, 2, 3]


def test_the_fake_answers_429_with_the_retry_after_it_is_given(fake) -> None:
    fake.add_account(ALICE, usage_mode="429", usage_retry_after="3600")
    fake.add_account(BOB, usage_mode="429", usage_retry_after=None)
    for email, header in ((ALICE, "3600"), (BOB, None)):
        r = httpx.get(fake.base_url + "/api/oauth/usage", timeout=5,
                      headers={"authorization": f"Bearer {fake.account(email).access_token}"})
        assert r.status_code == 429 and r.headers.get("retry-after") == header
    fake.set_usage(BOB, usage_retry_after="0")
    assert fake.account(BOB).summary()["usage_retry_after"] == "0"


def test_the_session_start_light_path_keeps_the_backoff_too(sandbox, fake) -> None:
    """reconciler/quicklook.py makes its own usage call: a 429 there is saved, and the next
    session start asks nothing inside the backoff (it decides on the cached reading)."""
    fake.add_account(ALICE, five_hour=40, usage_mode="429", usage_retry_after="3600")
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    cache(sandbox, "alice", 40)
    cache(sandbox, "bob", 10)
    start = json.dumps({"session_id": "s-1", "hook_event_name": "SessionStart", "source": "startup"})
    first = sandbox.run("hook", "session-start", input=start)
    assert first.returncode == 0 and first.stdout == "", first.stderr
    assert fake.account(ALICE).usage_calls == 1
    wait = sandbox.pool_account("alice")["usage_backoff"]
    assert wait["retry_after"] == 3600 and sandbox.pool_account("alice")["usage_calls"]
    for _ in range(3):
        again = sandbox.run("hook", "session-start", input=start)
        assert again.returncode == 0 and again.stdout == "", again.stderr
        assert "asked to wait until" in again.stderr, again.stderr
    assert fake.account(ALICE).usage_calls == 1, "the light path asked inside the backoff"
    assert sandbox.pool()["current"] == "alice", "40% cached: the session stays"
