"""Claude Code shows the account it uses: `oauthAccount` in `.claude.json` follows every move.

Three layers: the provider on real files (a large, realistically shaped `.claude.json`: every other
key kept, the way Claude Code writes it, a writer rewriting it at the same time), the engine in
memory (which runs write it, which leave it alone), and the command against the fake API (import
keeps the identity, `switch` shows it, `plan` changes nothing).
"""

from __future__ import annotations

import json
import os
import random
import stat
import threading
import time
from pathlib import Path

import pytest
from world import Memory

from claude_pool.providers import claude_json as cj
from claude_pool.providers.claude_json import ClaudeJsonFile, LeftAlone, same_identity
from claude_pool.reconciler.intents import Import, Reconcile, Switch

ALICE, BOB = "alice@example.com", "bob@example.com"


def identity(email: str, n: int = 1, **extra: object) -> dict:
    return {"accountUuid": f"a0000000-0000-4000-8000-{n:012d}", "emailAddress": email,
            "organizationUuid": f"0a000000-0000-4000-9000-{n:012d}", "displayName": email.split("@")[0],
            "hasExtraUsageEnabled": False, "billingType": "stripe_subscription", **extra}


def big_claude_json(seed: int = 7, projects: int = 200) -> dict:
    """A `.claude.json` shaped like a long-used Claude Code's: 200 projects with nested settings
    and MCP servers, global MCP servers, tips history, caches, unicode everywhere, odd numbers."""
    rnd = random.Random(seed)
    words = ["ünïcødé", "日本語のパス", "emoji-🚀✨", "עברית", "café", "naïve", "e\u0301", "tab\there",
             'quote"s', "back\\slash", "new\nline", "nul\u0000byte", "bell\u0007", "plain"]
    data: dict = {
        "numStartups": 412, "installMethod": "native", "autoUpdates": False, "theme": "dark",
        "hasCompletedOnboarding": True, "lastOnboardingVersion": "2.1.197",
        "userID": "%064x" % rnd.getrandbits(256), "firstStartTime": "2025-03-14T09:26:53.589Z",
        "tipsHistory": {f"tip-{i}-{rnd.choice(words)}": rnd.randint(0, 900) for i in range(120)},
        "mcpServers": {f"srv-{i}": {"type": "stdio", "command": "npx", "args": ["-y", f"@scope/srv-{i}", "--flag"],
                                    "env": {"TOKEN_NAME": f"value-{i}", "Ünïcode": rnd.choice(words)}}
                       for i in range(25)},
        "cachedStatsigGates": {f"gate_{i}": bool(i % 2) for i in range(60)},
        "cachedDynamicConfigs": {"cfg": {"nested": {"deeper": {"deepest": [1, [2, [3, [4, []]]], {}]}}}},
        "numbers": {"big": 2 ** 53 + 1, "neg": -0.0, "tiny": 5e-324, "third": 1 / 3, "exp": 1.5e300, "zero": 0},
        "s3": "x" * 5000,
    }
    data["projects"] = {}
    for i in range(projects):
        path = f"/home/user/src/{rnd.choice(words)}/project-{i:03d}"
        data["projects"][path] = {
            "allowedTools": [f"Bash(npm run {w}:*)" for w in rnd.sample(words, 3)],
            "history": [{"display": f"prompt {j} {rnd.choice(words)}", "pastedContents": {}} for j in range(5)],
            "mcpContextUris": [], "enabledMcpjsonServers": [f"srv-{i % 25}"], "disabledMcpjsonServers": [],
            "mcpServers": {f"local-{i}": {"type": "http", "url": f"http://127.0.0.1:{3000 + i}/mcp",
                                          "headers": {"X-Name": rnd.choice(words)}}} if i % 3 == 0 else {},
            "hasTrustDialogAccepted": bool(i % 4), "projectOnboardingSeenCount": i % 5,
            "lastCost": round(rnd.random() * 12, 6), "lastDuration": rnd.randint(0, 10 ** 7),
            "lastTotalInputTokens": rnd.randint(0, 10 ** 6), "exampleFiles": [f"src/{w}.ts" for w in rnd.sample(words, 4)],
            "reactVulnerabilityCache": {"detected": False, "package": None},
        }
    data["oauthAccount"] = identity(ALICE, 1, organizationRole="admin", profileFetchedAt=1764700000000)
    data["fallbackAvailableWarningThreshold"] = 0.5
    return data


