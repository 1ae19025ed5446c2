"""End-to-end: the installed `claude-pool` command against the fake Anthropic API, in a sandboxed HOME."""

from __future__ import annotations

import json
import shlex
import time
import tomllib
from pathlib import Path

import httpx
import pytest

ALICE, BOB = "alice@example.com", "bob@example.com"
KEY1 = "sk-ant-api03-CLITESTKEY1-0123456789abcdefghijABCDEFGHIJ"
FOREIGN_HELPER = "/usr/local/bin/vault-key-helper --profile work"
USER_SETTINGS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)", "Read"], "deny": ["Bash(rm:*)"]},
    "env": {"FOO": "bar", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "4096"},
    "apiKeyHelper": FOREIGN_HELPER,
    "statusLine": {"type": "command", "command": "~/.claude/statusline.sh"},
}


def import_both(sandbox, first: str = ALICE, second: str = BOB) -> None:  # type: ignore[no-untyped-def]
    """/login + import for two accounts; the second one ends up active (Claude Code holds it)."""
    for email in (first, second):
        sandbox.login(email)
        out = sandbox.ok("import").stdout
        assert email.split("@")[0] in out
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.access(second)


def holds(sandbox, email: str) -> bool:  # type: ignore[no-untyped-def]
    oauth = sandbox.creds()["claudeAiOauth"]
    return (oauth["accessToken"], oauth["refreshToken"]) == (sandbox.access(email), sandbox.refresh_token(email))


def our_helper(sandbox) -> str:  # type: ignore[no-untyped-def]
    return f"{shlex.quote(str(Path(sandbox.exe).resolve()))} helper"


# ---- import and selection ----------------------------------------------------------------------

