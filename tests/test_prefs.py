"""The user's preferences (issue 20): `claude-pool priority / threshold / pause / resume / rename`.

First the policy's tables (tests/test_policy.py style: observed state in, plan out, no I/O): a
paused account, tiers with and without room, a per-account threshold, and idempotence (apply the
desired state, plan again: no change). Then the commands on real files against the fake API:
what they print, what the pool file holds (plain JSON fields the Go tool ignores, ids it reads),
what `list`, `list --json` and `plan` say, the audit log. The real Claude Code's side is in
tests/test_prefs_e2e.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from claude_pool.reconciler.diff import make_plan
from claude_pool.reconciler.intents import Prefer, Reconcile, Rename
from claude_pool.reconciler.policy import decide
from claude_pool.schema.credentials import oauth_fingerprint
from claude_pool.schema.pool import Pause
from claude_pool.schema.state import ObservedState
from test_policy import NOW, A, blob, plan_for, types, world

ALICE, BOB = "alice@example.com", "bob@example.com"


def prefs(observed: ObservedState, **by_id: dict) -> ObservedState:
    """Set preferences on the pool's accounts: prefs(o, a={"priority": 2}, b={"paused": Pause()})."""
    for acc_id, fields in by_id.items():
        acc = observed.pool.account(acc_id)
        assert acc is not None
        for name, value in fields.items():
            setattr(acc, name, value)
    return observed


def applied(observed: ObservedState, intent=None) -> ObservedState:  # type: ignore[no-untyped-def]
    """The observed state after applying the plan for `intent` (what apply's handlers do, in memory)."""
    desired = decide(observed, intent if intent is not None else Reconcile())
    pool = observed.pool.model_copy(deep=True)
    for acc_id, fields in desired.prefs.items():
        acc = pool.account(acc_id)
        for name, value in fields.items():
            setattr(acc, name, Pause(at=NOW, **value) if name == "paused" and value else value)
    for old, new in desired.renames:
        acc = pool.account(old)
        if acc is not None:
            acc.id = new
        key = pool.key(old)
        if key is not None:
            key.id = new
    pool.mode, pool.current, pool.current_key = desired.mode, desired.current, desired.current_key
    accounts = {}
    for acc in pool.accounts:
        obs = observed.accounts.get(acc.id) or next(o for aid, o in observed.accounts.items()
                                                    if (aid, acc.id) in desired.renames)
        accounts[acc.id] = obs.model_copy(update={"id": acc.id})
    held = desired.store_account or dict(desired.renames).get(observed.store.account, observed.store.account)
    store = observed.store.model_copy(update={"account": held, "fingerprint": oauth_fingerprint(blob(held))
                                              if desired.store_account else observed.store.fingerprint})
    return observed.model_copy(update={"pool": pool, "accounts": accounts, "store": store})


def converged(observed: ObservedState, intent=None) -> None:  # type: ignore[no-untyped-def]
    """Apply then plan: nothing left to change (and the same command again changes nothing)."""
    after = applied(observed, intent)
    assert plan_for(after).actions == [], "a reconcile after the apply still has changes"
    if isinstance(intent, Prefer):
        assert plan_for(after, intent).actions == [], "the same command twice changes something"


HOURS = timedelta(hours=1)


# ---- a paused account ---------------------------------------------------------------------------

def test_a_paused_account_held_now_is_left_and_plan_says_why():
    observed = prefs(world(A("a", 10), A("b", 30), current="a"), a={"paused": Pause(at=NOW, reason="travel")})
    plan = plan_for(observed)
    assert types(plan) == ["save_pool_state", "write_credential"]
    assert plan.actions[-1].target == "b"
    assert any(n.startswith("a: paused until `claude-pool resume` (by hand: travel") for n in plan.notes), plan.notes
    converged(observed)


@pytest.mark.parametrize("intent", [Reconcile(), Reconcile(if_needed=True)], ids=["reconcile", "--if-needed"])
def test_a_paused_account_is_never_chosen(intent):
    # b has the most room by far, but is paused: c, not b; and the hooks' stay rule looks wider
    observed = prefs(world(A("a", 97), A("b", 0), A("c", 50), current="a"),
                     b={"paused": Pause(until=NOW + 3 * HOURS)})
    assert decide(observed, intent).current == "c"
    converged(observed, intent)


def test_a_pause_past_its_end_is_forgotten_and_the_account_chosen_again():
    observed = prefs(world(A("a", 97), A("b", 0), current="a"), b={"paused": Pause(until=NOW - timedelta(minutes=1))})
    assert decide(observed, Reconcile()).current == "b"
    assert not any("paused" in n for n in plan_for(observed).notes)