def write_like_claude_code(path: Path, data: dict) -> None:
    """Claude Code's own write: JSON.stringify(config, null, 2), temp file, rename, mode 0600."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def without_identity(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "oauthAccount"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


# ---- the provider on real files --------------------------------------------------------------

def test_every_other_key_survives_in_order_and_mode_and_format(home):
    path = home / ".claude.json"
    before = big_claude_json()
    write_like_claude_code(path, before)
    os.chmod(path, 0o640)
    assert path.stat().st_size > 250_000
    shown = ClaudeJsonFile(path)
    assert shown.observe().account == before["oauthAccount"]
    shown.write(identity(BOB, 2))
    raw = path.read_bytes()
    after = json.loads(raw)
    assert after["oauthAccount"] == identity(BOB, 2)             # replaced whole: nothing of alice's left
    assert without_identity(after) == without_identity(before)
    assert list(after) == list(before)                           # key order too, oauthAccount in its place
    assert list(after["projects"]) == list(before["projects"])
    assert repr(after["numbers"]) == repr(before["numbers"])     # -0.0, 2**53+1, 5e-324 exactly
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # written the way Claude Code writes it: 2-space JSON, unicode as is, no trailing newline
    assert raw.decode("utf-8") == json.dumps(after, indent=2, ensure_ascii=False)
    assert "日本語のパス".encode() in raw
    assert not [p for p in home.iterdir() if p.name not in (".claude.json",)], "a temp file or lock was left"
    # the same account again: the file is not touched (Claude Code's own copy is the fresher one)
    mtime = path.stat().st_mtime_ns
    shown.write({**identity(BOB, 2), "displayName": "older"})
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == raw


def test_a_symlink_stays_a_symlink_and_a_trailing_newline_stays(home):
    target = home / "dotfiles" / "claude.json"
    target.parent.mkdir()
    target.write_text(json.dumps({"a": 1, "oauthAccount": identity(ALICE)}, indent=2) + "\n", encoding="utf-8")
    link = home / ".claude.json"
    link.symlink_to(os.path.relpath(target, home))
    ClaudeJsonFile(link).write(identity(BOB, 2))
    assert link.is_symlink()
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == {"a": 1, "oauthAccount": identity(BOB, 2)}


def test_a_string_utf8_cannot_carry_is_kept_in_meaning(home):
    path = home / ".claude.json"
    path.write_text('{"lone": "\\ud800 half", "ok": "\\u00e9", "oauthAccount": null}', encoding="utf-8")
    ClaudeJsonFile(path).write(identity(BOB))
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after == {"lone": "\ud800 half", "ok": "é", "oauthAccount": identity(BOB)}


@pytest.mark.parametrize("content", [
    "[1, 2, 3]", '"just a string"', "null", "{not json", "", "{\"a\": 1e999}", "{\"a\": NaN}",
    b"\xff\xfe{}", '{"a": ' * 50_000 + "1" + "}" * 50_000,
], ids=["array", "string", "null", "broken", "empty", "overflow", "nan", "not-utf8", "deep"])
def test_a_file_that_is_not_a_json_object_is_left_alone(home, content):
    path = home / ".claude.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = path.read_bytes()
    shown = ClaudeJsonFile(path)
    assert not shown.observe().present
    with pytest.raises(LeftAlone, match="left as it is"):
        shown.write(identity(BOB))
    assert path.read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == [".claude.json"]


def test_a_missing_file_is_not_created_and_a_directory_or_fifo_is_not_touched(home):
    shown = ClaudeJsonFile(home / ".claude.json")
    assert not shown.observe().present
    with pytest.raises(LeftAlone, match="not created"):
        shown.write(identity(BOB))
    assert not (home / ".claude.json").exists()
    (home / ".claude.json").mkdir()
    with pytest.raises(LeftAlone):
        shown.write(identity(BOB))
    (home / ".claude.json").rmdir()
    os.mkfifo(home / ".claude.json")
    assert not shown.observe().present            # never opened for a read that would hang
    with pytest.raises(LeftAlone):
        shown.write(identity(BOB))
    assert stat.S_ISFIFO((home / ".claude.json").lstat().st_mode)


def test_claude_codes_lock_is_waited_for_and_a_write_that_cannot_land_gives_up(home, monkeypatch):
    path = home / ".claude.json"
    write_like_claude_code(path, {"a": 1, "oauthAccount": identity(ALICE)})
    lock = home / ".claude.json.lock"
    lock.mkdir()                                   # Claude Code is in the middle of a write
    released = threading.Timer(0.3, lock.rmdir)
    released.start()
    started = time.monotonic()
    ClaudeJsonFile(path).write(identity(BOB, 2))
    assert time.monotonic() - started >= 0.25, "wrote while Claude Code held its lock"
    assert json.loads(path.read_text())["oauthAccount"]["emailAddress"] == BOB
    assert not lock.exists()
    # a file that changes under every attempt: bounded, then left alone
    monkeypatch.setattr(cj, "BUDGET", 0.5)
    real = cj.read_regular_stat
    calls = {"n": 0}

    def moving(p, *a):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] % 2 == 0:                    # the re-read before the rename: Claude Code wrote
            write_like_claude_code(path, {"a": calls["n"], "oauthAccount": identity(BOB, 2)})
        return real(p, *a)

    monkeypatch.setattr(cj, "read_regular_stat", moving)
    with pytest.raises(LeftAlone, match="kept changing"):
        ClaudeJsonFile(path).write(identity(ALICE))
    assert calls["n"] <= 2 * cj.ATTEMPTS
    assert json.loads(path.read_text())["oauthAccount"]["emailAddress"] == BOB  # the other writer's, whole
    assert sorted(p.name for p in home.iterdir()) == [".claude.json"]


def test_a_concurrent_writer_never_loses_a_write_nor_sees_a_broken_file(home):
    """Claude Code rewriting the file in a loop (read, change, write, under its lock, as its
    locked path does) while claude-pool switches the shown account back and forth: every read
    parses, every one of the writer's changes is in the final file (none overwritten by a stale
    copy), and each of ours left the writer's latest keys in place."""
    path = home / ".claude.json"
    write_like_claude_code(path, {**big_claude_json(projects=30), "writerTick": 0})
    lock = home / ".claude.json.lock"
    stop = threading.Event()
    done = {"ticks": 0, "errors": []}

    def writer() -> None:
        while not stop.is_set() and done["ticks"] < 400:
            try:
                os.mkdir(lock)
            except FileExistsError:
                time.sleep(0.0005)
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))   # a broken file would raise here
                data["writerTick"] += 1
                data["tipsHistory"][f"seen-{data['writerTick']}"] = data["writerTick"]
                write_like_claude_code(path, data)
                done["ticks"] += 1
            except Exception as exc:  # noqa: BLE001 - reported below
                done["errors"].append(repr(exc))
                return
            finally:
                os.rmdir(lock)
            time.sleep(0.01)    # Claude Code writes often, not back to back

    thread = threading.Thread(target=writer)
    thread.start()
    shown = ClaudeJsonFile(path)
    landed = 0
    try:
        for i in range(12):
            ticks_before = done["ticks"]
            shown.write(identity(BOB if i % 2 == 0 else ALICE, 2 if i % 2 == 0 else 1))
            landed += 1
            now = json.loads(path.read_text(encoding="utf-8"))
            assert now["writerTick"] >= ticks_before, "our write put back an older copy of the writer's keys"
    finally:
        stop.set()
        thread.join(30)
    assert not done["errors"], done["errors"]
    final = json.loads(path.read_text(encoding="utf-8"))
    assert done["ticks"] > 0 and landed == 12
    assert final["writerTick"] == done["ticks"], "a write of the writer's was lost"
    assert all(f"seen-{t}" in final["tipsHistory"] for t in range(1, done["ticks"] + 1))
    assert final["oauthAccount"] == identity(ALICE, 1)          # our last write
    assert without_identity({k: v for k, v in final.items() if k not in ("writerTick", "tipsHistory")}) == \
        without_identity({k: v for k, v in big_claude_json(projects=30).items() if k != "tipsHistory"})
    assert sorted(p.name for p in home.iterdir()) == [".claude.json"]


