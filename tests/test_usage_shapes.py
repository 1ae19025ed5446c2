"""A five-hour window that has not started (docs/ARCHITECTURE.md §4): an account idle since its last
reset is reported with `five_hour` absent, null or `{"utilization": 0, "resets_at": null}`; in
`limits[]` the `session` entry may be missing or `is_active: false`; some plans have no
`five_hour` at all. Every one of these is "not open, 0 % used": never "unknown", never
"exhausted". A 200 with no recognizable window at all stays an error.

Table tests of every shape: what the parser makes of it, and how the policy sees an account
reported that way; then the same shapes from the real local fake API through the real engine.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from world import START, Memory

from claude_pool.providers.anthropic import AnthropicApi, ApiUrls
from claude_pool.reconciler import policy
from claude_pool.reconciler.audit import configure
from claude_pool.reconciler.intents import Reconcile
from claude_pool.schema.limits import parse_windows
from claude_pool.schema.pool import Account, exhausted_until
from claude_pool.schema.state import AccountObs
from claude_pool.schema.usage import UsageFormatError, parse_usage

NOW = START
WEEK = (NOW + timedelta(days=4)).isoformat()
SEVEN = {"utilization": 20.0, "resets_at": WEEK}
WEEKLY_ALL = {"kind": "weekly_all", "group": "weekly", "percent": 20.0, "resets_at": WEEK, "is_active": True}
ALICE, BOB = "alice@example.com", "bob@example.com"
KEY = "sk-ant-api03-shapes-test-key-0123456789abcdef"

# (name, the usage API's answer): each says "five-hour window not open" and a 20 % week
NOT_STARTED = [
    ("flat: five_hour absent", {"seven_day": SEVEN}),
    ("flat: five_hour null", {"five_hour": None, "seven_day": SEVEN}),
    ("flat: five_hour unstarted", {"five_hour": {"utilization": 0, "resets_at": None}, "seven_day": SEVEN}),
    ("flat: five_hour utilization null", {"five_hour": {"utilization": None, "resets_at": None}, "seven_day": SEVEN}),
    ("flat: five_hour empty object", {"five_hour": {}, "seven_day": SEVEN}),
    ("flat: the plan has no five_hour, other keys null",
     {"seven_day": SEVEN, "seven_day_opus": None, "seven_day_oauth_apps": None, "extra_usage": None}),
    ("limits[]: no session entry", {"limits": [WEEKLY_ALL]}),
    ("limits[]: session percent null, is_active false",
     {"limits": [{"kind": "session", "group": "session", "percent": None, "resets_at": None, "is_active": False},
                 WEEKLY_ALL]}),
    ("limits[]: session 0 with no reset, is_active false",
     {"limits": [{"kind": "session", "percent": 0, "resets_at": None, "is_active": False}, WEEKLY_ALL]}),
    ("limits[]: no session entry, an inactive model window",
     {"limits": [WEEKLY_ALL, {"kind": "weekly_scoped", "percent": 30, "resets_at": WEEK, "is_active": False,
                              "scope": {"model": {"display_name": "Opus"}}}]}),
    ("both shapes: five_hour null, no session entry", {"five_hour": None, "seven_day": None, "limits": [WEEKLY_ALL]}),
    ("both shapes: five_hour absent, weekly entry inactive",
     {"seven_day": SEVEN, "limits": [dict(WEEKLY_ALL, is_active=False)]}),
]

# a 200 that names no window we can read: an error ("unknown"), never "0 %"
NO_WINDOW = [
    ("empty object", {}),
    ("both flat keys null", {"five_hour": None, "seven_day": None}),
    ("both flat keys without a number", {"five_hour": {"utilization": None}, "seven_day": {"resets_at": WEEK}}),
    ("empty limits[]", {"limits": []}),
    ("limits[] of an inactive session only", {"limits": [{"kind": "session", "percent": None, "is_active": False}]}),
    ("limits[] of unknown kinds only", {"limits": [{"kind": "inactive_pool", "percent": None}]}),
]


def ids(table: list[tuple[str, object]]) -> list[str]:
    return [name for name, _ in table]


@pytest.mark.parametrize("body", [b for _, b in NOT_STARTED], ids=ids(NOT_STARTED))
def test_a_window_not_started_parses_as_closed_and_empty(body: dict) -> None:
    found = parse_windows(body)
    assert found is not None, "a readable week was called unknown"
    assert found.get("five_hour", {"pct": 0.0, "resets_at": None}) == {"pct": 0.0, "resets_at": None}
    assert found["seven_day"]["pct"] == 20.0
    usage = parse_usage(body)
    assert (usage.five_hour.pct, usage.five_hour.resets_at) == (0.0, None)
    assert usage.seven_day.pct == 20.0 and usage.seven_day.resets_at is not None


@pytest.mark.parametrize("body", [b for _, b in NO_WINDOW], ids=ids(NO_WINDOW))
def test_an_answer_with_no_window_at_all_stays_an_error(body: dict) -> None:
    assert parse_windows(body) is None
    with pytest.raises(UsageFormatError):
        parse_usage(body)


def test_an_inactive_model_window_keeps_its_number_and_says_so() -> None:
    usage = parse_usage(dict(NOT_STARTED)["limits[]: no session entry, an inactive model window"])
    assert [(s.name, s.pct, s.active) for s in usage.scoped] == [("Opus", 30.0, False)]


@pytest.mark.parametrize("body", [b for _, b in NOT_STARTED], ids=ids(NOT_STARTED))
@pytest.mark.parametrize("model", [None, "claude-sonnet-5", "claude-opus-4-8"])
def test_the_policy_sees_a_window_not_started_as_zero_and_usable(body: dict, model: str | None) -> None:
    words = policy.words_of(Reconcile(model=model))
    usage = parse_usage(body)
    acc = Account(id="idle", usage=usage, usage_at=NOW)
    obs = AccountObs(id="idle", usage=usage, usage_at=NOW, poll="ok")
    binding = 30.0 if model == "claude-opus-4-8" and usage.scoped else 20.0   # the week (or Opus' own)
    assert policy.score(obs, acc, NOW, words) == binding       # the five-hour window counts 0 %
    assert not policy.five_hour_open(usage, NOW)
    assert exhausted_until(acc, NOW, words) is None            # never "exhausted"
    assert not policy.at_risk(obs, acc, NOW, words)


def memory(tmp_path: Path) -> Memory:
    configure("test", stderr_level="critical", log_path=tmp_path / "audit.jsonl")
    return Memory()


@pytest.mark.parametrize("body", [b for _, b in NOT_STARTED], ids=ids(NOT_STARTED))
def test_an_idle_account_is_chosen_over_one_past_the_threshold(tmp_path: Path, body: dict) -> None:
    mem = memory(tmp_path)
    a = mem.api.add(ALICE, five_hour=96, seven_day=20)
    b = mem.api.add(BOB)
    mem.api.accounts[BOB].usage = body
    mem.seed({"alice": a, "bob": b}, current="alice", keys={"k1": KEY})
    out = mem.run(Reconcile(live=True, model="claude-sonnet-5"))
    assert out.observed.accounts["bob"].poll == "ok", out.observed.accounts["bob"].error
    assert (mem.pool.pool.mode, mem.pool.pool.current) == ("account", "bob"), out.plan.reason


@pytest.mark.parametrize("body", [b for _, b in NOT_STARTED], ids=ids(NOT_STARTED))
def test_idle_accounts_are_never_taken_for_exhausted(tmp_path: Path, body: dict) -> None:
    """Every account idle: no API key is billed, and the active account stays."""
    mem = memory(tmp_path)
    a = mem.api.add(ALICE)
    b = mem.api.add(BOB)
    mem.api.accounts[ALICE].usage = body
    mem.api.accounts[BOB].usage = body
    mem.seed({"alice": a, "bob": b}, current="alice", keys={"k1": KEY})
    for intent in (Reconcile(live=True), Reconcile(if_needed=True, model="claude-sonnet-5")):
        out = mem.run(intent)
        assert (mem.pool.pool.mode, mem.pool.pool.current) == ("account", "alice"), out.plan.reason
        assert mem.settings.data is None or "apiKeyHelper" not in mem.settings.data
    assert "unknown" not in out.plan.reason


# ---- from the real local fake API ---------------------------------------------------------------

@pytest.mark.parametrize("report", ["absent", "null", "unstarted"])
@pytest.mark.parametrize("mode", ["ok", "limits"])
def test_the_fake_reports_an_idle_five_hour_window_in_each_way(fake, report: str, mode: str) -> None:
    # scoped=[]: the "ok" answer carries limits[] beside the flat keys
    fake.add_account(ALICE, five_hour=0, seven_day=20, usage_mode=mode, five_hour_report=report, scoped=[])
    with AnthropicApi(ApiUrls(fake.base_url, fake.token_url), timeout=5) as api:
        usage = api.usage(fake.account(ALICE).access_token)
    assert (usage.five_hour.pct, usage.five_hour.resets_at) == (0.0, None)
    assert usage.seven_day.pct == 20.0


def test_the_fake_sends_each_shape_as_described(fake) -> None:
    import httpx

    def body(email: str) -> dict:
        r = httpx.get(fake.base_url + "/api/oauth/usage", timeout=5,
                      headers={"authorization": f"Bearer {fake.account(email).access_token}"})
        assert r.status_code == 200
        return r.json()

    fake.add_account(ALICE, five_hour_report="absent", scoped=[])
    assert "five_hour" not in body(ALICE)
    assert [i["kind"] for i in body(ALICE)["limits"]][:1] == ["weekly_all"]
    fake.set_usage(ALICE, five_hour_report="null")
    answer = body(ALICE)
    assert answer["five_hour"] is None
    assert answer["limits"][0]["kind"] == "session" and answer["limits"][0]["percent"] is None
    assert answer["limits"][0]["is_active"] is False
    fake.set_usage(ALICE, five_hour_report="unstarted")
    assert body(ALICE)["five_hour"] == {"utilization": 0.0, "resets_at": None}
    with pytest.raises(ValueError):
        fake.set_usage(ALICE, five_hour_report="sometimes")


def test_through_the_command_an_idle_account_is_not_open_not_unknown(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=96, seven_day=20)
    fake.add_account(BOB, five_hour=0, seven_day=20, five_hour_report="absent")
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": KEY})
    sandbox.ok("reconcile")
    pool = sandbox.pool()
    assert (pool["mode"], pool["current"]) == ("account", "bob")
    bob = sandbox.pool_account("bob")
    assert bob["usage"]["five_hour"] == {"pct": 0.0, "resets_at": None} and bob["usage_at"] != "0001-01-01T00:00:00Z"
    line = next(line for line in sandbox.ok("list").stdout.splitlines() if " bob " in line)
    assert "unknown" not in line and "poll failed" not in line and "0%" in line, line
