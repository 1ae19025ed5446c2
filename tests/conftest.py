"""Shared fixtures: the fake Anthropic server and a sandboxed HOME for the installed command.

Real parts only: a real HTTP server on 127.0.0.1 (tests/fakeapi.py), real files in a temp
HOME, and the `claude-pool` command.

`Sandbox.run` runs the command in this process by default (the same entry point the console
script calls, with the sandbox's environment, working directory, stdin, stdout and stderr swapped
in): a full-stack command costs ~10 ms that way instead of ~210 ms for a new interpreter. The
contracts that only a real process shows (exit codes of the console script, what reaches a
terminal, hot-path imports, argv, signals, concurrency) run the installed command as a
subprocess: `sandbox.run(..., subprocess=True)`, a `Sandbox(..., subprocess=True)`, or the whole
suite with CLAUDE_POOL_TEST_SUBPROCESS=1.

One Sandbox for every test file: files that need more (a stand-in Keychain, API keys the helper
serves, Claude Code itself) subclass it. `sandbox.start(...)` starts the command as a process and
keeps it; at teardown every process left with the sandbox's HOME (detached reconciles, wake
sleepers, what `start` started) is ended. The recovery wake-up is off unless a test asks for it
(`Sandbox(..., wake=True)` or `sandbox.env.pop("CLAUDE_POOL_WAKE")`): a sleeper would outlive the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from fakeapi import FakeAnthropic
from claude_pool.providers import crypto
from proctools import cmdline, end_processes, procs_with_env

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def _find_claude_pool() -> str:
    for candidate in (VENV_BIN / "claude-pool", Path(sys.executable).parent / "claude-pool"):
        if candidate.exists():
            return str(candidate)
    path = os.pathsep.join([str(VENV_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("claude-pool", path=path)
    if not found:
        raise RuntimeError("the installed `claude-pool` command was not found (pip install -e . in the venv)")
    return found


CLAUDE_POOL = _find_claude_pool()

# Inherited variables that would point the command at the real user's files or credentials, or
# tell it that it runs inside Claude Code.
_STRIPPED = {"CLAUDECODE"}
_STRIPPED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "XDG_")


def fp(secret: str | None) -> str:
    """A short fingerprint, so assertion messages never show a token or key ("(none)" for none)."""
    if not secret:
        return "(none)"
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def sandbox_env(home: Path, fake: FakeAnthropic | None, *, wake: bool = False) -> dict[str, str]:
    """This process's environment for a command run with HOME=home against the fake API."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED and not k.startswith(_STRIPPED_PREFIXES)}
    env["HOME"] = str(home)
    if fake is not None:
        env["CLAUDE_POOL_API_BASE_URL"] = fake.base_url
        env["CLAUDE_POOL_OAUTH_TOKEN_URL"] = fake.token_url
    if not wake:
        env["CLAUDE_POOL_WAKE"] = "0"
    return env


