"""Pure tests of the policy and the diff: observed state in, desired state and plan out.

No files, no network, no clock: every Pool and ObservedState is built in memory, `now` is fixed.
Every plan produced here is also checked for secrets (docs/ARCHITECTURE.md §7: a plan never contains one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from claude_pool.providers.poolfile import decision_digest
from claude_pool.reconciler.diff import make_plan
from claude_pool.reconciler.intents import AddKey, Import, Reconcile, Remove, Switch
from claude_pool.reconciler.policy import accounts_to_poll, decide
from claude_pool.schema.credentials import oauth_fingerprint
from claude_pool.schema.plan import Plan
from claude_pool.schema.pool import Account, ApiKey, Block, ExtraUsage, Pool, ScopedWindow, Usage, UsageWindow
from claude_pool.schema.state import AccountObs, ObservedState, SettingsObs, StoreObs

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
OUR_HELPER = "/opt/claude-pool/bin/claude-pool helper"
FOREIGN_HELPER = "echo sk-ant-api03-FOREIGNHELPERSECRETxxxxxxxxxxxx"


def access_token(account_id: str) -> str:
    return f"sk-ant-oat01-PLANTED-ACCESS-{account_id}-0123456789abcdef"


def refresh_token(account_id: str) -> str:
    return f"sk-ant-ort01-PLANTED-REFRESH-{account_id}-0123456789abcdef"


def api_key(key_id: str) -> str:
    return f"sk-ant-api03-PLANTED-KEY-{key_id}-0123456789abcdef"


def blob(account_id: str) -> str:
    return json.dumps({"claudeAiOauth": {
        "accessToken": access_token(account_id), "refreshToken": refresh_token(account_id),
        "expiresAt": int((NOW + timedelta(hours=8)).timestamp() * 1000),
        "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}})


@dataclass
class A:
    """One account as this run saw it. `five=None`: no usage is known for it at all."""

    id: str
    five: float | None = 0.0
    seven: float = 0.0
    poll: str = "ok"                              # ok | cached | error | skipped | dead
    resets_in: timedelta | None = timedelta(hours=2)   # of the 5h window
    age: timedelta = timedelta(seconds=5)         # how old the pool's cached reading is
    dead: bool = False
    scoped: tuple = ()                            # ((name, pct), ...): per-model weekly windows
    block: Block | None = None                    # a 429's evidence
    extra: float | None = None                    # paid extra usage on, this % of it spent
    week_in: timedelta = timedelta(days=3)        # when the seven_day window resets

    def usage(self) -> Usage | None:
        if self.five is None:
            return None
        return Usage(five_hour=UsageWindow(pct=self.five, resets_at=NOW + self.resets_in if self.resets_in else None),
                     seven_day=UsageWindow(pct=self.seven, resets_at=NOW + self.week_in),
                     scoped=[ScopedWindow(name=n, pct=p, resets_at=NOW + timedelta(days=2)) for n, p in self.scoped],
                     extra_usage=ExtraUsage(enabled=True, pct=self.extra) if self.extra is not None else None)

    def account(self) -> Account:
        usage = self.usage()
        return Account(id=self.id, email=f"{self.id}@example.com", blob=blob(self.id), usage=usage or Usage(),
                       usage_at=NOW - self.age if usage is not None else None, needs_relogin=self.dead,
                       block=self.block)

    def observation(self) -> AccountObs:
        poll = "dead" if self.dead else self.poll
        error = {"error": "usage: throttled (HTTP 429, retry after 60s)",
                 "dead": "token refresh: invalid_grant"}.get(poll, "")
        usage = self.usage()      # a failed poll may still carry the last reading, for display
        return AccountObs(id=self.id, email=f"{self.id}@example.com", usage=usage,
                          usage_at=NOW - self.age if usage is not None else None, poll=poll, error=error,
                          dead=self.dead)


def world(*accounts: A, mode: str = "account", current: str | None = None, held: str | None = "current",
          keys: tuple[str, ...] = (), current_key: str = "", settings_helper: str | None = None,
          saved_helper: str = "", settings_present: bool = True, key_cursor: int = 0) -> ObservedState:
    """An ObservedState. `held`: the pool account whose login Claude Code holds ("current": the
    pool's current account; None: the store is empty)."""
    current = accounts[0].id if current is None and accounts else (current or "")
    held = current if held == "current" else held
    pool = Pool(mode=mode, current=current, current_key=current_key, saved_api_key_helper=saved_helper,
                key_cursor=key_cursor, accounts=[a.account() for a in accounts],
                api_keys=[ApiKey(id=k, key=api_key(k)) for k in keys])
    store = StoreObs()
    if held:
        store = StoreObs(present=True, valid=True, fingerprint=oauth_fingerprint(blob(held)), account=held)
    settings = SettingsObs(present=settings_present, api_key_helper=settings_helper,
                           ours=settings_helper == OUR_HELPER)
    return ObservedState(now=NOW, pool=pool, pool_digest=decision_digest(pool), store=store, settings=settings,
                         accounts={a.id: a.observation() for a in accounts}, helper_command=OUR_HELPER)


def secrets_of(observed: ObservedState) -> list[str]:
    found = [FOREIGN_HELPER, "FOREIGNHELPERSECRET"]
    for acc in observed.pool.accounts:
        found += [access_token(acc.id), refresh_token(acc.id), acc.blob]
    found += [k.key for k in observed.pool.api_keys]
    return found


def plan_for(observed: ObservedState, intent=None) -> Plan:  # type: ignore[no-untyped-def]
    """decide + make_plan, and prove the plan (as saved by `plan --out`) holds no secret."""
    intent = intent if intent is not None else Reconcile()
    plan = make_plan(observed, decide(observed, intent), "test")
    text = plan.model_dump_json(indent=2)
    for secret in secrets_of(observed):
        assert secret not in text, "a secret leaked into the plan"
    return plan


def types(plan: Plan) -> list[str]:
    return [a.type for a in plan.actions]


def action(plan: Plan, action_type: str):  # type: ignore[no-untyped-def]
    found = [a for a in plan.actions if a.type == action_type]
    assert len(found) == 1, f"expected one {action_type} in {types(plan)}"
    return found[0]


# ---- selection -----------------------------------------------------------------------------

# Since the pacing ranking (docs/ARCHITECTURE.md §6 rule 3) these cases leave the active account
# only when its five-hour window is at the threshold (0.95) or a window that binds is full; the
# old "lowest max(5h, 7d) wins" cases became the rule-by-rule cases in RANKING below.
SELECTION = [
    pytest.param([A("a", 96, 10), A("b", 20, 60), A("c", 30, 30)], "a", "c",
                 id="off a full five-hour window: the most weekly room per hour, not the lowest 5h"),
    pytest.param([A("a", 10, 100), A("b", 90, 20)], "a", "b", id="a full 7d window binds"),
    pytest.param([A("a", 30, 30), A("b", 30, 30)], "b", "b", id="tie keeps the current account"),
    pytest.param([A("a", 30), A("b", 30), A("c", 96)], "c", "a", id="tie without current: pool order"),
    pytest.param([A("b", 30), A("a", 30), A("c", 96)], "c", "b", id="tie without current: pool order, reversed"),
    pytest.param([A("a", 99.5), A("b", 99.9)], "b", "b", id="none under the threshold: stay while usable"),
    pytest.param([A("a", 99.5), A("b", 100)], "b", "a", id="99.5 still has headroom"),
    pytest.param([A("a", 40, poll="cached"), A("b", 97)], "b", "a", id="a fresh cached reading counts"),
]


@pytest.mark.parametrize(("accounts", "current", "chosen"), SELECTION)
def test_reconcile_selects_the_account_with_most_headroom(accounts, current, chosen):
    observed = world(*accounts, current=current)
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", chosen)
    plan = plan_for(observed)
    if chosen == current:
        assert plan.actions == []
    else:
        assert types(plan) == ["save_pool_state", "write_credential"]
        assert action(plan, "write_credential").target == chosen
        assert action(plan, "save_pool_state").current == chosen
        assert action(plan, "write_credential").before == observed.store.fingerprint
        assert action(plan, "write_credential").after == oauth_fingerprint(blob(chosen))


def test_selection_follows_the_login_claude_code_holds_when_pool_current_is_stale():
    # The pool says a, but Claude Code holds b (someone ran /login + import elsewhere): b is active,
    # ties keep it, and the pool's record is corrected without touching the credential store.
    observed = world(A("a", 30), A("b", 30), current="a", held="b")
    plan = plan_for(observed)
    assert "write_credential" not in types(plan)
    assert decide(observed, Reconcile()).current == "b"


# ---- --if-needed ---------------------------------------------------------------------------

@pytest.mark.parametrize(("active_pct", "threshold", "expected"), [
    pytest.param(85, 0.9, "a", id="under threshold stays"),
    pytest.param(89.9, 0.9, "a", id="just under stays"),
    pytest.param(90, 0.9, "b", id="at threshold moves"),
    pytest.param(95, 0.9, "b", id="over threshold moves"),
    pytest.param(60, 0.5, "b", id="lower threshold moves"),
])
def test_if_needed_stays_while_the_active_account_is_under_the_threshold(active_pct, threshold, expected):
    observed = world(A("a", active_pct), A("b", 0), current="a")
    intent = Reconcile(if_needed=True, threshold=threshold)
    assert decide(observed, intent).current == expected
    plan = plan_for(observed, intent)
    assert (plan.actions == []) == (expected == "a")


def test_if_needed_with_the_active_accounts_usage_unknown_stays_put():
    observed = world(A("a", None, poll="error"), A("b", 0), current="a")
    intent = Reconcile(if_needed=True, threshold=0.9)
    assert plan_for(observed, intent).actions == []


# ---- fallback to API keys ------------------------------------------------------------------

@pytest.mark.parametrize("accounts", [
    pytest.param([A("a", 100), A("b", 100)], id="both 5h at 100"),
    pytest.param([A("a", 100), A("b", 20, 100)], id="one by 5h, one by 7d"),
    pytest.param([A("a", None, poll="error"), A("b", 100)], id="every account observed is at 100"),
    pytest.param([A("a", 0, dead=True), A("b", 100)], id="the only live account is at 100"),
])
def test_every_observed_account_exhausted_with_keys_enters_api_key_mode(accounts):
    observed = world(*accounts, current="a", keys=("k1", "k2"))
    desired = decide(observed, Reconcile())
    assert desired.mode == "apikey"
    # the Go meaning: key_cursor (0) is the key last served; entering announces the next one
    assert desired.current_key == "k2"
    assert desired.api_key_helper == OUR_HELPER
    plan = plan_for(observed)
    # docs/ARCHITECTURE.md §7: the pool says apikey BEFORE settings.json names the helper
    assert types(plan) == ["save_pool_state", "write_settings"]
    assert action(plan, "save_pool_state").mode == "apikey"
    assert action(plan, "save_pool_state").current_key == "k2"
    assert action(plan, "write_settings").value == "ours"


def test_entering_api_key_mode_announces_the_key_after_the_cursor_and_remembers_a_foreign_helper():
    # k2 was served last time (cursor 1, current_key k2): the rotation goes on with k1
    observed = world(A("a", 100), A("b", 100), current="a", keys=("k1", "k2"), current_key="k2",
                     key_cursor=1, settings_helper=FOREIGN_HELPER)
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current_key) == ("apikey", "k1")
    assert desired.saved_api_key_helper == FOREIGN_HELPER
    plan = plan_for(observed)
    assert types(plan) == ["save_pool_state", "write_settings"]
    assert action(plan, "save_pool_state").saved_api_key_helper == "from_settings"
    assert action(plan, "write_settings").change == "update"
    assert "write_credential" not in types(plan)