def test_import_then_selection_by_binding_utilization_then_convergence(sandbox, fake):
    # alice's five-hour window is past the threshold (0.95); bob's is under it: bob
    fake.add_account(ALICE, five_hour=96, seven_day=70)
    fake.add_account(BOB, five_hour=60, seven_day=10)
    import_both(sandbox, BOB, ALICE)                   # alice active
    pool = sandbox.pool()
    assert [(a["id"], a["email"]) for a in pool["accounts"]] == [("bob", BOB), ("alice", ALICE)]
    assert pool["current"] == "alice"
    assert json.loads(sandbox.pool_account("alice")["blob"]) == sandbox.creds()
    sandbox.ok("import")                               # re-import updates, never duplicates
    assert [a["id"] for a in sandbox.pool()["accounts"]] == ["bob", "alice"]
    before = sandbox.snapshot()

    plan = sandbox.run("plan", "--json", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert [(a["type"], a["target"]) for a in actions] == [("save_pool_state", "pool"), ("write_credential", "bob")]
    # plan changes nothing: not the pool's decisions, not Claude Code's files
    assert (sandbox.pool()["mode"], sandbox.pool()["current"]) == ("account", "alice")
    assert sandbox.creds_bytes() == before["creds"]
    assert sandbox.settings_bytes() == before["settings"]
    assert not sandbox.settings_path.exists()

    sandbox.ok("apply")
    assert holds(sandbox, BOB)
    assert oct(sandbox.creds_path.stat().st_mode & 0o777) == oct(0o600)
    assert sandbox.pool()["current"] == "bob"

    again = sandbox.run("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("No changes")


def test_the_limits_shape_of_the_usage_api_drives_selection(sandbox, fake):
    fake.add_account(ALICE, five_hour=10, seven_day=100, usage_mode="limits")  # full (weekly_all)
    fake.add_account(BOB, five_hour=40, seven_day=40, usage_mode="limits")     # binds at 40
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.ok("apply")
    assert holds(sandbox, BOB)
    listed = sandbox.list_json()
    bob = next(a for a in listed["accounts"] if a["id"] == "bob")
    assert (bob["usage"]["five_hour"]["pct"], bob["usage"]["seven_day"]["pct"]) == (40, 40)
    alice = next(a for a in listed["accounts"] if a["id"] == "alice")
    assert alice["usage"]["seven_day"]["pct"] == 100


def test_plan_persists_a_rotated_refresh_token_but_changes_nothing_else(sandbox, fake):
    fake.add_account(ALICE, five_hour=96)               # past the threshold: bob it is
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    old_bob_refresh = sandbox.refresh_token(BOB)
    fake.expire_access_token(BOB)                      # bob's stored access token is refused now
    before = sandbox.snapshot()

    out = sandbox.ok("plan")
    assert "bob" in out.stdout                          # it would switch to bob
    assert fake.account(BOB).refreshes == 1
    new_bob = sandbox.pool_oauth("bob")
    assert new_bob["refreshToken"] == sandbox.refresh_token(BOB) != old_bob_refresh
    assert new_bob["accessToken"] == sandbox.access(BOB)
    pool = sandbox.pool()
    assert (pool["mode"], pool["current"]) == ("account", "alice")
    assert sandbox.creds_bytes() == before["creds"]
    assert sandbox.settings_bytes() == before["settings"]

    sandbox.ok("apply")                                 # the rotated login is the one that goes in
    assert holds(sandbox, BOB)
    assert fake.invalid_grants == 0


def test_a_saved_plan_is_applied_unless_the_world_moved(sandbox, fake, tmp_path):
    fake.add_account(ALICE, five_hour=96)               # past the threshold: bob it is
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")

    stale = tmp_path / "stale.plan.json"
    sandbox.ok("plan", "--out", str(stale))
    assert json.loads(stale.read_text())["actions"]
    sandbox.ok("switch", "bob")                         # the world moves
    moved = sandbox.state()

    line = sandbox.assert_refused(sandbox.run("apply", str(stale)), "stale")
    assert "plan" in line
    assert sandbox.state() == moved                     # nothing changed
    assert holds(sandbox, BOB)

    fresh = tmp_path / "fresh.plan.json"
    fake.set_usage(BOB, five_hour=97)                   # past the threshold: back to alice
    fake.set_usage(ALICE, five_hour=10)
    sandbox.ok("plan", "--out", str(fresh))
    saved = json.loads(fresh.read_text())
    assert [(a["type"], a["target"]) for a in saved["actions"]] == [("save_pool_state", "pool"),
                                                                     ("write_credential", "alice")]
    sandbox.ok("apply", str(fresh))
    assert holds(sandbox, ALICE)
    assert sandbox.pool()["current"] == "alice"


def test_switch_and_rm_of_the_active_account(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="bob")
    sandbox.ok("switch", "alice")
    assert holds(sandbox, ALICE)
    assert sandbox.pool()["current"] == "alice"

    out = sandbox.ok("rm", "alice")
    assert "alice" in out.stdout
    assert holds(sandbox, BOB)                          # Claude Code is moved to the other account
    pool = sandbox.pool()
    assert [a["id"] for a in pool["accounts"]] == ["bob"]
    assert pool["current"] == "bob"


# ---- API keys: fallback and recovery ------------------------------------------------------------

@pytest.mark.slow
def test_fallback_to_an_api_key_and_recovery_keep_the_users_settings(sandbox, fake):
    fake.add_account(ALICE, five_hour=30)
    fake.add_account(BOB, five_hour=40)
    sandbox.write_settings(USER_SETTINGS)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.ok("key", "add", "--id", "k1", input=KEY1 + "\n")
    assert sandbox.status() == {"mode": "account", "name": "alice"}

    soon = time.time() + 2.0
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=soon)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=soon + 0.2)
    sandbox.ok("apply")

    settings = sandbox.settings()
    assert settings["apiKeyHelper"] == our_helper(sandbox)
    assert {k: v for k, v in settings.items() if k != "apiKeyHelper"} == \
        {k: v for k, v in USER_SETTINGS.items() if k != "apiKeyHelper"}
    assert list(settings) == list(USER_SETTINGS)        # key order kept too
    pool = sandbox.pool()
    assert (pool["mode"], pool["current_key"], pool["saved_api_key_helper"]) == ("apikey", "k1", FOREIGN_HELPER)
    status = sandbox.status()
    assert (status["mode"], status["name"]) == ("apikey", "k1")
    assert set(status) == {"mode", "name", "resets_at", "reset_in_seconds"}
    assert isinstance(status["reset_in_seconds"], int) and 0 <= status["reset_in_seconds"] <= 3
    assert sandbox.ok("plan").stdout.startswith("No changes")

    time.sleep(max(0.0, soon + 0.3 - time.time()))       # past alice's reset
    fake.set_usage(ALICE, five_hour=5, five_hour_resets_at=time.time() + 3 * 3600)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=time.time() + 3 * 3600)
    sandbox.ok("reconcile")

    assert sandbox.settings() == USER_SETTINGS          # the foreign helper is back, nothing else moved
    pool = sandbox.pool()
    assert (pool["mode"], pool["current"], pool["saved_api_key_helper"]) == ("account", "alice", "")
    assert holds(sandbox, ALICE)
    assert sandbox.status() == {"mode": "account", "name": "alice"}
    assert sandbox.ok("plan").stdout.startswith("No changes")