def test_a_writer_that_ignores_the_lock_never_sees_a_broken_file(home):
    """Claude Code writes without its lock when it cannot take it (while we hold it): the file is
    replaced whole, so every read parses; a write of ours that finds the file changed starts over."""
    path = home / ".claude.json"
    write_like_claude_code(path, {**big_claude_json(projects=30), "writerTick": 0})
    stop = threading.Event()
    seen = {"reads": 0, "errors": []}

    def writer() -> None:
        tick = 0
        while not stop.is_set() and tick < 200:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                seen["reads"] += 1
                tick += 1
                data["writerTick"] = tick
                write_like_claude_code(path, data)
            except Exception as exc:  # noqa: BLE001
                seen["errors"].append(repr(exc))
                return
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    outcomes = []
    try:
        for i in range(8):
            try:
                ClaudeJsonFile(path).write(identity(BOB if i % 2 == 0 else ALICE, 2 if i % 2 == 0 else 1))
                outcomes.append("ok")
            except LeftAlone:
                outcomes.append("left")
    finally:
        stop.set()
        thread.join(30)
    assert not seen["errors"] and seen["reads"] > 0, seen["errors"]
    final = json.loads(path.read_text(encoding="utf-8"))
    assert set(final) == set(big_claude_json(projects=30)) | {"writerTick"}
    assert "ok" in outcomes
    assert sorted(p.name for p in home.iterdir()) == [".claude.json"]


