"""Slash commands answer without a model turn, and never as an error.

What Claude Code does (checked on the real binary, 2.1.197; docs/CLAUDE-CODE-FACTS.md): for
`/claude-pool:list` it first runs the command file's `!` line, then the UserPromptSubmit hooks with
the raw prompt (`"prompt": "/claude-pool:list"`); a hook printing `{"decision": "block", "reason":
TEXT}` stops the prompt (no request at all) and shows TEXT. The `!` line runs the wrapper's `slash
NAME`, which prints the command's output (exit 0 whatever happened) and keeps it for the session;
the plugin's prompt hook hands it back. The wrapper runs as the script it is; the end-to-end tests
run the real Claude Code against the fake API.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CLAUDE_POOL, Sandbox, sandbox_env
from proctools import end_processes, find_claude, wait_for

REPO = Path(__file__).resolve().parents[1]
WRAPPER = str(REPO / "plugin" / "scripts" / "claude-pool")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
SESSION = "5f200404-38dd-4a78-9b4e-7cdf2d86f28c"
ALICE = "alice@example.com"
BOB = "bob@example.com"
BLOCKED = "UserPromptSubmit operation blocked by hook:"   # how Claude Code 2.1.197 shows the reason


def _payload(prompt: str, session: str = SESSION) -> str:
    """The UserPromptSubmit input as Claude Code 2.1.197 writes it (compact JSON, prompt last)."""
    return json.dumps({"session_id": session, "transcript_path": "/x/t.jsonl", "cwd": "/x",
                       "prompt_id": "1f7eb6cd", "permission_mode": "default",
                       "hook_event_name": "UserPromptSubmit", "prompt": prompt}, separators=(",", ":"))


class Home:
    """A HOME where the wrapper runs with a stand-in installed claude-pool (an sh script)."""

    def __init__(self, tmp_path: Path, script: str) -> None:
        self.home = tmp_path / "home"
        self.share = self.home / ".local" / "share" / "claude-pool"
        version = self.share / "versions" / "x"
        (version / "bin").mkdir(parents=True)
        prog = version / "bin" / "claude-pool"
        prog.write_text("#!/bin/sh\n" + script)
        prog.chmod(0o755)
        want = subprocess.run([CLAUDE_POOL, "version"], capture_output=True, text=True).stdout.split()[-1]
        (version / ".claude-pool-stamp").write_text(f"version {want}\n")
        (self.share / "current").symlink_to("versions/x")
        (self.home / ".local" / "bin").mkdir(parents=True)
        (self.home / ".local" / "bin" / "claude-pool").symlink_to(self.share / "current" / "bin" / "claude-pool")
        (self.share / "path-advice.shown").write_text("")
        self.env = sandbox_env(self.home, None)
        self.env.update(PATH=f"{self.home / '.local' / 'bin'}:{SYSTEM_PATH}", CLAUDE_PLUGIN_ROOT=str(REPO),
                        CLAUDE_CODE_SESSION_ID=SESSION)

    def run(self, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([WRAPPER, *args], env=dict(self.env, **extra), capture_output=True, text=True,
                              timeout=30, input=stdin, cwd=self.home)


def _blocked(proc: subprocess.CompletedProcess) -> str:
    """The hook's answer: exit 0, one JSON object {"decision": "block", "reason": ...}, nothing else."""
    assert (proc.returncode, proc.stderr) == (0, ""), (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, proc.stdout
    data = json.loads(proc.stdout)
    assert list(data) == ["decision", "reason"] and data["decision"] == "block", data
    return data["reason"]


def test_the_prompt_hook_answers_the_slash_command_the_bang_line_ran(tmp_path: Path) -> None:
    # a claude-pool whose output needs escaping, that records each run and what a hook got on stdin
    h = Home(tmp_path, 'echo "$*" >>"$HOME/ran"\n'
                       'case "$1" in hook) cat >"$HOME/stdin"; exit 0 ;; esac\n'
                       'printf \' * a  "quoted" \\\\back\\tslash\\n   second line\\n\'\necho "to stderr" >&2\n')
    proc = h.run("slash", "list")
    expected = ' * a  "quoted" \\back\tslash\n   second line\nto stderr'
    assert (proc.returncode, proc.stdout) == (0, expected + "\n"), proc   # the model's fallback copy
    assert (h.home / "ran").read_text() == "list\n"

    reason = _blocked(h.run("hook", "prompt-submit", stdin=_payload("/claude-pool:list")))
    assert reason == expected
    assert (h.home / "ran").read_text() == "list\n", "the hook ran claude-pool again (or its prompt path)"
    assert not (h.share / "slash").exists(), "the answer was not consumed"

    # the next prompt is an ordinary one: nothing on stdout, and claude-pool gets the payload whole
    payload = _payload("fix the bug in /claude-pool:list's caller")
    proc = h.run("hook", "prompt-submit", stdin=payload)
    assert (proc.returncode, proc.stdout) == (0, "")
    assert (h.home / "stdin").read_text() == payload


@pytest.mark.parametrize("name,args,runs", [("pause", ["work", "--until", "2d"], "pause work --until 2d"),
                                            ("resume", ["work"], "resume work"),
                                            ("priority", ["personal", "2"], "priority personal 2")])
def test_the_preference_commands_answer_too(tmp_path: Path, name: str, args: list[str], runs: str) -> None:
    h = Home(tmp_path, 'echo "$*" >>"$HOME/ran"\necho "done: $*"\n')
    assert h.run("slash", name, *args).stdout == f"done: {runs}\n"
    assert _blocked(h.run("hook", "prompt-submit", stdin=_payload(f"/claude-pool:{name} {' '.join(args)}"))) \
        == f"done: {runs}"
    assert (h.home / "ran").read_text() == runs + "\n", "run once, by the `!` line only"
    assert (REPO / "plugin" / "commands" / f"{name}.md").is_file()


def test_a_kept_answer_never_answers_another_prompt(tmp_path: Path) -> None:
    h = Home(tmp_path, 'case "$1" in hook) cat >"$HOME/stdin"; exit 0 ;; esac\necho "switched to $2"\n')
    assert h.run("slash", "switch", "bob").stdout == "switched to bob\n"
    for prompt in ("/claude-pool:switchboard", "please /claude-pool:switch", "/claude-pool:list"):
        payload = _payload(prompt)
        proc = h.run("hook", "prompt-submit", stdin=payload)
        assert (proc.returncode, proc.stdout) == (0, ""), prompt   # not this command: the prompt goes on
        assert (h.home / "stdin").read_text() == payload
    # another session's answer is not this one's
    h.run("slash", "switch", "bob", CLAUDE_CODE_SESSION_ID="other-session")
    proc = h.run("hook", "prompt-submit", stdin=_payload("/claude-pool:switch bob"))
    assert (proc.returncode, proc.stdout) == (0, "")
    assert _blocked(h.run("hook", "prompt-submit", CLAUDE_CODE_SESSION_ID="other-session",
                          stdin=_payload("/claude-pool:switch bob", "other-session"))) == "switched to bob"


def test_a_failing_command_and_the_install_notice_exit_0_as_answers(tmp_path: Path) -> None:
    h = Home(tmp_path, 'echo "claude-pool: no account or key named nobody" >&2\nexit 1\n')
    proc = h.run("slash", "switch", "nobody")
    assert (proc.returncode, proc.stdout) == (0, "claude-pool: no account or key named nobody\n")
    assert _blocked(h.run("hook", "prompt-submit", stdin=_payload("/claude-pool:switch nobody"))) == \
        "claude-pool: no account or key named nobody"

    # nothing installed yet (an install running): the notice, short enough for one screen line
    shutil.rmtree(h.share)
    h.share.mkdir(parents=True)
    (h.share / "bootstrap.lock").mkdir()
    try:
        proc = h.run("slash", "status")
        assert proc.returncode == 0, proc
        line = proc.stdout.strip()
        assert line == "claude-pool is being installed in the background, about 20 s; try again then. " \
                       "Log: ~/.local/share/claude-pool/bootstrap.log", line
        assert _blocked(h.run("hook", "prompt-submit", stdin=_payload("/claude-pool:status"))) == line
    finally:
        end_processes(f"HOME={h.home}", grace=3.0)


def test_key_add_reminds_to_clear_the_clipboard(tmp_path: Path) -> None:
    h = Home(tmp_path, 'echo "args: $*"\necho "Added API key k2 (sk-ant-...x1y2)."\n')
    out = h.run("slash", "key-add", "--id", "k2").stdout
    assert out == "args: key add --from-clipboard --id k2\nAdded API key k2 (sk-ant-...x1y2).\n" \
                  "Clear the clipboard now: it still holds the key.\n", out


# ------------------------------------------------------------------------ the real Claude Code

CLAUDE = find_claude()


def _box(tmp_path: Path, fake) -> Sandbox:
    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    box = Sandbox(home, fake, subprocess=True)
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "theme": "dark", "projects": {
        str(home / "proj"): {"hasTrustDialogAccepted": True}}}))
    box.env.update(ANTHROPIC_BASE_URL=fake.base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                   DISABLE_TELEMETRY="1", DISABLE_AUTOUPDATER="1", TERM="xterm-256color", LANG="C.UTF-8")
    return box


