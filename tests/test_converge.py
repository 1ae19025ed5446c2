"""Every command converges (issue 16): `key add`, `import`, `rm`, `switch` and a config change
apply at once, in one run of the engine (one lock, no network), what a reconcile on the cached
readings would do with the pool as the command leaves it; nothing is left "pending" for the user.
A credential chosen by hand (`switch NAME`, `import`) is respected, and said to be at 100% when
the pool knows it is.

In-process against the in-memory world (tests/world.py), plus the commands' own lines through
the CLI in a sandbox (tests/conftest.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from world import HELPER, START, Memory

from claude_pool.reconciler import engine
from claude_pool.reconciler.audit import configure
from claude_pool.reconciler.commands import _hand_note, _moved
from claude_pool.reconciler.intents import AddKey, Import, Reconcile, Remove, Switch
from claude_pool.reconciler.render import list_text
from claude_pool.schema.listing import build as listing

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
KEY = "sk-ant-api03-converge-test-key-0123456789abcdef"
KEY2 = "sk-ant-api03-converge-test-key-2-0123456789abcdef"
# The model is named so no test reads this machine's settings.json; the windows here are the
# general ones, which bind every model alike.
LOOK = Reconcile(live=True, model="opus")


@pytest.fixture()
def mem(tmp_path: Path) -> Memory:
    configure("test", stderr_level="critical", log_path=tmp_path / "audit.jsonl")
    return Memory()


def cached(mem: Memory) -> None:
    """A hook's reconcile read every account and kept the readings (it changed nothing else)."""
    out = mem.run(Reconcile(live=True, model="opus", threshold=1.0))
    assert all(o.poll == "ok" for o in out.observed.accounts.values())


def command(mem: Memory, intent: Any, *, key: str | None = None, network: bool = False) -> Any:
    """One command's run, as reconciler/commands.py makes it: execute, no polling."""
    rt = mem.runtime(intent.name)
    if key is not None:
        rt.new_secrets[intent.key_id] = key
    mem.journal.clear()
    out = engine.run(mem.world, rt, intent, execute=True, network=network)
    assert not [k for k in mem.journal.kinds() if k == "api.usage"], "a command polled usage"
    return out


def pending(mem: Memory) -> dict[str, Any]:
    """What the user would be told is left to do: `plan` (a live look), `list` (its line), and
    `list --json` (the pool as last read, no network)."""
    live = mem.run(LOOK, execute=False)
    offline = mem.run(LOOK, execute=False, network=False)
    view = listing(live.observed.pool, live.observed, live.observed.now, len(live.plan.actions))
    return {"plan": [a.type for a in live.plan.actions], "cached": [a.type for a in offline.plan.actions],
            "list": view.pending_changes, "list_text": list_text(view)}


def assert_converged(mem: Memory, *, offline: bool = True) -> None:
    left = pending(mem)
    assert left["plan"] == [] and (not offline or left["cached"] == []), left
    assert left["list"] == 0 and "pending change" not in left["list_text"], left["list_text"]


# ---- key add ------------------------------------------------------------------------------------

def test_key_add_with_every_account_at_100_uses_the_key_at_once(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=100, resets_in=timedelta(hours=2))
    b = mem.api.add(BOB, five_hour=100, resets_in=timedelta(hours=3))
    mem.seed({"alice": a, "bob": b}, current="alice")
    cached(mem)
    assert mem.pool.pool.mode == "account"          # no key yet: nothing to fall back to

    out = command(mem, AddKey("k1"), key=KEY)
    pool = mem.pool.pool
    assert (pool.mode, pool.current_key) == ("apikey", "k1")
    assert [k.id for k in pool.api_keys] == ["k1"] and pool.key("k1").key == KEY
    assert mem.settings.data == {"apiKeyHelper": HELPER}
    assert [x.type for x in out.applied] == ["add_key", "save_pool_state", "write_settings"]
    kinds = mem.journal.kinds()
    assert kinds.index("pool.write") < kinds.index("settings.write"), "the pool says apikey before settings names us"
    assert mem.wake.at == [(START + timedelta(hours=2, seconds=30)).timestamp()], "no recovery wake"
    assert "every account is at 100%" in out.plan.reason
    assert _moved(out) == ["Claude Code now uses API key k1: every account is at 100%."]
    assert KEY not in json.dumps(out.plan.model_dump(mode="json"))
    assert_converged(mem)


