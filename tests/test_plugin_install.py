"""End-to-end: the plugin installed exactly as a user installs it, with the REAL Claude Code.

A local bare git repository is built from this checkout (its working tree committed into it), and
git in a throwaway HOME is told to fetch `https://github.com/` from its parent folder, so
`claude plugin marketplace add OWNER/claude-pool` (the GitHub shorthand) clones it the way it
clones GitHub. No `claude-pool` is on PATH and no CLAUDE_POOL_SOURCE is set: the plugin's own
bootstrap installs claude-pool from the plugin's files (its dependencies come from the package
index). Everything else is the fake Anthropic API on 127.0.0.1.

Slow: each fresh install takes ~20 s (a virtual environment and the dependencies). The main test
shares two installs (first install, then the version bump) across every step it checks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

import claude_pool
from fakeapi import FakeAnthropic
from proctools import alive, end_processes, find_claude, wait_for

REPO = Path(__file__).resolve().parents[1]
ALICE = "alice@example.com"
BOB = "bob@example.com"
INSTALL_WAIT = 300  # seconds: a bounded wait for one background install on a loaded machine
CLAUDE_TIMEOUT = 120


CLAUDE = find_claude()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("plugin_install"),  # one worker: the installs share a pip cache
    pytest.mark.skipif(CLAUDE is None, reason="the real Claude Code binary is not available"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is needed"),
]

# The user's PATH: Claude Code's own folder, ~/.local/bin (added per HOME), the system. No claude-pool.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


# The README's steps, word for word; the tests below run exactly these lines.
ADD = "claude plugin marketplace add OWNER/claude-pool"
INSTALL = "claude plugin install claude-pool@claude-pool"
MARKET_UPDATE = "claude plugin marketplace update claude-pool"
UPDATE = "claude plugin update claude-pool@claude-pool"
UNINSTALL = "claude-pool uninstall"
PLUGIN_UNINSTALL = "claude plugin uninstall claude-pool@claude-pool"
README_STEPS = (ADD, INSTALL, MARKET_UPDATE, UPDATE, UNINSTALL, PLUGIN_UNINSTALL)
# What the screen shows (the README quotes these).
INSTALLING = "claude-pool: installing in the background, about 20 s. Log: ~/.local/share/claude-pool/bootstrap.log"
BLOCKED = "UserPromptSubmit operation blocked by hook:"   # Claude Code 2.1.197's frame for a slash command's answer


def _answer(label: str) -> str:
    return f"ok from fake ({label})"


# ------------------------------------------------------------------------- the git "GitHub"


class Remote:
    """`https://github.com/OWNER/claude-pool` as a local bare repository."""

    def __init__(self, root: Path) -> None:
        self.root = root                     # stands for https://github.com/
        self.bare = root / "OWNER" / "claude-pool.git"
        self.bare.parent.mkdir(parents=True)
        self.index = root / "index"
        self.git("init", "--quiet", "--bare", "-b", "main", str(self.bare), bare=False)

    def git(self, *args: str, bare: bool = True, input: bytes | None = None, work: Path | None = None,
            env: dict[str, str] | None = None) -> str:
        argv = ["git"]
        if bare:
            argv += ["--git-dir", str(self.bare)]
        if work is not None:
            argv += ["--work-tree", str(work)]
        full = dict(os.environ, GIT_INDEX_FILE=str(self.index), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                    GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", **(env or {}))
        proc = subprocess.run(argv + list(args), input=input, capture_output=True, env=full, timeout=60)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}"
        return proc.stdout.decode().strip()

    def commit_checkout(self) -> None:
        """Commit this checkout's working tree (what .gitignore leaves) as `main`."""
        self.git("add", "-A", ".", work=REPO)
        self._commit("the checkout")

    def commit_changes(self, changes: dict[str, Callable[[str], str]], message: str) -> None:
        """Commit `main` again with each named file rewritten by its function."""
        for path, edit in changes.items():
            old = self.git("show", f"main:{path}")
            blob = self.git("hash-object", "-w", "--stdin", input=edit(old + "\n").encode())
            mode = "100755" if os.access(REPO / path, os.X_OK) else "100644"
            self.git("update-index", "--cacheinfo", f"{mode},{blob},{path}")
        self._commit(message)

    def _commit(self, message: str) -> None:
        tree = self.git("write-tree")
        parent = subprocess.run(["git", "--git-dir", str(self.bare), "rev-parse", "--verify", "-q", "main"],
                                capture_output=True, text=True).stdout.strip()
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        commit = self.git(*args)
        self.git("update-ref", "refs/heads/main", commit)