def test_the_paused_held_account_is_left_even_for_an_account_never_read():
    # errors are not exhaustion, and a pause is the user's word: move to the unknown one
    observed = prefs(world(A("a", 10), A("b", None, poll="skipped"), current="a"), a={"paused": Pause()})
    desired = decide(observed, Reconcile())
    assert desired.current == "b" and "a is paused" in desired.reason


def test_every_account_paused_goes_to_the_keys_or_stays_and_says_so():
    observed = prefs(world(A("a", 10), A("b", 10), keys=("k1",)), a={"paused": Pause()}, b={"paused": Pause()})
    assert decide(observed, Reconcile()).mode == "apikey"
    observed = prefs(world(A("a", 10), A("b", 10)), a={"paused": Pause()}, b={"paused": Pause()})
    plan = plan_for(observed)
    assert plan.actions == [] and "paused" in plan.reason


# ---- tiers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("accounts", "tiers", "current", "chosen"), [
    pytest.param([A("a", 10), A("b", 30)], {}, "a", "a", id="no tiers: the open window is kept"),
    pytest.param([A("a", 10), A("b", 30)], {"a": 2}, "a", "b", id="a lower tier with room is spent first"),
    pytest.param([A("a", 10), A("b", 30)], {"a": 2, "b": 1}, "a", "b", id="tier 1 before tier 2"),
    pytest.param([A("a", 97), A("b", 50), A("c", 0)], {"a": 1, "b": 2, "c": 3}, "a", "b",
                 id="tier 1 full: tier 2, not the emptier tier 3"),
    pytest.param([A("a", 100), A("b", 96), A("c", 10)], {"a": 1, "b": 2, "c": 3}, "a", "c",
                 id="tiers 1 and 2 with no room: tier 3"),
    pytest.param([A("a", 96), A("b", 30), A("c", 10)], {"a": 2, "b": 1, "c": 2}, "b", "b",
                 id="the held tier-1 account with room stays"),
    pytest.param([A("a", 30), A("b", 10), A("c", 0)], {"a": 1, "b": 1, "c": 2}, "a", "a",
                 id="within a tier, today's rule: the open window is kept"),
    pytest.param([A("a", 100), A("b", 97), A("c", 98)], {"b": 1, "c": 2}, "a", "b",
                 id="nobody under the threshold: the lowest usable tier"),
])
def test_tiers(accounts, tiers, current, chosen):
    observed = prefs(world(*accounts, current=current), **{k: {"priority": v} for k, v in tiers.items()})
    assert decide(observed, Reconcile()).current == chosen
    converged(observed)


def test_a_lower_tier_never_read_makes_the_hooks_look_wider():
    from claude_pool.reconciler.policy import needs_wider_poll

    intent = Reconcile(if_needed=True)
    observed = prefs(world(A("a", 10), A("b", None, poll="skipped"), current="a"), a={"priority": 2})
    assert needs_wider_poll(observed, intent)
    assert not needs_wider_poll(prefs(observed, a={"priority": None}), intent)


# ---- a per-account threshold ----------------------------------------------------------------------

@pytest.mark.parametrize(("pct", "own", "chosen"), [
    pytest.param(70, 0.8, "a", id="under its own threshold: stays"),
    pytest.param(85, 0.8, "b", id="past its own 80%: moves (the global 95% would stay)"),
    pytest.param(85, None, "a", id="no threshold of its own: the global one"),
    pytest.param(97, 0.99, "a", id="its own 99%: stays past the global 95%"),
])
@pytest.mark.parametrize("if_needed", [False, True], ids=["reconcile", "--if-needed"])
def test_a_per_account_threshold(pct, own, chosen, if_needed):
    intent = Reconcile(if_needed=if_needed)
    observed = prefs(world(A("a", pct), A("b", 0), current="a"), a={"threshold": own})
    desired = decide(observed, intent)
    assert desired.current == chosen, desired.reason
    converged(observed, intent)


# ---- the commands' intents -------------------------------------------------------------------------

def test_pausing_the_held_account_moves_in_the_same_plan_and_converges():
    observed = world(A("a", 10), A("b", 30), current="a")
    intent = Prefer("a", "paused", paused=True, until=NOW + 3 * HOURS, then=Reconcile())
    plan = plan_for(observed, intent)
    assert types(plan) == ["set_preference", "save_pool_state", "write_credential"]
    pref = plan.actions[0]
    assert (pref.target, pref.field, pref.paused, pref.until) == ("a", "paused", True, NOW + 3 * HOURS)
    assert pref.after == "paused until 2026-11-25T15:00:00Z" and pref.before == "not paused"
    converged(observed, intent)
    # resuming: a has more weekly room per hour? no: same; b (held) stays, only the pause goes
    after = applied(observed, intent)
    plan = plan_for(after, Prefer("a", "paused", paused=False, then=Reconcile()))
    assert types(plan) == ["set_preference"]


