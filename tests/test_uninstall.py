"""`claude-pool uninstall [--purge]`, `key add --from-clipboard`, and the wake sleeper whose program
went away: the installed command in a sandboxed HOME (conftest's Sandbox), real files, a real
detached sleeper."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proctools import alive, wait_for

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
KEY1 = "sk-ant-api03-UNINSTALLKEY1-0123456789abcdefghijABCDEFGH"
FOREIGN = "/usr/local/bin/vault-key-helper --profile work"


def _our_helper(sandbox) -> str:  # type: ignore[no-untyped-def]
    from claude_pool.reconciler.runtime import helper_command

    return helper_command(executable=sandbox.exe)


def test_uninstall_puts_the_foreign_helper_back_and_keeps_the_pool(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE, keys={"k1": KEY1}, mode="apikey", current_key="k1", saved_api_key_helper=FOREIGN)
    sandbox.write_settings({"model": "opus", "apiKeyHelper": _our_helper(sandbox), "env": {"A": "1"}})
    creds = sandbox.creds_bytes()

    out = sandbox.ok("uninstall").stdout

    assert sandbox.settings() == {"model": "opus", "apiKeyHelper": FOREIGN, "env": {"A": "1"}}
    assert list(sandbox.settings()) == ["model", "apiKeyHelper", "env"]
    assert "your own put back" in out
    assert "was not installed by the plugin" in out  # this one is the test venv's
    assert "Kept:" in out and str(sandbox.pool_path) in out
    pool = sandbox.pool()
    assert pool["mode"] == "account" and pool["saved_api_key_helper"] == ""
    assert [k["id"] for k in pool["api_keys"]] == ["k1"]
    assert sandbox.creds_bytes() == creds  # Claude Code's login is Claude Code's
    assert KEY1 not in out
    # a second run finds nothing of ours and changes nothing
    before = sandbox.snapshot()
    out = sandbox.ok("uninstall").stdout
    assert "no claude-pool apiKeyHelper" in out
    assert sandbox.snapshot() == before


def test_uninstall_without_a_foreign_helper_removes_the_key(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE, keys={"k1": KEY1}, mode="apikey", current_key="k1")
    sandbox.write_settings({"apiKeyHelper": _our_helper(sandbox), "cleanupPeriodDays": 9})
    sandbox.ok("uninstall")
    assert sandbox.settings() == {"cleanupPeriodDays": 9}


def test_uninstall_refuses_a_settings_file_it_cannot_read(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    sandbox.write_settings("{not json")
    sandbox.assert_refused(sandbox.run("uninstall"), "not valid JSON")
    assert sandbox.settings_bytes() == b"{not json"


def test_uninstall_purge_says_what_it_deletes_then_deletes_it(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    sandbox.login(ALICE)
    sandbox.ok("import")
    sandbox.login(BOB)
    sandbox.ok("import")
    sandbox.ok("key", "add", "--id", "k1", input=KEY1 + "\n")
    assert sandbox.audit_path.exists()
    creds = sandbox.creds_bytes()
    # a rescued refresh (a reservation whose rename failed) holds the pool, tokens included
    (sandbox.pool_dir / ".claude-pool-pending-1-abcd-pool.json").write_bytes(sandbox.pool_bytes())

    proc = sandbox.ok("uninstall", "--purge")

    out = proc.stdout
    assert "alice (alice@example.com)" in out and "bob (bob@example.com)" in out and "k1" in out, out
    assert "audit log" in out and "events" in out
    for secret in (KEY1, sandbox.refresh_token(ALICE), sandbox.access(BOB)):
        assert secret not in proc.stdout + proc.stderr
    assert not sandbox.pool_dir.exists() and not sandbox.audit_path.parent.exists()
    assert sandbox.creds_bytes() == creds


def test_uninstall_removes_the_plugins_install_and_idles_the_plugin(sandbox) -> None:  # type: ignore[no-untyped-def]
    share = sandbox.home / ".local" / "share" / "claude-pool"
    (share / "versions" / "0.1.0-x" / "bin").mkdir(parents=True)
    (share / "current").symlink_to("versions/0.1.0-x")
    link = sandbox.home / ".local" / "bin" / "claude-pool"
    link.parent.mkdir(parents=True)
    link.symlink_to(share / "current" / "bin" / "claude-pool")
    other = sandbox.home / ".local" / "bin" / "other-tool"
    other.write_text("#!/bin/sh\n")
    plugins = sandbox.claude_dir / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "installed_plugins.json").write_text(json.dumps(
        {"version": 2, "plugins": {"claude-pool@claude-pool": [{"scope": "user"}], "x@y": []}}))

    out = sandbox.ok("uninstall").stdout

    assert not os.path.lexists(link) and other.exists()
    # all that is left of the install: the marker every entry point of the plugin sees
    assert sorted(os.listdir(share)) == ["uninstalled"]
    data_marker = plugins / "data" / "claude-pool-claude-pool" / "uninstalled"
    assert data_marker.exists()  # the old place too (a plugin of an earlier version looks there)
    assert (share / "uninstalled").read_text().splitlines() == ["claude-pool uninstall", str(data_marker)]
    assert not (plugins / "data" / "x-y").exists()
    assert "claude plugin uninstall claude-pool@claude-pool" in out
    assert "Nothing installs claude-pool again until you run: rm ~/.local/share/claude-pool/uninstalled" in out
    # a second run keeps the marker and says nothing about a program that is not there
    out = sandbox.ok("uninstall").stdout
    assert sorted(os.listdir(share)) == ["uninstalled"] and "Removed the installed program" not in out


def test_uninstall_leaves_a_claude_pool_link_that_is_not_ours(sandbox) -> None:  # type: ignore[no-untyped-def]
    link = sandbox.home / ".local" / "bin" / "claude-pool"
    link.parent.mkdir(parents=True)
    link.symlink_to("/opt/elsewhere/claude-pool")
    sandbox.ok("uninstall")
    assert os.path.islink(link)


def test_uninstall_stops_the_wake_sleeper(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    env = dict(sandbox.env)
    sleeper = subprocess.Popen([sandbox.exe, "wake", str(time.time() + 3600)], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (sandbox.pool_dir / "wake.json").write_text(json.dumps({"at": time.time() + 3600, "pid": sleeper.pid}))
        out = sandbox.ok("uninstall").stdout
        assert "Stopped the scheduled wake-up" in out
        sleeper.wait(timeout=10)
        assert not (sandbox.pool_dir / "wake.json").exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_a_wake_sleeper_whose_program_is_gone_exits(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from claude_pool.providers import spawn, wake

    marker = tmp_path / "wake.json"
    marker.write_text(json.dumps({"at": 0, "pid": os.getpid()}))  # the marker says: this sleeper
    monkeypatch.setattr(spawn, "lasting_argv", lambda *a: [str(tmp_path / "gone" / "claude-pool"), *a])
    # Without the check this would try to exec the missing program (and raise).
    assert wake.sleep_then_reconcile(time.time() + 0.2, path=marker) == 0
    assert marker.exists()  # it left before taking the marker


# ------------------------------------------- after uninstall: the plugin's wrapper stays idle

REPO = Path(__file__).resolve().parents[1]
WRAPPER = REPO / "plugin" / "scripts" / "claude-pool"
TOOLS = ("sh", "sed", "cat", "date", "mkdir", "cut", "find", "rmdir", "mv", "rm", "wc", "basename", "dirname",
         "setsid", "nohup", "readlink", "ln", "mktemp", "cp", "grep", "sleep", "tr")
IDLE = "claude-pool is uninstalled; the plugin is idle. To bring it back: rm ~/.local/share/claude-pool/uninstalled\n"


def _plugin_installed(sandbox) -> Path:  # type: ignore[no-untyped-def]
    """The plugin's install (a fake program in versions/, `current`, the PATH link) and Claude Code's
    record of the plugin (installed from this checkout). Returns the install folder."""
    share = sandbox.home / ".local" / "share" / "claude-pool"
    (share / "versions" / "0.1.0-x" / "bin").mkdir(parents=True)
    (share / "current").symlink_to("versions/0.1.0-x")
    link = sandbox.home / ".local" / "bin" / "claude-pool"
    link.parent.mkdir(parents=True)
    link.symlink_to(share / "current" / "bin" / "claude-pool")
    plugins = sandbox.claude_dir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "installed_plugins.json").write_text(json.dumps(
        {"version": 2, "plugins": {"claude-pool@claude-pool": [{"scope": "user", "installPath": str(REPO)}]}}))
    return share


def _wrapper(sandbox, tmp_path: Path, *args: str, data: Path | None = None, stdin: str = "{}",  # type: ignore[no-untyped-def]
             session: str | None = None):
    """The plugin's wrapper as a real process, the way a slash command's `!` runs it: no
    $CLAUDE_PLUGIN_DATA (unless `data`), no claude-pool and no Python on PATH (an install that
    wrongly starts fails at once, and leaves its log)."""
    bindir = tmp_path / "wrapper-bin"
    if not bindir.exists():
        bindir.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            if found:
                (bindir / tool).symlink_to(found)
    env = {k: v for k, v in sandbox.env.items() if not k.startswith("CLAUDE_PLUGIN")}
    env.update(HOME=str(sandbox.home), PATH=str(bindir), CLAUDE_PLUGIN_ROOT=str(REPO))
    if data is not None:
        env["CLAUDE_PLUGIN_DATA"] = str(data)
    if session is not None:
        env["CLAUDE_CODE_SESSION_ID"] = session
    return subprocess.run([str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=20,
                          input=stdin, cwd=sandbox.home)


def test_after_uninstall_a_slash_command_installs_nothing_and_says_so_in_one_line(sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    share = _plugin_installed(sandbox)
    sandbox.ok("uninstall")

    proc = _wrapper(sandbox, tmp_path, "list")  # /claude-pool:list
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, IDLE, "")
    # the slash command as the command file runs it, then the prompt hook answers it: the idle line
    proc = _wrapper(sandbox, tmp_path, "slash", "list", session="s1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, IDLE, "")
    proc = _wrapper(sandbox, tmp_path, "hook", "prompt-submit", session="s1",
                    stdin=json.dumps({"session_id": "s1", "prompt": "/claude-pool:list"}))
    assert (proc.returncode, proc.stderr) == (0, "") and json.loads(proc.stdout) == \
        {"decision": "block", "reason": IDLE.strip()}
    proc = _wrapper(sandbox, tmp_path, "hook", "prompt-submit")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = _wrapper(sandbox, tmp_path, "hook", "session-start")  # a hook without $CLAUDE_PLUGIN_DATA too
    # at session start: to the user, never the model (a systemMessage), and not shown as an error
    assert (proc.returncode, proc.stderr) == (0, "") and json.loads(proc.stdout) == {"systemMessage": IDLE.strip()}
    data = sandbox.claude_dir / "plugins" / "data" / "claude-pool-claude-pool"
    proc = _wrapper(sandbox, tmp_path, "hook", "session-start", data=data)
    # at session start: to the user, never the model (a systemMessage), and not shown as an error
    assert (proc.returncode, proc.stderr) == (0, "") and json.loads(proc.stdout) == {"systemMessage": IDLE.strip()}
    time.sleep(0.5)  # an install started in the background would have logged by now
    assert sorted(os.listdir(share)) == ["uninstalled"], "an install started after uninstall"
    assert not (sandbox.home / ".local" / "bin" / "claude-pool").exists()

    # the plugin uninstalled (its data folder deleted) and installed again asks for claude-pool back
    shutil.rmtree(data)
    proc = _wrapper(sandbox, tmp_path, "hook", "session-start", data=data)
    assert proc.returncode in (0, 1) and IDLE not in proc.stderr
    wait_for(lambda: (share / "bootstrap.failed").exists(), 10, "the install to start (and fail: no Python)")
    assert not (share / "uninstalled").exists()


def test_the_old_marker_alone_still_idles_the_plugin(sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = sandbox.claude_dir / "plugins" / "data" / "claude-pool-claude-pool"
    data.mkdir(parents=True)
    (data / "uninstalled").write_text("claude-pool uninstall\n")
    proc = _wrapper(sandbox, tmp_path, "hook", "session-start", data=data)
    assert proc.returncode == 0 and "the plugin is idle" in json.loads(proc.stdout)["systemMessage"]
    time.sleep(0.3)
    assert not (sandbox.home / ".local" / "share" / "claude-pool").exists()


def _reading(sandbox, email: str, five: float, **extra) -> dict:  # type: ignore[no-untyped-def]
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    entry = sandbox.account_entry(email)
    entry["usage"] = {"five_hour": {"pct": five, "resets_at": iso(now + 7200)},
                      "seven_day": {"pct": 30, "resets_at": iso(now + 3 * 86400)}}
    entry["usage_at"] = iso(now - 60)
    entry.update(extra)
    return entry


def _pool_with(sandbox, *entries: dict) -> None:  # type: ignore[no-untyped-def]
    sandbox.write_pool({"mode": "account", "current": entries[0]["id"], "current_key": "", "key_cursor": 0,
                        "saved_api_key_helper": "", "accounts": list(entries), "api_keys": []})
    sandbox.write_creds(entries[0]["blob"])


@pytest.mark.parametrize("out", ["at 100%", "blocked"])
def test_uninstall_on_an_account_that_is_out_switches_to_the_one_with_room_first(sandbox, out) -> None:  # type: ignore[no-untyped-def]
    for email in (ALICE, BOB, CAROL):
        sandbox.fake.add_account(email)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    if out == "at 100%":
        alice = _reading(sandbox, ALICE, 100)
    else:
        alice = _reading(sandbox, ALICE, 40, block={"until": until, "source": "message", "reason": "limit",
                                                     "at": seen})
    _pool_with(sandbox, alice, _reading(sandbox, BOB, 70), _reading(sandbox, CAROL, 10))
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.fake.account(ALICE).access_token

    text = sandbox.ok("uninstall").stdout

    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == sandbox.fake.account(CAROL).access_token
    assert f"alice is {out.split()[0]}" in text, text
    assert f"Claude Code held account alice ({ALICE}), but alice is" in text, text
    assert f"switched it to account carol ({CAROL}), which has the most room (last reading 5h 10%" in text, text
    assert "5h 10%" in text
    assert sandbox.pool()["current"] == "carol"
    assert sandbox.refresh_token(CAROL) not in text and sandbox.access(CAROL) not in text


def test_uninstall_says_the_login_it_leaves_and_its_room(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    _pool_with(sandbox, _reading(sandbox, ALICE, 25), _reading(sandbox, BOB, 0))
    creds = sandbox.creds_bytes()
    text = sandbox.ok("uninstall").stdout
    assert f"Claude Code keeps account alice ({ALICE}): it has room now (last reading 5h 25%, 7d 30%)." in text, text
    assert sandbox.creds_bytes() == creds  # it has room: not moved


def test_uninstall_when_every_account_is_out_says_so_and_stays(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    _pool_with(sandbox, _reading(sandbox, ALICE, 100), _reading(sandbox, BOB, 100))
    creds = sandbox.creds_bytes()
    text = sandbox.ok("uninstall").stdout
    assert f"Claude Code keeps account alice ({ALICE}), but alice is at 100%" in text, text
    assert "no other account in the pool has room" in text
    assert sandbox.creds_bytes() == creds


def test_purge_after_a_plain_uninstall_through_the_plugins_script(sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.login(ALICE)
    sandbox.ok("import")
    share = _plugin_installed(sandbox)
    creds = sandbox.creds_bytes()
    out = sandbox.ok("uninstall").stdout
    assert "Kept:" in out and sandbox.pool_path.exists() and sandbox.audit_path.exists()

    proc = _wrapper(sandbox, tmp_path, "uninstall")  # no program left: says what is kept
    assert proc.returncode == 0 and "uninstall --purge" in proc.stdout and sandbox.pool_path.exists()
    proc = _wrapper(sandbox, tmp_path, "uninstall", "--purge")
    assert proc.returncode == 0, proc.stderr
    assert f"Deleting {sandbox.pool_path}" in proc.stdout and "Deleting the audit log" in proc.stdout, proc.stdout
    assert not sandbox.pool_dir.exists() and not sandbox.audit_path.parent.exists()
    assert sandbox.creds_bytes() == creds
    assert sandbox.refresh_token(ALICE) not in proc.stdout + proc.stderr
    time.sleep(0.3)
    assert sorted(os.listdir(share)) == ["uninstalled"]  # and no install started


def test_the_kept_line_names_a_purge_that_works_once_the_program_is_gone(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from claude_pool.providers import paths

    if sandbox.subprocess:
        pytest.skip("patches this process")
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    _plugin_installed(sandbox)
    monkeypatch.setattr(paths, "managed_install", lambda: True)
    out = sandbox.ok("uninstall").stdout
    assert f"`{WRAPPER} uninstall --purge` deletes them" in out, out


def _clipboard(tmp_path: Path, text: str | None) -> str:
    """A PATH holding only an `xclip` that prints `text` (None: no clipboard tool at all)."""
    bindir = tmp_path / "clipbin"
    bindir.mkdir(exist_ok=True)
    if text is not None:
        (bindir / "data").write_text(text)
        script = bindir / "xclip"
        script.write_text(f"#!/bin/sh\nexec {shutil.which('cat')} {bindir / 'data'}\n")
        script.chmod(0o755)
    return str(bindir)


def test_key_add_from_the_clipboard(sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    proc = sandbox.run("key", "add", "--from-clipboard", "--id", "k9",
                       env={"PATH": _clipboard(tmp_path, KEY1 + "\n")})
    assert proc.returncode == 0, proc.stderr
    assert "Added API key k9" in proc.stdout and KEY1[-4:] in proc.stdout
    assert KEY1 not in proc.stdout + proc.stderr
    assert [k["key"] for k in sandbox.pool()["api_keys"]] == [KEY1]


@pytest.mark.parametrize("text, fragment", [
    ("Dear diary, today I copied a paragraph", "does not hold an API key"),
    (None, "cannot read the clipboard"),
])
def test_key_add_from_the_clipboard_refuses_what_is_not_a_key(sandbox, tmp_path: Path, text, fragment) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    proc = sandbox.run("key", "add", "--from-clipboard", env={"PATH": _clipboard(tmp_path, text)})
    line = sandbox.assert_refused(proc, fragment)
    assert "diary" not in line  # the clipboard's text is never echoed
    assert sandbox.pool()["api_keys"] == []


def test_key_add_from_the_clipboard_takes_no_key_argument(sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    proc = sandbox.run("key", "add", "--from-clipboard", KEY1, env={"PATH": _clipboard(tmp_path, KEY1)})
    line = sandbox.assert_refused(proc, "takes no key argument")
    assert KEY1 not in line
    assert sandbox.pool()["api_keys"] == []


def test_the_helper_command_of_the_plugins_install_is_the_stable_link(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Run from a versioned folder of the bootstrap's install, the apiKeyHelper written into
    settings.json names ~/.local/bin/claude-pool (or current/), never the versioned folder."""
    from claude_pool.providers import paths
    from claude_pool.reconciler import runtime

    share = tmp_path / ".local" / "share" / "claude-pool"
    version_dir = share / "versions" / "0.1.0-x"
    version_dir.mkdir(parents=True)
    (share / "current").symlink_to("versions/0.1.0-x")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(sys, "prefix", str(version_dir))
    assert paths.managed_install()
    assert runtime.helper_command(platform="linux") == f"{share / 'current' / 'bin' / 'claude-pool'} helper"
    link = tmp_path / ".local" / "bin" / "claude-pool"
    link.parent.mkdir(parents=True)
    link.symlink_to(share / "current" / "bin" / "claude-pool")
    assert runtime.helper_command(platform="linux") == f"{link} helper"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "some-venv"))
    assert not paths.managed_install()