def test_key_add_with_a_usable_account_stays_on_it(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=20)
    b = mem.api.add(BOB, five_hour=100)
    mem.seed({"alice": a, "bob": b}, current="alice")
    cached(mem)
    store_before = mem.store.raw

    out = command(mem, AddKey("k1"), key=KEY)
    pool = mem.pool.pool
    assert (pool.mode, pool.current) == ("account", "alice") and [k.id for k in pool.api_keys] == ["k1"]
    assert [x.type for x in out.applied] == ["add_key"]
    assert mem.store.raw == store_before and mem.settings.data is None
    assert _moved(out) == []
    assert_converged(mem)


def test_key_add_with_no_reading_yet_changes_no_credential(mem: Memory) -> None:
    # nothing is known about the accounts (never read): unknown is not exhaustion
    a = mem.api.add(ALICE, five_hour=100)
    mem.seed({"alice": a}, current="alice")
    out = command(mem, AddKey("k1"), key=KEY)
    assert mem.pool.pool.mode == "account" and [x.type for x in out.applied] == ["add_key"]


def test_key_add_to_a_pool_of_keys_only_uses_it(mem: Memory) -> None:
    out = command(mem, AddKey("k1"), key=KEY)
    assert (mem.pool.pool.mode, mem.pool.pool.current_key) == ("apikey", "k1")
    assert _moved(out) == ["Claude Code now uses API key k1."]
    assert_converged(mem)


# ---- rm -----------------------------------------------------------------------------------------

def test_rm_of_the_active_account_moves_to_the_one_with_headroom(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=10)
    b = mem.api.add(BOB, five_hour=100)
    c = mem.api.add(CAROL, five_hour=30)
    mem.seed({"alice": a, "bob": b, "carol": c}, current="alice")
    cached(mem)

    out = command(mem, Remove("alice"))
    pool = mem.pool.pool
    assert [x.id for x in pool.accounts] == ["bob", "carol"]
    assert pool.current == "carol" and mem.held_email() == CAROL
    assert _moved(out, gone="alice") == ["Claude Code now uses account carol."]
    assert_converged(mem)


def test_rm_of_the_active_account_when_the_rest_is_at_100_uses_a_key(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=10)
    b = mem.api.add(BOB, five_hour=100)
    mem.seed({"alice": a, "bob": b}, current="alice", keys={"k1": KEY})
    cached(mem)

    out = command(mem, Remove("alice"))
    pool = mem.pool.pool
    assert [x.id for x in pool.accounts] == ["bob"]
    assert (pool.mode, pool.current_key) == ("apikey", "k1"), "moved onto an account at 100%"
    assert mem.settings.data == {"apiKeyHelper": HELPER}
    assert "removed the active account alice; every account is at 100%" in out.plan.reason
    assert _moved(out, gone="alice") == ["Claude Code now uses API key k1: every account is at 100%."]
    assert_converged(mem)


def test_rm_of_another_account_applies_what_was_pending(mem: Memory) -> None:
    # alice was switched to by hand although she is at 100%; removing carol settles the pool too
    a = mem.api.add(ALICE, five_hour=100)
    b = mem.api.add(BOB, five_hour=20)
    c = mem.api.add(CAROL, five_hour=30)
    mem.seed({"alice": a, "bob": b, "carol": c}, current="bob")
    cached(mem)
    command(mem, Switch("alice"))
    assert pending(mem)["plan"], "a hand switch onto an account at 100% is respected (a reconcile moves it)"

    out = command(mem, Remove("carol"))
    assert mem.pool.pool.current == "bob" and mem.held_email() == BOB
    assert _moved(out, gone="carol")[0].startswith("Claude Code now uses account bob: alice is at 100% until its reset")
    assert_converged(mem)


def test_rm_of_keys_in_api_key_mode(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=100)
    mem.seed({"alice": a}, current="alice", keys={"k1": KEY, "k2": KEY2})
    cached(mem)                                      # the keys serve in turn: k2 comes next
    assert (mem.pool.pool.mode, mem.pool.pool.current_key) == ("apikey", "k2")

    out = command(mem, Remove("k2"))                 # the key in use: the next one serves
    assert (mem.pool.pool.mode, mem.pool.pool.current_key) == ("apikey", "k1")
    assert _moved(out, gone="k2") == ["Claude Code now uses API key k1: every account is at 100%."]
    assert_converged(mem)

    command(mem, Remove("k1"))                       # the last key: back to the account, settings restored
    assert mem.pool.pool.mode == "account" and "apiKeyHelper" not in (mem.settings.data or {})
    assert_converged(mem)