def test_same_identity_needs_the_email_and_agreeing_uuids():
    a = identity(ALICE, 1)
    assert same_identity(a, {**a, "displayName": "other", "profileFetchedAt": 1})
    assert same_identity(a, {"emailAddress": "ALICE@example.com"})
    assert not same_identity(a, {**a, "organizationUuid": "another-org"})   # one email, two organizations
    assert not same_identity(a, identity(BOB, 1))
    assert not same_identity(a, None) and not same_identity({"accountUuid": "x"}, {"accountUuid": "x"})


# ---- the engine, in memory ---------------------------------------------------------------------

def two(mem: Memory, *, identities: bool = True, a_pct: float = 0, b_pct: float = 0) -> None:
    a = mem.api.add(ALICE, five_hour=a_pct)
    b = mem.api.add(BOB, five_hour=b_pct)
    mem.seed({"a": a, "b": b}, current="a", identities=identities)
    mem.claude_json.data = {"projects": {"/p": {"x": 1}}, "numStartups": 3,
                            "oauthAccount": mem.api.identity(ALICE)}


def kinds(outcome) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.type for a in outcome.plan.actions]


def test_switch_shows_the_new_account_and_the_next_run_converges():
    mem = Memory()
    two(mem)
    out = mem.run(Switch(target="b"))
    assert kinds(out)[-2:] == ["write_credential", "write_identity"]
    assert mem.claude_json.email == BOB
    assert mem.claude_json.data["oauthAccount"] == mem.api.identity(BOB)
    assert mem.claude_json.data["projects"] == {"/p": {"x": 1}} and mem.claude_json.data["numStartups"] == 3
    assert mem.journal.kinds().index("store.write") < mem.journal.kinds().index("claude_json.write")
    assert "write_identity" not in kinds(mem.run(Switch(target="b")))
    assert kinds(mem.run(Reconcile(live=True))) == []


def test_plan_shows_the_action_and_writes_nothing():
    mem = Memory()
    two(mem, a_pct=100)
    before = dict(mem.claude_json.data)
    out = mem.run(Reconcile(live=True), execute=False)
    assert kinds(out)[-2:] == ["write_credential", "write_identity"]
    act = out.plan.actions[-1]
    assert (act.target, act.before, act.after) == ("b", ALICE, BOB)
    assert mem.claude_json.data == before and "claude_json.write" not in mem.journal.kinds()
    assert not out.error