def test_every_account_exhausted_and_no_keys_changes_nothing_and_says_so():
    observed = world(A("a", 100), A("b", 100, 100), current="a")
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", "a")
    plan = plan_for(observed)
    assert plan.actions == []
    assert any("no api keys" in n.lower() for n in plan.notes), plan.notes


def test_keys_only_pool_uses_api_keys():
    observed = world(keys=("k1",), held=None)
    plan = plan_for(observed)
    assert decide(observed, Reconcile()).mode == "apikey"
    assert types(plan) == ["save_pool_state", "write_settings"]


def test_empty_pool_is_a_silent_no_op():
    observed = world(held=None)
    plan = plan_for(observed)
    assert plan.actions == []
    assert plan.notes == []


def test_empty_pool_with_a_foreign_helper_leaves_settings_alone():
    observed = world(held=None, settings_helper=FOREIGN_HELPER)
    assert plan_for(observed).actions == []


# ---- errors are not exhaustion -------------------------------------------------------------

@pytest.mark.parametrize(("accounts", "chosen"), [
    pytest.param([A("a", None, poll="error"), A("b", 50)], "b", id="a failed poll is skipped"),
    pytest.param([A("a", 10), A("b", None, poll="error")], "a", id="a failed poll never wins"),
    pytest.param([A("a", 5, poll="error"), A("b", 50)], "b", id="a failed poll is skipped despite an old low reading"),
])
def test_a_failed_poll_is_skipped(accounts, chosen):
    observed = world(*accounts, current="a", keys=("k1",))
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", chosen)