@pytest.mark.slow
@pytest.mark.skipif(CLAUDE is None, reason="the real Claude Code binary is not available")
def test_slash_commands_answer_in_claude_code_without_a_request(tmp_path: Path, fake) -> None:
    """`claude --plugin-dir REPO -p /claude-pool:...` (a claude-pool of the user's own on PATH): each
    command does its job once, its output is what Claude Code prints, no request is made."""
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    box = _box(tmp_path, fake)
    box.login(ALICE)
    box.ok("import")
    key = "sk-ant-api03-" + "k" * 40 + "x1y2"
    clip = tmp_path / "clipbin"   # the key is on the clipboard (a stand-in xclip prints it)
    clip.mkdir()
    (clip / "xclip").write_text(f"#!/bin/sh\necho {key}\n")
    (clip / "xclip").chmod(0o755)
    box.env["PATH"] = f"{clip}:{box.env['PATH']}"

    def slash(command: str) -> str:
        proc = subprocess.run([CLAUDE, "--plugin-dir", str(REPO), "-p", command], env=box.env, cwd=box.home / "proj",
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0 and proc.stdout.startswith(BLOCKED), proc.stdout + proc.stderr
        assert "Error:" not in proc.stdout + proc.stderr
        return proc.stdout

    try:
        box.login(BOB)   # /login as bob, then:
        assert "Imported bob" in slash("/claude-pool:import")
        out = slash("/claude-pool:key-add --id k2")
        assert "Added API key k2" in out and "Clear the clipboard" in out and key not in out, out
        out = slash("/claude-pool:list")
        assert "alice" in out and "bob" in out and "k2" in out and key not in out, out
        assert '"name": "bob"' in slash("/claude-pool:status")
        out = slash("/claude-pool:switch alice")   # what the README shows, line for line
        assert out.startswith(f"{BLOCKED}\nclaude-pool: Claude Code's login -> alice\nclaude-pool: 1 running Claude "
                              "Code session picks up the new credential at the next request\nClaude Code now uses "
                              "account alice.\n"), out
        assert out.rstrip().endswith("Original prompt: /claude-pool:switch alice"), out
        assert box.status()["name"] == "alice" and box.creds()["claudeAiOauth"]["accessToken"] == \
            fake.account(ALICE).access_token
        assert "no account" in slash("/claude-pool:switch nobody").lower()   # an error, answered as text
        assert [k["id"] for k in box.list_json()["api_keys"]] == ["k2"]      # added once, not twice
        assert fake.messages_requests() == [], "a slash command made a model request"
        assert not (box.home / ".local" / "share" / "claude-pool" / "slash").exists()

        # hooks turned off: the command file still works, through the model (the fallback)
        box.write_settings({"disableAllHooks": True})
        proc = subprocess.run([CLAUDE, "--plugin-dir", str(REPO), "-p", "/claude-pool:switch bob"], env=box.env,
                              cwd=box.home / "proj", capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0 and "ok from fake" in proc.stdout and BLOCKED not in proc.stdout, proc
        sent = json.dumps([r["body"] for r in fake.messages_requests()])
        assert "Claude Code now uses account bob." in sent and "Shell command failed" not in sent, sent[-3000:]
        assert box.status()["name"] == "bob"
    finally:
        end_processes(f"HOME={box.home}", grace=3.0)


@pytest.mark.slow
@pytest.mark.skipif(CLAUDE is None or shutil.which("tmux") is None or shutil.which("timeout") is None,
                    reason="needs the real Claude Code, tmux and timeout")
def test_in_the_tui_the_answer_is_shown_and_never_reaches_the_model(tmp_path: Path, fake) -> None:
    fake.add_account(ALICE, five_hour=10)
    box = _box(tmp_path, fake)
    box.login(ALICE)
    box.ok("import")
    sock_dir = tempfile.mkdtemp(prefix="cps-", dir="/tmp")
    sock = os.path.join(sock_dir, "s")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, *args], env=box.env, capture_output=True, text=True,
                              timeout=15).stdout

    def screen() -> str:
        return tmux("capture-pane", "-p", "-J", "-S", "-300", "-t", "c")

    def type_line(text: str) -> None:
        tmux("send-keys", "-t", "c", "-l", text)
        time.sleep(0.3)
        tmux("send-keys", "-t", "c", "Enter")

    tmux("-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "200", "-y", "50", "-c", str(box.home / "proj"),
         f"exec timeout --foreground 120 {shlex.quote(CLAUDE)} --plugin-dir {shlex.quote(str(REPO))}")  # type: ignore[arg-type]
    try:
        wait_for(lambda: "❯" in screen(), 60, "the prompt")
        type_line("/claude-pool:status")
        wait_for(lambda: BLOCKED in screen() and '"name": "alice"' in screen(), 60, f"the answer\n{screen()}")
        assert "Error" not in screen(), screen()
        type_line("hello after status")
        wait_for(lambda: "ok from fake (alice@example.com)" in screen(), 60, f"the model's answer\n{screen()}")
    finally:
        tmux("kill-server")
        shutil.rmtree(sock_dir, ignore_errors=True)
        end_processes(f"HOME={box.home}", grace=3.0)
    bodies = json.dumps([r["body"] for r in fake.messages_requests()])
    assert "hello after status" in bodies
    for needle in ("claude-pool", '\\"name\\": \\"alice\\"', "blocked by hook", "systemMessage"):
        assert needle not in bodies, f"{needle!r} reached the model"