@pytest.mark.parametrize(("intent", "words"), [
    (Prefer("k1", "priority", priority=1), "is an API key"),
    (Prefer("ghost", "threshold", threshold=0.5), "no account named 'ghost'"),
    (Rename("a", "b"), "already taken"),
    (Rename("a", "k1"), "already taken"),
    (Rename("ghost", "x"), "no account or key named 'ghost'"),
])
def test_refused_in_one_line(intent, words):
    from claude_pool.reconciler.errors import UserError

    with pytest.raises(UserError, match=words):
        decide(world(A("a", 10), A("b", 30), keys=("k1",)), intent)


def test_rename_the_held_account_and_a_key_the_pool_follows():
    observed = world(A("a", 10), A("b", 30), current="a", keys=("k1",), current_key="k1")
    for old, new in (("a", "work"), ("k1", "spare")):
        intent = Rename(old, new, then=Reconcile())
        plan = make_plan(observed, decide(observed, intent), "test")
        assert types(plan) == ["rename"], plan   # no save_pool_state: current/current_key follow in the handler
        assert (plan.actions[0].target, plan.actions[0].new_id) == (old, new)
        converged(observed, intent)
        observed = applied(observed, intent)
    assert (observed.pool.current, observed.pool.current_key) == ("work", "spare")


# ---- the commands on real files ---------------------------------------------------------------------

def test_the_commands_keep_their_preferences_in_the_pool_and_say_what_changed(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.ok("list")                               # readings cached: the commands decide on them

    out = sandbox.ok("threshold", "bob", "80%").stdout
    assert out == "bob: threshold 80% (was: default threshold).\n"
    assert sandbox.ok("threshold", "bob", "0.8").stdout == "bob: threshold 80% already.\n"
    out = sandbox.ok("priority", "alice", "2").stdout   # bob (the default tier 1) has room: the pool moves
    assert out.splitlines() == ["alice: priority 2 (was: default priority).", "Claude Code now uses account bob."]
    assert sandbox.status()["name"] == "bob"
    out = sandbox.ok("pause", "bob", "--until", "3h", "--reason", "quota for the team").stdout
    lines = out.splitlines()
    assert lines[0].startswith("bob: paused until ") and lines[1] == "Claude Code now uses account alice: bob is paused."
    assert sandbox.status()["name"] == "alice"

    pool = sandbox.pool()                            # plain JSON fields; ids untouched
    bob = sandbox.pool_account("bob")
    assert (bob["priority"], bob["threshold"]) == (None, 0.8)
    assert bob["paused"]["reason"] == "quota for the team" and bob["paused"]["until"].endswith("Z")
    assert sandbox.pool_account("alice")["priority"] == 2 and pool["current"] == "alice"

    text = sandbox.ok("list").stdout
    bob_line = next(line for line in text.splitlines() if " bob " in line)
    assert "paused for 2h59m (by hand: quota for the team; never chosen)" in bob_line or \
        "paused for 3h (by hand: quota for the team; never chosen)" in bob_line, text
    assert "(threshold 80%)" in bob_line and "(priority 2)" in text
    listed = json.loads(sandbox.ok("list", "--json").stdout)
    view = {a["id"]: a for a in listed["accounts"]}
    assert list(view["bob"])[-3:] == ["priority", "threshold", "paused"]   # new fields last
    assert view["bob"]["paused"]["reason"] == "quota for the team" and view["bob"]["threshold"] == 0.8
    assert view["alice"]["priority"] == 2 and view["alice"]["paused"] is None
    plan = sandbox.ok("plan").stdout
    assert "note: bob: paused until " in plan and "quota for the team" in plan

    out = sandbox.ok("resume", "bob").stdout        # bob is tier 1 again with room: back to bob
    assert out.splitlines() == [f"bob: not paused (was: {bob_line and 'paused until ' + bob['paused']['until']}).",
                                "Claude Code now uses account bob."]
    assert sandbox.ok("priority", "alice", "default").stdout == "alice: default priority (was: priority 2).\n"
    assert sandbox.ok("plan", "--detailed-exitcode").returncode == 0     # converged

    done = [(e["action"], e["target"], e.get("after")) for e in sandbox.audit() if e.get("event") == "apply"
            and e["action"] == "set_preference"]
    assert done == [("set_preference", "bob", "threshold 80%"), ("set_preference", "alice", "priority 2"),
                    ("set_preference", "bob", f"paused until {bob['paused']['until']}"),
                    ("set_preference", "bob", "not paused"), ("set_preference", "alice", "default priority")]


def test_rename_keeps_the_pool_readable_by_the_go_tool(sandbox, fake):
    from test_pool_compat import go_decrypt

    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": "sk-ant-api03-PREFSTESTKEY-0123456789abcdef"},
                 current_key="k1")
    assert sandbox.ok("rename", "alice", "work").stdout == "Renamed account alice to work.\n"
    assert sandbox.ok("rename", "k1", "spare").stdout == "Renamed API key k1 to spare.\n"
    raw = json.loads(go_decrypt(sandbox.pool_bytes(), sandbox.key))   # the Go tool's reading: plain ids
    assert (raw["current"], raw["current_key"]) == ("work", "spare")
    assert [a["id"] for a in raw["accounts"]] == ["work", "bob"] and [k["id"] for k in raw["api_keys"]] == ["spare"]
    assert sandbox.status()["name"] == "work"
    sandbox.ok("switch", "bob")
    assert sandbox.ok("switch", "work").stdout.startswith("Claude Code now uses account work")

    for args, words in [(("rename", "work", "bob"), "already taken"), (("rename", "work", "a/b"), "may not contain"),
                        (("rename", "ghost", "x"), "no account or key named 'ghost'"),
                        (("priority", "bob", "0"), "a tier from 1"), (("threshold", "bob", "150%"), "expected a fraction"),
                        (("pause", "bob", "--until", "2001-01-01T00:00"), "not in the future"),
                        (("pause", "bob", "--until", "soon"), "expected a duration"),
                        (("priority", "spare", "1"), "is an API key")]:
        before = sandbox.pool_bytes()
        sandbox.assert_refused(sandbox.run(*args), words)
        assert sandbox.pool_bytes() == before, args


