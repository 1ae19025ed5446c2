"""Typed actions, one handler each, and `plan` = the same apply code through a recording world.

In-process on real files in a temp dir (the pool file encrypted for real, Claude Code's credential
file, settings.json): for every action type, a check that fails in apply fails in the dry run with
the very same line, and a dry run that succeeds records exactly what apply then writes, while the
real files stay untouched. One command-level test per contract through the Sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from world import memory_world

from claude_pool.providers.claude_json import ClaudeJsonFile
from claude_pool.providers.credstore_file import FileCredentialStore
from claude_pool.providers.poolfile import PoolFile
from claude_pool.providers.settings import SettingsFile
from claude_pool.reconciler import apply as apply_mod
from claude_pool.reconciler.apply import HANDLERS, apply_plan, recording
from claude_pool.reconciler.audit import configure
from claude_pool.reconciler.errors import UserError
from claude_pool.providers.world import World as RunWorld
from claude_pool.reconciler.runtime import Runtime
from claude_pool.schema.config import Config
from claude_pool.schema.credentials import oauth_fingerprint
from claude_pool.schema.plan import (
    ACTION_MODELS, PLAN_FORMAT_VERSION, AddKey, AdoptCredential, HelperValue, ImportAccount, Plan, PlanFormatError,
    RemoveAccount, RemoveKey, SavedHelper, SavePoolState, WriteCredential, WriteIdentity, WriteSettings, load_plan,
    Rename, SetPreference,
)
from claude_pool.schema.pool import Account, ApiKey, Pool

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)
HELPER = "/opt/claude-pool/bin/claude-pool helper"
FOREIGN = "echo sk-ant-api03-FOREIGN-HELPER-SECRET-0123456789"
NEW_KEY = "sk-ant-api03-PLANTED-NEW-KEY-0123456789abcdef"


def blob(name: str, generation: int = 0) -> str:
    return json.dumps({"claudeAiOauth": {
        "accessToken": f"sk-ant-oat01-PLANTED-{name}-{generation}-access",
        "refreshToken": f"sk-ant-ort01-PLANTED-{name}-{generation}-refresh",
        "expiresAt": int((NOW + timedelta(hours=8)).timestamp() * 1000),
        "scopes": ["user:inference", "user:profile"]}})


# ---- the union and its handlers ---------------------------------------------------------------

def test_every_action_model_has_exactly_one_handler_and_every_handler_a_model():
    assert len(ACTION_MODELS) == 11
    missing = [m.__name__ for m in ACTION_MODELS if m not in HANDLERS]
    assert not missing, f"action types without a handler: {missing}"
    orphans = [m for m in HANDLERS if m not in ACTION_MODELS]
    assert not orphans, f"handlers for types outside the Action union: {orphans}"
    tags = [m.model_fields["type"].default for m in ACTION_MODELS]
    assert len(set(tags)) == len(tags), "two action models share a `type`"
    base = ACTION_MODELS[0].__base__
    for model in ACTION_MODELS:
        assert model.done is not base.done, f"{model.__name__} has no done() words"
    with pytest.raises(TypeError):   # a second handler for a type is refused at import time
        apply_mod.handles(RemoveKey)(lambda ap, a: None)


def test_the_plan_json_round_trips_every_action_type_typed():
    actions = [example(m) for m in ACTION_MODELS]
    plan = Plan(actions=actions, observed_digest="abc")
    again = load_plan(plan.model_dump_json())
    assert again == plan
    assert [type(a) for a in again.actions] == list(ACTION_MODELS)
    raw = json.loads(plan.model_dump_json())
    assert raw["format_version"] == PLAN_FORMAT_VERSION == 2
    state = next(a for a in raw["actions"] if a["type"] == "save_pool_state")
    assert state["saved_api_key_helper"] == "from_settings" and "detail" not in state


@pytest.mark.parametrize("text, words", [
    ('{"format_version": 1, "tool_version": "0.1.0", "actions": [{"type": "write_settings", "change": "update",'
     ' "target": "settings.json", "reason": "r", "detail": {"value": "ours"}}]}', ["plan format 1", "0.1.0",
                                                                                     "plan --out"]),
    ('{"format_version": 3, "actions": []}', ["plan format 3"]),
    ('{"actions": []}', ["plan format None"]),
    ("not json", ["not a claude-pool plan"]),
    ("[]", ["not a claude-pool plan"]),
    ('{"format_version": 2, "actions": [{"type": "launch_missiles", "change": "create", "target": "x", '
     '"reason": "r"}]}', ["not a valid claude-pool plan"]),
    ('{"format_version": 2, "actions": [{"type": "write_settings", "change": "update", "target": "s", '
     '"reason": "r", "value": "rm -rf"}]}', ["not a valid claude-pool plan", "value"]),
])
def test_a_saved_plan_of_another_format_or_shape_is_refused_in_one_line(text, words):
    with pytest.raises(PlanFormatError) as err:
        load_plan(text, "p.json")
    message = str(err.value)
    assert "\n" not in message and "rm -rf" not in message
    for word in words:
        assert word in message


def example(model: type) -> object:
    extra = {SavePoolState: {"mode": "apikey", "current_key": "k1", "saved_api_key_helper": SavedHelper.FROM_SETTINGS},
             WriteSettings: {"value": HelperValue.OURS}}.get(model, {})
    return model(change="update", target="t", reason="r", **extra)


# ---- one world on real files ------------------------------------------------------------------

class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool_file = PoolFile(root / "pool" / "pool.json", key=b"k" * 32)
        self.store = FileCredentialStore(root / "claude" / ".credentials.json")
        self.settings = SettingsFile(root / "claude" / "settings.json")
        self.claude_json = ClaudeJsonFile(root / "home" / ".claude.json")
        configure("test", stderr_level="error", log_path=root / "audit.jsonl")

    def setup(self, pool: Pool, creds: str | None = None, settings: str | None = None,
              claude_json: dict | None = None) -> None:
        self.pool_file.write(pool)
        if creds is not None:
            self.store.write(creds)
        if settings is not None:
            self.settings.path.write_text(settings, encoding="utf-8")
        if claude_json is not None:
            self.claude_json.path.parent.mkdir(parents=True, exist_ok=True)
            self.claude_json.path.write_text(json.dumps(claude_json, indent=2), encoding="utf-8")

    def runtime(self) -> tuple[RunWorld, Runtime]:
        """The world on these files, and what observe leaves behind: the pool and the store's blob
        as read now."""
        world = memory_world(pool=self.pool_file, store=self.store, settings=self.settings, clock=lambda: NOW,
                             claude_json=self.claude_json)
        rt = Runtime(config=Config(), trigger="test", helper=HELPER)
        rt.pool = self.pool_file.observe()
        rt.store_raw = self.store.observe()
        rt.new_secrets = {"k-new": NEW_KEY}
        return world, rt

    def files(self) -> dict[str, bytes | None]:
        return {p.name: (p.read_bytes() if p.exists() else None)
                for p in (self.pool_file.path, self.store.path, self.settings.path, self.claude_json.path)}


def two_accounts(**kw: object) -> Pool:
    return Pool(mode="account", current="a", accounts=[Account(id="a", email="a@x.io", blob=blob("a")),
                                                        Account(id="b", email="b@x.io", blob=blob("b"))],
                api_keys=[ApiKey(id="k1", key="sk-ant-api03-PLANTED-K1-0123456789abcdef")], **kw)


def shown(email: str) -> dict:
    """An account's identity as Claude Code keeps it in .claude.json (`oauthAccount`)."""
    n = sum(map(ord, email))
    return {"accountUuid": f"00000000-0000-4000-8000-{n:012d}", "emailAddress": email,
            "organizationUuid": f"00000000-0000-4000-9000-{n:012d}", "displayName": email.split("@")[0]}