@pytest.fixture(scope="session")
def pycache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte-code cache for the subprocesses, outside the repository. The inherited environment may
    say PYTHONDONTWRITEBYTECODE, which makes every `claude-pool` run compile the product again;
    caching under a private prefix makes each run ~40% faster and writes nothing in the repo."""
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def fake():
    server = FakeAnthropic().start()
    try:
        yield server
    finally:
        server.stop()


class Sandbox:
    """A temp HOME with Claude Code's and claude-pool's files, and a way to run the command there."""

    def __init__(self, home: Path, fake: FakeAnthropic, pycache: Path | None = None, *,
                 subprocess: bool = False, wake: bool = False) -> None:
        self.home = home
        self.subprocess = subprocess or os.environ.get("CLAUDE_POOL_TEST_SUBPROCESS") == "1"
        self.fake = fake
        self.exe = CLAUDE_POOL
        self.claude_dir = home / ".claude"
        self.creds_path = self.claude_dir / ".credentials.json"
        self.settings_path = self.claude_dir / "settings.json"
        self.pool_dir = home / ".config" / "claude-pool"
        self.pool_path = self.pool_dir / "pool.json"
        self.config_path = self.pool_dir / "config.toml"
        self.status_path = self.pool_dir / "status.json"
        self.audit_path = home / ".local" / "state" / "claude-pool" / "audit.jsonl"
        self.lock_path = self.pool_dir / "pool.json.lock"
        self.feed_path = self.pool_dir / "usage-feed.json"
        self.wake_path = self.pool_dir / "wake.json"
        self.sessions_dir = self.claude_dir / "sessions"
        env = sandbox_env(home, fake, wake=wake)
        env["PATH"] = os.pathsep.join([str(Path(self.exe).parent), env.get("PATH", "/usr/bin:/bin")])
        if pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(pycache)
        self.env = env
        #: every (args, stdout, stderr) this sandbox produced, for the secrets test
        self.transcript: list[tuple[tuple[str, ...], str, str]] = []
        self._key: bytes | None = None
        #: the processes `start` started
        self.popen: list[subprocess.Popen] = []
        #: a command prefix that runs the command as another user (`nonroot_sandbox`), and that user
        self.runas: list[str] = []
        self.uid: int | None = None

    def give_home(self) -> None:
        """Files the test wrote (as root) belong to the user the commands run as."""
        if self.uid is None:
            return
        for root, dirs, files in os.walk(self.home):
            for name in [*dirs, *files]:
                with contextlib.suppress(OSError):
                    os.lchown(os.path.join(root, name), self.uid, self.uid)
        os.lchown(self.home, self.uid, self.uid)

    def full_env(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        """The sandbox's environment with `extra` on top (a None value unsets the variable)."""
        env = dict(self.env)
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    # ---- running the installed command ------------------------------------------------

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 30, subprocess: bool | None = None) -> "subprocess.CompletedProcess[str]":
        full_env = self.full_env(env)
        as_process = self.subprocess if subprocess is None else subprocess
        # these replace the process (exec): only a real one can
        as_process = as_process or "--launch" in args or (bool(args) and args[0] == "wake")
        as_process = as_process or bool(self.runas)
        if as_process:
            import subprocess as sp

            self.give_home()
            proc = sp.run([*self.runas, self.exe, *args], env=full_env, input=input if input is not None else "",
                          capture_output=True, text=True, timeout=timeout, cwd=self.home)
        else:
            proc = run_in_process(self.exe, list(args), full_env, input or "", str(self.home))
        self.transcript.append((tuple(args), proc.stdout, proc.stderr))
        return proc

    def ok(self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None,
           subprocess: bool | None = None) -> "subprocess.CompletedProcess[str]":
        """Run and require exit 0 with no traceback."""
        proc = self.run(*args, input=input, env=env, subprocess=subprocess)
        assert proc.returncode == 0, f"claude-pool {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        assert "Traceback" not in proc.stderr + proc.stdout
        return proc

    def start(self, *args: str, env: dict[str, str | None] | None = None) -> "subprocess.Popen[str]":
        """Start the installed command as a process (stdout and stderr piped); ended at teardown."""
        proc = subprocess.Popen([self.exe, *args], env=self.full_env(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.home)
        self.popen.append(proc)
        return proc

    def wake_marker(self) -> dict | None:
        try:
            return json.loads(self.wake_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def wake_sleepers(self) -> list[int]:
        """Live wake sleepers (`... claude_pool wake EPOCH`) of this HOME."""
        return [p for p in procs_with_env(f"HOME={self.home}")
                if "claude_pool" in " ".join(cmdline(p)) and "wake" in cmdline(p)]

    def cleanup(self, grace: float = 8.0) -> None:
        """End what this sandbox left running: `start`ed processes, wake sleepers (at once: they
        wait minutes), then detached reconciles (after `grace` s to finish). Idempotent."""
        import signal

        if not self.popen and not procs_with_env(f"HOME={self.home}"):
            return  # the common case: one look at /proc
        for proc in self.popen:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        for pid in self.wake_sleepers():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        end_processes(f"HOME={self.home}", grace=grace)

    @staticmethod
    def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
        """Exit 1, exactly one line on stderr (naming claude-pool), no traceback; returns that line."""
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert proc.returncode == 1, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one error line, got: {proc.stderr!r}"
        line = lines[0]
        assert line.startswith("claude-pool"), line
        for fragment in fragments:
            assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
        return line

    # ---- Claude Code's files ----------------------------------------------------------

    def login(self, email: str, **kw: Any) -> dict:
        """Write the credential Claude Code would store after /login as `email` (0600)."""
        blob = self.fake.credential_blob(email, **kw)
        self.write_creds(blob)
        return blob

    def write_creds(self, content: dict | str | bytes) -> None:
        if isinstance(content, dict):
            content = json.dumps(content)
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.claude_dir.mkdir(parents=True, exist_ok=True)
        self.creds_path.write_bytes(content)
        os.chmod(self.creds_path, 0o600)

    def creds(self) -> dict:
        return json.loads(self.creds_path.read_text(encoding="utf-8"))

    def creds_bytes(self) -> bytes | None:
        return self.creds_path.read_bytes() if self.creds_path.exists() else None

    def write_settings(self, content: dict | str) -> None:
        if isinstance(content, dict):
            content = json.dumps(content, indent=2) + "\n"
        self.claude_dir.mkdir(parents=True, exist_ok=True)
        self.settings_path.write_text(content, encoding="utf-8")

    def settings(self) -> dict:
        return json.loads(self.settings_path.read_text(encoding="utf-8"))

    def settings_bytes(self) -> bytes | None:
        return self.settings_path.read_bytes() if self.settings_path.exists() else None

    # ---- claude-pool's files ----------------------------------------------------------

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = crypto.derive_key()
        return self._key

    def pool(self) -> dict:
        """The decrypted pool JSON."""
        data = self.pool_path.read_bytes()
        if data.startswith(crypto.MAGIC):
            data = crypto.decrypt(data, self.key)
        return json.loads(data)

    def pool_bytes(self) -> bytes | None:
        return self.pool_path.read_bytes() if self.pool_path.exists() else None

    def write_pool(self, content: dict | bytes, *, encrypt: bool = True, key: bytes | None = None) -> bytes:
        """Write a pool file as another tool (the Go claude-pool 0.3) would; returns its bytes."""
        if isinstance(content, dict):
            content = json.dumps(content).encode("utf-8")
            if encrypt:
                content = crypto.encrypt(content, key or self.key)
        self.pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pool_path.write_bytes(content)
        os.chmod(self.pool_path, 0o600)
        return content

    def account_entry(self, email: str, *, account_id: str | None = None, **kw: Any) -> dict:
        """A Go-format pool account for a fake account (its current tokens)."""
        return {"id": account_id or email.split("@")[0], "email": email,
                "blob": json.dumps(self.fake.credential_blob(email, **kw)),
                "usage": {"five_hour": {"pct": 0, "resets_at": None},
                          "seven_day": {"pct": 0, "resets_at": None}},
                "usage_at": "0001-01-01T00:00:00Z"}

    def seed(self, *emails: str, current: str | None = None, keys: dict[str, str] | None = None,
             current_key: str = "", mode: str = "account", login: bool = True, **extra: Any) -> dict:
        """Write a pool holding `emails` (and API keys) directly, the way the Go tool stores it,
        and make Claude Code hold the current account's login. Faster than running `import`."""
        accounts = [self.account_entry(e) for e in emails]
        current = current if current is not None else (accounts[0]["id"] if accounts else "")
        pool = {"mode": mode, "current": current, "current_key": current_key,
                "key_cursor": 0, "saved_api_key_helper": "", "accounts": accounts,
                "api_keys": [{"id": k, "key": v} for k, v in (keys or {}).items()], **extra}
        self.write_pool(pool)
        if login and current:
            email = next(a["email"] for a in accounts if a["id"] == current)
            self.write_creds(next(a["blob"] for a in accounts if a["id"] == current))
            assert self.creds()["claudeAiOauth"]["accessToken"] == self.fake.account(email).access_token
        return pool

    def pool_account(self, account_id: str) -> dict:
        return next(a for a in self.pool()["accounts"] if a["id"] == account_id)

    def pool_oauth(self, account_id: str) -> dict:
        return json.loads(self.pool_account(account_id)["blob"])["claudeAiOauth"]

    def audit_text(self) -> str:
        return self.audit_path.read_text(encoding="utf-8") if self.audit_path.exists() else ""

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_text().splitlines() if line.strip()]

    def status(self) -> dict:
        return json.loads(self.ok("status").stdout)

    def list_json(self) -> dict:
        return json.loads(self.ok("list", "--json").stdout)

    def write_config(self, text: str) -> None:
        self.pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(text, encoding="utf-8")

    def snapshot(self) -> dict[str, bytes | None]:
        """The bytes of every file a run could change, to prove a refused run changed nothing."""
        return {"pool": self.pool_bytes(), "creds": self.creds_bytes(), "settings": self.settings_bytes()}

    def state(self) -> dict[str, object]:
        """What a run could change that matters, ignoring the pool's usage cache: the pool's
        decisions and logins, and the bytes of Claude Code's files."""
        pool = None
        if self.pool_path.exists():
            raw = self.pool()
            pool = {k: raw.get(k) for k in ("mode", "current", "current_key", "saved_api_key_helper", "api_keys")}
            pool["accounts"] = [(a.get("id"), a.get("email"), a.get("blob"), a.get("needs_relogin", False))
                                for a in raw.get("accounts") or []]
        return {"pool": pool, "creds": self.creds_bytes(), "settings": self.settings_bytes()}

    def access(self, email: str) -> str:
        return self.fake.account(email).access_token

    def refresh_token(self, email: str) -> str:
        return self.fake.account(email).refresh_token


def _share_one_tls_context() -> None:
    """Every in-process command builds its own httpx client, and building the client's TLS
    context loads the CA bundle: ~65 ms of CPU, the largest cost of an in-process command (a real
    process pays it once too). The tests speak plain HTTP to 127.0.0.1, so in this process every
    client that names no `verify` shares one context, built by httpx the way it builds its own."""
    import httpx

    make = getattr(httpx, "create_ssl_context", None)
    if make is None:  # httpx < 0.28
        make = getattr(getattr(httpx, "_config", None), "create_ssl_context", None)
    if make is None:
        return
    shared = make()
    original = httpx.Client.__init__
    if getattr(original, "shares_tls", False):
        return

    def init(self: Any, *args: Any, **kw: Any) -> None:
        kw.setdefault("verify", shared)
        original(self, *args, **kw)

    init.shares_tls = True  # type: ignore[attr-defined]
    httpx.Client.__init__ = init  # type: ignore[method-assign]


_share_one_tls_context()
_IN_PROCESS = threading.Lock()


def run_in_process(exe: str, args: list[str], env: dict[str, str], stdin: str,
                   cwd: str) -> "subprocess.CompletedProcess[str]":
    """Run `claude-pool ARGS` through its real entry point inside this process, as its console
    script would: this environment, working directory, argv[0] and standard streams, restored
    afterwards. One at a time (the environment is process-wide)."""
    from claude_pool.reconciler import cli

    out, err = io.StringIO(), io.StringIO()
    with _IN_PROCESS, tempfile.TemporaryFile("w+", encoding="utf-8") as stdin_file:
        stdin_file.write(stdin)
        stdin_file.seek(0)
        saved = (dict(os.environ), os.getcwd(), sys.argv, sys.stdin)
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            sys.argv, sys.stdin = [exe, *args], stdin_file
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.main(args)
                except SystemExit as exc:  # what the console script does with sys.exit(...)
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except BaseException:
                    import traceback

                    traceback.print_exc()  # a crash looks like one: "Traceback" on stderr, exit 1
                    code = 1
        finally:
            env_before, cwd_before, sys.argv, sys.stdin = saved
            os.environ.clear()
            os.environ.update(env_before)
            os.chdir(cwd_before)
    return subprocess.CompletedProcess([exe, *args], int(code or 0), out.getvalue(), err.getvalue())


@pytest.fixture
def sandbox(tmp_path: Path, fake: FakeAnthropic, pycache_dir: Path):
    home = tmp_path / "home"
    home.mkdir()
    box = Sandbox(home, fake, pycache_dir)
    try:
        yield box
    finally:
        box.cleanup()  # before the fake stops (fixture teardown order)


NOBODY = 65534
_RUNS_AS: dict[tuple[str, ...], bool] = {}


def _runs_as(prefix: tuple[str, ...]) -> bool:
    """Can the installed command run under this prefix (another user must reach the checkout)?"""
    if prefix not in _RUNS_AS:
        try:
            proc = subprocess.run([*prefix, CLAUDE_POOL, "version"], capture_output=True, timeout=30,
                                  env={"PATH": "/usr/bin:/bin", "HOME": "/var/tmp"})
            _RUNS_AS[prefix] = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _RUNS_AS[prefix] = False
    return _RUNS_AS[prefix]


@pytest.fixture
def nonroot_sandbox(fake: FakeAnthropic):
    """A sandbox whose commands run as an ordinary user, as the permission faults need (root
    writes through a read-only folder). Run as root: its HOME is a folder in /var/tmp owned by
    `nobody` and every command runs under `setpriv` as that user (real processes); run as anyone
    else: as that user, in place."""
    import pwd
    import shutil
    import tempfile

    if os.geteuid() != 0:
        home = Path(tempfile.mkdtemp(prefix="cp-user-"))
        box = Sandbox(home, fake)
    else:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run the command as an ordinary user")
        try:
            user = pwd.getpwuid(NOBODY).pw_name
        except KeyError:
            pytest.skip("running as root and there is no uid 65534 to run the command as")
        runas = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        if not _runs_as(tuple(runas)):
            pytest.skip(f"running as root, and `nobody` cannot run {CLAUDE_POOL} (this checkout sits in a "
                        "folder only root can read): the ordinary-user faults are not tried here")
        home = Path(tempfile.mkdtemp(prefix="cp-nobody-", dir="/var/tmp"))
        os.chmod(home, 0o755)
        box = Sandbox(home, fake)
        box.runas = runas
        box.uid = NOBODY
        box.env["USER"] = box.env["LOGNAME"] = user
        box._key = crypto.derive_key(user=user)
    try:
        yield box
    finally:
        box.cleanup()
        shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (in their order): with several workers the long ones start at once instead
    of one of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