@pytest.mark.parametrize("keys", [(), ("k1",)], ids=["no keys", "with keys"])
def test_when_no_account_could_be_polled_the_current_credential_is_kept(keys):
    observed = world(A("a", None, poll="error"), A("b", None, poll="error"), current="b", keys=keys)
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", "b")
    plan = plan_for(observed)
    assert plan.actions == []
    assert any("a" in n and "unknown" in n for n in plan.notes), plan.notes


def test_in_api_key_mode_a_failed_poll_does_not_leave_or_flap():
    observed = world(A("a", None, poll="error"), A("b", None, poll="error"), mode="apikey", current="a",
                     keys=("k1",), current_key="k1", settings_helper=OUR_HELPER)
    assert plan_for(observed).actions == []


# ---- dead accounts -------------------------------------------------------------------------

def test_a_dead_account_is_excluded_even_with_the_lowest_usage():
    observed = world(A("a", 0, dead=True), A("b", 70), current="a")
    desired = decide(observed, Reconcile())
    assert desired.current == "b"
    plan = plan_for(observed)
    assert action(plan, "write_credential").target == "b"
    assert any("a" in n and "re-login" in n for n in plan.notes), plan.notes


# ---- self-heal and recovery ----------------------------------------------------------------

def test_self_heal_helper_removed_by_hand_goes_back_to_account_mode():
    observed = world(A("a", 20), mode="apikey", current="a", keys=("k1",), current_key="k1",
                     settings_helper=None)
    desired = decide(observed, Reconcile())
    assert desired.mode == "account"
    plan = plan_for(observed)
    assert types(plan) == ["save_pool_state"]          # settings.json is respected as it is
    assert action(plan, "save_pool_state").mode == "account"


