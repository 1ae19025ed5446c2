"""What the plugin tells the user at session start, and how: ONE `{"systemMessage": ...}` JSON object
on the hook's stdout (Claude Code 2.1.197 shows it as "SessionStart:startup says: ..." and never
puts it in a request), exit 0, nothing else on stdout. Also: a failed install's one-line reason is
the build's real cause, and the install pools the first session's login.

The wrapper and the bootstrap run as the scripts they are; no real install here (a stand-in `uv`
builds a "virtual environment" that runs the test venv's claude-pool), except the one bounded pip
run against an index that cannot be reached. The end-to-end proof with the real Claude Code is in
test_the_notices_never_reach_the_model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import claude_pool
from conftest import CLAUDE_POOL, Sandbox, sandbox_env
from proctools import end_processes, find_claude, wait_for

REPO = Path(__file__).resolve().parents[1]
WRAPPER = str(REPO / "plugin" / "scripts" / "claude-pool")
BOOTSTRAP = str(REPO / "plugin" / "scripts" / "bootstrap")
WANT = f"version {claude_pool.__version__}"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
LOG = "Log: ~/.local/share/claude-pool/bootstrap.log"


def told(proc: subprocess.CompletedProcess) -> str:
    """The hook's one systemMessage: exit 0, one JSON object with only that key, nothing else."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, proc.stdout
    data = json.loads(proc.stdout)
    assert isinstance(data, dict) and list(data) == ["systemMessage"], data
    assert isinstance(data["systemMessage"], str) and "\n" not in data["systemMessage"]
    return data["systemMessage"]