def _bump(version: str) -> dict[str, Callable[[str], str]]:
    return {
        "claude_pool/__init__.py": lambda t: re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', t),
        ".claude-plugin/plugin.json": lambda t: re.sub(r'"version": "[^"]+"', f'"version": "{version}"', t, count=1),
    }


# ------------------------------------------------------------------------------- the user


class User:
    """A throwaway HOME where a user runs Claude Code, and a fresh shell for `claude-pool`."""

    def __init__(self, home: Path, fake: FakeAnthropic, remote: Remote, pip_cache: Path) -> None:
        self.home = home
        self.fake = fake
        self.proj = home / "proj"
        self.proj.mkdir(parents=True)
        self.claude_dir = home / ".claude"
        self.claude_dir.mkdir()
        self.creds_path = self.claude_dir / ".credentials.json"
        self.settings_path = self.claude_dir / "settings.json"
        self.share = home / ".local" / "share" / "claude-pool"
        self.link = home / ".local" / "bin" / "claude-pool"
        (home / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True, "theme": "dark",
            "projects": {str(self.proj): {"hasTrustDialogAccepted": True}}}), encoding="utf-8")
        self.env = {
            "HOME": str(home),
            "PATH": f"{home / '.local' / 'bin'}:{SYSTEM_PATH}",
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": fake.base_url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            # where claude-pool finds the (fake) Anthropic endpoints; inherited by the hooks
            "CLAUDE_POOL_API_BASE_URL": fake.base_url,
            "CLAUDE_POOL_OAUTH_TOKEN_URL": fake.token_url,
            # one download cache for the test's installs (an ordinary pip setting)
            "PIP_CACHE_DIR": str(pip_cache),
        }
        self.runs: list[tuple[list[str], int, str, str]] = []
        proc = self.run(["git", "config", "--global", f"url.file://{remote.root}/.insteadOf", "https://github.com/"])
        assert proc.returncode == 0, proc.stderr

    def run(self, argv: list[str], *, input: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, env=self.env, cwd=self.proj, input=input, capture_output=True, text=True,
                              timeout=timeout)
        self.runs.append((argv, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def claude(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([CLAUDE, *args], timeout=CLAUDE_TIMEOUT)  # type: ignore[list-item]

    def step(self, line: str) -> str:
        """Type one README line: `claude ...` runs the real Claude Code, anything else a fresh shell."""
        words = shlex.split(line)
        proc = self.claude(*words[1:]) if words[0] == "claude" else self.shell(line)
        assert proc.returncode == 0, f"{line}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def shell(self, command: str, *, input: str = "") -> subprocess.CompletedProcess[str]:
        """A fresh shell with the user's usual PATH (no test venv anywhere)."""
        return self.run(["sh", "-c", command], input=input)

    def pool_json(self) -> dict:
        proc = self.shell("claude-pool list --json")
        assert proc.returncode == 0, f"claude-pool list --json: {proc.stderr}\n{self.report()}"
        return json.loads(proc.stdout)

    def login(self, email: str) -> None:
        self.creds_path.write_text(json.dumps(self.fake.credential_blob(email)), encoding="utf-8")
        os.chmod(self.creds_path, 0o600)

    def settings(self) -> dict:
        return json.loads(self.settings_path.read_text(encoding="utf-8")) if self.settings_path.exists() else {}

    def installed(self) -> str:
        """The stamp of the install `current` points at ('' when none)."""
        try:
            return (self.share / "current" / ".claude-pool-stamp").read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def wait_installed(self, stamp: str) -> None:
        wait_for(lambda: self.installed() == stamp and not (self.share / "bootstrap.lock").exists(),
                 INSTALL_WAIT, f"the background install of {stamp}\n{self.log()}", interval=0.5)

    def log(self) -> str:
        path = self.share / "bootstrap.log"
        return path.read_text(encoding="utf-8") if path.exists() else "(no bootstrap.log)"

    def report(self) -> str:
        lines = []
        for argv, code, out, err in self.runs[-4:]:
            lines.append(f"$ {' '.join(Path(a).name if a.startswith('/') else a for a in argv)[:200]} -> {code}\n"
                         f"  stdout: {out[-600:]!r}\n  stderr: {err[-600:]!r}")
        lines.append("fake saw: " + json.dumps([{k: r[k] for k in ("auth_kind", "email", "status")}
                                                for r in self.fake.messages_requests()]))
        lines.append("bootstrap.log: " + self.log()[-1500:])
        return "\n".join(lines)

    def answered(self, proc: subprocess.CompletedProcess[str], label: str) -> None:
        assert proc.returncode == 0, f"claude -p exited {proc.returncode}\n{self.report()}"
        assert _answer(label) in proc.stdout, f"expected {_answer(label)!r}\n{self.report()}"
        assert "apikeyhelper failed" not in (proc.stdout + proc.stderr).lower(), self.report()


def _hook_runs(stream: str) -> list[dict]:
    """The hooks a `claude -p --output-format stream-json --verbose` run reports: 2.1.197 writes one
    {"type": "system", "subtype": "hook_response", "hook_event", "stdout", "exit_code", ...} line per
    SessionStart hook run."""
    lines = [json.loads(line) for line in stream.splitlines() if line.startswith("{")]
    return [x for x in lines if x.get("type") == "system" and x.get("subtype") == "hook_response"]


def _no_unauthenticated(user: User, since: int) -> None:
    for rec in user.fake.messages_requests()[since:]:
        assert rec["auth_kind"] and rec["status"] not in (401, 403), \
            f"an unauthenticated request reached the API: {rec['auth_kind']}, {rec['status']}\n{user.report()}"


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture
def user(tmp_path: Path, fake: FakeAnthropic, pip_cache: Path):
    remote = Remote(tmp_path / "github")
    remote.commit_checkout()
    box = User(tmp_path / "home", fake, remote, pip_cache)
    box.remote = remote  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        end_processes(f"HOME={box.home}", grace=5.0)


# --------------------------------------------------------------------------------- the tests


def test_install_use_update_and_uninstall_as_a_user_does(user: User, fake: FakeAnthropic) -> None:
    version = claude_pool.__version__
    assert user.shell("command -v claude-pool").returncode != 0, "a claude-pool is already on the user's PATH"
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    user.login(ALICE)

    # ---- install, as the README says
    user.step(ADD)
    user.step(INSTALL)
    installed = json.loads((user.claude_dir / "plugins" / "installed_plugins.json").read_text())
    path = Path(installed["plugins"]["claude-pool@claude-pool"][0]["installPath"])
    assert (path / "pyproject.toml").exists(), "the cached plugin does not carry the package source"

    # ---- first session: answered at once, before the background install is done, and told so
    first = user.claude("-p", "hello", "--output-format", "stream-json", "--verbose")
    user.answered(first, ALICE)
    assert user.installed() == "", "the first session waited for the install"
    started = [h for h in _hook_runs(first.stdout) if h["hook_event"] == "SessionStart"]
    assert [(h["exit_code"], json.loads(h["stdout"])) for h in started] == [(0, {"systemMessage": INSTALLING})], started
    assert INSTALLING not in json.dumps([r["body"] for r in fake.messages_requests()]), "the notice reached the model"
    assert (user.share / "bootstrap.log").exists(), "no install was started"

    # ---- the install finishes within a bounded wait, with no litter in the plugin's folder
    user.wait_installed(f"version {version}")
    assert os.readlink(user.link) == str(user.share / "current" / "bin" / "claude-pool")
    log = user.log()
    assert log.count("installing claude-pool") == 1 and "bootstrap: done" in log, log
    for litter in ("build", "dist", "claude_pool.egg-info", "claude_pool.egg-info"):
        assert not (path / litter).exists(), f"{litter} left in the plugin's folder"
    assert not list(path.glob("*.egg-info"))

    # ---- the install itself pooled the login of the first session: `list` in a shell shows it
    wait_for(lambda: "imported the login" in user.log(), 60, "the bootstrap's import", interval=0.5)
    proc = user.shell("claude-pool list")
    assert proc.returncode == 0 and "alice" in proc.stdout, proc.stderr

    # ---- the next session keeps it; `claude-pool list` works from a fresh shell
    user.answered(user.claude("-p", "hello again"), ALICE)
    pool = user.pool_json()
    assert [a["email"] for a in pool["accounts"]] == [ALICE], pool
    proc = user.shell("claude-pool list")
    assert proc.returncode == 0 and "alice" in proc.stdout, proc.stderr
    proc = user.shell("claude-pool version")
    assert proc.stdout.strip() == f"claude-pool {version}", proc.stderr

    # ---- a second account imported there is used by the next session
    user.login(BOB)
    proc = user.shell("claude-pool import")
    assert proc.returncode == 0, proc.stderr
    seen = len(fake.messages_requests())
    user.answered(user.claude("-p", "third"), BOB)
    assert all(r["email"] == BOB for r in fake.messages_requests()[seen:]), user.report()

    # ---- a version bump in the repository, then `claude plugin update`
    parts = version.split(".")
    new = ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])
    user.remote.commit_changes(_bump(new), "release " + new)  # type: ignore[attr-defined]
    user.step(MARKET_UPDATE)
    user.step(UPDATE)
    user.answered(user.claude("-p", "after the update"), BOB)
    # the old install kept serving that session while the new one is built
    user.wait_installed(f"version {new}")
    assert user.shell("claude-pool version").stdout.strip() == f"claude-pool {new}"
    assert user.log().count("installing claude-pool") == 2, user.log()
    user.answered(user.claude("-p", "on the new version"), BOB)
    assert [a["email"] for a in user.pool_json()["accounts"]] == [ALICE, BOB]
    kept = sorted(p.name for p in (user.share / "versions").iterdir())
    assert len(kept) == 2 and kept[-1].startswith(new), kept  # the new one and the one before

    # ---- API-key mode: every account out, a key in the pool
    key = "sk-ant-api03-" + secrets.token_urlsafe(32)
    fake.add_api_key(key)
    assert user.shell("claude-pool key add --id k1", input=key + "\n").returncode == 0
    for email in (ALICE, BOB):
        fake.set_usage(email, five_hour=100, five_hour_resets_at=time.time() + 3600)
    proc = user.shell("claude-pool reconcile --live")
    assert proc.returncode == 0, proc.stderr
    other = {"cleanupPeriodDays": 45, **{k: v for k, v in user.settings().items() if k != "apiKeyHelper"}}
    helper = user.settings().get("apiKeyHelper")
    assert helper == f"{shlex.quote(str(user.link))} helper", helper  # the stable command, not a versioned folder
    wake = json.loads((user.home / ".config" / "claude-pool" / "wake.json").read_text())
    assert alive(int(wake["pid"])), "no recovery wake-up was scheduled"
    settings = user.settings()
    settings["cleanupPeriodDays"] = 45
    user.settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    # ---- uninstall by the plugin route: Claude Code keeps working with no hand edit
    user.step(PLUGIN_UNINSTALL.replace(" uninstall ", " uninstall --keep-data "))  # the plain one ends this test
    seen = len(fake.messages_requests())
    user.answered(user.claude("-p", "after the plugin is gone"), "key-" + key[-4:])
    _no_unauthenticated(user, seen)
    assert os.path.exists(shlex.split(user.settings()["apiKeyHelper"])[0]), "apiKeyHelper points at a missing program"

    # ---- plugin back (nothing to install: the version is the same), then `claude-pool uninstall`
    user.step(INSTALL)
    out = user.step(UNINSTALL)
    assert "apiKeyHelper removed" in out and "claude plugin uninstall claude-pool@claude-pool" in out, out
    # where Claude Code lands: the login it holds (bob's, kept through the key mode) is out, and said so
    assert f"Claude Code keeps account bob ({BOB}), but bob is at 100%" in out, out
    assert "no other account in the pool has room now" in out, out
    assert "Kept:" in out and "--purge" in out, out
    assert user.settings() == other, user.settings()  # ours gone, everything else as it was
    assert not os.path.lexists(user.link) and sorted(os.listdir(user.share)) == ["uninstalled"]  # the marker alone
    wait_for(lambda: not alive(int(wake["pid"])), 10, "the wake sleeper to stop")
    assert user.shell("command -v claude-pool").returncode != 0

    fake.set_usage(BOB, five_hour=5)
    fake.set_usage(ALICE, five_hour=5)
    seen = len(fake.messages_requests())
    proc = user.claude("-p", "after claude-pool uninstall")
    assert proc.returncode == 0 and "ok from fake (" in proc.stdout, user.report()
    _no_unauthenticated(user, seen)
    assert all(r["auth_kind"] == "bearer" for r in fake.messages_requests()[seen:]), user.report()
    # a slash command after uninstall: answered (no model turn, not an error) with the idle line
    seen = len(fake.messages_requests())
    proc = user.claude("-p", "/claude-pool:list")
    assert proc.returncode == 0 and proc.stdout.startswith(BLOCKED), proc.stdout + proc.stderr
    assert "claude-pool is uninstalled; the plugin is idle. To bring it back: rm " \
           "~/.local/share/claude-pool/uninstalled" in proc.stdout, proc.stdout
    assert len(fake.messages_requests()) == seen, "the slash command made a model request"
    time.sleep(2)  # a session start or slash command that wrongly bootstrapped would have started by now
    assert sorted(os.listdir(user.share)) == ["uninstalled"], "the idle plugin installed claude-pool again\n" + user.report()
    assert (user.claude_dir / "plugins" / "data" / "claude-pool-claude-pool" / "uninstalled").exists()
    user.step(PLUGIN_UNINSTALL)
    assert not (user.claude_dir / "plugins" / "data" / "claude-pool-claude-pool").exists()
    assert (user.home / ".config" / "claude-pool" / "pool.json").exists()  # kept without --purge


def test_a_failed_install_is_shown_once_and_never_reaches_the_model(user: User, fake: FakeAnthropic) -> None:
    """The first session (the TUI) is told an install runs; the package index cannot be reached,
    and the next session is told that cause, once, on screen only."""
    if shutil.which("tmux") is None or shutil.which("timeout") is None:
        pytest.skip("needs tmux and timeout")
    if shutil.which("uv", path=user.env["PATH"]):
        pytest.skip("uv on PATH: the bootstrap builds with uv, not pip")
    fake.add_account(ALICE, five_hour=10)
    user.login(ALICE)
    # an index that refuses connections, and no pip configuration of this machine (its local indexes)
    user.env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/", PIP_RETRIES="1",
                    PIP_TIMEOUT="2", PIP_NO_CACHE_DIR="1")
    user.step(ADD)
    user.step(INSTALL)

    sock_dir = tempfile.mkdtemp(prefix="cpi-", dir="/tmp")
    sock = os.path.join(sock_dir, "s")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, *args], env=user.env, capture_output=True, text=True,
                              timeout=15).stdout

    def screen() -> str:   # Claude Code wraps a long line itself: one space for any run of blanks
        return " ".join(tmux("capture-pane", "-p", "-J", "-S", "-300", "-t", "c").split())

    def session(prompts: tuple[str, ...], shown: str) -> str:
        """One interactive session: `shown` on screen at its start, then each prompt answered."""
        tmux("-f", "/dev/null", "new-session", "-d", "-s", "c", "-x", "220", "-y", "50", "-c", str(user.proj),
             f"exec timeout --foreground 120 {shlex.quote(CLAUDE)}")  # type: ignore[arg-type]
        try:
            wait_for(lambda: shown in screen() and "❯" in screen(), 60, f"{shown!r} at session start\n{screen()}")
            for n, prompt in enumerate(prompts, 1):
                tmux("send-keys", "-t", "c", "-l", prompt)
                time.sleep(0.3)
                tmux("send-keys", "-t", "c", "Enter")
                wait_for(lambda: screen().count(_answer(ALICE)) >= n, 60, f"the answer to {prompt}\n{screen()}")
            return screen()
        finally:
            tmux("kill-server")

    notice = "claude-pool is not installed: the package index could not be reached for setuptools>=68 ("
    try:
        first = session(("first prompt",), f"SessionStart:startup says: {INSTALLING}")
        failed = user.share / "bootstrap.failed"
        wait_for(lambda: failed.exists() and not (user.share / "bootstrap.lock").exists(), INSTALL_WAIT,
                 "the install to fail", interval=0.5)
        cause = failed.read_text().splitlines()[2]   # the first real error, not "building it failed"
        assert cause.startswith("the package index could not be reached for setuptools>=68 ("), cause
        seen = len(fake.messages_requests())
        second = session(("second prompt", "third prompt"), notice)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert first.count(INSTALLING) == 1 and "not installed" not in first, first
    assert second.count(notice) == 1, second   # once a session, not on every prompt
    assert "Log: ~/.local/share/claude-pool/bootstrap.log" in second, second
    bodies = json.dumps([r["body"] for r in fake.messages_requests()])
    assert all(p in bodies for p in ("first prompt", "second prompt", "third prompt"))
    for needle in ("installing in the background", "is not installed", "bootstrap.log", "setuptools"):
        assert needle not in bodies, f"{needle!r} reached the model"
    assert len(fake.messages_requests()) > seen
    # not retried on every prompt (nor at the second session start): one attempt, backing off
    assert user.log().count("installing claude-pool") == 1, user.log()


def test_the_readme_says_what_these_tests_run() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, flags=re.S))
    lines = {line.split("#")[0].strip() for line in blocks.splitlines()}
    for step in README_STEPS:
        assert step in lines, f"README no longer shows {step!r}"
    named = set(re.findall(r"/claude-pool:([a-z][a-z-]*)", readme))
    shipped = {p.stem for p in (REPO / "plugin" / "commands").glob("*.md")}
    assert named == shipped, (named, shipped)
    for path in (REPO / "plugin" / "commands").glob("*.md"):
        head = path.read_text(encoding="utf-8").split("---")[1]
        assert "disable-model-invocation: true" in head, f"{path.name}: the model could run it by itself"