def test_a_stale_identity_is_fixed_without_a_move():
    """Level-triggered: a write that was given up on (or a .claude.json another tool changed) is
    fixed by the next run, with no credential write."""
    mem = Memory()
    two(mem)
    mem.claude_json.data["oauthAccount"] = mem.api.identity(BOB)
    out = mem.run(Reconcile(live=True))
    assert kinds(out) == ["write_identity"]
    assert out.plan.actions[0].reason == f"Claude Code holds a's login but shows {BOB}"
    assert mem.claude_json.email == ALICE


def test_api_key_mode_leaves_the_last_account_shown():
    mem = Memory()
    two(mem, a_pct=100, b_pct=100)
    mem.seed({"a": mem.api.blob(ALICE), "b": mem.api.blob(BOB)}, current="a", identities=True,
             keys={"k1": "sk-ant-api03-PLANTED-K1-0123456789abcdef"})
    out = mem.run(Reconcile(live=True))
    assert mem.pool.pool.mode == "apikey" and "write_identity" not in kinds(out)
    assert mem.claude_json.email == ALICE and "claude_json.write" not in mem.journal.kinds()


@pytest.mark.parametrize("case", ["missing", "not-an-object", "identity-unknown"])
def test_nothing_is_written_where_the_file_or_the_identity_is_not_there(case):
    mem = Memory()
    two(mem, identities=case != "identity-unknown")
    if case == "missing":
        mem.claude_json.data = None
    elif case == "not-an-object":
        mem.claude_json.broken = True
    before = mem.claude_json.data
    out = mem.run(Switch(target="b"))
    assert kinds(out)[-1] == "write_credential" and mem.held_email() == BOB
    assert mem.claude_json.data == before and "claude_json.write" not in mem.journal.kinds()


def test_a_file_left_alone_never_fails_the_move(tmp_path):
    from claude_pool.reconciler.audit import configure

    configure("test", stderr_level="error", log_path=tmp_path / "audit.jsonl")
    mem = Memory()
    two(mem)

    def refuse(value: dict) -> None:
        raise LeftAlone("memory:.claude.json left as it is: it kept changing while claude-pool wrote it")

    mem.claude_json.write = refuse  # type: ignore[method-assign]
    out = mem.run(Switch(target="b"))
    assert [a.type for a in out.applied][-1] == "write_identity"
    assert mem.held_email() == BOB and mem.pool.pool.current == "b"
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e.get("action") == "write_identity"]
    assert [e["result"] for e in skipped] == ["skipped"] and "kept changing" in skipped[0]["error"]


def test_import_keeps_the_identity_from_claude_json_or_the_profile():
    mem = Memory()
    a = mem.api.add(ALICE)
    mem.store.raw = a
    richer = {**mem.api.identity(ALICE), "organizationRole": "admin", "profileFetchedAt": 1764700000000}
    mem.claude_json.data = {"oauthAccount": richer}
    out = mem.run(Import())
    assert kinds(out) == ["import_account", "save_pool_state"]       # it already shows alice
    assert mem.pool.pool.account("alice").oauth_account == richer   # Claude Code's own copy, whole
    # a login .claude.json does not show: the profile's identity, and Claude Code is told
    b = mem.api.add(BOB)
    mem.store.raw = b
    out = mem.run(Import())
    assert mem.pool.pool.account("bob").oauth_account == mem.api.identity(BOB)
    assert kinds(out)[-1] == "write_identity" and mem.claude_json.email == BOB


def test_an_account_imported_before_learns_its_identity_from_claude_json():
    mem = Memory()
    two(mem, identities=False)
    mem.run(Reconcile())
    assert mem.pool.pool.account("a").oauth_account == mem.api.identity(ALICE)
    assert mem.pool.pool.account("b").oauth_account is None
    # one email in two organizations: an identity another account already has is not taken
    mem2 = Memory()
    two(mem2, identities=False)
    pool = mem2.pool.pool
    pool.account("b").oauth_account = mem2.api.identity(ALICE)
    mem2.pool.text = pool.model_dump_json()
    mem2.run(Reconcile())
    assert mem2.pool.pool.account("a").oauth_account is None


# ---- the command, against the fake API --------------------------------------------------------