def test_self_heal_our_helper_in_account_mode_is_removed():
    observed = world(A("a", 20), current="a", settings_helper=OUR_HELPER)
    plan = plan_for(observed)
    assert types(plan) == ["write_settings"]
    assert action(plan, "write_settings").value == "remove"
    assert action(plan, "write_settings").after == "(none)"


def test_self_heal_our_helper_in_account_mode_restores_the_saved_foreign_helper():
    observed = world(A("a", 20), current="a", settings_helper=OUR_HELPER, saved_helper=FOREIGN_HELPER)
    desired = decide(observed, Reconcile())
    assert desired.api_key_helper == FOREIGN_HELPER
    assert desired.saved_api_key_helper == ""
    plan = plan_for(observed)
    assert types(plan) == ["write_settings", "save_pool_state"]
    assert action(plan, "write_settings").value == "saved"
    assert action(plan, "save_pool_state").saved_api_key_helper == "clear"


def test_recovery_from_api_key_mode_restores_settings_then_credential_then_pool():
    observed = world(A("a", 100), A("b", 20), mode="apikey", current="a", keys=("k1",), current_key="k1",
                     settings_helper=OUR_HELPER, saved_helper=FOREIGN_HELPER)
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", "b")
    plan = plan_for(observed)
    # docs/ARCHITECTURE.md §7, leaving API-key mode: settings first, then the credential, then the pool
    assert types(plan) == ["write_settings", "write_credential", "save_pool_state"]
    assert action(plan, "write_settings").value == "saved"
    assert action(plan, "write_credential").target == "b"
    state = action(plan, "save_pool_state")
    assert (state.mode, state.current, state.saved_api_key_helper) == \
        ("account", "b", "clear")


def test_recovery_to_the_account_claude_code_still_holds_needs_no_credential_write():
    observed = world(A("a", 20), A("b", 100), mode="apikey", current="a", keys=("k1",), current_key="k1",
                     settings_helper=OUR_HELPER)
    plan = plan_for(observed)
    assert types(plan) == ["write_settings", "save_pool_state"]
    assert action(plan, "write_settings").value == "remove"


def test_api_key_mode_with_every_account_still_exhausted_stays():
    observed = world(A("a", 100), A("b", 100), mode="apikey", current="a", keys=("k1",), current_key="k1",
                     settings_helper=OUR_HELPER)
    desired = decide(observed, Reconcile())
    assert desired.mode == "apikey"
    assert plan_for(observed).actions == []


# ---- which accounts get polled ----------------------------------------------------------------

def _poll_pool() -> Pool:
    accounts = [
        A("fresh", 10, age=timedelta(seconds=10)).account(),
        A("stale", 10, age=timedelta(seconds=120)).account(),
        A("exhausted", 100, resets_in=timedelta(hours=1), age=timedelta(seconds=120)).account(),
        A("reset_passed", 100, resets_in=timedelta(minutes=-1), age=timedelta(seconds=120)).account(),
        A("dead", 10, dead=True, age=timedelta(seconds=120)).account(),
        A("never", None).account(),
    ]
    return Pool(current="stale", accounts=accounts)


@pytest.mark.parametrize(("intent", "held", "expected"), [
    pytest.param(Reconcile(), "stale", ["stale", "reset_passed", "never"], id="reconcile uses the cache"),
    pytest.param(Reconcile(live=True), "stale", ["fresh", "stale", "exhausted", "reset_passed", "never"],
                 id="plan/apply/list poll live: every account but the dead (--live always calls)"),
    # if-needed: the active account past the TTL, others only once a reset they reported passed
    pytest.param(Reconcile(if_needed=True), "stale", ["stale", "reset_passed"],
                 id="if-needed polls the active account and readings a reset outdated"),
    pytest.param(Reconcile(if_needed=True), "fresh", ["reset_passed"],
                 id="if-needed with a fresh active reading polls only readings a reset outdated"),
    pytest.param(Switch("stale"), "stale", [], id="switch polls nothing"),
    pytest.param(Import(), "stale", [], id="import polls nothing"),
    pytest.param(AddKey("k9"), "stale", [], id="key add polls nothing"),
    pytest.param(Remove("stale"), "stale", [], id="rm polls nothing"),
])
def test_accounts_to_poll(intent, held, expected):
    assert accounts_to_poll(_poll_pool(), intent, held, NOW, 60) == expected


def test_accounts_to_poll_re_polls_a_young_reading_whose_window_has_reset_since():
    pool = Pool(current="a", accounts=[
        A("a", 100, resets_in=timedelta(seconds=-1), age=timedelta(seconds=10)).account(),
        A("b", 40, resets_in=timedelta(hours=1), age=timedelta(seconds=10)).account()])
    assert accounts_to_poll(pool, Reconcile(), "a", NOW, 60) == ["a"]