# --------------------------------------------- a helper of ours that cannot keep working


def test_a_helper_left_in_the_plugins_data_folder_is_moved_to_this_install(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Older plugin versions installed into Claude Code's plugin data folder, which `claude plugin
    uninstall` deletes: an apiKeyHelper pointing there is rewritten to the command that runs now."""
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"  # API-key mode would schedule a wake-up; not this test's subject
    sandbox.fake.add_account(ALICE, five_hour=100)
    sandbox.fake.add_api_key(KEY1)
    sandbox.seed(ALICE, keys={"k1": KEY1}, mode="apikey", current_key="k1", saved_api_key_helper=FOREIGN)
    old_venv = sandbox.claude_dir / "plugins" / "data" / "claude-pool-claude-pool" / "venv" / "bin"
    old_venv.mkdir(parents=True)
    (old_venv / "claude-pool").write_text("#!/bin/sh\n")
    (old_venv / "claude-pool").chmod(0o755)
    sandbox.write_settings({"apiKeyHelper": f"{old_venv / 'claude-pool'} helper", "model": "opus"})

    sandbox.ok("reconcile")

    settings = sandbox.settings()
    assert settings == {"apiKeyHelper": _our_helper(sandbox), "model": "opus"}, settings
    pool = sandbox.pool()
    assert pool["mode"] == "apikey" and pool["saved_api_key_helper"] == FOREIGN  # the foreign one still saved
    before = sandbox.snapshot()
    sandbox.ok("reconcile")
    assert sandbox.snapshot()["settings"] == before["settings"]  # converged


def test_a_helper_of_a_missing_program_is_rewritten_but_another_live_install_is_left(sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sandbox.env["CLAUDE_POOL_WAKE"] = "0"  # API-key mode would schedule a wake-up; not this test's subject
    sandbox.fake.add_account(ALICE, five_hour=100)
    sandbox.fake.add_api_key(KEY1)
    sandbox.seed(ALICE, keys={"k1": KEY1}, mode="apikey", current_key="k1")
    gone = f"{tmp_path / 'gone' / 'claude-pool'} helper"
    sandbox.write_settings({"apiKeyHelper": gone})
    sandbox.ok("reconcile")
    assert sandbox.settings() == {"apiKeyHelper": _our_helper(sandbox)}

    other = tmp_path / "pipx" / "bin" / "claude-pool"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    sandbox.write_settings({"apiKeyHelper": f"{other} helper"})
    sandbox.ok("reconcile")
    assert sandbox.settings() == {"apiKeyHelper": f"{other} helper"}  # no tug of war between installs