class Home:
    """A HOME where the plugin's wrapper runs as Claude Code runs it (no claude-pool on PATH)."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.share = self.home / ".local" / "share" / "claude-pool"
        self.env = sandbox_env(self.home, None)
        self.env.update(PATH=SYSTEM_PATH, CLAUDE_PLUGIN_ROOT=str(REPO),
                        CLAUDE_PLUGIN_DATA=str(self.home / ".claude" / "plugins" / "data" / "claude-pool-claude-pool"))

    def hook(self, event: str = "session-start", **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([WRAPPER, "hook", event], env=dict(self.env, **extra), capture_output=True, text=True,
                              timeout=30, input="{}", cwd=self.home)

    def fail(self, reason: str, next_try: float) -> None:
        """A failed install of this version, as the bootstrap records it."""
        self.share.mkdir(parents=True, exist_ok=True)
        (self.share / "bootstrap.failed").write_text(f"{int(next_try)} 1\n{WANT}\n{reason}\n")

    def fake_install(self, script: str) -> None:
        """An installed claude-pool of this version: `script` (sh) as current/bin/claude-pool, linked."""
        version = self.share / "versions" / "x"
        (version / "bin").mkdir(parents=True)
        prog = version / "bin" / "claude-pool"
        prog.write_text("#!/bin/sh\n" + script)
        prog.chmod(0o755)
        (version / ".claude-pool-stamp").write_text(WANT + "\n")
        (self.share / "current").symlink_to("versions/x")
        (self.home / ".local" / "bin").mkdir(parents=True)
        (self.home / ".local" / "bin" / "claude-pool").symlink_to(self.share / "current" / "bin" / "claude-pool")


# ------------------------------------------------------------------------------ the wrapper


def test_the_first_session_is_told_the_install_runs_then_its_cause_then_the_retry(tmp_path: Path) -> None:
    h = Home(tmp_path)
    h.share.mkdir(parents=True)
    (h.share / "bootstrap.lock").mkdir()  # an install already running: none is started, none fails
    try:
        assert told(h.hook()) == f"claude-pool: installing in the background, about 20 s. {LOG}"
        # prompts and other events stay silent
        assert (lambda p: (p.returncode, p.stdout, p.stderr))(h.hook("prompt-submit")) == (0, "", "")

        # a failure backing off: its cause, with quotes and a backslash that must stay valid JSON
        reason = 'the package index could not be reached for setuptools>=68 ("C:\\x" refused)'
        h.fail(reason, time.time() + 3600)
        assert told(h.hook()) == f"claude-pool is not installed: {reason}. {LOG}"

        # the wait is over: this session starts the retry and says so, not the old failure alone
        h.fail(reason, time.time() - 1)  # (the lock stays: the retry's bootstrap leaves at once)
        message = told(h.hook())
        assert message.startswith("claude-pool: retrying the install in the background"), message
        assert f"(the last try failed: {reason})" in message and "is not installed" not in message
    finally:
        end_processes(f"HOME={h.home}", grace=3.0)


def test_an_installed_claude_pool_tells_path_advice_once_in_its_own_message(tmp_path: Path) -> None:
    h = Home(tmp_path)
    # an installed claude-pool that says the wrapper's notice in its own (one) systemMessage
    h.fake_install('cat >/dev/null\n[ -n "${CLAUDE_POOL_NOTICE:-}" ] && printf %s "$CLAUDE_POOL_NOTICE" >"$HOME/got" '
                   '&& echo \'{"systemMessage": "merged"}\'\nexit 0\n')
    assert told(h.hook()) == "merged"  # one object: the installed one said the wrapper's notice in its own
    got = (h.home / "got").read_text()
    assert got.startswith("claude-pool: to run `claude-pool` in a shell, put ~/.local/bin on your PATH"), got
    (h.home / "got").unlink()
    # once: the next session start prints nothing at all
    again = h.hook()
    assert (again.returncode, again.stdout) == (0, ""), again.stderr

    # on PATH: never said
    (h.share / "path-advice.shown").unlink()
    quiet = h.hook(PATH=f"{h.home}/.local/bin:{SYSTEM_PATH}")
    assert (quiet.returncode, quiet.stdout) == (0, ""), quiet.stderr


def test_an_older_installed_claude_pool_leaves_the_message_to_the_wrapper(tmp_path: Path) -> None:
    h = Home(tmp_path)
    h.fake_install("cat >/dev/null\nexit 0\n")  # knows nothing of CLAUDE_POOL_NOTICE
    h.fail("TOMLDecodeError: bad", time.time() + 3600)  # the update to this version failed
    (h.share / "path-advice.shown").write_text("")
    assert told(h.hook()) == f"claude-pool is not installed: TOMLDecodeError: bad. {LOG}"


def test_the_deadline_notice_joins_the_wrappers_in_one_message(tmp_path: Path, monkeypatch) -> None:
    from claude_pool.reconciler import deadlines

    monkeypatch.setenv("CLAUDE_POOL_CONFIG_DIR", str(tmp_path / "pool"))
    monkeypatch.setenv("CLAUDE_POOL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(deadlines.NOTICE_ENV, "claude-pool: installing\nin the background")
    out = io.StringIO()
    assert deadlines.session_notice(1_900_000_000.0, out) is True
    assert json.loads(out.getvalue()) == {"systemMessage": "claude-pool: installing in the background"}
    assert deadlines.NOTICE_ENV not in os.environ  # not handed on to the hook's children
    assert deadlines.session_notice(1_900_000_000.0, out) is False and out.getvalue().count("\n") == 1


def test_a_credential_that_outranks_the_pool_is_named_once_a_day_never_its_value(sandbox, fake) -> None:
    """ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN) in Claude Code's environment
    (its hooks get the user's shell and settings.json `env`: checked on 2.1.197, docs/CLAUDE-CODE-FACTS.md)
    outranks every login the pool switches: the session-start hook says which variable, once a day,
    in its one systemMessage; the value is never shown. `plan` in a shell that has it says so too."""
    key = "sk-ant-api03-OUTRANKINGKEY-" + "q" * 40
    fake.add_account("alice@example.com", five_hour=10)
    sandbox.seed("alice@example.com")
    payload = json.dumps({"session_id": "s1", "hook_event_name": "SessionStart", "source": "startup"})
    env = {"ANTHROPIC_API_KEY": key, "CLAUDECODE": "1"}
    first = sandbox.run("hook", "session-start", input=payload, env=env, subprocess=True)
    said = told(first)
    assert said.startswith("claude-pool: ANTHROPIC_API_KEY is set in Claude Code's environment"), said
    assert "billed to that key" in said and "unset it" in said
    assert key not in first.stdout + first.stderr and "OUTRANKING" not in said
    again = sandbox.run("hook", "session-start", input=payload, env=env, subprocess=True)
    assert again.returncode == 0 and again.stdout == ""      # once a day
    quiet = sandbox.run("hook", "session-start", input=payload, env={"CLAUDECODE": "1"}, subprocess=True)
    assert quiet.returncode == 0 and quiet.stdout == ""
    # the CLI, from a shell that has it (and settings.json's `env` naming another): one note each
    sandbox.settings_path.write_text(json.dumps({"env": {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-SETTINGSSECRET"}}))
    plan = sandbox.ok("plan", env={"ANTHROPIC_API_KEY": key})
    notes = [line.strip() for line in plan.stdout.splitlines() if line.strip().startswith("note:")]
    assert any(n.startswith("note: CLAUDE_CODE_OAUTH_TOKEN is set in settings.json `env`: Claude Code uses that "
                            "login instead of the one claude-pool switches") for n in notes), notes
    assert any(n.startswith("note: ANTHROPIC_API_KEY is set in this shell") for n in notes), notes
    assert key not in plan.stdout + plan.stderr and "SETTINGSSECRET" not in plan.stdout + plan.stderr
    listed = sandbox.ok("list", env={"ANTHROPIC_API_KEY": key}).stdout
    assert listed.rstrip().splitlines()[-2:] == notes, listed   # the same two notes, after the accounts
    assert key not in listed
    assert "note:" not in sandbox.ok("list", "--json").stdout
    assert key not in sandbox.audit_path.read_text() and "SETTINGSSECRET" not in sandbox.audit_path.read_text()


# ----------------------------------------------------------------------------- the bootstrap


def _fake_uv(bindir: Path) -> None:
    """`uv venv DIR` / `uv pip install --python DIR/bin/python SPEC`: a "venv" whose claude-pool is the
    test venv's (the bootstrap's own steps after the build are what is under test)."""
    bindir.mkdir()
    (bindir / "uv").write_text(f"""#!/bin/sh