def test_accounts_to_poll_in_api_key_mode_skips_the_network_when_every_account_is_provably_exhausted():
    pool = Pool(mode="apikey", current="a", current_key="k1", api_keys=[ApiKey(id="k1", key=api_key("k1"))],
                accounts=[A("a", 100, resets_in=timedelta(minutes=30), age=timedelta(minutes=10)).account(),
                          A("b", 20, 100, resets_in=timedelta(hours=2), age=timedelta(minutes=10)).account()])
    # b's 7d window is at 100 and resets in 3 days: provably exhausted as well
    assert accounts_to_poll(pool, Reconcile(), "a", NOW, 60) == []
    assert accounts_to_poll(pool, Reconcile(if_needed=True), "a", NOW, 60) == []


def test_accounts_to_poll_in_api_key_mode_re_polls_a_fresh_reading_that_does_not_prove_exhaustion():
    # docs/ARCHITECTURE.md §6 rule 7: in API-key mode every run re-polls (API-key time is billed time); only a reading
    # that proves exhaustion until a future reset spares the network.
    pool = Pool(mode="apikey", current="a", current_key="k1", api_keys=[ApiKey(id="k1", key=api_key("k1"))],
                accounts=[A("a", 100, resets_in=None, age=timedelta(seconds=10)).account(),
                          A("b", 100, resets_in=timedelta(hours=1), age=timedelta(seconds=10)).account()])
    assert accounts_to_poll(pool, Reconcile(), "a", NOW, 60) == ["a"]


def test_accounts_to_poll_in_api_key_mode_if_needed_still_looks_at_every_account():
    pool = Pool(mode="apikey", current="a", current_key="k1", api_keys=[ApiKey(id="k1", key=api_key("k1"))],
                accounts=[A("a", 100, resets_in=timedelta(minutes=30), age=timedelta(minutes=10)).account(),
                          A("b", 100, resets_in=timedelta(minutes=-1), age=timedelta(minutes=10)).account()])
    assert accounts_to_poll(pool, Reconcile(if_needed=True), "a", NOW, 60) == ["b"]


# ---- plans are data, deterministic and secret-free ---------------------------------------------

def test_the_same_observation_gives_the_same_plan():
    one = plan_for(world(A("a", 100), A("b", 20), current="a", keys=("k1",)))
    two = plan_for(world(A("a", 100), A("b", 20), current="a", keys=("k1",)))
    assert one.model_dump() == two.model_dump()
    assert one.observed_digest and one.observed_digest == two.observed_digest


def test_the_observed_digest_moves_when_the_world_moves():
    base = world(A("a", 10), A("b", 20), current="a")
    switched = world(A("a", 10), A("b", 20), current="b")
    helper = world(A("a", 10), A("b", 20), current="a", settings_helper=FOREIGN_HELPER)
    digests = {plan_for(o).observed_digest for o in (base, switched, helper)}
    assert len(digests) == 3


def test_a_foreign_helper_is_named_in_a_plan_by_fingerprint_only():
    observed = world(A("a", 100), current="a", keys=("k1",), settings_helper=FOREIGN_HELPER)
    plan = plan_for(observed)
    settings = action(plan, "write_settings")
    assert settings.before.startswith("foreign helper ")
    assert settings.after == "claude-pool helper"


# ---------------------------------------------------------------- rate-limit truth (issue 10)

def blocked(hours: float = 2, model: str = "", source: str = "message") -> Block:
    return Block(until=NOW + timedelta(hours=hours), source=source, reason="You've hit your session limit",
                 model=model, at=NOW - timedelta(minutes=1))


OPUS_FULL = ("Opus", 100.0)

# (accounts, model, expected current after a full reconcile, a word the reason must contain)
MODEL_CASES = [
    # the scenario: A looks fine but its Opus weekly window is full
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40, scoped=(("Opus", 10.0),))), "opus", "b", "b at 40%"),
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40, scoped=(("Opus", 10.0),))), "claude-opus-4-8", "b", ""),
    # another model's window does not spend the account
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40, scoped=(("Opus", 10.0),))), "sonnet", "a", "a at 20%"),
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40)), "claude-sonnet-5", "a", ""),
    # a matching window below 100% binds like five_hour / seven_day: a's Opus week is 70% used,
    # but a's open five-hour window is lightly used: it stays (no switch, no lost prompt cache)
    ((A("a", 10, 20, scoped=(("Opus", 70.0),)), A("b", 40, 40)), "opus", "a", "a at 70% (Opus)"),
    ((A("a", 10, 20, scoped=(("Opus", 100.0),)), A("b", 40, 40)), "opus", "b", "b at 40%"),
    ((A("a", 10, 20, scoped=(("Opus", 70.0),)), A("b", 40, 40)), "sonnet", "a", ""),
    # a new model's window that only limits[] names
    ((A("a", 5, 5, scoped=(("Fable", 100.0),)), A("b", 50, 50)), "claude-fable-1", "b", ""),
    # unknown model: the account with a full model window ranks after every account without one...
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40)), None, "b", ""),
    # ... but is not exhausted: it is used before anyone gets stuck
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 100, 40)), None, "a", "model unknown"),
    ((A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 30, 40, scoped=(("Sonnet", 100.0),))), None, "a", ""),
]


