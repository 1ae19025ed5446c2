"""One decision everywhere (docs/ARCHITECTURE.md §6): the session-start hook's light path and the
full engine's policy ask reconciler/decision.py the same question on the same facts, each building
those facts its own way (raw pool JSON vs pydantic models). Thousands of random pools hold them
together: the light path's "stay" is exactly the policy's "stay without a wider look", and when
it stays, the policy's decision changes nothing.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from claude_pool.reconciler import decision, policy, quicklook
from claude_pool.reconciler.intents import Reconcile
from claude_pool.reconciler.observe import unpolled
from claude_pool.schema.limits import families
from claude_pool.schema.pool import Pool, Usage
from claude_pool.schema.state import AccountObs, ObservedState, SettingsObs, StoreObs
from claude_pool.schema.timefmt import format_optional

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
MODELS = [None, "claude-opus-4-8", "claude-sonnet-5", "claude-fable-1"]
SCOPES = ["Opus", "Sonnet", "Fable"]


def _when(rng: random.Random, span_h: float) -> str | None:
    if rng.random() < 0.15:
        return None
    return format_optional(NOW + timedelta(hours=rng.uniform(-span_h / 4, span_h)))


def _pct(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.1:
        return 100.0
    if r < 0.2:
        return float(rng.choice([0, 50, 85, 94.9, 95, 99]))
    return round(rng.uniform(0, 100), 1)


def _usage(rng: random.Random) -> dict:
    out: dict = {}
    for name, span in (("five_hour", 5), ("seven_day", 168)):
        r = rng.random()
        if r < 0.1:
            continue                                        # absent: not open, 0 %
        out[name] = {"pct": _pct(rng), "resets_at": _when(rng, span)}
    out["scoped"] = [{"name": s, "source": "limits", "pct": None if rng.random() < 0.15 else _pct(rng),
                      "resets_at": _when(rng, 168)} for s in SCOPES if rng.random() < 0.35]
    return out


def prefs(rng: random.Random, acc: dict) -> None:
    """The user's preferences (`claude-pool priority / threshold / pause`), some of them odd."""
    if rng.random() < 0.4:
        acc["priority"] = rng.choice([1, 1, 2, 3, None, 0, True, "2"])   # 0, True, "2": not a tier
    if rng.random() < 0.3:
        acc["threshold"] = rng.choice([0.5, 0.8, 0.97, 1, None, 0, 1.5, "0.5"])
    if rng.random() < 0.15:
        acc["paused"] = rng.choice([
            {"at": format_optional(NOW - timedelta(hours=1))},                                  # until resumed
            {"until": format_optional(NOW + timedelta(hours=rng.choice([-1, 2])))},               # over / lasting
            {"until": "0001-01-01T00:00:00Z", "reason": "travel"}, {"until": "soon"}, "yes", None])


def random_pool(rng: random.Random) -> tuple[list[dict], str]:
    n = rng.randint(1, 5)
    accounts = []
    for i in range(n):
        acc: dict = {"id": f"acc{i}", "email": f"acc{i}@example.com", "blob": ""}
        if rng.random() < 0.85:
            acc["usage"] = _usage(rng)
            age = rng.choice([5, 30, 59, 61, 600, 3600 * 3, 3600 * 30, -600, -3600 * 48])   # negative: from the future
            acc["usage_at"] = format_optional(NOW - timedelta(seconds=age))
        else:
            acc["usage_at"] = "0001-01-01T00:00:00Z"
        if rng.random() < 0.1:
            acc["needs_relogin"] = True
        if rng.random() < 0.15:
            acc["block"] = {"until": format_optional(NOW + timedelta(minutes=rng.choice([-5, 10, 300]))),
                            "source": "message", "reason": "limit",
                            "model": rng.choice(["", "", "opus", "sonnet"]),
                            "at": format_optional(NOW - timedelta(minutes=rng.choice([1, -600])))}
        prefs(rng, acc)
        accounts.append(acc)
    active = rng.choice(accounts)["id"]
    return accounts, active


def policy_view(accounts: list[dict], active: str, reading: dict | None, model: str | None,
                threshold: float) -> tuple[bool, bool, str]:
    """What the full engine's policy says on these facts: (stays without a wider look, polls only
    the active account, the account its decision holds)."""
    pool = Pool.model_validate({"mode": "account", "current": active, "accounts": json.loads(json.dumps(accounts))})
    acc = pool.account(active)
    assert acc is not None
    if reading is not None:
        acc.usage, acc.usage_at = Usage.model_validate(reading), NOW
    intent = Reconcile(if_needed=True, threshold=threshold, model=model)
    polls = policy.accounts_to_poll(pool, intent, active, NOW, 60)
    obs: dict[str, AccountObs] = {}
    for a in pool.accounts:
        if a.id == active and reading is not None and not a.needs_relogin:
            obs[a.id] = AccountObs(id=a.id, email=a.email, usage=a.usage, usage_at=NOW, poll="ok")
        else:
            obs[a.id] = unpolled(a, NOW, "")
    observed = ObservedState(now=NOW, pool=pool, pool_digest="x", store=StoreObs(present=True, valid=True,
                             account=active), settings=SettingsObs(), accounts=obs, helper_command="h")
    stay = not policy.needs_wider_poll(observed, intent)
    desired = policy.decide(observed, intent)
    return stay, set(polls) <= {active}, desired.current if desired.mode == "account" else ""