[ "$1" = venv ] && {{ for a; do d=$a; done; mkdir -p "$d/bin"; ln -s {sys.executable} "$d/bin/python"; exit 0; }}
for a; do case "$a" in */bin/python) d=${{a%/bin/python}} ;; esac; done
printf '#!/bin/sh\\nexec {CLAUDE_POOL} "$@"\\n' >"$d/bin/claude-pool" && chmod +x "$d/bin/claude-pool"
""")
    (bindir / "uv").chmod(0o755)


@pytest.mark.slow
def test_the_install_pools_the_first_sessions_login(tmp_path: Path, fake) -> None:
    fake.add_account("alice@example.com", five_hour=10)
    home = tmp_path / "home"
    home.mkdir()
    box = Sandbox(home, fake, subprocess=True)
    box.login("alice@example.com")
    _fake_uv(tmp_path / "uvbin")
    env = dict(box.env, PATH=f"{tmp_path / 'uvbin'}:{os.path.dirname(os.path.realpath(sys.executable))}:{SYSTEM_PATH}",
               CLAUDE_PLUGIN_ROOT=str(REPO))
    proc = subprocess.run([BOOTSTRAP, WANT], env=env, capture_output=True, text=True, timeout=60)
    log = (home / ".local" / "share" / "claude-pool" / "bootstrap.log").read_text()
    assert proc.returncode == 0 and "bootstrap: done" in log, log
    assert "imported the login Claude Code holds" in log, log
    listed = subprocess.run([str(home / ".local" / "bin" / "claude-pool"), "list"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0 and "alice" in listed.stdout, listed.stdout + listed.stderr
    for secret in (box.access("alice@example.com"), box.refresh_token("alice@example.com")):
        assert secret not in log
    # a pool that is not empty is left alone
    proc = subprocess.run([BOOTSTRAP, "version other"], env=env, capture_output=True, text=True, timeout=60)
    log = (home / ".local" / "share" / "claude-pool" / "bootstrap.log").read_text()
    assert log.count("imported the login") == 1, log


@pytest.mark.slow
def test_a_failed_install_names_the_unreachable_index(tmp_path: Path) -> None:
    if shutil.which("uv", path=SYSTEM_PATH):
        pytest.skip("uv on PATH: the bootstrap builds with uv, not pip")
    home = tmp_path / "home"
    home.mkdir()
    env = sandbox_env(home, None)
    for name in [k for k in env if k.startswith(("PIP_", "UV_"))]:
        del env[name]
    # bounded: one quick retry (pip says what refused it only when it retries), 2 s timeouts
    env.update(PATH=f"{os.path.dirname(os.path.realpath(sys.executable))}:{SYSTEM_PATH}", CLAUDE_PLUGIN_ROOT=str(REPO),
               PIP_INDEX_URL="http://127.0.0.1:9/", PIP_RETRIES="1", PIP_TIMEOUT="2", PIP_NO_CACHE_DIR="1")
    subprocess.run([BOOTSTRAP, WANT], env=env, capture_output=True, timeout=120, check=True)
    share = home / ".local" / "share" / "claude-pool"
    failed = (share / "bootstrap.failed").read_text().splitlines()
    assert failed[1] == WANT
    assert failed[2].startswith("the package index could not be reached for setuptools>=68 ("), failed[2]
    assert "Connection refused" in failed[2] or "connection" in failed[2].lower(), failed[2]
    assert not list((share / "versions").iterdir())  # nothing half-built is left


# ------------------------------------------------------------------------ the real Claude Code


@pytest.mark.slow
@pytest.mark.skipif(find_claude() is None, reason="the real Claude Code binary is not available")
def test_the_notices_never_reach_the_model(tmp_path: Path, fake) -> None:
    """`claude -p` with the plugin: the wrapper's notices go out as systemMessages (proved shown in
    the TUI by hand on 2.1.197: "SessionStart:startup says: ..."); no request body holds them."""
    claude = find_claude()
    fake.add_account("alice@example.com", five_hour=10)
    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    box = Sandbox(home, fake, subprocess=True)
    box.login("alice@example.com")
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "projects": {
        str(home / "proj"): {"hasTrustDialogAccepted": True}}}))
    share = home / ".local" / "share" / "claude-pool"
    share.mkdir(parents=True)
    (share / "bootstrap.lock").mkdir()  # an install "running": nothing is really installed here
    env = dict(box.env, PATH=f"{os.path.dirname(os.path.realpath(claude))}:{SYSTEM_PATH}",
               ANTHROPIC_BASE_URL=fake.base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
               DISABLE_TELEMETRY="1", DISABLE_AUTOUPDATER="1")
    notices = []
    try:
        for prompt in ("first hello", "second hello"):
            # the hook as Claude Code runs it says something each time
            notices.append(told(subprocess.run([WRAPPER, "hook", "session-start"], env=dict(
                env, CLAUDE_PLUGIN_ROOT=str(REPO)), capture_output=True, text=True, input="{}", timeout=30)))
            proc = subprocess.run([claude, "--plugin-dir", str(REPO), "-p", prompt], env=env, cwd=home / "proj",
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0 and "ok from fake" in proc.stdout, proc.stdout + proc.stderr
            assert "hook error" not in (proc.stdout + proc.stderr).lower()
            if prompt == "first hello":  # the lock stays: no bootstrap really runs
                (share / "bootstrap.failed").write_text(f"{int(time.time()) + 3600} 1\n{WANT}\nTOMLDecodeError: x\n")
    finally:
        end_processes(f"HOME={home}", grace=3.0)
    assert "installing in the background" in notices[0] and "is not installed" in notices[1]
    bodies = [json.dumps(r["body"]) for r in fake.messages_requests()]
    assert len(bodies) >= 2 and "first hello" in "".join(bodies) and "second hello" in "".join(bodies)
    for body in bodies:
        for needle in ("claude-pool", "installing in the background", "is not installed", "bootstrap.log",
                       "TOMLDecodeError", "systemMessage"):
            assert needle not in body, f"{needle!r} reached the model"


def test_the_outranking_names_come_in_claude_codes_order_and_only_names() -> None:
    from claude_pool.providers import authenv

    env = {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-x", "ANTHROPIC_API_KEY": "sk-ant-api03-y", "ANTHROPIC_AUTH_TOKEN": " ",
           "HOME": "/h", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}
    assert authenv.overrides(env) == ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]   # a blank one is not set
    line = authenv.explain(authenv.overrides(env), "here")
    assert line.startswith("ANTHROPIC_API_KEY is set here: Claude Code sends it instead of")
    assert line.endswith("(also set: CLAUDE_CODE_OAUTH_TOKEN)") and "sk-ant" not in line
    assert authenv.overrides({"env": "not a mapping"}.get("env")) == [] and authenv.explain([], "here") == ""


def test_a_foreign_api_key_helper_in_account_mode_is_named_as_what_claude_code_sends(sandbox, fake) -> None:
    """An apiKeyHelper that is not claude-pool's outranks every login: on accounts, `plan` and `list`
    say so (its command, which may hold a secret, is never shown); on API keys ours replaces it
    (it is kept and put back) and nothing is said."""
    fake.add_account("alice@example.com", five_hour=100)
    sandbox.seed("alice@example.com")
    sandbox.settings_path.write_text(json.dumps({"apiKeyHelper": "echo sk-ant-api03-HELPERSECRET"}))
    want = "note: settings.json has an apiKeyHelper that is not claude-pool's: Claude Code sends the key it prints"
    plan = sandbox.ok("plan").stdout
    assert want in plan and "HELPERSECRET" not in plan, plan
    listed = sandbox.ok("list").stdout
    assert listed.rstrip().splitlines()[-1].startswith(want) and "HELPERSECRET" not in listed, listed
    payload = json.dumps({"session_id": "s1", "hook_event_name": "SessionStart", "source": "startup"})
    said = told(sandbox.run("hook", "session-start", input=payload, subprocess=True))
    assert said.startswith("claude-pool: settings.json has an apiKeyHelper that is not claude-pool's"), said
    assert "HELPERSECRET" not in said
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-NOTICEKEY-" + "n" * 40)
    sandbox.ok("apply")   # alice is out: API keys, our helper in place of the user's (saved)
    assert sandbox.pool()["mode"] == "apikey"
    assert "apiKeyHelper that is not" not in sandbox.ok("plan").stdout


@pytest.mark.slow
def test_the_real_claude_code_sends_a_settings_env_key_and_the_session_start_says_so(tmp_path: Path, fake) -> None:
    """The contract behind providers/authenv.py, on the real Claude Code (docs/CLAUDE-CODE-FACTS.md):
    an ANTHROPIC_API_KEY in settings.json's `env` goes out instead of the pool's login, and the
    plugin's session-start hook sees it in its environment and names it in its one systemMessage
    (never the value, which reaches no request body, stdout or the audit log either)."""
    claude = find_claude()
    if claude is None:
        pytest.skip("needs the real Claude Code binary")
    key = "sk-ant-api03-E2EENVKEY-" + "v" * 40
    fake.add_account("alice@example.com", five_hour=10)
    fake.add_api_key(key)
    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    box = Sandbox(home, fake, subprocess=True)
    box.login("alice@example.com")
    box.ok("import")
    box.settings_path.write_text(json.dumps({"env": {"ANTHROPIC_API_KEY": key}}))
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "projects": {
        str(home / "proj"): {"hasTrustDialogAccepted": True}}}))
    env = dict(box.env, PATH=f"{os.path.dirname(CLAUDE_POOL)}:{os.path.dirname(os.path.realpath(claude))}:{SYSTEM_PATH}",
               ANTHROPIC_BASE_URL=fake.base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
               DISABLE_TELEMETRY="1", DISABLE_AUTOUPDATER="1")
    try:
        proc = subprocess.run([claude, "--plugin-dir", str(REPO), "-p", "hello", "--output-format", "stream-json",
                               "--verbose"], env=env, cwd=home / "proj", capture_output=True, text=True, timeout=90)
    finally:
        end_processes(f"HOME={home}", grace=3.0)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    sent = fake.messages_requests()
    assert sent and all(r["auth_kind"] == "x-api-key" and r["token"] == key for r in sent), \
        [(r["auth_kind"], (r["token"] or "")[:16]) for r in sent]
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    starts = [r for r in runs if r.get("type") == "system" and r.get("subtype") == "hook_response"
              and r.get("hook_event") == "SessionStart"]
    said = [json.loads(r.get("stdout") or "{}").get("systemMessage", "") for r in starts if r.get("stdout")]
    assert any(s.startswith("claude-pool: ANTHROPIC_API_KEY is set in Claude Code's environment") for s in said), starts
    assert key not in proc.stdout and key not in box.audit_path.read_text()
    assert all(key not in json.dumps(r["body"]) for r in sent)


def test_a_shell_whose_claude_folder_is_not_the_sessions_says_so(sandbox, fake, tmp_path: Path) -> None:
    """A session start records which folder Claude Code uses; `plan` from a shell with another
    CLAUDE_CONFIG_DIR says its writes do not reach those sessions, and names the folder to use;
    from a shell that agrees (or inside Claude Code) it says nothing."""
    fake.add_account("alice@example.com", five_hour=10)
    sandbox.seed("alice@example.com")
    work = tmp_path / "claude-work"
    work.mkdir()
    payload = json.dumps({"session_id": "s1", "hook_event_name": "SessionStart", "source": "startup"})
    sandbox.run("hook", "session-start", input=payload, env={"CLAUDE_CONFIG_DIR": str(work), "CLAUDECODE": "1"})
    plan = sandbox.ok("plan", env={"CLAUDE_CONFIG_DIR": None}).stdout
    want = (f"note: Claude Code's last session started with its folder at {os.path.realpath(work)} (CLAUDE_CONFIG_DIR), "
            f"not this shell's {os.path.realpath(sandbox.home / '.claude')}")
    assert want in plan, plan
    assert f"CLAUDE_CONFIG_DIR={os.path.realpath(work)}" in plan
    assert "last session started" not in sandbox.ok("plan", env={"CLAUDE_CONFIG_DIR": str(work)}).stdout
    assert "last session started" not in sandbox.ok("plan", env={"CLAUDE_CONFIG_DIR": None, "CLAUDECODE": "1"}).stdout