def test_removing_the_last_key_in_api_key_mode_restores_settings(sandbox, fake):
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=None)
    sandbox.write_settings(USER_SETTINGS)
    sandbox.seed(ALICE, keys={"k1": KEY1})
    sandbox.ok("reconcile")
    assert sandbox.pool()["mode"] == "apikey"
    assert sandbox.settings()["apiKeyHelper"] == our_helper(sandbox)

    sandbox.ok("rm", "k1")
    assert sandbox.settings() == USER_SETTINGS
    pool = sandbox.pool()
    assert (pool["mode"], pool["api_keys"]) == ("account", [])


def test_every_account_exhausted_and_no_keys_changes_nothing(sandbox, fake):
    fake.add_account(ALICE, five_hour=100)
    fake.add_account(BOB, seven_day=100)
    sandbox.write_settings(USER_SETTINGS)
    sandbox.seed(ALICE, BOB, current="bob")
    before = sandbox.snapshot()
    out = sandbox.ok("apply")
    assert "no api keys" in out.stdout.lower()
    after = sandbox.snapshot()
    assert (after["creds"], after["settings"]) == (before["creds"], before["settings"])
    assert sandbox.pool()["mode"] == "account"


# ---- errors are not exhaustion -----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["429", "500", "timeout", "garbage", "html", "empty", "nulls"])
def test_usage_errors_are_not_exhaustion(sandbox, fake, mode):
    fake.add_account(ALICE, usage_mode=mode)
    fake.add_account(BOB, usage_mode=mode)
    sandbox.write_config("[http]\ntimeout_seconds = 1\n")
    # with a key in the pool, treating errors as 100% would switch to API-key mode
    sandbox.seed(ALICE, BOB, current="alice", keys={"k1": KEY1})
    before = sandbox.snapshot()

    started = time.monotonic()
    out = sandbox.run("plan", "--detailed-exitcode")
    assert time.monotonic() - started < 10
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stdout.startswith("No changes")
    assert "unknown" in out.stdout.lower()              # says why, instead of guessing "0%" or "100%"
    if mode != "timeout":
        assert fake.account(ALICE).usage_calls >= 1 and fake.account(BOB).usage_calls >= 1

    if mode == "429":                                   # the hooks' path writes nothing either
        out = sandbox.run("reconcile")
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
    pool = sandbox.pool()
    assert (pool["mode"], pool["current"]) == ("account", "alice")
    assert all(a["usage_at"] == "0001-01-01T00:00:00Z" for a in pool["accounts"])   # no reading invented
    assert sandbox.creds_bytes() == before["creds"]
    assert not sandbox.settings_path.exists()


def test_a_throttled_poll_keeps_the_cached_reading_and_says_how_old_it_is(sandbox, fake):
    fake.add_account(ALICE, five_hour=37)
    fake.add_account(BOB, five_hour=45)
    sandbox.seed(ALICE, BOB, current="alice")
    assert "37%" in sandbox.ok("list").stdout           # a live reading, now cached
    fake.set_usage(ALICE, usage_mode="429")
    fake.set_usage(BOB, usage_mode="429")
    out = sandbox.ok("list")
    alice_line = next(line for line in out.stdout.splitlines() if " alice " in line)
    assert "37%" in alice_line
    assert "ago" in alice_line, out.stdout
    assert sandbox.pool_account("alice")["usage"]["five_hour"]["pct"] == 37


# ---- Claude Code refreshing by itself, dead logins ---------------------------------------------