def with_identities(pool: Pool) -> Pool:
    for acc in pool.accounts:
        acc.oauth_account = shown(acc.email)
    return pool


CLAUDE_JSON = {"numStartups": 7, "projects": {"/w": {"allowedTools": []}}, "oauthAccount": shown("a@x.io")}

Scenario = tuple[Callable[[World], None], list]   # (set the files up, the plan's actions)

# For every action type: a world where a check of its handler fails ...
FAILING: dict[type, tuple[Scenario, str]] = {
    AdoptCredential: ((lambda w: w.setup(two_accounts(), blob("a", 1)),
                       [AdoptCredential(change="update", target="ghost", reason="r")]),
                      "account ghost is no longer in the pool"),
    ImportAccount: ((lambda w: w.setup(two_accounts()),
                     [ImportAccount(change="create", target="c", reason="r", email="c@x.io")]),
                    "credential store is empty now"),
    RemoveAccount: ((lambda w: w.setup(two_accounts(), blob("a")),
                     [RemoveAccount(change="delete", target="ghost", reason="r")]),
                    "account ghost is no longer in the pool"),
    AddKey: ((lambda w: w.setup(two_accounts()), [AddKey(change="create", target="k-unknown", reason="r")]),
             "no key value for k-unknown"),
    RemoveKey: ((lambda w: w.setup(two_accounts()), [RemoveKey(change="delete", target="k9", reason="r")]),
                "API key k9 is no longer in the pool"),
    SavePoolState: ((lambda w: w.setup(two_accounts(), blob("a"), "[1, 2]"),
                     [SavePoolState(change="update", target="pool", reason="r", mode="apikey", current="a",
                                    current_key="k1", saved_api_key_helper=SavedHelper.FROM_SETTINGS)]),
                    "not a JSON object"),
    WriteSettings: ((lambda w: w.setup(two_accounts(), blob("a"), "{not json"),
                     [WriteSettings(change="update", target="settings.json", reason="r", value=HelperValue.OURS)]),
                    "is not valid JSON"),
    WriteCredential: ((lambda w: w.setup(two_accounts(), blob("a")),
                       [WriteCredential(change="update", target="b", reason="r")]),
                      "Claude Code's login changed during this run"),
    WriteIdentity: ((lambda w: w.setup(with_identities(two_accounts()), blob("a"), claude_json=CLAUDE_JSON),
                     [WriteIdentity(change="update", target="ghost", reason="r")]),
                    "account ghost is no longer in the pool"),
    SetPreference: ((lambda w: w.setup(two_accounts(), blob("a")),
                     [SetPreference(change="update", target="ghost", reason="r", field="priority", priority=2)]),
                    "account ghost is no longer in the pool"),
    Rename: ((lambda w: w.setup(two_accounts(), blob("a")),
              [Rename(change="update", target="a", reason="r", kind="account", new_id="b")]),
             "the name b is taken"),
}