def test_rm_of_the_key_in_use_with_nothing_known_of_the_accounts(mem: Memory) -> None:
    # API-key mode, the account never read here: the reconcile has no credential to name, so the
    # command's own choice (the key that comes next) stands
    a = mem.api.add(ALICE, five_hour=100)
    mem.seed({"alice": a}, current="alice", keys={"k1": KEY, "k2": KEY2}, mode="apikey", current_key="k2",
             key_cursor=1)
    mem.settings.data = {"apiKeyHelper": HELPER}
    command(mem, Remove("k2"))
    assert (mem.pool.pool.mode, mem.pool.pool.current_key) == ("apikey", "k1")
    assert mem.settings.data == {"apiKeyHelper": HELPER}


# ---- import and switch: chosen by hand --------------------------------------------------------

def test_import_makes_the_new_login_active(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=10)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a}, current="alice")
    cached(mem)
    mem.store.raw = b                                 # /login as bob in Claude Code

    out = command(mem, Import(), network=True)         # the profile call says who it is
    pool = mem.pool.pool
    assert [x.id for x in pool.accounts] == ["alice", "bob"] and pool.current == "bob"
    assert mem.held_email() == BOB
    assert _moved(out) == [] and _hand_note(out, "bob") == []
    # `plan` and `list` read bob and keep him. The pool as last read (`list --json`, no network)
    # knows nothing of bob yet, and a reconcile on it prefers the account with a reading: that
    # view agrees once bob has been read (the next hook's reconcile does).
    assert_converged(mem, offline=False)
    mem.run(Reconcile(if_needed=True, model="opus"))
    assert mem.pool.pool.current == "bob"
    assert_converged(mem)


def test_a_hand_choice_at_100_is_respected_and_said(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=100)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a, "bob": b}, current="bob")
    cached(mem)

    out = command(mem, Switch("alice"))
    assert mem.pool.pool.current == "alice" and mem.held_email() == ALICE
    note = _hand_note(out, "alice")
    assert len(note) == 1 and note[0].startswith("Note: alice is at 100% until its reset in 2h00m")

    mem.store.raw = mem.pool.pool.account("alice").blob   # re-import of the login Claude Code holds
    out = command(mem, Import(), network=True)
    assert mem.pool.pool.current == "alice"
    assert _hand_note(out, "alice")[0].startswith("Note: alice is at 100%")


# ---- through the CLI ----------------------------------------------------------------------------

def test_cli_key_add_when_every_account_is_out_leaves_nothing_pending(sandbox, fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_account(ALICE, five_hour=100)
    fake.add_account(BOB, seven_day=100)
    sandbox.seed(ALICE, BOB, current="alice")
    assert "pending" not in sandbox.ok("list").stdout    # read both: at 100%, and no key yet

    out = sandbox.ok("key", "add", "--id", "k1", input=KEY + "\n").stdout.splitlines()
    assert out[0].startswith("Added API key k1 (") and KEY not in "\n".join(out)
    assert out[1:] == ["Claude Code now uses API key k1: every account is at 100%."]
    assert sandbox.settings()["apiKeyHelper"].endswith(" helper")
    assert sandbox.status()["mode"] == "apikey"
    assert "pending" not in sandbox.ok("list").stdout
    assert sandbox.list_json()["pending_changes"] == 0
    plan = sandbox.run("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_cli_config_change_applies_at_once(sandbox, fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_account(ALICE, five_hour=100, extra_usage={"enabled": True, "used": 1000, "limit": 5000, "pct": 20})
    fake.add_account(BOB, five_hour=100)
    sandbox.seed(ALICE, BOB, current="bob", keys={"k1": KEY})
    sandbox.write_config('[policy]\noverage = "before_keys"\n')
    sandbox.ok("apply")                                  # alice's paid extra usage before the key
    assert (sandbox.pool()["mode"], sandbox.pool()["current"]) == ("account", "alice")

    out = sandbox.ok("config", "init", "--force").stdout.splitlines()   # the default: keys first
    assert out[0].startswith("Wrote ")
    assert out[1:] == ["Claude Code now uses API key k1: every account is at 100%."]
    assert sandbox.pool()["mode"] == "apikey"
    plan = sandbox.run("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # the same configuration written again changes nothing and says nothing more
    assert sandbox.ok("config", "init", "--force").stdout.splitlines()[1:] == []