def _hook_runs(stream: str) -> list[dict]:
    """The hooks a `claude -p --output-format stream-json --verbose` run reports (2.1.197: one
    {"type": "system", "subtype": "hook_response", "hook_event", "stdout", "stderr", "exit_code",
    "outcome"} line per hook run)."""
    lines = [json.loads(line) for line in stream.splitlines() if line.startswith("{")]
    return [x for x in lines if x.get("type") == "system" and x.get("subtype") == "hook_response"]


@pytest.mark.slow
@pytest.mark.skipif(CLAUDE is None or shutil.which("git") is None, reason="needs the real Claude Code and git")
def test_the_plugin_works_from_folders_whose_names_have_spaces(tmp_path: Path, fake) -> None:
    """HOME with spaces, so the plugin's folder (CLAUDE_PLUGIN_ROOT, in HOME's plugin cache), the
    install (~/.local/share/claude-pool) and the command's link all have spaces: installed from the
    git marketplace as the README says, the hooks start the bootstrap, which installs and imports
    the login; the next session and a slash command work. The build is a stand-in `uv` (the real
    pip in a folder with spaces writes a `#!/bin/sh` + `exec "<python>"` launcher: checked by hand)."""
    from test_notices import _fake_uv
    from test_plugin_install import ADD, INSTALL, Remote, User

    fake.add_account(ALICE, five_hour=10)
    remote = Remote(tmp_path / "github")
    remote.commit_checkout()
    user = User(tmp_path / "Application Support" / "my home", fake, remote, tmp_path / "pip cache")
    _fake_uv(tmp_path / "uv bin")
    user.env["PATH"] = f"{tmp_path / 'uv bin'}:{user.env['PATH']}"
    user.login(ALICE)
    try:
        user.step(ADD)
        user.step(INSTALL)
        root = json.loads((user.claude_dir / "plugins" / "installed_plugins.json").read_text())
        assert " " in root["plugins"]["claude-pool@claude-pool"][0]["installPath"]

        first = user.claude("-p", "hello", "--output-format", "stream-json", "--verbose")
        user.answered(first, ALICE)     # the session-start hook starts the install
        hooks = _hook_runs(first.stdout)
        assert [h["hook_event"] for h in hooks] == ["SessionStart"], hooks   # (2.1.197 reports no other)
        assert all((h["exit_code"], h["outcome"], h["stderr"]) == (0, "success", "") for h in hooks), hooks
        told = [json.loads(h["stdout"])["systemMessage"] for h in hooks if h["hook_event"] == "SessionStart"]
        assert told == ["claude-pool: installing in the background, about 20 s. "
                        "Log: ~/.local/share/claude-pool/bootstrap.log"], told
        wait_for(lambda: "imported the login" in user.log(), 60, f"the install and its import\n{user.log()}")
        assert "bootstrap: done" in user.log() and os.path.islink(user.link)
        proc = user.shell("claude-pool list")
        assert proc.returncode == 0 and "alice" in proc.stdout, proc.stdout + proc.stderr

        proc = user.claude("-p", "/claude-pool:status")         # the `!` line, then the prompt hook's answer
        assert proc.returncode == 0 and proc.stdout.startswith(BLOCKED) and '"name": "alice"' in proc.stdout, \
            proc.stdout + proc.stderr
        user.answered(user.claude("-p", "again"), ALICE)
        assert all(r["email"] == ALICE for r in fake.messages_requests())
    finally:
        end_processes(f"HOME={user.home}", grace=5.0)