# ... and one where it succeeds.
SUCCEEDING: dict[type, Scenario] = {
    AdoptCredential: (lambda w: w.setup(two_accounts(), blob("a", 1)),
                      [AdoptCredential(change="update", target="a", reason="r")]),
    ImportAccount: (lambda w: w.setup(two_accounts(), blob("c")),
                    [ImportAccount(change="create", target="c", reason="r", email="c@x.io")]),
    RemoveAccount: (lambda w: w.setup(two_accounts(), blob("a")),
                    [RemoveAccount(change="delete", target="b", reason="r")]),
    AddKey: (lambda w: w.setup(two_accounts()), [AddKey(change="create", target="k-new", reason="r")]),
    RemoveKey: (lambda w: w.setup(two_accounts()), [RemoveKey(change="delete", target="k1", reason="r")]),
    SavePoolState: (lambda w: w.setup(two_accounts(), blob("a"), json.dumps({"apiKeyHelper": FOREIGN})),
                    [SavePoolState(change="update", target="pool", reason="r", mode="apikey", current="a",
                                   current_key="k1", saved_api_key_helper=SavedHelper.FROM_SETTINGS)]),
    WriteSettings: (lambda w: w.setup(two_accounts(), blob("a"), json.dumps({"model": "opus"})),
                    [WriteSettings(change="create", target="settings.json", reason="r", value=HelperValue.OURS)]),
    WriteCredential: (lambda w: w.setup(two_accounts(), blob("a")),
                      [WriteCredential(change="update", target="b", reason="r")]),
    WriteIdentity: (lambda w: w.setup(with_identities(two_accounts()), blob("b"), claude_json=CLAUDE_JSON),
                    [WriteIdentity(change="update", target="b", reason="r")]),
    SetPreference: (lambda w: w.setup(two_accounts(), blob("a")),
                    [SetPreference(change="update", target="a", reason="r", field="paused", paused=True,
                                   until=NOW + timedelta(hours=3), pause_reason="travel")]),
    Rename: (lambda w: w.setup(two_accounts(), blob("a")),
             [Rename(change="update", target="a", reason="r", kind="account", new_id="c")]),
}