@pytest.mark.parametrize("accounts, model, expected, why", MODEL_CASES)
def test_the_model_decides_which_windows_bind(accounts, model, expected, why) -> None:  # type: ignore[no-untyped-def]
    observed = world(*accounts)
    desired = decide(observed, Reconcile(model=model))
    assert desired.mode == "account" and desired.current == expected, desired.reason
    assert why in desired.reason
    plan_for(observed, Reconcile(model=model))


def test_unknown_model_with_every_account_at_risk_keeps_capacity() -> None:
    """No API keys are used while an account has headroom for the general windows."""
    observed = world(A("a", 96, 20, scoped=(OPUS_FULL,)), A("b", 10, 40, scoped=(("Sonnet", 100.0),)), keys=("k1",))
    desired = decide(observed, Reconcile(model=None))
    assert (desired.mode, desired.current) == ("account", "b")


def test_if_needed_moves_off_an_account_whose_model_window_is_full() -> None:
    observed = world(A("a", 10, 20, scoped=(OPUS_FULL,)), A("b", 40, 40))
    assert decide(observed, Reconcile(if_needed=True, model="opus")).current == "b"
    assert decide(observed, Reconcile(if_needed=True, model="sonnet")).current == "a"
    assert decide(observed, Reconcile(if_needed=True, model=None)).current == "b"


BLOCK_CASES = [
    # a 429 block beats a low usage reading, even a fresh one
    ((A("a", 5, 5, block=blocked()), A("b", 60, 60)), "opus", "account", "b"),
    ((A("a", 5, 5, block=blocked()), A("b", 60, 60)), None, "account", "b"),
    # every account blocked or exhausted: API keys
    ((A("a", 5, 5, block=blocked()), A("b", 100, 60)), "opus", "apikey", "a"),
    # an expired block is forgotten
    ((A("a", 5, 5, block=blocked(hours=-0.1)), A("b", 60, 60)), "opus", "account", "a"),
    # a block for one model's own limit binds that model only
    ((A("a", 5, 5, block=blocked(model="opus")), A("b", 60, 60)), "claude-opus-4-8", "account", "b"),
    ((A("a", 5, 5, block=blocked(model="opus")), A("b", 60, 60)), "sonnet", "account", "a"),
    ((A("a", 5, 5, block=blocked(model="opus")), A("b", 60, 60)), None, "account", "b"),
    # a blocked account whose poll failed is still known to refuse
    ((A("a", 5, 5, poll="error", block=blocked()), A("b", 60, 60)), "opus", "account", "b"),
]


@pytest.mark.parametrize("accounts, model, mode, expected", BLOCK_CASES)
def test_blocks(accounts, model, mode, expected) -> None:  # type: ignore[no-untyped-def]
    observed = world(*accounts, keys=("k1",))
    desired = decide(observed, Reconcile(model=model))
    assert desired.mode == mode, desired.reason
    assert desired.current == expected, desired.reason


def test_a_block_shows_in_the_plan_with_its_source() -> None:
    observed = world(A("a", 5, 5, block=blocked(source="window")), A("b", 60, 60))
    plan = plan_for(observed, Reconcile(model="opus"))
    assert "write_credential" in types(plan)
    assert "a blocked until" in plan.reason and "reset from window" in plan.reason
    assert any(n.startswith("a: blocked until") and "429" in n for n in plan.notes)


def test_blocks_and_model_windows_set_the_wake_and_skip_polls() -> None:
    observed = world(A("a", 5, 5, block=blocked(hours=3)), A("b", 100, 0, resets_in=timedelta(hours=1)), keys=("k1",))
    desired = decide(observed, Reconcile(model="opus"))
    assert desired.mode == "apikey"
    assert desired.wake_at == NOW + timedelta(hours=1, seconds=30)
    assert accounts_to_poll(observed.pool, Reconcile(model="opus"), "a", NOW, 60) == []
    # `--live` always calls, but never an account a 429 blocks
    assert accounts_to_poll(observed.pool, Reconcile(model="opus", live=True), "a", NOW, 60) == ["b"]
    opus = world(A("a", 5, 5, scoped=(OPUS_FULL,)), mode="apikey", keys=("k1",))
    assert accounts_to_poll(opus.pool, Reconcile(model="opus"), "a", NOW, 60) == []
    assert accounts_to_poll(opus.pool, Reconcile(model="sonnet"), "a", NOW, 60) == ["a"]