def test_switch_import_and_plan_through_the_command(sandbox, fake):
    fake.add_account(ALICE)
    fake.add_account(BOB)
    path = sandbox.home / ".claude.json"
    data = big_claude_json()
    data.pop("oauthAccount")
    write_like_claude_code(path, data)
    for email in (ALICE, BOB):
        sandbox.login(email)
        sandbox.ok("import")
    kept = sandbox.pool_account("alice")["oauth_account"]
    assert kept["emailAddress"] == ALICE and kept["accountUuid"] == fake.account(ALICE).uuid
    assert kept["organizationUuid"] == fake.account(ALICE).org_uuid and kept["billingType"] == "stripe_subscription"
    assert json.loads(path.read_text())["oauthAccount"]["emailAddress"] == BOB   # the import showed bob

    sandbox.ok("switch", "alice")
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after["oauthAccount"] == kept
    assert without_identity(after) == data
    assert sandbox.ok("plan", "--json").stdout and json.loads(sandbox.ok("plan", "--json").stdout)["actions"] == []

    # plan: the move and the identity are shown, nothing is written
    fake.set_usage(ALICE, five_hour=100)
    before = path.read_bytes(), sandbox.snapshot()
    plan = sandbox.run("plan", "--json", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert [a["type"] for a in actions][-2:] == ["write_credential", "write_identity"]
    assert (actions[-1]["target"], actions[-1]["before"], actions[-1]["after"]) == ("bob", ALICE, BOB)
    assert (path.read_bytes(), sandbox.snapshot()) == before

    # API keys: it keeps showing the last account
    fake.set_usage(BOB, five_hour=100)
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-PLANTED-K1-0123456789abcdef\n")
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["mode"] == "apikey"
    assert json.loads(path.read_text(encoding="utf-8"))["oauthAccount"]["emailAddress"] in (ALICE, BOB)
    shown_on_keys = path.read_bytes()
    sandbox.ok("reconcile", "--live")
    assert path.read_bytes() == shown_on_keys


# ---- the real Claude Code -----------------------------------------------------------------------

@pytest.mark.slow
def test_the_real_claude_code_shows_the_account_switched_to(sandbox, fake, tmp_path):
    """After `claude-pool switch alice` (bob imported last), the real Claude Code's banner and
    `/status` name alice: it shows what `.claude.json` says."""
    import shlex
    import shutil
    import subprocess
    import tempfile

    from proctools import find_claude

    claude = find_claude()
    if claude is None or shutil.which("tmux") is None or shutil.which("timeout") is None:
        pytest.skip("needs the real Claude Code binary, tmux and timeout")
    proj = sandbox.home / "proj"
    proj.mkdir()
    write_like_claude_code(sandbox.home / ".claude.json", {
        "hasCompletedOnboarding": True, "theme": "dark", "projects": {str(proj): {"hasTrustDialogAccepted": True}}})
    fake.add_account(ALICE)
    fake.add_account(BOB)
    for email in (ALICE, BOB):
        sandbox.login(email)
        sandbox.ok("import")
    sandbox.ok("switch", "alice")
    env = {k: v for k, v in sandbox.env.items() if not k.startswith(("CLAUDE", "TMUX")) or k.startswith("CLAUDE_POOL_")}
    env.update(ANTHROPIC_BASE_URL=fake.base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_TELEMETRY="1",
               DISABLE_AUTOUPDATER="1", TERM=env.get("TERM") or "xterm-256color")
    socket_dir = tempfile.mkdtemp(prefix="cjson-", dir="/tmp")   # a unix socket path is short

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", os.path.join(socket_dir, "s"), *args], env=env, capture_output=True,
                              text=True, timeout=15).stdout

    def wait_for(text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "c")
            if text in screen or time.monotonic() > deadline:
                return screen
            time.sleep(0.3)

    tmux("-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "160", "-y", "50", "-c", str(proj),
         f"exec timeout --foreground 90 {shlex.quote(claude)}")
    try:
        screen = wait_for("Welcome back", 60)
        assert "Welcome back alice!" in screen, screen
        tmux("send-keys", "-t", "c", "-l", "/status")
        time.sleep(0.3)
        tmux("send-keys", "-t", "c", "Enter")
        screen = wait_for("Email:", 20)
        assert any(line.split() == ["Email:", ALICE] for line in screen.splitlines()), screen
    finally:
        tmux("kill-server")
        shutil.rmtree(socket_dir, ignore_errors=True)
