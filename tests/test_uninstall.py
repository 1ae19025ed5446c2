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

ALICE, BOB = "alice@example.com", "bob@example.com"
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

    assert not os.path.lexists(link) and not share.exists() and other.exists()
    assert (plugins / "data" / "claude-pool-claude-pool" / "uninstalled").exists()
    assert not (plugins / "data" / "x-y").exists()
    assert "claude plugin uninstall claude-pool@claude-pool" in out


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


# ---------------------------------------------------------------- key add --from-clipboard


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