OVERAGE_CASES = [
    # (accounts, keys, overage setting, expected mode, expected current or key)
    ((A("a", 100, 10, extra=20.0), A("b", 100, 10)), ("k1",), "after_keys", "apikey", "k1"),
    ((A("a", 100, 10, extra=20.0), A("b", 100, 10)), ("k1",), "before_keys", "account", "a"),
    ((A("a", 100, 10, extra=20.0), A("b", 100, 10)), (), "after_keys", "account", "a"),
    # an account with headroom always comes first
    ((A("a", 100, 10, extra=0.0), A("b", 95, 10)), ("k1",), "before_keys", "account", "b"),
    # spent extra usage (100% of its limit) is no capacity
    ((A("a", 100, 10, extra=100.0), A("b", 100, 10)), ("k1",), "before_keys", "apikey", "k1"),
    # a 429 on the account says its overage did not help
    ((A("a", 100, 10, extra=5.0, block=blocked()), A("b", 100, 10)), ("k1",), "before_keys", "apikey", "k1"),
    # the one with more left
    ((A("a", 100, 10, extra=60.0), A("b", 100, 10, extra=10.0)), (), "after_keys", "account", "b"),
]


@pytest.mark.parametrize("accounts, keys, overage, mode, expected", OVERAGE_CASES)
def test_extra_usage(accounts, keys, overage, mode, expected) -> None:  # type: ignore[no-untyped-def]
    observed = world(*accounts, keys=keys)
    desired = decide(observed, Reconcile(overage=overage, model="opus"))
    assert desired.mode == mode, desired.reason
    assert (desired.current_key if mode == "apikey" else desired.current) == expected, desired.reason


# ---------------------------------------------------------------- the pacing ranking (issue 13)
# docs/ARCHITECTURE.md §6 rule 3, one group of cases per rule. pace = weekly room / hours to the
# weekly reset; H(n) = a weekly reset n hours away; closed = no five-hour window running.

def H(hours: float) -> timedelta:
    return timedelta(hours=hours)


CLOSED = None
RANKING = [
    # rule 1: the active five-hour window is open
    pytest.param([A("a", 40, 50, week_in=H(100)), A("b", 0, 0, week_in=H(100))], "a", "sonnet", "a",
                 id="1: open and under 50%: stay, though b is twice as urgent"),
    pytest.param([A("a", 60, 50, week_in=H(100)), A("b", 0, 30, week_in=H(100))], "a", "sonnet", "a",
                 id="1: open and busy, b only 1.4x as urgent: stay"),
    pytest.param([A("a", 60, 50, week_in=H(100)), A("b", 0, 0, week_in=H(100))], "a", "sonnet", "b",
                 id="1: open and busy, b 2x as urgent: move"),
    # rule 2: the active five-hour window is closed (an idle start)
    pytest.param([A("a", 0, 50, resets_in=CLOSED, week_in=H(100)), A("b", 0, 40, week_in=H(60))], "a", "sonnet",
                 "a", id="2: closed, b 2x as urgent: stay"),
    pytest.param([A("a", 0, 50, resets_in=CLOSED, week_in=H(100)), A("b", 0, 10, week_in=H(5))], "a", "sonnet",
                 "b", id="2: closed, b's week ends in 5 h with 90% left: move"),
    pytest.param([A("a", 0, 50, resets_in=H(-1), week_in=H(100)), A("b", 0, 10, week_in=H(5))], "a", "sonnet",
                 "b", id="2: a five-hour window whose reset passed counts as closed"),
    # rule 3: the active account is not roomy (five-hour at the threshold, or a window full)
    pytest.param([A("a", 96, 50), A("b", 10, 90, week_in=H(5)), A("c", 0, 20, week_in=H(100))], "a", "sonnet",
                 "b", id="3: the best pace (b: 10%/5 h), not the lowest utilization (c)"),
    pytest.param([A("a", 96, 50), A("b", 97, 10)], "a", "sonnet", "a",
                 id="3: none under the threshold: stay while the active account is usable"),
    pytest.param([A("a", 50, 100), A("b", 97, 10), A("c", 98, 5, week_in=H(10))], "a", "sonnet", "c",
                 id="3: active full, none under the threshold: the usable one with the best pace"),
    # rule 0: the model; another model's weekly room is kept for that model
    pytest.param([A("a", 30, 30, scoped=(("Opus", 10.0),)), A("b", 30, 30, scoped=(OPUS_FULL,))], "a", "sonnet",
                 "b", id="0: Sonnet work goes where the Opus week is spent anyway"),
    pytest.param([A("a", 30, 30, scoped=(("Opus", 10.0),)), A("b", 30, 30, scoped=(OPUS_FULL,))], "a", "opus",
                 "a", id="0: Opus work stays where Opus has room"),
    pytest.param([A("a", 30, 30, scoped=(("Opus", 10.0),)), A("b", 30, 30, scoped=(("Opus", 40.0),))], "a",
                 "sonnet", "a", id="0: within 30 points of the least spare room: no move"),
    pytest.param([A("a", 60, 20, scoped=(("Opus", 90.0),), week_in=H(100)),
                  A("b", 0, 0, scoped=(("Opus", 0.0),), week_in=H(100))], "a", "opus", "b",
                 id="0: the model's own weekly window sets the pace (a: 10% of Opus left for 48 h)"),
    # 429 evidence
    pytest.param([A("a", 20, 20, block=blocked(2)), A("b", 0, 0)], "a", "sonnet", "b",
                 id="a 429 block takes the account out"),
    pytest.param([A("a", 20, 20, block=blocked(2, model="opus")), A("b", 0, 0)], "a", "sonnet", "a",
                 id="a block for Opus does not stop Sonnet"),
    pytest.param([A("a", 20, 20, block=blocked(2, model="opus")), A("b", 0, 0)], "a", "opus", "b",
                 id="a block for Opus stops Opus"),
]


