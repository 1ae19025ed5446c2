"""End-to-end: the REAL Claude Code CLI with the claude-pool plugin, against the fake Anthropic API.

Nothing is mocked. Every test starts a real HTTP fake (tests/fakeapi.py) on 127.0.0.1, builds a
sandboxed HOME (Claude Code's ~/.claude.json, ~/.claude/.credentials.json and settings.json, and
claude-pool's pool), registers accounts with the installed `claude-pool` command, and runs the
real `claude` binary with `--plugin-dir` the repository (the plugin's root). The plugin's hooks run the installed claude-pool
(the venv's bin is first on PATH). The assertions are on what the fake received (which credential
each POST /v1/messages carried, and its body) and on the files claude-pool rewrote.

The binary: $CLAUDE_POOL_TEST_CLAUDE, else .cache/claude-code/node_modules/.bin/claude; without
either the module is skipped. The interactive test also needs tmux.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import CLAUDE_POOL
from proctools import find_claude
from conftest import Sandbox as BaseSandbox
from fakeapi import FakeAnthropic

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO  # the plugin's root: .claude-plugin/plugin.json names plugin/hooks and plugin/commands


CLAUDE = find_claude()
if CLAUDE is None:
    pytest.skip("the real Claude Code binary is not available: set CLAUDE_POOL_TEST_CLAUDE or run "
                "`npm install --prefix .cache/claude-code @anthropic-ai/claude-code`",
                allow_module_level=True)

# One worker for the whole file: test_no_hook_output_reaches_the_model also searches what the
# tests before it sent to the model.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("claude_e2e")]

CLAUDE_TIMEOUT = 120
ALICE = "alice@example.com"
BOB = "bob@example.com"

# Text the hooks (or anything claude-pool prints) could put in front of the model.
HOOK_TEXT = ("claude-pool", "claude_pool", "reconcile", "switched", "pool:", "apikeyhelper",
             "api-key mode", "using api keys", "most headroom", "weekly points", "headroom again", "% threshold",
             # not "prompt cache": Claude Code's own system prompt speaks of the prompt cache
             "session its prompt cache",
             "every account", "hook session-start", "hook prompt-submit",
             "hook stop-failure", "sessionstart hook", "userpromptsubmit hook", "hook additional context",
             "hook success", "hook error", "traceback")

# Every /v1/messages request any test's fake recorded (for test_no_hook_output_reaches_the_model).
_ALL_MESSAGES: list[dict] = []


def _answer(label: str) -> str:
    return f"ok from fake ({label})"


def _key_label(key: str) -> str:
    return "key-" + key[-4:]  # how the fake names an API key in its answer


def _new_api_key() -> str:
    return "sk-ant-api03-" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    try:
        yield server
    finally:
        _ALL_MESSAGES.extend(server.messages_requests())
        server.stop()


class Sandbox(BaseSandbox):
    """conftest's Sandbox plus a project Claude Code trusts, Claude Code's environment (the fake
    API as its base URL, no telemetry), and a record of every command for failure messages."""

    def __init__(self, root: Path, fake: FakeAnthropic, pycache: Path) -> None:
        super().__init__(root, fake, pycache)
        self.proj = root / "proj"
        self.proj.mkdir()
        self.claude_dir.mkdir()
        (root / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True,
            "theme": "dark",
            "projects": {str(self.proj): {"hasTrustDialogAccepted": True}},
        }), encoding="utf-8")
        for name in [k for k in self.env if k.startswith(("CLAUDE", "TMUX")) and not k.startswith("CLAUDE_POOL_")]:
            del self.env[name]  # Claude Code's own variables of an outer session
        self.env.update(
            ANTHROPIC_BASE_URL=fake.base_url,
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_AUTOUPDATER="1",
        )
        self.env.setdefault("TERM", "xterm-256color")
        #: (argv, returncode, stdout, stderr) of every command run here, for failure messages
        self.runs: list[tuple[list[str], int, str, str]] = []

    # ---- running things ----------------------------------------------------------------

    def shell(self, argv: list[str], *, input: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a program (Claude Code, or claude-pool as a process) in the project directory."""
        proc = subprocess.run(argv, env=self.env, cwd=self.proj, input=input, capture_output=True,
                              text=True, timeout=timeout)
        self.runs.append((argv, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def cp(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        """Run claude-pool (in-process: a set-up or look, not the contract); it must succeed."""
        proc = self.ok(*args, input=input)
        self.runs.append((["claude-pool", *args], proc.returncode, proc.stdout, proc.stderr))
        return proc

    def claude_p(self, prompt: str = "say hi") -> subprocess.CompletedProcess[str]:
        """`claude --plugin-dir REPO -p PROMPT` in the project directory."""
        proc = self.shell([CLAUDE, "--plugin-dir", str(PLUGIN), "-p", prompt], timeout=CLAUDE_TIMEOUT)
        self.wait_quiet()
        return proc

    def wait_quiet(self, timeout: float = 20) -> None:
        """Wait for the detached claude-pool runs the hooks and the helper started to finish."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pool_processes():
                return
            time.sleep(0.1)
        pytest.fail(f"detached claude-pool processes still running after {timeout}s: {self.pool_processes()}")

    def pool_processes(self) -> list[int]:
        """pids of claude-pool processes running with this sandbox's HOME."""
        marker = f"HOME={self.home}".encode() + b"\0"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                if b"claude_pool" not in cmdline and b"claude-pool" not in cmdline:
                    continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    environ = b"\0" + fh.read()
            except OSError:
                continue
            if b"\0" + marker in environ:
                found.append(int(entry))
        return found

    # ---- Claude Code's files -----------------------------------------------------------

    def import_accounts(self, *emails: str) -> None:
        """Log Claude Code in as each account in turn and `claude-pool import` it; the last is active."""
        for email in emails:
            self.login(email)
            self.cp("import")

    def held_token(self) -> str:
        return json.loads(self.creds_path.read_text(encoding="utf-8"))["claudeAiOauth"]["accessToken"]

    # ---- claude-pool's files -----------------------------------------------------------

    def pool_account_block(self, account_id: str) -> dict | None:
        """The account's 429 block as `list --json` shows it (None: none, or expired)."""
        listed = json.loads(self.cp("list", "--json").stdout)
        return next(a for a in listed["accounts"] if a["id"] == account_id)["blocked"]

    def report(self) -> str:
        """Context for an assertion message (no secrets: the fake's tokens never appear here)."""
        lines = []
        for argv, code, out, err in self.runs[-4:]:
            lines.append(f"$ {' '.join(Path(a).name if a.startswith('/') else a for a in argv)} -> {code}\n"
                         f"  stdout: {out[-600:]!r}\n  stderr: {err[-600:]!r}")
        lines.append("fake saw: " + json.dumps([_brief(r) for r in self.fake.messages_requests()]))
        lines.append("audit: " + json.dumps([{k: e.get(k) for k in ("trigger", "action", "target", "reason", "result")}
                                             for e in self.audit()[-8:]]))
        return "\n".join(lines)


def _brief(rec: dict) -> dict:
    """A request record without its credential or body."""
    return {"auth_kind": rec["auth_kind"], "email": rec["email"], "status": rec["status"]}


@pytest.fixture
def sandbox(tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, pycache_dir: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sbx"), fake, pycache_dir)
    try:
        yield box
    finally:
        try:
            box.wait_quiet(timeout=10)
        except pytest.fail.Exception:
            pass
        box.cleanup()


def _assert_answered(box: Sandbox, proc: subprocess.CompletedProcess[str], label: str) -> None:
    """Claude Code exited 0, printed the fake's answer for `label`, and no hook complained."""
    assert proc.returncode == 0, f"claude -p exited {proc.returncode}\n{box.report()}"
    assert _answer(label) in proc.stdout, f"expected {_answer(label)!r}\n{box.report()}"
    both = (proc.stdout + proc.stderr).lower()
    for bad in ("hook error", "hook failed", "blocked", "apikeyhelper failed", "not logged in"):
        assert bad not in both, f"Claude Code printed {bad!r}\n{box.report()}"


def _wait_until(what: str, check: Callable[[], Any], timeout: float, on_fail: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")
        time.sleep(0.2)


def _texts(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def _hook_text_in(body: Any) -> list[str]:
    text = "\n".join(_texts(body)).lower()
    return [needle for needle in HOOK_TEXT if needle in text]


# ---------------------------------------------------------------------------- the plugin


@pytest.mark.slow
def test_plugin_and_marketplace_validate(sandbox: Sandbox) -> None:
    for target in (REPO, REPO / ".claude-plugin" / "plugin.json"):
        proc = sandbox.shell([CLAUDE, "plugin", "validate", str(target)], timeout=60)
        assert proc.returncode == 0, f"claude plugin validate {target} exited {proc.returncode}:\n" \
                                     f"{proc.stdout}\n{proc.stderr}"


# ------------------------------------------------------------------------ 1. print mode


@pytest.mark.slow
def test_session_start_moves_off_an_exhausted_account_before_the_first_request(sandbox: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=10)
    fake.add_account(ALICE, five_hour=100)
    sandbox.import_accounts(BOB, ALICE)  # alice, the exhausted one, is active
    assert sandbox.held_token() == fake.account(ALICE).access_token
    assert sandbox.status()["name"] == "alice"

    proc = sandbox.claude_p()

    _assert_answered(sandbox, proc, BOB)
    msgs = fake.messages_requests()
    assert msgs, sandbox.report()
    first = msgs[0]
    assert first["auth_kind"] == "bearer", sandbox.report()
    assert first["token"] == fake.account(BOB).access_token, sandbox.report()
    assert first["status"] == 200
    assert all(m["email"] == BOB for m in msgs), sandbox.report()
    assert fake.account(ALICE).messages == 0, "a request went out as the exhausted account"

    # The credential file now holds bob's login (0600), and the pool says so.
    assert sandbox.held_token() == fake.account(BOB).access_token
    assert stat.S_IMODE(sandbox.creds_path.stat().st_mode) == 0o600
    status = sandbox.status()
    assert status["mode"] == "account" and status["name"] == "bob", status
    # the session-start hook moves; on a loaded machine its 2.5 s may run out before bob is read,
    # and the prompt hook (which sees alice known out) moves before the request instead: either
    # way before the first request, which is what counts
    switched = [e for e in sandbox.audit() if e.get("trigger") in ("hook:session-start", "hook:prompt-submit")
                and e.get("action") == "write_credential"]
    assert switched and switched[0].get("target") == "bob", sandbox.report()
    assert not sandbox.settings_path.exists() or "apiKeyHelper" not in sandbox.settings()


# --------------------------------------------------------------- 2. every account exhausted


def _our_helper(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    words = shlex.split(value)
    return (len(words) == 2 and words[1] == "helper" and os.path.isabs(words[0])
            and os.path.realpath(words[0]) == os.path.realpath(CLAUDE_POOL))


OTHER_SETTINGS = {
    "cleanupPeriodDays": 45,
    "permissions": {"allow": ["Bash(echo:*)"], "deny": []},
    "env": {"E2E_SETTINGS_MARKER": "kept"},
}


@pytest.mark.slow
def test_every_account_exhausted_falls_back_to_the_api_key(sandbox: Sandbox, fake) -> None:
    key = _new_api_key()
    fake.add_api_key(key)
    fake.add_account(ALICE, five_hour=100)
    fake.add_account(BOB, seven_day=100)
    sandbox.import_accounts(BOB, ALICE)
    sandbox.cp("key", "add", "--id", "k1", input=key + "\n")
    sandbox.write_settings(OTHER_SETTINGS)

    proc = sandbox.claude_p()

    # The session-start hook put the pool in API-key mode: our helper in settings.json, the
    # other keys untouched and in order.
    settings = sandbox.settings()
    assert _our_helper(settings.get("apiKeyHelper")), f"apiKeyHelper is {settings.get('apiKeyHelper')!r}"
    assert {k: v for k, v in settings.items() if k != "apiKeyHelper"} == OTHER_SETTINGS
    assert list(settings)[:len(OTHER_SETTINGS)] == list(OTHER_SETTINGS), "the other keys' order changed"
    status = sandbox.status()
    assert status["mode"] == "apikey" and status["name"] == "k1", status

    # ... before the first request: it went out with the API key and was answered.
    _assert_answered(sandbox, proc, _key_label(key))
    msgs = fake.messages_requests()
    assert msgs, sandbox.report()
    for m in msgs:  # Claude Code sends the helper's output as x-api-key (and as Bearer)
        assert m["auth_kind"] == "x-api-key" and m["token"] == key and m["status"] == 200, sandbox.report()
    assert fake.account(ALICE).messages == 0 and fake.account(BOB).messages == 0


# ---------------------------------------------------------------------- 3. an account resets


@pytest.mark.slow
def test_an_account_that_resets_takes_over_from_the_api_key(sandbox: Sandbox, fake) -> None:
    key = _new_api_key()
    fake.add_api_key(key)
    fake.add_account(BOB, five_hour=100)
    fake.add_account(ALICE, five_hour=100)
    sandbox.import_accounts(BOB, ALICE)  # Claude Code holds alice's login
    sandbox.cp("key", "add", "--id", "k1", input=key + "\n")
    sandbox.write_settings(OTHER_SETTINGS)
    # Both 5-hour windows reset in an hour. Until then the cached usage proves both exhausted, so
    # claude-pool does not poll (docs/ARCHITECTURE.md §6 rule 7).
    reset = time.time() + 3600
    for email in (ALICE, BOB):
        fake.set_usage(email, five_hour_resets_at=reset)
    # Enter API-key mode from the command line (test 2 covers entering it from the hook), so this
    # Claude Code starts with the helper already in settings.json.
    sandbox.cp("reconcile")
    assert sandbox.status()["mode"] == "apikey", sandbox.report()

    first = sandbox.claude_p()
    _assert_answered(sandbox, first, _key_label(key))
    assert fake.messages_requests()[0]["auth_kind"] == "x-api-key", sandbox.report()
    assert _our_helper(sandbox.settings().get("apiKeyHelper")), sandbox.report()
    seen = len(fake.messages_requests())

    # bob's window resets: his usage drops, and past the reset claude-pool polls again. The hour is
    # skipped, not waited for (a busy machine cannot promise a few seconds): the pool's cached
    # reading of bob now says his window reset a second ago, as it would an hour from now.
    fake.set_usage(BOB, five_hour=5, five_hour_resets_at=time.time() + 5 * 3600)
    pool = sandbox.pool()
    bob = next(a for a in pool["accounts"] if a["email"] == BOB)
    assert bob["usage"]["five_hour"]["pct"] == 100, pool   # what the first run cached
    bob["usage"]["five_hour"]["resets_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    sandbox.write_pool(pool)

    second = sandbox.claude_p()

    # The session-start hook left API-key mode: helper gone (other keys intact), bob's login held.
    settings = sandbox.settings()
    assert "apiKeyHelper" not in settings, f"apiKeyHelper left: {settings.get('apiKeyHelper')!r}"
    assert settings == OTHER_SETTINGS
    assert sandbox.held_token() == fake.account(BOB).access_token, sandbox.report()
    status = sandbox.status()
    assert status["mode"] == "account" and status["name"] == "bob", status

    # ... before the first request: it went out as bob, not with the (billed) API key.
    _assert_answered(sandbox, second, BOB)
    later = fake.messages_requests()[seen:]
    assert later, sandbox.report()
    assert later[0]["auth_kind"] == "bearer", sandbox.report()
    assert later[0]["token"] == fake.account(BOB).access_token, sandbox.report()
    assert all(m["email"] == BOB for m in later), sandbox.report()


# ----------------------------------------------------------------------- 4. interactive TUI


class Tmux:
    """A private tmux server (its own socket) running one Claude Code session."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        # A short private directory for the socket (a unix socket path is limited to ~100 bytes).
        self.dir = tempfile.mkdtemp(prefix="cce2e-", dir="/tmp")
        self.socket = os.path.join(self.dir, "tmux.sock")
        self.session = "claude"

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", self.socket, *args], env=self.box.env, capture_output=True,
                              text=True, timeout=15)

    def start(self, command: str) -> None:
        proc = self.tmux("-f", "/dev/null", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50",
                         "-c", str(self.box.proj), command)
        assert proc.returncode == 0, f"tmux new-session failed: {proc.stderr}"

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", self.session).stdout

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.3)
        self.tmux("send-keys", "-t", self.session, "Enter")

    def kill(self) -> None:
        try:
            self.tmux("kill-server")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.slow
def test_interactive_session_switches_on_a_rate_limit_and_keeps_going(sandbox: Sandbox, fake) -> None:
    if shutil.which("tmux") is None or shutil.which("timeout") is None:
        pytest.skip("the interactive test needs tmux and timeout")
    fake.add_account(BOB, five_hour=10)
    fake.add_account(ALICE, five_hour=5)
    sandbox.import_accounts(BOB, ALICE)
    alice_token, bob_token = fake.account(ALICE).access_token, fake.account(BOB).access_token
    term = Tmux(sandbox)

    def context() -> str:
        return f"screen:\n{term.screen()}\n{sandbox.report()}"

    def answered(label: str, after: int) -> Callable[[], bool]:
        return lambda: (any(m["status"] == 200 and m["email"] == label for m in fake.messages_requests()[after:])
                        and _answer(label) in term.screen())

    term.start(f"exec timeout --foreground 150 {shlex.quote(CLAUDE)} --plugin-dir {shlex.quote(str(PLUGIN))}")
    try:
        _wait_until("the prompt", lambda: "? for shortcuts" in term.screen() or "❯" in term.screen(), 60, context)
        time.sleep(0.5)

        # 1. alice is active and healthy.
        term.type("hello")
        _wait_until("alice's answer", answered(ALICE, 0), 60, context)
        msgs = fake.messages_requests()
        assert all(m["token"] == alice_token for m in msgs), context()
        assert sandbox.held_token() == alice_token

        # 2. alice runs out: the next request gets 429, Claude Code fires StopFailure (rate_limit) and
        #    our hook's live reconcile moves Claude Code's login to bob.
        fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
        seen = len(msgs)
        term.type("second prompt")
        _wait_until("a 429 for alice", lambda: any(m["status"] == 429 and m["email"] == ALICE
                                                   for m in fake.messages_requests()[seen:]), 60, context)
        _wait_until("the credential file to hold bob's login", lambda: sandbox.held_token() == bob_token, 60, context)
        # the audit line follows the write it records
        switched = _wait_until("the stop-failure hook's write_credential audit", lambda: [
            e for e in sandbox.audit()
            if e.get("trigger") == "hook:stop-failure" and e.get("action") == "write_credential"], 10, context)
        assert switched[-1].get("target") == "bob", context()
        assert stat.S_IMODE(sandbox.creds_path.stat().st_mode) == 0o600

        # 3. The same session's next prompt goes out as bob: Claude Code re-reads the file.
        seen = len(fake.messages_requests())
        term.type("third prompt")
        _wait_until("bob's answer in the same session", answered(BOB, seen), 60, context)
        later = fake.messages_requests()[seen:]
        assert later[0]["auth_kind"] == "bearer" and later[0]["token"] == bob_token, context()
        assert all(m["email"] == BOB for m in later), context()
        screen = term.screen().lower()
        assert "hook error" not in screen and "not logged in" not in screen, context()
    finally:
        term.kill()
    assert sandbox.status()["name"] == "bob"


# -------------------------------------------------- 5. hook output never reaches the model


@pytest.mark.slow
def test_no_hook_output_reaches_the_model(sandbox: Sandbox, fake) -> None:
    # This test's own runs: a switch at session start, the API-key fallback, and a broken pool
    # (the hook fails and says so on stderr). With the runs of the tests above, every body the
    # fakes recorded is searched.
    key = _new_api_key()
    fake.add_api_key(key)
    fake.add_account(BOB, five_hour=10)
    fake.add_account(ALICE, five_hour=100)
    sandbox.import_accounts(BOB, ALICE)
    sandbox.cp("key", "add", "--id", "k1", input=key + "\n")

    _assert_answered(sandbox, sandbox.claude_p("say hi"), BOB)  # switched to bob at session start

    fake.set_usage(BOB, five_hour=100)
    sandbox.cp("reconcile", "--live")  # every account at 100 %: API-key mode
    assert sandbox.status()["mode"] == "apikey", sandbox.report()
    _assert_answered(sandbox, sandbox.claude_p("say hi again"), _key_label(key))

    # A pool file claude-pool cannot read: the hooks fail (stderr, exit 1), the session does not.
    pool_file = sandbox.home / ".config" / "claude-pool" / "pool.json"
    pool_file.write_bytes(b"CPL1 this is not a pool file")
    fake.set_usage(ALICE, five_hour=5)
    sandbox.settings_path.unlink()
    sandbox.login(ALICE)
    broken = sandbox.claude_p("one more")
    _assert_answered(sandbox, broken, ALICE)
    # That hook does have something to say (on stderr, never stdout), and it never exits 2.
    failed = sandbox.shell([str(CLAUDE_POOL), "hook", "session-start"])
    assert failed.returncode == 1 and failed.stdout == "" and "claude-pool" in failed.stderr, \
        f"exit {failed.returncode}, stdout {failed.stdout!r}, stderr {failed.stderr!r}"

    bodies = fake.messages_requests() + _ALL_MESSAGES
    assert len(bodies) >= 3
    # The search sees the whole body: this test's prompts are in it.
    own = "\n".join(t for rec in fake.messages_requests() for t in _texts(rec["body"]))
    for prompt in ("say hi", "say hi again", "one more"):
        assert prompt in own
    assert any("system" in rec["body"] for rec in fake.messages_requests())
    for rec in bodies:
        assert isinstance(rec["body"], dict), "a /v1/messages request without a JSON body"
        found = _hook_text_in(rec["body"])
        assert not found, f"hook text {found} reached the model's context (request as {_brief(rec)})"


# ------------------------------------------------------------------ 6. the slash commands


@pytest.mark.slow
def test_slash_commands_do_their_job_and_never_put_a_secret_in_the_conversation(sandbox: Sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    sandbox.import_accounts(ALICE)
    key = _new_api_key()
    # The key is on the clipboard (a stand-in `xclip` prints it), never typed into the conversation.
    clip = sandbox.home / "clipbin"
    clip.mkdir()
    (clip / "data").write_text(key + "\n", encoding="utf-8")
    (clip / "xclip").write_text(f"#!/bin/sh\nexec cat {clip / 'data'}\n", encoding="utf-8")
    (clip / "xclip").chmod(0o755)
    sandbox.env["PATH"] = f"{clip}{os.pathsep}{sandbox.env['PATH']}"

    def slash(command: str) -> str:
        seen = len(fake.messages_requests())
        proc = sandbox.claude_p(command)
        assert proc.returncode == 0, sandbox.report()
        # answered by the prompt hook's block (tests/test_slash.py): no model turn at all
        assert len(fake.messages_requests()) == seen, "a slash command made a model request"
        answers.append(proc.stdout)
        return proc.stdout

    answers: list[str] = []

    text = slash("/claude-pool:key-add --id k2")
    assert "Added API key k2" in text, text[-2000:]
    assert [k["id"] for k in json.loads(sandbox.cp("list", "--json").stdout)["api_keys"]] == ["k2"]

    sandbox.login(BOB)  # /login as bob in Claude Code, then:
    assert "Imported bob" in slash("/claude-pool:import")
    text = slash("/claude-pool:list")
    assert "alice" in text and "bob" in text and "k2" in text
    assert '"name": "bob"' in slash("/claude-pool:status")
    assert "alice" in slash("/claude-pool:switch alice")
    assert sandbox.status()["name"] == "alice"
    assert sandbox.held_token() == fake.account(ALICE).access_token

    everything = json.dumps([rec["body"] for rec in fake.messages_requests()]) + "\n".join(answers)
    secrets_ = [key] + [getattr(fake.account(e), attr) for e in (ALICE, BOB)
                        for attr in ("access_token", "refresh_token")]
    for secret in secrets_:
        assert secret not in everything, "a secret reached the conversation"


# ------------------------------------------------- 7. rate-limit truth (per-model windows, 429s)


def _week() -> float:
    return time.time() + 3 * 86400


@pytest.mark.slow
@pytest.mark.parametrize("model, expected", [("opus", BOB), ("sonnet", ALICE)])
def test_the_model_in_settings_decides_which_weekly_window_binds(sandbox: Sandbox, fake, model: str,
                                                                  expected: str) -> None:
    """A looks fine (10%/20%) but its Opus weekly window is full; B is at 40%/40% with Opus at 10%."""
    fake.add_account(BOB, five_hour=40, seven_day=40, scoped=[{"name": "Opus", "pct": 10, "resets_at": _week()}])
    fake.add_account(ALICE, five_hour=10, seven_day=20, scoped=[{"name": "Opus", "pct": 100, "resets_at": _week()}])
    sandbox.import_accounts(BOB, ALICE)      # alice active
    sandbox.write_settings({"model": model})

    proc = sandbox.claude_p()

    _assert_answered(sandbox, proc, expected)
    msgs = fake.messages_requests()
    assert msgs and all(m["email"] == expected and m["status"] == 200 for m in msgs), sandbox.report()
    sent = {m["body"].get("model") for m in msgs}
    assert sent == {"claude-opus-4-8" if model == "opus" else "claude-sonnet-5"}, sent
    assert sandbox.status()["name"] == expected.split("@")[0]


@pytest.mark.slow
def test_the_active_account_fills_up_right_after_a_list(sandbox: Sandbox, fake) -> None:
    fake.add_account(BOB, five_hour=30)
    fake.add_account(ALICE, five_hour=10)
    sandbox.import_accounts(BOB, ALICE)
    sandbox.cp("list")                                     # every reading cached, seconds old
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)

    proc = sandbox.claude_p()

    _assert_answered(sandbox, proc, BOB)
    assert fake.account(ALICE).messages == 0, "a request went out on the account that had just filled up"


@pytest.mark.slow
def test_interactive_429s_the_usage_api_does_not_show(sandbox: Sandbox, fake) -> None:
    """A server-side 429 moves nothing; a 429 with a five_hour claim (the usage API still says 20%)
    blocks the account until the reset it names, the session moves, and stays moved."""
    if shutil.which("tmux") is None or shutil.which("timeout") is None:
        pytest.skip("the interactive test needs tmux and timeout")
    fake.add_account(BOB, five_hour=40)
    fake.add_account(ALICE, five_hour=20)
    sandbox.import_accounts(BOB, ALICE)
    alice_token, bob_token = fake.account(ALICE).access_token, fake.account(BOB).access_token
    term = Tmux(sandbox)

    def context() -> str:
        return f"screen:\n{term.screen()}\n{sandbox.report()}"

    def rate_limited(after: int) -> Callable[[], bool]:
        return lambda: [e for e in sandbox.audit()[after:] if e.get("event") == "rate_limited"]

    term.start(f"exec timeout --foreground 170 {shlex.quote(CLAUDE)} --plugin-dir {shlex.quote(str(PLUGIN))}")
    try:
        _wait_until("the prompt", lambda: "? for shortcuts" in term.screen() or "❯" in term.screen(), 60, context)
        time.sleep(0.5)

        # 1. a server-side 429 (no unified headers): StopFailure runs, nothing moves
        fake.set_usage(ALICE, refuse={"*": {"claim": None}})
        seen = len(sandbox.audit())
        term.type("first prompt")
        events = _wait_until("the stop-failure hook's audit", rate_limited(seen), 60, context)
        assert events[-1]["result"] == "server", context()
        sandbox.wait_quiet()
        assert sandbox.held_token() == alice_token, context()
        assert not sandbox.pool_account_block("alice"), context()

        # 2. a 429 with a five_hour claim two hours away, for a limit the usage API does not show
        reset = time.time() + 7200
        fake.set_usage(ALICE, refuse={"*": {"claim": "five_hour", "reset": reset}})
        seen = len(sandbox.audit())
        term.type("second prompt")
        _wait_until("the credential file to hold bob's login", lambda: sandbox.held_token() == bob_token, 60, context)
        event = [e for e in sandbox.audit()[seen:] if e.get("event") == "rate_limited"][-1]
        assert event["result"] == "ok" and event["target"] == "alice" and event["source"] == "message", context()

        # 3. the same session's next prompt is answered as bob
        seen_msgs = len(fake.messages_requests())
        term.type("third prompt")
        _wait_until("bob's answer", lambda: any(m["status"] == 200 and m["email"] == BOB
                                                for m in fake.messages_requests()[seen_msgs:])
                    and _answer(BOB) in term.screen(), 60, context)
    finally:
        term.kill()
    sandbox.wait_quiet()
    # 4. the usage API still says alice is at 20%: a live reconcile does not move back
    sandbox.cp("reconcile", "--live")
    assert sandbox.held_token() == bob_token and sandbox.status()["name"] == "bob", sandbox.report()
    block = sandbox.pool_account_block("alice")
    assert block and abs(_epoch(block["until"]) - reset) < 180, block
    assert "blocked" in sandbox.cp("list").stdout


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