@pytest.mark.parametrize("seed", [0, 1] + [pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4)])
def test_the_light_path_stays_exactly_when_the_policy_does(seed: int) -> None:
    rng = random.Random(seed)
    stayed = moved = 0
    for _ in range(1000):
        accounts, active = random_pool(rng)
        model = rng.choice(MODELS)
        threshold = rng.choice([0.9, 0.95, 0.99])
        reading = _usage(rng) if rng.random() < 0.8 else None   # None: the live look failed
        light = quicklook.stays(accounts, active, reading, NOW, families(model), threshold)
        stay, only_active, holds = policy_view(accounts, active, reading, model, threshold)
        case = json.dumps({"accounts": accounts, "active": active, "reading": reading, "model": model,
                           "threshold": threshold})
        assert light == (stay and only_active), case
        if light:
            stayed += 1
            assert holds == active, case   # "stay" is the policy's "no change"
        else:
            moved += 1
    assert stayed > 100 and moved > 100, (stayed, moved)   # both answers are exercised


def test_the_example_of_the_issue_moves_on_both_paths() -> None:
    """Active at 60 % of an open five-hour window; another account has used 50 % of a week that
    resets in 3 h: the ranking moves (that week's room is lost at its reset), on both paths."""
    soon = format_optional(NOW + timedelta(hours=3))
    later = format_optional(NOW + timedelta(days=5))
    accounts = [
        {"id": "a", "usage": {"five_hour": {"pct": 60, "resets_at": format_optional(NOW + timedelta(hours=2))},
                              "seven_day": {"pct": 20, "resets_at": later}},
         "usage_at": format_optional(NOW - timedelta(seconds=10))},
        {"id": "b", "usage": {"five_hour": {"pct": 0, "resets_at": None},
                              "seven_day": {"pct": 50, "resets_at": soon}},
         "usage_at": format_optional(NOW - timedelta(seconds=30))},
    ]
    reading = accounts[0]["usage"]
    assert not quicklook.stays(accounts, "a", reading, NOW, None, 0.95)
    stay, _, holds = policy_view(accounts, "a", reading, None, 0.95)
    assert not stay and holds == "b"


@pytest.mark.parametrize(("usage", "expected"), [
    pytest.param({}, 0.0, id="no window at all in the pool: 0 %"),
    pytest.param({"five_hour": None, "seven_day": {"pct": 30, "resets_at": None}}, 30.0, id="five_hour null"),
    pytest.param({"seven_day": {"pct": 30, "resets_at": None}}, 30.0, id="five_hour absent"),
    pytest.param({"five_hour": {"pct": 100, "resets_at": format_optional(NOW - timedelta(minutes=1))},
                  "seven_day": {"pct": 30, "resets_at": None}}, 30.0, id="a window whose reset has passed is over"),
])
def test_missing_or_passed_windows_are_not_open(usage: dict, expected: float) -> None:
    light = decision.light_usage(usage)
    assert decision.binding(light, None, NOW) == expected
    assert not decision.five_hour_open(light, NOW)
    heavy = Usage.model_validate({k: v for k, v in usage.items() if v is not None})
    assert decision.binding(heavy, None, NOW) == expected


def test_a_reading_or_a_block_from_the_future_is_not_believed() -> None:
    """A clock that was ahead wrote them: the reading is stale (read again), the block void."""
    acc = decision.light_account({
        "id": "a", "usage": {"five_hour": {"pct": 100, "resets_at": format_optional(NOW + timedelta(hours=3))}},
        "usage_at": format_optional(NOW + timedelta(days=2)),
        "block": {"until": format_optional(NOW + timedelta(days=2, hours=1)),
                  "at": format_optional(NOW + timedelta(days=2))}})
    assert not decision.fresh(acc, NOW, timedelta(hours=1))
    assert decision.exhausted_until(acc, NOW) is None
    assert decision.live_block(acc, NOW) is None
    assert decision.others_due([acc], "other", NOW, None) == ["a"]
    past = decision.light_account({"id": "a", "usage": {"five_hour": {"pct": 100, "resets_at": format_optional(
        NOW + timedelta(hours=3))}}, "usage_at": format_optional(NOW - timedelta(seconds=30))})
    assert decision.fresh(past, NOW, timedelta(seconds=60))
    assert decision.exhausted_until(past, NOW) == NOW + timedelta(hours=3)


def test_no_second_copy_of_a_default() -> None:
    """One constant for each default (the light path used to carry its own threshold)."""
    from claude_pool.schema import config

    assert config.DEFAULT_THRESHOLD is decision.DEFAULT_THRESHOLD
    assert quicklook.DEFAULT_THRESHOLD is decision.DEFAULT_THRESHOLD
    assert config.PolicyConfig().usage_ttl_seconds == decision.DEFAULT_TTL_SECONDS