@pytest.mark.parametrize(("accounts", "current", "model", "chosen"), RANKING)
def test_the_pacing_ranking(accounts, current, model, chosen):
    observed = world(*accounts, current=current, keys=("k1",))
    desired = decide(observed, Reconcile(model=model))
    assert (desired.mode, desired.current) == ("account", chosen), desired.reason
    # --if-needed (what the hooks run) comes to the same answer: a move is looked at in full first
    desired = decide(observed, Reconcile(model=model, if_needed=True))
    assert (desired.mode, desired.current) == ("account", chosen), desired.reason
    plan_for(observed, Reconcile(model=model))


def test_leaving_api_keys_takes_the_best_pace():
    observed = world(A("a", 0, 80, week_in=H(10)), A("b", 0, 0, week_in=H(100)), mode="apikey", current="b",
                     keys=("k1",), current_key="k1", settings_helper=OUR_HELPER)
    desired = decide(observed, Reconcile())
    assert (desired.mode, desired.current) == ("account", "a")
    assert "leaving API keys" in desired.reason


def test_never_keys_while_an_account_can_take_the_request():
    # every account past the threshold, one still under 100 %: an account, not a key
    observed = world(A("a", 100, 10), A("b", 99.9, 99.9), keys=("k1",))
    assert decide(observed, Reconcile()).mode == "account"
    assert decide(observed, Reconcile()).current == "b"
    assert decide(observed, Reconcile(if_needed=True)).current == "b"
    observed = world(A("a", 100, 10), A("b", 10, 100), keys=("k1",))
    assert decide(observed, Reconcile()).mode == "apikey"


def test_if_needed_stays_and_says_why():
    observed = world(A("a", 40, 50, week_in=H(100)), A("b", 0, 0, week_in=H(100)))
    desired = decide(observed, Reconcile(if_needed=True, threshold=0.95))
    assert desired.current == "a" and "under the 95% threshold" in desired.reason
    observed = world(A("a", 96, 50), A("b", 97, 50))
    desired = decide(observed, Reconcile(if_needed=True, threshold=0.95))
    assert desired.current == "a" and "staying" in desired.reason


@pytest.mark.parametrize(("five", "age", "polled"), [
    pytest.param(86, 10, ["a"], id="near a limit (>= 85%): read on every run, fresh or not"),
    pytest.param(80, 10, [], id="not near: a fresh reading is reused"),
    pytest.param(80, 120, ["a"], id="not near: past the TTL"),
])
def test_if_needed_reads_the_active_account_on_every_prompt_near_a_limit(five, age, polled):
    pool = Pool(current="a", accounts=[A("a", five, age=timedelta(seconds=age)).account(),
                                       A("b", 10, age=timedelta(hours=1)).account()])
    assert accounts_to_poll(pool, Reconcile(if_needed=True), "a", NOW, 60) == polled


def test_if_needed_near_limit_counts_the_models_own_window():
    pool = Pool(current="a", accounts=[A("a", 10, 10, scoped=(("Opus", 90.0),)).account(), A("b", 10).account()])
    assert accounts_to_poll(pool, Reconcile(if_needed=True, model="opus"), "a", NOW, 60) == ["a"]
    assert accounts_to_poll(pool, Reconcile(if_needed=True, model="sonnet"), "a", NOW, 60) == []


@pytest.mark.parametrize(("a_five", "b_week_in", "says"), [
    (30, timedelta(days=3) - timedelta(minutes=1),
     "a at 30% (5h) stays: switching costs the session its prompt cache, and b is no further ahead "
     "(both 1.1 weekly points per hour to their reset)"),
    (30, timedelta(hours=20),
     "a at 30% (5h) stays: switching costs the session its prompt cache, and its five-hour window is open and "
     "under 50%, so it is not left for pacing (b: 4.0 weekly points per hour to its reset, against 1.1)"),
    (60, timedelta(hours=68),
     "a at 60% (5h) stays: switching costs the session its prompt cache, and b is not enough ahead "
     "(1.2 weekly points per hour to its reset, against 1.1; a move takes 1.75 times as much)"),
])
def test_staying_for_the_prompt_cache_says_which_rule_holds_it(a_five, b_week_in, says):
    """The stay rule's reason says why the pool stays (an open five-hour window under BUSY is never
    left for pacing; past it, a move takes OPEN_SWITCH times the pace), never prints the same pace
    twice as if one account were ahead, and never calls an account four times ahead 'not enough'
    without saying what would be."""
    observed = world(A("a", a_five, 20), A("b", 30, 20, week_in=b_week_in), current="a")
    desired = decide(observed, Reconcile())
    assert desired.current == "a"
    assert desired.reason == says