def test_a_login_claude_code_refreshed_itself_is_harvested(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=50)
    sandbox.seed(BOB, ALICE, current="alice")           # Claude Code holds alice
    held = sandbox.creds()

    # Claude Code refreshes alice's token on its own (rotation: the pool's refresh token dies)
    reply = httpx.post(fake.token_url, timeout=5, headers={"anthropic-beta": "oauth-2025-04-20"},
                       json={"grant_type": "refresh_token", "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
                             "refresh_token": held["claudeAiOauth"]["refreshToken"]})
    assert reply.status_code == 200
    grant = reply.json()
    held["claudeAiOauth"].update(accessToken=grant["access_token"], refreshToken=grant["refresh_token"],
                                 expiresAt=int((time.time() + grant["expires_in"]) * 1000))
    sandbox.write_creds(held)
    written = sandbox.creds_bytes()

    out = sandbox.ok("apply")
    assert "adopt_credential" in out.stdout
    assert sandbox.pool_oauth("alice")["refreshToken"] == grant["refresh_token"]
    assert sandbox.pool_oauth("alice")["accessToken"] == grant["access_token"]
    assert sandbox.creds_bytes() == written             # Claude Code's fresher login is never overwritten
    assert sandbox.pool()["current"] == "alice"

    # now the pool itself has to refresh alice: with the harvested token, no invalid_grant
    fake.expire_access_token(ALICE)
    sandbox.ok("plan")
    assert fake.invalid_grants == 0
    assert fake.account(ALICE).refreshes == 2
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)
    assert holds(sandbox, ALICE)                        # Claude Code holds alice: it gets the rotated login


def test_refreshing_the_login_claude_code_holds_leaves_no_phantom_change(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=50)
    sandbox.seed(ALICE, BOB, current="alice")
    fake.expire_access_token(ALICE)                     # the pool must refresh the login Claude Code holds

    out = sandbox.run("plan", "--detailed-exitcode")
    assert fake.account(ALICE).refreshes == 1
    assert holds(sandbox, ALICE)                        # docs/ARCHITECTURE.md §7: the rotated login went to the store at once
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)
    # so Claude Code already holds exactly what the pool would give it: nothing is left to do
    assert (out.returncode, out.stdout.splitlines()[0][:10]) == (0, "No changes"), out.stdout


def test_a_dead_refresh_token_is_excluded_shown_and_not_retried(sandbox, fake):
    fake.add_account(ALICE, five_hour=5)
    fake.add_account(BOB, five_hour=50)
    sandbox.login(BOB)
    sandbox.ok("import")
    sandbox.login(ALICE, expires_at_ms=int((time.time() - 3600) * 1000))    # expired access token
    sandbox.ok("import")
    fake.revoke(ALICE)                                  # and its refresh token is dead

    out = sandbox.ok("apply")
    assert fake.account(ALICE).invalid_grants == 1
    assert holds(sandbox, BOB)                          # alice (5%) is excluded, bob (50%) chosen
    assert sandbox.pool()["current"] == "bob"
    assert "alice" in out.stdout + out.stderr

    listed = sandbox.ok("list").stdout
    alice_line = next(line for line in listed.splitlines() if " alice " in line)
    assert "needs re-login" in alice_line
    accounts = {a["id"]: a for a in sandbox.list_json()["accounts"]}
    assert accounts["alice"]["needs_relogin"] is True
    assert accounts["bob"]["needs_relogin"] is False

    token_calls = fake.count("/v1/oauth/token")
    sandbox.ok("plan")
    assert fake.count("/v1/oauth/token") == token_calls
    assert fake.account(ALICE).invalid_grants == 1
    sandbox.assert_refused(sandbox.run("switch", "alice"), "re-login")   # not selectable by hand either
    assert holds(sandbox, BOB)

    # a fresh /login (new tokens) + import brings it back
    fake.set_usage(ALICE, revoked=False)
    assert httpx.post(fake.token_url, timeout=5, json={"grant_type": "refresh_token",
                                                      "refresh_token": sandbox.refresh_token(ALICE)}).status_code == 200
    sandbox.login(ALICE)
    sandbox.ok("import")
    assert {a["id"]: a for a in sandbox.list_json()["accounts"]}["alice"]["needs_relogin"] is False
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)


# ---- status, version, config -------------------------------------------------------------------

def test_status_on_an_empty_pool_and_version(sandbox):
    status = sandbox.run("status")
    assert status.returncode == 0
    assert json.loads(status.stdout)["name"] == ""
    version = sandbox.ok("version")
    assert version.stdout.startswith("claude-pool ")
    assert not sandbox.pool_path.exists()


