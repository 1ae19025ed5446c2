"""Scenarios through the real engine against the in-memory world (tests/world.py): no file, no
process, no network, a clock the test sets. Each runs in milliseconds.

What they pin down: the fallback to API keys and the recovery from them, a dead refresh token,
a rotated refresh token saved before anything else (even by `plan`), a refused access token
refreshed once, errors that are not exhaustion, the order of the engine's steps, observe only
reading, and a credential store added with one registry line.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from world import HELPER, START, Memory

from claude_pool.providers import credstore
from claude_pool.providers.anthropic import InvalidGrant, TransientError, Unauthorized
from claude_pool.providers.world import CredentialStore, World
from claude_pool.reconciler import observe
from claude_pool.reconciler.audit import configure
from claude_pool.reconciler.errors import UserError
from claude_pool.reconciler.intents import Reconcile
from claude_pool.schema.config import Config
from claude_pool.schema.credentials import try_oauth
from claude_pool.schema.pool import Usage

ALICE, BOB = "alice@example.com", "bob@example.com"
KEY = "sk-ant-api03-world-test-key-0123456789abcdef"
LIVE = Reconcile(live=True, model="opus")
WRITES = ("pool.write", "store.write", "settings.write", "wake.schedule")


@pytest.fixture()
def mem(tmp_path: Path) -> Memory:
    configure("test", stderr_level="critical", log_path=tmp_path / "audit.jsonl")
    m = Memory()
    m.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
    return m


def audit(mem: Memory, event: str) -> list[dict]:
    path: Path = mem.audit_path  # type: ignore[attr-defined]
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def refresh_token(blob: str | None) -> str:
    oauth = try_oauth(blob)
    assert oauth is not None
    return oauth.refreshToken or ""


def test_every_part_follows_its_declared_protocol(mem: Memory) -> None:
    from claude_pool.providers import world as w

    parts = {"pool": w.PoolStore, "store": w.CredentialStore, "settings": w.SettingsStore, "feed": w.Feed,
             "api": w.Api, "wake": w.Wake, "sessions": w.Sessions, "temps": w.Temps}
    for name, protocol in parts.items():
        assert isinstance(getattr(mem.world, name), protocol), name
    real = w.real_world(Config())
    for name, protocol in parts.items():
        assert isinstance(getattr(real, name), protocol), name
    with pytest.raises(AttributeError):   # frozen: built once per run
        mem.world.clock = mem.clock  # type: ignore[misc]


def test_all_exhausted_falls_back_to_a_key_then_recovers_at_the_reset(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=100, resets_in=timedelta(hours=2))
    b = mem.api.add(BOB, five_hour=100, resets_in=timedelta(hours=3))
    mem.seed({"alice": a, "bob": b}, current="alice", keys={"k1": KEY})
    mem.sessions.pids = [4242]

    out = mem.run(LIVE)
    pool = mem.pool.pool
    assert (pool.mode, pool.current_key) == ("apikey", "k1")
    assert mem.settings.data == {"apiKeyHelper": HELPER}
    kinds = mem.journal.kinds()
    assert kinds.index("pool.write") < kinds.index("settings.write"), "the pool says apikey before settings names us"
    assert mem.wake.at == [(START + timedelta(hours=2, seconds=30)).timestamp()]
    assert audit(mem, "sessions")[-1]["count"] == 1
    assert [a.type for a in out.applied] == ["save_pool_state", "write_settings"]
    assert mem.run(LIVE, execute=False).plan.actions == [], "not idempotent"

    # two hours later alice's window has reset (and her access token expired meanwhile)
    mem.clock.advance(hours=2, minutes=1)
    mem.api.set_usage(ALICE, five_hour=5)
    mem.journal.clear()
    mem.run(Reconcile(model="opus"))            # the wake's run (not --live, which always calls)
    pool = mem.pool.pool
    assert (pool.mode, pool.current) == ("account", "alice")
    assert "apiKeyHelper" not in (mem.settings.data or {})
    assert mem.held_email() == ALICE
    assert ("api.usage", BOB) not in mem.journal, "bob is provably exhausted until his reset: not polled"
    assert mem.run(LIVE, execute=False).plan.actions == []


def test_a_rotated_refresh_token_is_saved_before_anything_else_even_by_plan(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=95, expired=True)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a, "bob": b}, current="alice")
    old = refresh_token(a)

    out = mem.run(LIVE, execute=False)           # `plan`
    assert [x.type for x in out.plan.actions] == ["save_pool_state", "write_credential"]
    i = mem.journal.index(("api.refresh", ALICE))
    after = mem.journal[i + 1:i + 3]
    assert [k for k, _ in after] == ["pool.write", "store.write"], mem.journal.kinds()
    new = mem.api.accounts[ALICE].refresh
    assert refresh_token(after[0][1].account("alice").blob) == new
    assert refresh_token(after[1][1]) == new
    assert refresh_token(mem.pool.pool.account("alice").blob) == new == refresh_token(mem.store.raw)
    assert mem.pool.pool.current == "alice", "plan changed more than the rotated token"
    kinds = mem.journal.kinds()
    assert kinds.count("store.write") == 1 and kinds.count("pool.write") == 1 and "settings.write" not in kinds
    with pytest.raises(InvalidGrant):             # why it cannot wait: the old token is dead already
        mem.api.refresh(old)
    event = audit(mem, "token_refreshed")[-1]
    assert (event["action"], event["target"], event["result"]) == ("refresh", "alice", "ok")
    assert event["before"] != event["after"] and new not in json.dumps(event)


def test_a_dead_refresh_token_marks_the_account_once_and_the_pool_moves_on(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=10, expired=True)
    b = mem.api.add(BOB, five_hour=40)
    mem.api.revoke(ALICE)
    mem.seed({"alice": a, "bob": b}, current="alice")

    mem.run(LIVE)
    pool = mem.pool.pool
    assert pool.account("alice").needs_relogin and "invalid_grant" in pool.account("alice").relogin_reason
    assert pool.current == "bob" and mem.held_email() == BOB
    assert audit(mem, "needs_relogin")[-1]["target"] == "alice"
    mem.journal.clear()
    mem.run(LIVE)
    assert ("api.refresh", ALICE) not in mem.journal, "a dead login is retried"


def test_a_refused_access_token_is_refreshed_once_then_read(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=30)
    mem.seed({"alice": a}, current="alice")
    mem.api.accounts[ALICE].access = "sk-ant-oat01-revoked-server-side-xxxxxxxxxxxx"   # refused, not expired
    out = mem.run(LIVE)
    assert out.observed.accounts["alice"].poll == "ok"
    assert [k for k in mem.journal.kinds() if k.startswith("api.")] == ["api.refresh", "api.usage"]
    assert audit(mem, "token_refreshed")[-1]["reason"] == "access token refused by the usage API"


def test_a_token_refused_even_after_a_refresh_is_an_error_not_exhaustion(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=30, expired=True)
    mem.seed({"alice": a}, current="alice", keys={"k1": KEY})
    real = mem.api.refresh

    def refresh_that_hands_out_a_refused_token(token: str):  # type: ignore[no-untyped-def]
        grant = real(token)
        mem.api.accounts[ALICE].access = "sk-ant-oat01-something-else-xxxxxxxxxxxxxxxx"
        return grant

    mem.api.refresh = refresh_that_hands_out_a_refused_token  # type: ignore[method-assign]
    out = mem.run(LIVE)
    obs = out.observed.accounts["alice"]
    assert obs.poll == "error" and "refused even after a refresh" in obs.error
    assert mem.pool.pool.mode == "account", "an unreadable account was taken for an exhausted one"
    assert mem.journal.kinds().count("api.refresh") == 1


def test_a_failed_poll_stays_put(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=99)
    mem.seed({"alice": a}, current="alice", keys={"k1": KEY})
    mem.api.accounts[ALICE].usage_error = TransientError("usage: HTTP 503")
    out = mem.run(LIVE)
    assert out.plan.actions == [] and mem.pool.pool.mode == "account"
    assert "HTTP 503" in out.observed.accounts["alice"].error


def test_the_engine_runs_each_step_once_in_order(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    """sweep, load, observe, ask the policy what to poll, harvest/poll, decide: observe never
    calls the policy, and the policy is asked once when no wider poll is needed."""
    from claude_pool.reconciler import engine, policy

    a = mem.api.add(ALICE, five_hour=20, expired=True)
    b = mem.api.add(BOB, five_hour=10)
    mem.seed({"alice": a, "bob": b}, current="alice")
    calls: list[str] = []
    for name in ("accounts_to_poll", "needs_wider_poll", "decide"):
        real = getattr(policy, name)
        monkeypatch.setattr(policy, name, lambda *args, _real=real, _name=name, **kw: (calls.append(_name),
                                                                                      _real(*args, **kw))[1])
    mem.run(Reconcile(model="opus", if_needed=True, threshold=0.9))
    # (the policy may consult its own rules inside decide: that is not the engine's business)
    assert calls[:calls.index("decide") + 1] == ["accounts_to_poll", "needs_wider_poll", "decide"]
    assert calls.count("accounts_to_poll") == 1
    kinds = mem.journal.kinds()
    assert kinds[:2] == ["temps.sweep", "pool.observe"]
    assert kinds.index("api.refresh") < kinds.index("api.usage")
    assert not hasattr(observe, "policy"), "observe imports the policy"
    assert engine.observe is observe


def test_observe_only_reads(mem: Memory) -> None:
    a = mem.api.add(ALICE, five_hour=20, expired=True)
    b = mem.api.add(BOB, five_hour=10)
    unknown = mem.api.add("carol@example.com")
    mem.seed({"alice": a, "bob": b}, current="alice", held=None)
    mem.store.raw = unknown
    mem.settings.data = {"apiKeyHelper": "echo foreign"}
    rt = mem.runtime()
    world: World = mem.world
    observe.load(world, rt)
    before = rt.pool.model_copy(deep=True)
    store = observe.observe_store(world, rt, identify=True)
    settings = observe.observe_settings(world, rt)
    read = observe.read_usage(world, rt, ["alice", "bob"], store)
    state = observe.observed_state(rt, mem.clock(), store, settings, {})
    assert store.email == "carol@example.com" and store.account == ""
    assert settings.api_key_helper == "echo foreign" and not settings.ours
    assert isinstance(read["alice"], Unauthorized), "observe refreshed a token"
    assert isinstance(read["bob"], Usage)
    assert state.accounts["bob"].poll == "skipped"
    assert rt.pool == before, "observe changed the pool"
    assert not [k for k in mem.journal.kinds() if k in WRITES or k in ("api.refresh", "temps.sweep")]


def test_a_busy_pool_is_one_line(mem: Memory) -> None:
    mem.seed({"alice": mem.api.add(ALICE)}, current="alice")
    mem.pool.wait = 0.01
    with mem.pool.hold():
        import threading

        box: list[BaseException] = []
        t = threading.Thread(target=lambda: box.append(pytest.raises(UserError, mem.run, LIVE).value))
        t.start()
        t.join()
    assert "pool lock" in str(box[0])


def test_a_credential_store_is_one_module_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new kind (here the file store's module under another name) is chosen, validated in
    config.toml, built, and told apart from a plain file by the light paths: all from REGISTRY."""
    monkeypatch.setitem(credstore.REGISTRY, "secret-service",
                        credstore.StoreKind("credstore_file:FileCredentialStore", auto_on=("linux",)))
    monkeypatch.delenv("CLAUDE_POOL_CREDENTIAL_STORE", raising=False)
    assert credstore.store_kind("auto", platform="linux") == "secret-service"
    assert credstore.store_kind("auto", platform="win32") == "file"
    assert credstore.store_kind("auto", platform="darwin") == "keychain"
    assert Config.model_validate({"store": {"credential_store": "secret-service"}}).store.credential_store \
        == "secret-service"
    with pytest.raises(ValueError, match="secret-service"):
        Config.model_validate({"store": {"credential_store": "vault"}})
    built = credstore.default_store("secret-service")
    assert isinstance(built, CredentialStore)
    assert not credstore.REGISTRY["secret-service"].plain_file   # so reconciler/quicklook.py defers to the engine


def test_the_light_path_takes_the_store_kind_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from claude_pool.reconciler import quicklook

    monkeypatch.setenv("CLAUDE_POOL_CONFIG_DIR", str(tmp_path))
    monkeypatch.setitem(credstore.REGISTRY, "secret-service",
                        credstore.StoreKind("credstore_file:FileCredentialStore", auto_on=("linux",)))
    for kind, why in (("secret-service", "the secret-service credential store is read by the full engine"),
                      ("keychain", "the keychain credential store is read by the full engine"),
                      ("vault", "config.toml needs the full engine"),
                      ("file", "no pool")):
        monkeypatch.setenv("CLAUDE_POOL_CREDENTIAL_STORE", kind)
        found = quicklook.look("opus", time.monotonic() + 1)
        assert (found.verdict, found.why) == ("change", why), kind
    monkeypatch.delenv("CLAUDE_POOL_CREDENTIAL_STORE")
    (tmp_path / "config.toml").write_text('[store]\ncredential_store = ["file"]\n')
    assert quicklook.look("opus", time.monotonic() + 1).why == "config.toml needs the full engine"