def test_a_pause_the_pool_file_says_has_ended_is_forgotten(sandbox, fake):
    fake.add_account(ALICE, five_hour=40)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    pool = sandbox.pool()
    pool["accounts"][1]["paused"] = {"at": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z", "reason": "old"}
    pool["accounts"][0]["threshold"] = 0.3           # alice's own threshold: at 40 % she is past it
    sandbox.write_pool(pool)
    listed = json.loads(sandbox.ok("list", "--json").stdout)
    assert [a["paused"] for a in listed["accounts"]] == [None, None]
    sandbox.ok("reconcile")
    assert sandbox.status()["name"] == "bob"
    assert all(a["paused"] is None for a in sandbox.pool()["accounts"])   # and gone from the pool file


@pytest.mark.parametrize(("prefs_of_alice", "wall"), [
    pytest.param({}, "False", id="at 60 %, under the global threshold: no wall"),
    pytest.param({"threshold": 0.5}, "True", id="past her own 50 %"),
    pytest.param({"paused": {"until": None}}, "True", id="paused"),
])
def test_the_prompt_hook_sees_the_held_accounts_own_threshold_and_pause(sandbox, fake, prefs_of_alice, wall):
    """status.json's `held` carries the preferences the prompt hook's wall check needs (it then
    waits for the move before the prompt goes out)."""
    from test_wall import _probe

    fake.add_account(ALICE, five_hour=60)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")
    pool = sandbox.pool()
    pool["accounts"][0].update(prefs_of_alice)
    sandbox.write_pool(pool)                         # as another writer would: status.json is rebuilt
    assert sandbox.ok("status").stdout.strip() and sandbox.pool()["current"] == "alice"
    assert _probe(sandbox, "from claude_pool.reconciler import hooks; print(hooks.known_wall())") == wall


def test_plan_says_a_tier_moved_the_pool_and_switch_by_hand_to_a_paused_account_warns(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.ok("list")
    pool = sandbox.pool()
    pool["accounts"][0]["priority"] = 3               # set by another writer: `plan` shows the effect
    sandbox.write_pool(pool)
    plan = sandbox.ok("plan").stdout
    assert plan.splitlines()[0].startswith("2 changes: bob is in tier 1, spent before alice's tier 3"), plan
    sandbox.ok("apply")
    sandbox.ok("pause", "alice")
    out = sandbox.ok("switch", "alice").stdout
    assert "Note: alice is paused: the next reconcile (a hook's) moves Claude Code off it again" in out


def test_a_plan_saved_before_a_preference_changed_is_stale(sandbox, fake, tmp_path):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=30)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.ok("list")
    saved = tmp_path / "plan.json"
    sandbox.ok("plan", "--out", str(saved))
    sandbox.ok("threshold", "bob", "0.9")            # bob is not held: nothing moves, but the desired state changed
    sandbox.assert_refused(sandbox.run("apply", str(saved)), "stale")