def test_config_init_refuses_to_overwrite_and_show_prints_toml(sandbox):
    out = sandbox.ok("config", "init")
    assert str(sandbox.config_path) in out.stdout
    parsed = tomllib.loads(sandbox.config_path.read_text())
    assert parsed["http"]["timeout_seconds"] == 5.0
    assert parsed["policy"]["threshold"] == 0.95

    sandbox.write_config("[http]\ntimeout_seconds = 2.5\n")
    sandbox.assert_refused(sandbox.run("config", "init"), "--force")
    assert sandbox.config_path.read_text() == "[http]\ntimeout_seconds = 2.5\n"

    shown = sandbox.ok("config", "show").stdout
    effective = tomllib.loads(shown)
    assert effective["http"]["timeout_seconds"] == 2.5
    assert effective["endpoints"]["api_base"] == "https://api.anthropic.com"
    assert effective["policy"]["usage_ttl_seconds"] == 60

    sandbox.ok("config", "init", "--force")
    assert tomllib.loads(sandbox.config_path.read_text())["http"]["timeout_seconds"] == 5.0


def test_config_threshold_decides_what_hook_session_start_does(sandbox):
    """config.toml's [policy] threshold is the hooks' threshold (they pass none of their own)."""
    sandbox.fake.add_account(ALICE, five_hour=50)
    sandbox.fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB, current="alice")
    proc = sandbox.run("hook", "session-start")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert sandbox.pool()["current"] == "alice"          # 50% is under the default 95%
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.access(ALICE)

    # (no cached reading is reused: the last step must see alice's new usage)
    sandbox.write_config("[policy]\nthreshold = 0.4\nusage_ttl_seconds = 0\n")
    proc = sandbox.run("hook", "session-start")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert sandbox.pool()["current"] == "bob"            # 50% is over 40%: bob is under it
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.access(BOB)
    assert sandbox.status()["name"] == "bob"

    # the flag still wins over the config, for a person running it by hand
    sandbox.fake.set_usage(BOB, five_hour=60)
    sandbox.ok("reconcile", "--if-needed", "--threshold", "0.9")
    assert sandbox.pool()["current"] == "bob"
    sandbox.fake.set_usage(ALICE, five_hour=10)         # under config's 40%, where bob is not
    sandbox.ok("reconcile", "--if-needed", "--live")
    assert sandbox.pool()["current"] == "alice"


# ---- the console script itself ------------------------------------------------------------------

@pytest.mark.slow
def test_every_command_as_a_real_process(sandbox, fake):
    """The other tests run the command's entry point in-process (fast); this one runs the
    installed console script for every command once: exit codes, stdout/stderr, no traceback."""
    sandbox.subprocess = True
    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=96)                  # past the threshold: apply leaves it
    fake.add_api_key(KEY1)
    assert sandbox.ok("version").stdout.strip()
    for email in (BOB, ALICE):
        sandbox.login(email)
        sandbox.ok("import")
    assert sandbox.ok("key", "add", "--id", "k1", input=KEY1 + "\n").returncode == 0
    assert KEY1 not in "".join(out + err for _, out, err in sandbox.transcript)
    assert json.loads(sandbox.ok("list", "--json").stdout)["accounts"]
    assert "alice" in sandbox.ok("list").stdout
    assert sandbox.run("plan", "--detailed-exitcode").returncode == 0
    sandbox.ok("switch", "bob")
    assert sandbox.status()["name"] == "bob"
    sandbox.ok("apply")
    sandbox.ok("reconcile", "--if-needed")
    sandbox.ok("auto")
    assert sandbox.pool()["current"] == "alice"
    for event in ("session-start", "prompt-submit", "stop-failure", "post-tool-use"):
        proc = sandbox.run("hook", event, input="{}")
        assert (proc.returncode, proc.stdout) == (0, ""), (event, proc.stderr)
    proc = sandbox.run("helper")                      # not in API-key mode: nothing on stdout, exit 1
    assert (proc.returncode, proc.stdout) == (1, "")
    proc = sandbox.run("statusline", input="{}")
    assert proc.returncode == 0 and "alice" in proc.stdout
    sandbox.ok("rm", "k1")
    sandbox.assert_refused(sandbox.run("switch", "nobody"), "nobody")
    sandbox.assert_refused(sandbox.run("frobnicate"))