def test_every_action_type_has_a_failing_and_a_succeeding_scenario():
    assert set(FAILING) == set(ACTION_MODELS) == set(SUCCEEDING)


def dry_and_real(world: World, actions: list, *, before_apply: Callable[[World], None] | None = None):
    """Run the plan through the recording world, then for real; each result is the returned
    actions or the one line of the UserError."""
    plan = Plan(actions=actions)
    run_world, rt = world.runtime()
    if before_apply:
        before_apply(world)   # the world moves between observe and apply (both see the same move)
    untouched = world.files()
    dry_world, dry_rt = recording(run_world, rt)
    try:
        dry_result: object = apply_plan(dry_world, dry_rt, plan, dry_run=True)
    except UserError as exc:
        dry_result = str(exc)
    assert world.files() == untouched, "the dry run wrote a real file"
    assert rt.pool == world.runtime()[1].pool, "the dry run changed the run's own pool"
    try:
        real_result: object = apply_plan(run_world, rt, plan)
    except UserError as exc:
        real_result = str(exc)
    dry = SimpleNamespace(pool=dry_rt.pool, store_raw=dry_rt.store_raw, pool_file=dry_world.pool,
                          store=dry_world.store, settings=dry_world.settings, claude_json=dry_world.claude_json)
    return dry, dry_result, rt, real_result, untouched


@pytest.mark.parametrize("model", ACTION_MODELS, ids=lambda m: m.model_fields["type"].default)
def test_a_check_that_fails_in_apply_fails_the_same_in_plan(tmp_path, model):
    (setup, actions), words = FAILING[model]
    world = World(tmp_path)
    setup(world)
    moved = None
    if model is WriteCredential:   # someone ran /login after this run observed the store
        moved = lambda w: w.store.write(blob("someone-else"))  # noqa: E731
    dry, dry_result, rt, real_result, untouched = dry_and_real(world, actions, before_apply=moved)
    assert isinstance(real_result, str), "apply should have failed"
    assert dry_result == real_result, "plan and apply disagree"
    assert words in real_result
    assert real_result.startswith(actions[0].done() + " failed: ")
    assert world.files() == untouched, "a refused apply wrote a file"