@pytest.mark.parametrize(("args", "first_line"), [
    (("help",), "usage: claude-pool [-h] COMMAND ..."),
    (("help", "help"), "usage: claude-pool [-h] COMMAND ..."),
    (("help", "plan"), "usage: claude-pool plan [-h] [--json] [--out FILE] [--detailed-exitcode]"),
    (("help", "key", "add"), "usage: claude-pool key add [-h] [--id NAME] [--from-clipboard] [key]"),
    (("plan", "--help"), "usage: claude-pool plan [-h] [--json] [--out FILE] [--detailed-exitcode]"),
    (("auto", "--help"), "usage: claude-pool reconcile [-h] [--if-needed] [--threshold T] [--live]"),
])
def test_help_for_the_tool_and_for_each_command(sandbox, args, first_line):
    """`help [COMMAND]` as git and pip have it, and each command's own --help (a command builds
    only its own parser: the text is the one the whole parser gives)."""
    proc = sandbox.run(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines()[0] == first_line


def test_a_word_that_is_no_command_lists_the_commands(sandbox):
    for args in (("bogus",), ("help", "bogus"), ("help", "bogus", "x", "y")):
        proc = sandbox.run(*args)
        assert proc.returncode == 1 and proc.stdout == ""
        assert "invalid choice: 'bogus' (choose from 'plan', 'apply'," in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_each_command_alone_parses_and_helps_as_in_the_whole_parser():
    """A command builds only its own parser (commands.build_parser(only=...)): for every command
    and alias, its help text and the namespace it parses are the whole parser's."""
    from claude_pool.reconciler import commands

    whole = commands.build_parser()
    samples = {"switch": ["x"], "rm": ["x"], "priority": ["x", "2"], "threshold": ["x", "0.8"], "pause": ["x"],
               "resume": ["x"], "rename": ["x", "y"], "export": ["f"], "import-pool": ["f"], "key": ["add", "--id", "k"],
               "config": ["show"], "reconcile": ["--live"], "auto": ["--if-needed"], "plan": ["--json"]}
    assert set(whole.commands) >= set(samples)
    for name, sub in whole.commands.items():
        alone = commands.build_parser(name)
        assert name in alone.commands and len(alone.commands) <= 2, name   # itself (and its alias)
        assert alone.commands[name].format_help() == sub.format_help(), name
        argv = [name, *samples.get(name, [])]
        got, want = vars(alone.parse_args(argv)), vars(whole.parse_args(argv))
        assert got.keys() == want.keys() and {k: v for k, v in got.items() if k != "fn"} == \
            {k: v for k, v in want.items() if k != "fn"}, name
        assert getattr(got.get("fn"), "__name__", None) == getattr(want.get("fn"), "__name__", None), name


def test_one_account_and_no_key_says_where_to_get_somewhere_to_move(sandbox, fake):
    """With one account and no API key the pool has nowhere to move: `import` and `list` say how
    to give it somewhere; a second account (or a key) and they say nothing of the kind."""
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=10)
    sandbox.login(ALICE)
    first = sandbox.ok("import").stdout
    assert first.splitlines() == ["Imported alice (alice@example.com); it is the active account.",
                                  "One account and no API key: nowhere to move yet; /login as another account in "
                                  "Claude Code and run `claude-pool import`, or add a key with `claude-pool key add`."]
    listed = sandbox.ok("list").stdout.splitlines()
    assert "nowhere to move yet" in listed[-2], listed
    # and, last, when Claude Code last ran claude-pool: no hook yet in this sandbox
    assert listed[-1].startswith("hooks: none in the audit log yet"), listed
    sandbox.login(BOB)
    assert "nowhere" not in sandbox.ok("import").stdout
    assert "nowhere" not in sandbox.ok("list").stdout
    sandbox.ok("rm", "bob")
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-NOWHEREKEY-" + "x" * 40)
    assert "nowhere" not in sandbox.ok("list").stdout


def test_list_says_when_claude_code_last_ran_claude_pool(sandbox, fake):
    """`list` ends with the newest run a hook (or the apiKeyHelper) started, from the audit log: a
    quiet way to see the plugin is doing its job."""
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE)
    assert sandbox.ok("list").stdout.splitlines()[-1].startswith("hooks: none in the audit log yet")
    sandbox.ok("reconcile", "--if-needed", env={"CLAUDE_POOL_TRIGGER": "hook:prompt-submit"})
    assert sandbox.ok("list").stdout.splitlines()[-1] in ("hooks: the last ran 0s ago (prompt-submit)",
                                                           "hooks: the last ran 1s ago (prompt-submit)")