@pytest.mark.parametrize("model", ACTION_MODELS, ids=lambda m: m.model_fields["type"].default)
def test_a_dry_run_records_exactly_what_apply_then_writes(tmp_path, model):
    setup, actions = SUCCEEDING[model]
    world = World(tmp_path)
    setup(world)
    dry, dry_result, rt, real_result, untouched = dry_and_real(world, actions)
    assert dry_result == real_result == actions
    # the pool the handlers built in memory is the pool apply saved
    assert dry.pool == world.pool_file.observe() == rt.pool
    recorded = {p.name: p.writes for p in (dry.pool_file, dry.store, dry.settings, dry.claude_json)}  # type: ignore[attr-defined]
    assert bool(recorded["pool"]) == (untouched["pool.json"] != world.files()["pool.json"])
    if recorded["credentials"]:
        assert world.store.observe() == recorded["credentials"][-1]
    else:
        assert world.files()[".credentials.json"] == untouched[".credentials.json"]
    if recorded["settings.json"]:
        assert world.settings.observe().api_key_helper == recorded["settings.json"][-1]
    else:
        assert world.files()["settings.json"] == untouched["settings.json"]
    if recorded[".claude.json"]:
        assert world.claude_json.observe().account == recorded[".claude.json"][-1]
        assert json.loads(world.files()[".claude.json"]) == {**CLAUDE_JSON, "oauthAccount": recorded[".claude.json"][-1]}
    else:
        assert world.files()[".claude.json"] == untouched[".claude.json"]
    assert (model is WriteIdentity) == bool(recorded[".claude.json"])


def test_entering_api_key_mode_the_rollback_runs_in_the_dry_run_too(tmp_path):
    world = World(tmp_path)
    world.setup(two_accounts(), blob("a"), json.dumps({"apiKeyHelper": FOREIGN}))
    actions = [SavePoolState(change="update", target="pool", reason="r", mode="apikey", current="a",
                             current_key="k1"),
               WriteSettings(change="update", target="settings.json", reason="r", value=HelperValue.OURS)]
    # settings.json stops being an object after the pool said apikey (between the two writes)
    dry, dry_result, rt, real_result, untouched = dry_and_real(
        world, actions, before_apply=lambda w: w.settings.path.write_text("[]", encoding="utf-8"))
    assert dry_result == real_result
    assert "not a JSON object" in str(real_result) and str(real_result).endswith("; the pool was rolled back")
    assert (world.pool_file.observe().mode, dry.pool.mode, rt.pool.mode) == ("account",) * 3
    assert dry.pool_file.writes[-1].mode == "account"  # type: ignore[attr-defined]


def test_write_credential_keeps_the_stores_other_keys_and_names_no_secret_in_its_error(tmp_path):
    world = World(tmp_path)
    with_mcp = json.dumps({**json.loads(blob("a")), "mcpOAuth": {"srv": "x"}})
    world.setup(two_accounts(), with_mcp)
    dry, dry_result, rt, real_result, _ = dry_and_real(
        world, [WriteCredential(change="update", target="b", reason="r")])
    assert json.loads(world.store.observe())["mcpOAuth"] == {"srv": "x"}
    assert oauth_fingerprint(world.store.observe()) == oauth_fingerprint(blob("b"))
    assert dry.store_raw == rt.store_raw     # the recorded store answers what was written


# ---- through the command --------------------------------------------------------------------

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def test_plan_fails_with_the_line_apply_would_print_when_claude_codes_login_moves(sandbox, fake, monkeypatch):
    """The race the dry run exists for: Claude Code's login changes after observe. `plan` used to
    show a plan that `apply` would then refuse; now both print the same line and exit 1."""
    from claude_pool.reconciler import engine

    fake.add_account(ALICE, five_hour=95)
    fake.add_account(BOB, five_hour=10)
    fake.add_account(CAROL)
    sandbox.seed(ALICE, BOB)                        # alice active, at 95%: the policy moves to bob
    first = sandbox.run("plan", "--json", "--detailed-exitcode", subprocess=False)
    assert first.returncode == 2, first.stderr
    assert [a["type"] for a in json.loads(first.stdout)["actions"]] == ["save_pool_state", "write_credential"]

    real_make_plan = engine.make_plan

    def make_plan_then_login_moves(*args, **kw):  # type: ignore[no-untyped-def]
        plan = real_make_plan(*args, **kw)
        sandbox.login(CAROL)                        # someone ran /login while this run was deciding
        return plan

    monkeypatch.setattr(engine, "make_plan", make_plan_then_login_moves)
    lines = []
    for command in (("plan",), ("plan", "--json", "--out", str(sandbox.home / "p.json")), ("apply",)):
        sandbox.login(ALICE)
        before = sandbox.snapshot()
        proc = sandbox.run(*command, subprocess=False)
        lines.append(sandbox.assert_refused(proc, "Claude Code's login -> bob failed",
                                            "login changed during this run"))
        assert proc.stdout == ""
        after = sandbox.snapshot()
        assert after["pool"] == before["pool"], f"{command} changed the pool"
        assert after["settings"] == before["settings"]
    assert len(set(lines)) == 1, lines
    assert not (sandbox.home / "p.json").exists()
    plan_runs = [e for e in sandbox.audit() if e.get("event") == "run" and e.get("action") == "plan"]
    assert plan_runs[-1]["result"] == "would fail"
    assert not [e for e in sandbox.audit() if e.get("event") == "apply" and e.get("trigger") == "plan"]


def test_apply_refuses_a_plan_saved_by_the_previous_format_in_one_line(sandbox, fake):
    fake.add_account(ALICE)
    sandbox.seed(ALICE)
    old = sandbox.home / "old-plan.json"
    old.write_text(json.dumps({"format_version": 1, "tool_version": "0.4.0", "observed_digest": "x", "actions": [
        {"type": "write_settings", "change": "update", "target": "settings.json", "reason": "r",
         "detail": {"value": "ours"}}]}), encoding="utf-8")
    before = sandbox.snapshot()
    proc = sandbox.run("apply", str(old))
    sandbox.assert_refused(proc, "plan format 1", "0.4.0", "claude-pool plan --out")
    assert sandbox.snapshot() == before
    saved = sandbox.home / "new-plan.json"
    sandbox.ok("plan", "--out", str(saved))
    assert json.loads(saved.read_text())["format_version"] == PLAN_FORMAT_VERSION
    sandbox.ok("apply", str(saved))


def test_plan_entering_api_key_mode_dry_runs_the_writes_and_nothing_outside_apply(sandbox, fake, monkeypatch):
    """The dry run of a full switch to API keys passes its checks, writes no file, and neither
    tells running sessions nor schedules the wake (those follow a real apply only)."""
    from claude_pool.reconciler import engine

    fake.add_account(ALICE, five_hour=100)
    sandbox.seed(ALICE, keys={"k1": "sk-ant-api03-PLANTED-K1-0123456789abcdef"})
    sandbox.write_settings({"apiKeyHelper": "echo foreign", "model": "opus"})
    calls: list[str] = []
    real_after_apply = engine.after_apply
    monkeypatch.setattr(engine, "after_apply", lambda world, rt, outcome: (calls.append(rt.trigger),
                                                                          real_after_apply(world, rt, outcome)))
    before = sandbox.snapshot()
    plan = sandbox.run("plan", "--json", "--detailed-exitcode", subprocess=False, env={"CLAUDE_POOL_WAKE": "0"})
    assert plan.returncode == 2, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert [(a["type"], a.get("value"), a.get("saved_api_key_helper")) for a in actions] == \
        [("save_pool_state", None, "from_settings"), ("write_settings", "ours", None)]
    assert sandbox.snapshot() == before and calls == []
    applied = sandbox.run("apply", subprocess=False, env={"CLAUDE_POOL_WAKE": "0"})
    assert applied.returncode == 0, applied.stderr
    assert calls == ["apply"]
    assert sandbox.pool()["mode"] == "apikey" and sandbox.pool()["saved_api_key_helper"] == "echo foreign"
    assert sandbox.settings()["model"] == "opus" and sandbox.settings()["apiKeyHelper"].endswith(" helper")
