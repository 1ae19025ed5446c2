"""The platform layer: the macOS Keychain store (through a stand-in `security`), CLAUDE_CONFIG_DIR,
Claude Code's refresh lock directory, and the Windows / macOS branches with the platform injected.

Real parts: files in tmp_path, the fake Anthropic server (tests/fakeapi.py) on loopback, and the
installed `claude-pool` console script run as a subprocess in a sandboxed HOME. The stand-in
`security` is a small Python script put first on PATH; it keeps Keychain items in a JSON file and
logs every argv (and every command line fed to `security -i`) as JSON lines.

Secrets never reach an assertion message: logins are compared by asking which fake account they
belong to (`who`), so a failure shows an email, not a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shlex
import stat
import subprocess
import sys
import threading
import time
import types
import unicodedata
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import CLAUDE_POOL, Sandbox
from fakeapi import FakeAnthropic
from claude_pool.providers import claude_lock, credstore, credstore_keychain, crypto, paths, spawn
from claude_pool.providers.base import ProviderError
from claude_pool.reconciler import runtime

REPO = Path(__file__).resolve().parents[1]
ALICE, BOB = "alice@example.com", "bob@example.com"
API_KEY = "sk-ant-api03-PLATFORMTESTKEY-0123456789abcdefghijABCDEFGHIJ"
SERVICE = "Claude Code-credentials"
LOGIN_NAME = pwd.getpwuid(os.getuid()).pw_name


def expected_service(config_dir: str) -> str:
    return f"{SERVICE}-{hashlib.sha256(unicodedata.normalize('NFC', config_dir).encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------
# the stand-in `security`
# ---------------------------------------------------------------------------------------------

SECURITY_SCRIPT = r'''#!__PYTHON__
"""Stand-in for macOS `security`: generic passwords in a JSON file, every argv logged.

Like the real one at its line cap: `security -i` reads a command line into a 4096-byte buffer
(at most 4095 bytes at a time). A longer line is cut: the cut part IS executed, and the rest runs
as another command ("unknown command", echoed on stderr). A line of exactly 4096 bytes with its
newline runs whole, then the newline runs as a second, empty command: the exit status is that
empty command's 0. Env: FAKE_SECURITY_HEX=1 answers `find-generic-password -w` in hex (macOS 26),
FAKE_SECURITY_DELAY=<s> makes every call slow, FAKE_SECURITY_WRITE=fail|drop fails or drops writes.
"""
import fcntl, json, os, shlex, sys, time

LINE_BUFFER = 4096

DB = __DB__
LOG = __LOG__
NOT_FOUND = 44
DUPLICATE = 45


def log(entry):
    with open(LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def load():
    try:
        with open(DB, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def save(items):
    tmp = DB + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(items, fh)
    os.replace(tmp, DB)


def parse(words, with_value, flags):
    opts, i = {}, 0
    while i < len(words):
        w = words[i]
        if w in with_value:
            if i + 1 >= len(words):
                raise ValueError("option " + w + " needs a value")
            opts[w] = words[i + 1]
            i += 2
        elif w in flags:
            opts[w] = True
            i += 1
        else:
            raise ValueError("unexpected argument " + repr(w))
    return opts


def read_lines(stream):
    """What fgets with a 4096-byte buffer hands over: at most 4095 bytes, up to a newline."""
    data = stream.read()
    i = 0
    while i < len(data):
        end = data.find(b"\n", i, i + LINE_BUFFER - 1)
        stop = end + 1 if end >= 0 else min(len(data), i + LINE_BUFFER - 1)
        yield data[i:stop]
        i = stop


def run(words):
    if not words:
        return 0
    cmd, rest = words[0], words[1:]
    try:
        if cmd == "find-generic-password":
            o = parse(rest, {"-a", "-s"}, {"-w", "-g"})
            items = load()
            key = o.get("-s", "") + "|" + o.get("-a", "")
            if key not in items:
                sys.stderr.write("security: SecKeychainSearchCopyNext: The specified item could not be found "
                                 "in the keychain.\n")
                return NOT_FOUND
            if o.get("-w"):
                value = items[key]
                if os.environ.get("FAKE_SECURITY_HEX") == "1":
                    value = value.encode("utf-8", "surrogateescape").hex()
                sys.stdout.write(value + "\n")
            else:
                sys.stdout.write('keychain: "login.keychain-db"\n')
            return 0
        if cmd == "add-generic-password":
            o = parse(rest, {"-a", "-s", "-w", "-X", "-l", "-j"}, {"-U"})
            if "-w" in o:
                value = o["-w"]
            elif "-X" in o:
                hexed = o["-X"]
                # a cut line leaves a partial hex string: what it holds is what gets written
                value = bytes.fromhex(hexed[:len(hexed) // 2 * 2]).decode("utf-8", "surrogateescape")
            else:
                raise ValueError("no password given")
            mode = os.environ.get("FAKE_SECURITY_WRITE", "")
            if mode == "fail":
                sys.stderr.write("security: SecKeychainItemCreateFromContent (<default>): User interaction is "
                                 "not allowed.\n")
                # the worst case: a copy of the payload on stderr (what a cut line's remainder does)
                sys.stderr.write("security: unknown command " + repr(o.get("-X", "")) + "\n")
                return 1
            if mode == "drop":
                return 0
            with open(DB + ".lock", "w") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)
                items = load()
                key = o.get("-s", "") + "|" + o.get("-a", "")
                if key in items and not o.get("-U"):
                    sys.stderr.write("security: SecKeychainItemCreateFromContent (<default>): The specified "
                                     "item already exists in the keychain.\n")
                    return DUPLICATE
                items[key] = value
                save(items)
            return 0
        if cmd == "-i":
            status = 0
            for chunk in read_lines(sys.stdin.buffer):
                text = chunk.decode("utf-8", "surrogateescape").rstrip("\n")
                try:
                    words = shlex.split(text)
                except ValueError:           # an unbalanced quote: a cut line's remainder
                    words = [text]
                log({"stdin": words, "bytes": len(chunk)})
                status = run(words)          # the exit status is the last command's
            return status
    except ValueError as exc:
        sys.stderr.write("security: " + str(exc) + "\n")
        return 2
    sys.stderr.write("security: unknown command " + repr(cmd) + "\n")
    return 2


if __name__ == "__main__":
    log({"argv": sys.argv[1:]})
    if os.environ.get("FAKE_SECURITY_DELAY"):
        time.sleep(float(os.environ["FAKE_SECURITY_DELAY"]))
    sys.exit(run(sys.argv[1:]))
'''


class Keychain:
    """The stand-in's files, seen from the test."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "kc-bin"
        self.bin.mkdir()
        self.db = root / "keychain.json"
        self.log = root / "security-log.jsonl"
        script = (SECURITY_SCRIPT.replace("__PYTHON__", sys.executable)
                  .replace("__DB__", repr(str(self.db))).replace("__LOG__", repr(str(self.log))))
        exe = self.bin / "security"
        exe.write_text(script, encoding="utf-8")
        exe.chmod(0o755)

    def items(self) -> dict[str, str]:
        return json.loads(self.db.read_text(encoding="utf-8")) if self.db.exists() else {}

    def put(self, value: dict | str, service: str = SERVICE, account: str = LOGIN_NAME) -> None:
        """What Claude Code's /login does on macOS (written directly: no secret in any argv)."""
        items = self.items()
        items[f"{service}|{account}"] = value if isinstance(value, str) else json.dumps(value)
        self.db.write_text(json.dumps(items), encoding="utf-8")

    def get(self, service: str = SERVICE, account: str = LOGIN_NAME) -> str | None:
        return self.items().get(f"{service}|{account}")

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def argvs(self) -> list[list[str]]:
        return [e["argv"] for e in self.entries() if "argv" in e]

    def stdin_lines(self) -> list[list[str]]:
        return [e["stdin"] for e in self.entries() if "stdin" in e]

    def raw_log(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""


# ---------------------------------------------------------------------------------------------
# the sandbox
# ---------------------------------------------------------------------------------------------

# `fake` (the fake Anthropic API) and `pycache_dir` come from conftest.py

class Box(Sandbox):
    """conftest's Sandbox with the stand-in `security` first on PATH (its files under `tmp`)."""

    def __init__(self, tmp: Path, fake: FakeAnthropic, pycache: Path) -> None:
        home = tmp / "home"
        home.mkdir()
        super().__init__(home, fake, pycache)
        self.tmp = tmp
        self.kc = Keychain(tmp)
        self.env["PATH"] = os.pathsep.join([str(self.kc.bin), self.env["PATH"]])

    def pool_blob(self, account_id: str) -> str:
        return next(a["blob"] for a in self.pool()["accounts"] if a["id"] == account_id)

    # ---- identifying logins without showing them
    def who(self, blob: str | dict | None) -> str:
        """Which fake account a credential blob holds the *current* tokens of ('none' / 'unknown')."""
        if blob is None:
            return "none"
        data = json.loads(blob) if isinstance(blob, str) else blob
        oauth = (data or {}).get("claudeAiOauth") or {}
        for acct in self.fake.accounts():
            if (oauth.get("accessToken"), oauth.get("refreshToken")) == (acct.access_token, acct.refresh_token):
                return acct.email
        return "unknown"

    def secrets(self) -> list[str]:
        out = [API_KEY]
        for acct in self.fake.accounts():
            out += [acct.access_token, acct.refresh_token, *acct.previous_access_tokens,
                    *acct.previous_refresh_tokens]
        return out


@pytest.fixture
def box(tmp_path: Path, fake: FakeAnthropic, pycache_dir: Path):
    made = Box(tmp_path, fake, pycache_dir)
    try:
        yield made
    finally:
        made.cleanup()


KEYCHAIN = {"CLAUDE_POOL_CREDENTIAL_STORE": "keychain"}
FILESTORE = {"CLAUDE_POOL_CREDENTIAL_STORE": "file"}


def no_secret_in(text_lines: list[str], secrets: list[str]) -> list[int]:
    """Indexes of lines holding any secret (never the secrets themselves)."""
    return [i for i, line in enumerate(text_lines) if any(s and s in line for s in secrets)]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 1, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line on stderr, got {len(lines)}: {proc.stderr!r}"
    assert lines[0].startswith("claude-pool"), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 1. the stand-in itself behaves like `security`
# ---------------------------------------------------------------------------------------------

def test_stand_in_security_behaves_like_the_real_one(box: Box) -> None:
    env = box.full_env(None)
    sec = str(box.kc.bin / "security")

    def security(*argv: str, stdin: str = "", extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sec, *argv], input=stdin, capture_output=True, text=True, timeout=10,
                              env=dict(env, **(extra or {})))

    miss = security("find-generic-password", "-a", "me", "-s", "svc", "-w")
    assert miss.returncode == 44 and "could not be found" in miss.stderr and miss.stdout == ""
    assert security("add-generic-password", "-a", "me", "-s", "svc", "-w", "v1").returncode == 0
    assert security("add-generic-password", "-a", "me", "-s", "svc", "-w", "v2").returncode == 45  # no -U
    assert security("find-generic-password", "-a", "me", "-s", "svc", "-w").stdout == "v1\n"
    line = 'add-generic-password -U -a "me" -s "a \\"q\\" svc" -X ' + "hé llo".encode().hex() + "\n"
    assert security("-i", stdin=line).returncode == 0
    assert box.kc.get("a \"q\" svc", "me") == "hé llo"
    assert security("-i", stdin=line.replace("-U ", ""), extra={"FAKE_SECURITY_WRITE": "fail"}).returncode == 1
    dropped = 'add-generic-password -U -a me -s svc -X ' + b"v3".hex() + "\n"
    assert security("-i", stdin=dropped, extra={"FAKE_SECURITY_WRITE": "drop"}).returncode == 0
    assert box.kc.get("svc", "me") == "v1"
    assert ["-i"] in box.kc.argvs() and ["add-generic-password", "-U", "-a", "me", "-s", 'a "q" svc', "-X",
                                         "hé llo".encode().hex()] in box.kc.stdin_lines()


def test_stand_in_security_at_its_line_cap(box: Box) -> None:
    """The stand-in's `-i` behaves like the real one at 4096 bytes: what our store must avoid."""
    env = box.full_env(None)
    sec = str(box.kc.bin / "security")

    def line_of(total: int, account: str = "me") -> bytes:
        head = f'add-generic-password -U -a "{account}" -s "svc" -X '.encode()
        n = (total - len(head) - 1) // 2
        assert len(head) + 2 * n + 1 == total, "pick the other account for this parity"
        return head + (b"v" * n).hex().encode() + b"\n"

    def feed(line: bytes, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sec, "-i"], input=line, capture_output=True, timeout=10, env=dict(env, **extra))

    fits = line_of(4095, "me")                              # 4094 bytes and the newline: one read
    assert feed(fits).returncode == 0 and box.kc.get("svc", "me") == "v" * ((4095 - 44) // 2)
    assert feed(fits, FAKE_SECURITY_WRITE="fail").returncode == 1
    exact = line_of(4096, "me1")                             # 4095 + newline: the newline runs alone
    assert feed(exact).returncode == 0 and len(box.kc.get("svc", "me1")) == (4096 - 45) // 2
    assert feed(exact, FAKE_SECURITY_WRITE="fail").returncode == 0, "the empty command masks the failure"
    assert box.kc.stdin_lines()[-1] == []
    long = line_of(5002, "me1")
    cut = feed(long)
    stored = box.kc.get("svc", "me1")
    assert len(stored) == (4095 - 45) // 2, "the cut part is executed: a truncated item"
    assert "unknown command" in cut.stderr.decode()
    assert long[4095:-1].decode() in cut.stderr.decode(), "the rest of the line is echoed on stderr"
    hexed = subprocess.run([sec, "find-generic-password", "-a", "me", "-s", "svc", "-w"], capture_output=True,
                           text=True, timeout=10, env=dict(env, FAKE_SECURITY_HEX="1"))
    assert hexed.stdout == ("v" * ((4095 - 44) // 2)).encode().hex() + "\n"


def mcp_logins(size: int) -> dict:
    """Claude Code's MCP servers' OAuth logins, as it keeps them beside its own login: ~`size` bytes."""
    servers: dict[str, dict] = {}
    i = 0
    while len(json.dumps(servers)) < size:
        name = f"server-{i}"
        servers[f"{name}|{hashlib.sha256(name.encode()).hexdigest()[:16]}"] = {
            "serverName": name, "serverUrl": f"https://mcp{i}.example.com/mcp",
            "accessToken": f"mcp-at-{i}-" + hashlib.sha256(f"a{i}".encode()).hexdigest(),
            "refreshToken": f"mcp-rt-{i}-" + hashlib.sha256(f"r{i}".encode()).hexdigest(),
            "expiresAt": 1780000000000.0 + i, "scope": "read write",
        }
        i += 1
    return {"mcpOAuth": servers}


def mcp_secrets(logins: dict) -> list[str]:
    return [v[k] for v in logins.get("mcpOAuth", {}).values() for k in ("accessToken", "refreshToken")]


@pytest.mark.slow
@pytest.mark.parametrize("hex_output", [False, True], ids=["plain output", "hex output"])
def test_keychain_store_round_trips_at_and_past_the_line_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              hex_output: bool) -> None:
    kc = Keychain(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("FAKE_SECURITY_WRITE", raising=False)
    monkeypatch.setenv("FAKE_SECURITY_HEX", "1" if hex_output else "0")
    sec = str(kc.bin / "security")

    def blob_for(account: str, line_bytes: int) -> str | None:
        """A credential JSON whose `security -i` line is exactly `line_bytes` long, or None."""
        frame = '{"claudeAiOauth":{"accessToken":"%s","refreshToken":"r"}}'
        overhead = len(credstore_keychain.stdin_line(account, SERVICE, frame % ""))
        if (line_bytes - overhead) % 2:
            return None
        value = frame % ("t" * ((line_bytes - overhead) // 2))
        assert len(credstore_keychain.stdin_line(account, SERVICE, value)) == line_bytes
        return value

    cases = [(4000, "small"), (4094, "stdin"), (4095, "stdin"), (4096, "argv"), (4097, "argv"), (8000, "argv")]
    for line_bytes, route in cases:
        for account in ("me", "me2"):
            value = blob_for(account, line_bytes)
            if value is None:
                continue
            store = credstore_keychain.KeychainCredentialStore(service=SERVICE, account=account, security=sec)
            before = len(kc.entries())
            store.write(value)
            assert kc.get(SERVICE, account) == value, f"{line_bytes}-byte line: the item is not what was written"
            assert store.observe() == value
            new = kc.entries()[before:]
            argv_writes = [e for e in new if e.get("argv", [""])[0] == "add-generic-password"]
            stdin_writes = [e for e in new if "stdin" in e]
            if route == "argv":
                assert len(argv_writes) == 1 and not stdin_writes, line_bytes
            else:
                assert not argv_writes and [e["bytes"] for e in stdin_writes] == [line_bytes], line_bytes
                assert not any("t" * 16 in json.dumps(e) for e in new), "the secret reached an argv"
    # a 3 KB MCP blob beside the login: written whole, read back whole
    big = json.dumps({"claudeAiOauth": {"accessToken": "tok", "refreshToken": "r", "expiresAt": 1780000000000},
                      **mcp_logins(3000)})
    store = credstore_keychain.KeychainCredentialStore(service=SERVICE, account=LOGIN_NAME, security=sec)
    store.write(big)
    assert kc.get() == big and store.observe() == big


def test_hex_output_is_decoded_only_when_it_is_a_json_object() -> None:
    blob = '{"claudeAiOauth":{"accessToken":"a"}}'
    assert credstore_keychain.decode_output(blob.encode().hex() + "\n") == blob
    assert credstore_keychain.decode_output(blob.encode().hex().upper()) == blob
    assert credstore_keychain.decode_output(blob + "\n") == blob
    for text in ("cafe", "abc", "5b315d", "zz", "", "7b" * 3):       # not a JSON object: left as printed
        assert credstore_keychain.decode_output(text + "\n") == text
    assert credstore_keychain.decode_output("ff00" + "\n") == "ff00"  # not UTF-8


@pytest.mark.slow
def test_the_refresh_lock_stays_fresh_across_a_slow_keychain_write(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Claude Code takes over a lock older than its stale age: while we hold it across a slow
    `security`, a heartbeat keeps it fresh. (The stale age is shrunk so the test is quick.)"""
    kc = Keychain(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("FAKE_SECURITY_WRITE", raising=False)
    monkeypatch.setattr(claude_lock, "STALE_SECONDS", 0.6)
    monkeypatch.setenv("FAKE_SECURITY_DELAY", "0.8")      # each `security` call: longer than the stale age
    store = credstore_keychain.KeychainCredentialStore(security=str(kc.bin / "security"))
    lock = store.lock_path
    ages: list[float] = []
    done = threading.Event()

    def claude_code() -> None:     # proper-lockfile's view: is the lock there, and how old is it?
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                ages.append(time.time() - lock.stat().st_mtime)
            time.sleep(0.02)

    watcher = threading.Thread(target=claude_code, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        store.write(json.dumps({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r"}}))
    finally:
        done.set()
        watcher.join(5)
    held_for = time.monotonic() - t0
    assert held_for > 2 * claude_lock.STALE_SECONDS, "the write was not slow: the test proves nothing"
    assert ages, "the lock was never seen held"
    assert max(ages) < claude_lock.STALE_SECONDS, f"the held lock went stale ({max(ages):.2f}s old)"
    assert not lock.exists()


# ---------------------------------------------------------------------------------------------
# 2. the Keychain through the CLI
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_keychain_import_switch_apply_fallback_recovery(box: Box, fake: FakeAnthropic) -> None:
    box.subprocess = True  # this platform's contract: every command a real process
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    box.write_config("[policy]\nusage_ttl_seconds = 0\n")   # every reconcile polls
    item = lambda: box.kc.get()  # noqa: E731

    box.kc.put(fake.credential_blob(ALICE))          # /login as alice
    box.ok("import", env=KEYCHAIN)
    box.kc.put(fake.credential_blob(BOB))            # /login as bob
    box.ok("import", env=KEYCHAIN)
    pool = box.pool()
    assert [a["id"] for a in pool["accounts"]] == ["alice", "bob"] and pool["current"] == "bob"
    assert box.who(box.pool_blob("alice")) == ALICE and box.who(box.pool_blob("bob")) == BOB
    assert not (box.home / ".claude" / ".credentials.json").exists()

    box.ok("switch", "alice", env=KEYCHAIN)
    assert box.who(item()) == ALICE
    assert box.pool()["current"] == "alice"

    fake.set_usage(ALICE, five_hour=97)
    box.ok("apply", env=KEYCHAIN)                     # alice is past the threshold: bob
    assert box.who(item()) == BOB
    assert box.pool()["current"] == "bob"

    box.ok("key", "add", "--id", "k1", API_KEY, env=KEYCHAIN)
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=None)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=None)
    box.ok("reconcile", env=KEYCHAIN)                 # every account exhausted: API-key mode
    pool = box.pool()
    assert (pool["mode"], pool["current_key"]) == ("apikey", "k1")
    helper = json.loads((box.home / ".claude" / "settings.json").read_text())["apiKeyHelper"]
    assert helper.endswith(" helper") and "claude-pool" in helper
    assert box.who(item()) == BOB                     # the Keychain login is left as it was

    fake.set_usage(ALICE, five_hour=5)
    box.ok("reconcile", env=KEYCHAIN)                 # alice has headroom again: back to accounts
    pool = box.pool()
    assert (pool["mode"], pool["current"]) == ("account", "alice")
    assert box.who(item()) == ALICE
    assert "apiKeyHelper" not in json.loads((box.home / ".claude" / "settings.json").read_text())

    # no secret in any process's argv (nor anywhere in the stand-in's log: -i lines carry hex)
    raw = box.kc.raw_log().splitlines()
    assert raw
    leaks = no_secret_in(raw, box.secrets())
    assert not leaks, f"secrets in security log lines {leaks}"
    argvs = box.kc.argvs()
    adds_in_argv = [a for a in argvs if a and a[0] == "add-generic-password"]
    assert not adds_in_argv, "add-generic-password was run with the blob in argv"
    assert not any("-w" in a[1:] and a[0] != "find-generic-password" for a in argvs)
    writes = [w for w in box.kc.stdin_lines() if w and w[0] == "add-generic-password"]
    assert len(writes) == 3, f"{len(writes)} keychain writes (switch, apply, recovery expected)"
    for w in writes:
        assert "-w" not in w and "-X" in w and "-U" in w
        assert w[w.index("-s") + 1] == SERVICE and w[w.index("-a") + 1] == LOGIN_NAME
    assert box.who(bytes.fromhex(writes[-1][writes[-1].index("-X") + 1]).decode()) == ALICE
    assert ["-i"] in argvs
    reads = [a for a in argvs if a and a[0] == "find-generic-password"]
    assert reads and all(a == ["find-generic-password", "-a", LOGIN_NAME, "-s", SERVICE, "-w"] for a in reads)


def test_keychain_write_keeps_other_top_level_keys(box: Box, fake: FakeAnthropic) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    box.kc.put(fake.credential_blob(ALICE))
    box.ok("import", env=KEYCHAIN)
    bob = fake.credential_blob(BOB)
    bob["mcpOAuth"] = {"server": {"accessToken": "mcp-not-ours"}}
    box.kc.put(bob)
    box.ok("import", env=KEYCHAIN)
    box.ok("switch", "alice", env=KEYCHAIN)
    now = json.loads(box.kc.get())
    assert box.who(now) == ALICE
    assert now["mcpOAuth"] == {"server": {"accessToken": "mcp-not-ours"}}


@pytest.mark.slow
@pytest.mark.parametrize("hex_output", [False, True], ids=["plain output", "hex output"])
def test_switch_with_a_3kb_mcp_item_writes_it_whole(box: Box, fake: FakeAnthropic, hex_output: bool) -> None:
    """Claude Code keeps its MCP servers' logins in the same item: a 3 KB item is a 6 KB hex line,
    which `security -i` would cut (a truncated login, and the rest echoed on stderr)."""
    fake.add_account(ALICE)
    fake.add_account(BOB)
    env = dict(KEYCHAIN, FAKE_SECURITY_HEX="1" if hex_output else "0")
    box.kc.put(fake.credential_blob(ALICE))
    box.ok("import", env=env)
    logins = mcp_logins(3000)
    bob = {**fake.credential_blob(BOB), **logins}
    box.kc.put(bob)
    box.ok("import", env=env)
    assert box.who(box.pool_blob("bob")) == BOB

    proc = box.ok("switch", "alice", env=env)
    item = json.loads(box.kc.get())
    alice_oauth = json.loads(box.pool_blob("alice"))["claudeAiOauth"]
    assert item == {**bob, "claudeAiOauth": alice_oauth}, "the item is not the intended JSON"
    assert box.who(item) == ALICE and item["mcpOAuth"] == logins["mcpOAuth"]   # MCP logins intact
    proc2 = box.ok("switch", "bob", env=env)
    item = json.loads(box.kc.get())
    assert box.who(item) == BOB and item["mcpOAuth"] == logins["mcpOAuth"]

    lines = [e for e in box.kc.entries() if "stdin" in e]
    assert all(e["bytes"] <= 4095 and e["stdin"] for e in lines), "a line security -i would cut or split"
    big = [a for a in box.kc.argvs() if a[:1] == ["add-generic-password"]]
    assert len(big) == 2, "the large item goes through argv, as Claude Code writes it"
    secrets = box.secrets() + mcp_secrets(logins)
    for text in (proc.stdout, proc.stderr, proc2.stdout, proc2.stderr, box.audit_path.read_text()):
        assert not [i for i, sec in enumerate(secrets) if sec in text or sec.encode().hex() in text]


@pytest.mark.parametrize("size", [0, 3000], ids=["small item", "3 KB item"])
def test_a_failed_keychain_write_shows_nothing_security_printed(box: Box, fake: FakeAnthropic, size: int) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    box.kc.put(fake.credential_blob(ALICE))
    box.ok("import", env=KEYCHAIN)
    logins = mcp_logins(size) if size else {}
    bob = {**fake.credential_blob(BOB), **logins}
    box.kc.put(bob)
    box.ok("import", env=KEYCHAIN)

    proc = box.run("switch", "alice", env=dict(KEYCHAIN, FAKE_SECURITY_WRITE="fail"))
    line = one_error_line(proc)
    assert "security exit 1" in line and "unknown command" not in line
    assert json.loads(box.kc.get()) == bob
    secrets = box.secrets() + mcp_secrets(logins)
    for text in (proc.stdout, proc.stderr, box.audit_path.read_text()):
        assert "unknown command" not in text and "User interaction" not in text
        assert not [i for i, sec in enumerate(secrets) if sec in text or sec.encode().hex() in text]


# ---------------------------------------------------------------------------------------------
# 3. CLAUDE_CONFIG_DIR → the service name; the account is the login name
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", ["plain", "non_nfc", "unresolved"])
def test_keychain_service_follows_claude_config_dir(box: Box, fake: FakeAnthropic, variant: str) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    if variant == "plain":
        config_dir = str(box.tmp / "profiles" / "work")
    elif variant == "non_nfc":
        config_dir = str(box.tmp / "profiles" / "Cafe\u0301 work")     # decomposed é
        assert unicodedata.normalize("NFC", config_dir) != config_dir
        assert (hashlib.sha256(config_dir.encode()).hexdigest()[:8]
                != hashlib.sha256(unicodedata.normalize("NFC", config_dir).encode()).hexdigest()[:8])
    else:
        config_dir = str(box.tmp / "profiles" / ".." / "profiles" / "work")   # hashed as given, not resolved
    service = expected_service(config_dir)
    env = dict(KEYCHAIN, CLAUDE_CONFIG_DIR=config_dir)

    box.kc.put(fake.credential_blob(ALICE), service=service)
    box.kc.put(fake.credential_blob(BOB), service=SERVICE)           # the un-suffixed item: not this profile
    box.ok("import", env=env)
    assert box.who(box.pool_blob("alice")) == ALICE
    assert [a["id"] for a in box.pool()["accounts"]] == ["alice"]
    box.kc.put(fake.credential_blob(BOB), service=service)
    box.ok("import", env=env)
    box.ok("switch", "alice", env=env)
    assert box.who(box.kc.get(service=service)) == ALICE
    assert box.who(box.kc.get(service=SERVICE)) == BOB               # the default profile's item untouched

    for argv in box.kc.argvs():
        if argv[:1] == ["find-generic-password"]:
            assert argv == ["find-generic-password", "-a", LOGIN_NAME, "-s", service, "-w"]
    writes = [w for w in box.kc.stdin_lines() if w[:1] == ["add-generic-password"]]
    assert len(writes) == 1
    assert writes[0][writes[0].index("-s") + 1] == service
    assert writes[0][writes[0].index("-a") + 1] == LOGIN_NAME
    # the refresh lock is taken in the profile's directory, not in ~/.claude
    assert not (box.home / ".claude").exists()


def test_service_name_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    assert credstore_keychain.service_name() == "Claude Code-credentials"
    assert credstore_keychain.service_name("") == "Claude Code-credentials"
    for given in ("/Users/a/profiles/work", "/Users/a/profiles/work/", "~/work", "/Users/a/Cafe\u0301"):
        assert credstore_keychain.service_name(given) == expected_service(given)
    assert credstore_keychain.service_name("/a/work/") != credstore_keychain.service_name("/a/work")
    assert credstore_keychain.service_name("/a/Cafe\u0301") == credstore_keychain.service_name("/a/Caf\u00e9")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", "/x/y")
    assert credstore_keychain.service_name() == expected_service("/x/y")
    store = credstore_keychain.KeychainCredentialStore()
    assert (store.service, store.account) == (expected_service("/x/y"), LOGIN_NAME)
    assert store.lock_path == Path("/x/y") / ".oauth_refresh.lock"


def test_store_kind_from_config_toml_and_env_override(box: Box, fake: FakeAnthropic) -> None:
    fake.add_account(ALICE)
    box.write_config('[store]\ncredential_store = "keychain"\n')
    box.kc.put(fake.credential_blob(ALICE))
    box.ok("import")                                                 # no env: config.toml says keychain
    assert box.who(box.pool_blob("alice")) == ALICE
    n = len(box.kc.argvs())
    assert n >= 1
    proc = box.run("import", env=FILESTORE)                          # env wins: the (empty) file store
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(box.kc.argvs()) == n


# ---------------------------------------------------------------------------------------------
# 4. a failed Keychain write is a failure
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fail", "drop"])
def test_failed_keychain_write_is_reported_and_changes_nothing(box: Box, fake: FakeAnthropic, mode: str) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    box.kc.put(fake.credential_blob(ALICE))
    box.ok("import", env=KEYCHAIN)
    box.kc.put(fake.credential_blob(BOB))
    box.ok("import", env=KEYCHAIN)
    assert box.pool()["current"] == "bob"
    audit_before = len(box.audit())

    proc = box.run("switch", "alice", env=dict(KEYCHAIN, FAKE_SECURITY_WRITE=mode))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "keychain" in proc.stderr.lower()
    leaks = no_secret_in([proc.stdout, proc.stderr], box.secrets())
    assert not leaks

    pool = box.pool()
    assert (pool["mode"], pool["current"]) == ("account", "bob")
    assert box.who(box.kc.get()) == BOB
    status = json.loads(box.ok("status", env=KEYCHAIN).stdout)
    assert (status["mode"], status["name"]) == ("account", "bob")
    assert json.loads(box.ok("list", "--json", env=KEYCHAIN).stdout)["current"] == "bob"

    events = [e for e in box.audit()[audit_before:] if e.get("trigger") == "switch"]
    writes = [e for e in events if e.get("action") == "write_credential"]
    assert [e.get("result") for e in writes] == ["failed"], writes
    # the pool names alice first (a failed pool write means no move), then is rolled back
    saves = [(e.get("event"), e.get("result")) for e in events if e.get("action") == "save_pool_state"]
    assert saves == [("apply", "ok"), ("rollback", "ok")], saves

    box.ok("switch", "alice", env=KEYCHAIN)          # and once the Keychain works again, it goes through
    assert box.who(box.kc.get()) == ALICE and box.pool()["current"] == "alice"

    # docs/ARCHITECTURE.md §8: an error is one clear line on stderr (checked last, so the state checks above run)
    one_error_line(proc)


def test_missing_security_command_is_one_clear_line(box: Box, fake: FakeAnthropic) -> None:
    fake.add_account(ALICE)
    env = dict(KEYCHAIN, PATH=str(box.tmp / "empty-bin"))
    (box.tmp / "empty-bin").mkdir()
    proc = subprocess.run([CLAUDE_POOL, "import"], env=box.full_env(env), input="", capture_output=True,
                          text=True, timeout=30, cwd=box.home)
    line = one_error_line(proc)
    assert "security" in line


# ---------------------------------------------------------------------------------------------
# 5. the file store under CLAUDE_CONFIG_DIR
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_file_store_settings_and_sessions_follow_claude_config_dir(box: Box, fake: FakeAnthropic) -> None:
    box.subprocess = True  # this platform's contract: every command a real process
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    cfg = box.tmp / "profiles" / "work"
    cfg.mkdir(parents=True)
    creds = cfg / ".credentials.json"
    env = dict(FILESTORE, CLAUDE_CONFIG_DIR=str(cfg))

    def login(email: str) -> None:
        creds.write_text(json.dumps(fake.credential_blob(email)), encoding="utf-8")
        creds.chmod(0o600)

    login(ALICE)
    box.ok("import", env=env)
    login(BOB)
    box.ok("import", env=env)
    assert box.pool()["current"] == "bob"

    (cfg / "sessions").mkdir()
    me = os.getpid()
    (cfg / "sessions" / f"{me}.json").write_text(json.dumps({"pid": me, "sessionId": "s1", "kind": "interactive"}))
    proc = box.ok("switch", "alice", env=env)
    assert "1 running Claude Code session" in proc.stderr, proc.stderr
    assert box.who(creds.read_text()) == ALICE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600

    box.ok("key", "add", "--id", "k1", API_KEY, env=env)
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=None)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=None)
    proc = box.ok("reconcile", "--live", env=env)
    assert box.pool()["mode"] == "apikey"
    settings = json.loads((cfg / "settings.json").read_text())
    assert settings["apiKeyHelper"].endswith(" helper") and "claude-pool" in settings["apiKeyHelper"]
    assert "1 running Claude Code session" in proc.stderr, proc.stderr
    assert box.who(creds.read_text()) == ALICE        # the login stays; the helper overrides it

    assert not (box.home / ".claude").exists(), "~/.claude was created although CLAUDE_CONFIG_DIR is set"
    assert not list(cfg.glob(".oauth_refresh.lock"))


def test_file_store_without_sessions_says_nothing_about_them(box: Box, fake: FakeAnthropic) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    cfg = box.tmp / "cc"
    cfg.mkdir()
    env = dict(FILESTORE, CLAUDE_CONFIG_DIR=str(cfg))
    (cfg / "sessions").mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (cfg / "sessions" / f"{dead.pid}.json").write_text(json.dumps({"pid": dead.pid}))
    for email in (ALICE, BOB):
        (cfg / ".credentials.json").write_text(json.dumps(fake.credential_blob(email)))
        box.ok("import", env=env)
    proc = box.ok("switch", "alice", env=env)
    assert "running Claude Code session" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 6. Claude Code's refresh lock
# ---------------------------------------------------------------------------------------------

def _two_accounts(box: Box, fake: FakeAnthropic, kind: str, **usage: float) -> tuple[dict, Any]:
    """alice and bob imported (bob active); returns (env, read-the-store)."""
    fake.add_account(ALICE, five_hour=usage.get("alice", 0.0))
    fake.add_account(BOB, five_hour=usage.get("bob", 0.0))
    env = KEYCHAIN if kind == "keychain" else FILESTORE
    creds = box.home / ".claude" / ".credentials.json"

    def put(blob: dict) -> None:
        if kind == "keychain":
            box.kc.put(blob)
        else:
            creds.parent.mkdir(parents=True, exist_ok=True)
            creds.write_text(json.dumps(blob))
            creds.chmod(0o600)

    def read() -> tuple[str | None, int]:
        if kind == "keychain":
            return box.kc.get(), box.kc.db.stat().st_mtime_ns
        return (creds.read_text(), creds.stat().st_mtime_ns) if creds.exists() else (None, 0)

    put(fake.credential_blob(ALICE))
    box.ok("import", env=env)
    put(fake.credential_blob(BOB))
    box.ok("import", env=env)
    return env, read


@contextlib.contextmanager
def held_lock(lock: Path, interval: float = 0.5) -> Iterator[threading.Event]:
    """Hold Claude Code's lock directory, keeping it fresh; yields an event that releases it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.mkdir()
    release = threading.Event()

    def keep_fresh() -> None:
        while not release.wait(interval):
            with contextlib.suppress(FileNotFoundError):
                os.utime(lock)

    t = threading.Thread(target=keep_fresh, daemon=True)
    t.start()
    try:
        yield release
    finally:
        release.set()
        t.join(2)
        with contextlib.suppress(FileNotFoundError):
            lock.rmdir()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "keychain"])
def test_switch_waits_for_claude_codes_refresh_lock(box: Box, fake: FakeAnthropic, kind: str) -> None:
    env, read = _two_accounts(box, fake, kind)
    lock = box.home / ".claude" / ".oauth_refresh.lock"
    before = read()
    assert box.who(before[0]) == BOB
    writes_before = len([w for w in box.kc.stdin_lines() if w[:1] == ["add-generic-password"]])

    with held_lock(lock) as release:
        proc = box.start("switch", "alice", env=env)
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                assert read() == before, "the credential store was written while Claude Code held its lock"
                assert proc.poll() is None, f"switch ended while the lock was held: {proc.communicate()[1]}"
                time.sleep(0.1)
            assert lock.is_dir()
            writes = len([w for w in box.kc.stdin_lines() if w[:1] == ["add-generic-password"]])
            assert writes == writes_before
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        release.set()
        lock.rmdir()
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert elapsed < 3.0, f"the switch took {elapsed:.1f}s after the lock was released"
    assert box.who(read()[0]) == ALICE
    assert box.pool()["current"] == "alice"
    assert not lock.exists(), "claude-pool left Claude Code's refresh lock behind"


def test_a_stale_refresh_lock_is_taken_over_at_once(box: Box, fake: FakeAnthropic) -> None:
    env, read = _two_accounts(box, fake, "file")
    lock = box.home / ".claude" / ".oauth_refresh.lock"
    lock.mkdir()
    past = time.time() - 30
    os.utime(lock, (past, past))
    t0 = time.monotonic()
    proc = box.run("switch", "alice", env=env, timeout=15)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 3.0, f"a stale lock held the switch for {elapsed:.1f}s"
    assert box.who(read()[0]) == ALICE
    assert not lock.exists()


def test_claude_lock_in_process(tmp_path: Path) -> None:
    lock = tmp_path / "cc" / ".oauth_refresh.lock"
    with pytest.raises(RuntimeError):
        with claude_lock.hold(lock):
            assert lock.is_dir()
            raise RuntimeError("boom")
    assert not lock.exists(), "the lock directory survived an exception"

    # re-entrant in one thread: the inner exit does not release it
    with claude_lock.hold(lock):
        with claude_lock.hold(lock):
            assert lock.is_dir()
        assert lock.is_dir()
        # another thread waits, bounded
        outcome: dict[str, object] = {}

        def other() -> None:
            t0 = time.monotonic()
            try:
                with claude_lock.hold(lock, wait=0.3):
                    outcome["got"] = True
            except claude_lock.ClaudeLockTimeout as exc:
                outcome["timeout"] = (time.monotonic() - t0, str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert "got" not in outcome
        waited, message = outcome["timeout"]  # type: ignore[misc]
        assert 0.25 <= waited < 2.0
        assert ".oauth_refresh.lock" in message
    assert not lock.exists()

    # an exception inside a nested hold releases only at the outermost level
    with pytest.raises(ValueError):
        with claude_lock.hold(lock):
            with pytest.raises(KeyError):
                with claude_lock.hold(lock):
                    raise KeyError("inner")
            assert lock.is_dir()
            raise ValueError("outer")
    assert not lock.exists()

    # held by "Claude Code" (fresh): a bounded wait, and the foreign lock is left alone
    lock.mkdir()
    with pytest.raises(claude_lock.ClaudeLockTimeout):
        with claude_lock.hold(lock, wait=0.2):
            pass
    assert lock.is_dir()
    past = time.time() - 30
    os.utime(lock, (past, past))
    with claude_lock.hold(lock, wait=0.5):           # stale: taken over
        assert lock.is_dir() and time.time() - lock.stat().st_mtime < 5
    assert not lock.exists()


def test_file_store_write_holds_the_lock(tmp_path: Path) -> None:
    from claude_pool.providers.credstore_file import FileCredentialStore

    path = tmp_path / "cc" / ".credentials.json"
    store = FileCredentialStore(path)
    assert store.lock_path == path.parent / ".oauth_refresh.lock"
    store.write('{"claudeAiOauth": {}}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not store.lock_path.exists()
    store.lock_path.mkdir()
    with pytest.raises(ProviderError):
        with pytest.MonkeyPatch.context() as mp:
            # hold()'s default wait was bound at definition: route the store through a short wait
            real_hold = claude_lock.hold
            mp.setattr(claude_lock, "hold", lambda p, wait=0.2: real_hold(p, wait=wait))
            store.write('{"claudeAiOauth": {"x": 1}}')
    assert path.read_text() == '{"claudeAiOauth": {}}'
    store.lock_path.rmdir()


# ---------------------------------------------------------------------------------------------
# 7. refreshing the held token under the lock
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_refresh_of_the_held_login_waits_for_the_lock(box: Box, fake: FakeAnthropic) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=50)
    creds = box.home / ".claude" / ".credentials.json"
    creds.parent.mkdir(parents=True)

    def login(blob: dict) -> None:
        creds.write_text(json.dumps(blob))
        creds.chmod(0o600)

    login(fake.credential_blob(BOB))
    box.ok("import", env=FILESTORE)
    expired = fake.credential_blob(ALICE)
    expired["claudeAiOauth"]["expiresAt"] = int((time.time() - 3600) * 1000)
    login(expired)
    box.ok("import", env=FILESTORE)
    assert box.pool()["current"] == "alice"
    old_refresh = fake.account(ALICE).refresh_token
    assert fake.count("/v1/oauth/token") == 0
    lock = box.home / ".claude" / ".oauth_refresh.lock"

    with held_lock(lock) as release:
        proc = box.start("reconcile", "--live", env=FILESTORE)
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                assert fake.count("/v1/oauth/token") == 0, "refreshed while Claude Code held its lock"
                assert proc.poll() is None, f"reconcile ended while the lock was held: {proc.communicate()[1]}"
                time.sleep(0.1)
            assert json.loads(creds.read_text())["claudeAiOauth"]["expiresAt"] == expired["claudeAiOauth"]["expiresAt"]
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        release.set()
        lock.rmdir()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err

    assert fake.count("/v1/oauth/token") == 1
    assert fake.account(ALICE).refreshes == 1 and fake.account(BOB).refreshes == 0
    assert fake.invalid_grants == 0 and fake.account(ALICE).invalid_grants == 0
    assert fake.account(ALICE).refresh_token != old_refresh
    assert box.who(creds.read_text()) == ALICE                       # the rotated login, in the store
    assert json.loads(creds.read_text())["claudeAiOauth"]["expiresAt"] > time.time() * 1000
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    pool = box.pool()
    assert pool["current"] == "alice"
    assert box.who(box.pool_blob("alice")) == ALICE                   # and in the pool
    assert not lock.exists()


# ---------------------------------------------------------------------------------------------
# 8. Windows and macOS branches, platform injected
# ---------------------------------------------------------------------------------------------

def test_helper_command_quoting_per_platform() -> None:
    win = runtime.helper_command("win32", r"C:\Users\A B\claude-pool.exe")
    assert win == '"C:\\Users\\A B\\claude-pool.exe" helper'
    posix_path = "/home/o'neil/my tools/claude-pool"
    posix = runtime.helper_command("linux", posix_path)
    assert posix == shlex.quote(posix_path) + " helper"
    assert shlex.split(posix) == [posix_path, "helper"]
    assert runtime.helper_command("darwin", "/usr/local/bin/claude-pool") == "/usr/local/bin/claude-pool helper"

    assert runtime.is_our_helper(win, win)
    assert runtime.is_our_helper(posix, posix)
    assert runtime.is_our_helper("  " + posix + " ", posix)
    # our helper from another install location still counts as ours
    assert runtime.is_our_helper(posix, "/usr/bin/claude-pool helper")
    assert runtime.is_our_helper("'/opt/x y/claude-pool' helper", posix)
    for foreign in ("/usr/local/bin/vault-key-helper --profile work", "", None, "echo helper",
                    "/usr/bin/claude-pool list", '"C:\\tools\\vault.exe" helper'):
        assert not runtime.is_our_helper(foreign, posix), foreign
        assert not runtime.is_our_helper(foreign, win), foreign


def test_home_on_windows_is_userprofile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("USERPROFILE", r"C:\Users\A B")
    monkeypatch.setenv("HOME", str(tmp_path / "posix-home"))
    assert paths.home("win32") == r"C:\Users\A B"
    assert paths.home("linux") == str(tmp_path / "posix-home")
    assert paths.home("darwin") == str(tmp_path / "posix-home")
    monkeypatch.delenv("USERPROFILE")
    assert paths.home("win32") == os.path.expanduser("~")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cc"))
    assert paths.claude_dir() == str(tmp_path / "cc")
    assert paths.credentials_file() == str(tmp_path / "cc" / ".credentials.json")
    assert paths.settings_file() == str(tmp_path / "cc" / "settings.json")
    assert paths.sessions_dir() == str(tmp_path / "cc" / "sessions")
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    assert paths.claude_dir() == str(tmp_path / "posix-home" / ".claude")


def test_detached_spawn_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], dict]] = []

    class Recorder:
        def __init__(self, argv: list[str], **kw: Any) -> None:
            calls.append((argv, kw))
            self.pid = 4242

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    monkeypatch.setattr(os, "posix_spawn", lambda *a, **k: pytest.fail("posix_spawn used on win32"))
    monkeypatch.delenv("CLAUDE_POOL_TRIGGER", raising=False)
    argv = [r"C:\Python\python.exe", "-m", "claude_pool", "reconcile"]
    assert spawn.detached(argv, trigger="helper", platform="win32") == 4242
    assert len(calls) == 1
    got, kw = calls[0]
    assert got == argv
    assert kw["creationflags"] == 0x00000008 | 0x00000200 | 0x08000000 == spawn.WINDOWS_DETACH_FLAGS
    assert kw["stdin"] is subprocess.DEVNULL
    assert kw["stdout"] is subprocess.DEVNULL
    assert kw["stderr"] is subprocess.DEVNULL
    assert kw["env"]["CLAUDE_POOL_TRIGGER"] == "helper"
    assert "CLAUDE_POOL_TRIGGER" not in os.environ
    assert kw.get("close_fds", True) is True


def test_windows_machine_guid_with_a_fake_winreg() -> None:
    opened: list[tuple] = []
    queried: list[tuple] = []

    def open_key(root: object, sub: str, reserved: int, access: int) -> str:
        opened.append((root, sub, reserved, access))
        return "HANDLE"

    def query(key: str, name: str) -> tuple[str, int]:
        queried.append((key, name))
        return ("  6b29fc40-ca47-1067-b31d-00dd010662da \n", 1)

    winreg = types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM", KEY_READ=0x20019, KEY_WOW64_64KEY=0x0100,
                                   OpenKey=open_key, QueryValueEx=query)
    assert crypto._windows_machine_guid(winreg) == "6b29fc40-ca47-1067-b31d-00dd010662da"
    assert opened == [("HKLM", r"SOFTWARE\Microsoft\Cryptography", 0, 0x20019 | 0x0100)]
    assert queried == [("HANDLE", "MachineGuid")]

    def refuse(*a: object) -> None:
        raise OSError(2, "The system cannot find the file specified")

    assert crypto._windows_machine_guid(types.SimpleNamespace(**{**vars(winreg), "OpenKey": refuse})) is None
    assert crypto._windows_machine_guid(types.SimpleNamespace(**{**vars(winreg), "QueryValueEx": refuse})) is None
    empty = types.SimpleNamespace(**{**vars(winreg), "QueryValueEx": lambda k, n: ("  ", 1)})
    assert crypto._windows_machine_guid(empty) is None


IOREG_SAMPLE = """\
+-o J314sAP  <class IOPlatformExpertDevice, id 0x100000220, registered, matched, active, busy 0 (1 ms), retain 39>
    {
      "IOPolledInterface" = "AppleARMWatchdogTimerHibernateHandler is not serializable"
      "#address-cells" = <02000000>
      "IOPlatformSerialNumber" = "C02XK0ABCDEF"
      "IOPlatformUUID" = "8F3E2B1A-1234-5678-9ABC-DEF012345678"
      "platform-name" = <"t6000">
      "manufacturer" = <"Apple Inc.">
    }
"""


def test_ioreg_uuid_and_machine_id_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert crypto.parse_ioreg_uuid(IOREG_SAMPLE) == "8F3E2B1A-1234-5678-9ABC-DEF012345678"
    assert crypto.parse_ioreg_uuid("") is None
    assert crypto.parse_ioreg_uuid('"IOPlatformUUID" = ""\n') is None

    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=IOREG_SAMPLE, stderr="")

    with monkeypatch.context() as mp:
        mp.setattr(subprocess, "run", fake_run)
        assert crypto.machine_id("darwin") == "8F3E2B1A-1234-5678-9ABC-DEF012345678"
    assert ran == [["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"]]

    def no_ioreg(argv: list[str], **kw: Any) -> None:
        raise FileNotFoundError(2, "No such file or directory", "ioreg")

    with monkeypatch.context() as mp:
        mp.setattr(subprocess, "run", no_ioreg)
        assert crypto.machine_id("darwin") == "claude-pool/no-machine-id"

    monkeypatch.setattr(crypto, "_windows_machine_guid", lambda winreg=None: "GUID-1")
    assert crypto.machine_id("win32") == "GUID-1"
    monkeypatch.setattr(crypto, "_windows_machine_guid", lambda winreg=None: None)
    assert crypto.machine_id("win32") == "claude-pool/no-machine-id"

    monkeypatch.setattr(crypto, "_linux_machine_id", lambda: None)
    assert crypto.machine_id("sunos5") == "claude-pool/no-machine-id"
    assert crypto.machine_id("linux") == "claude-pool/no-machine-id"
    monkeypatch.setattr(crypto, "_linux_machine_id", lambda: "abc123")
    assert crypto.machine_id("linux") == "abc123"
    assert crypto.machine_id("freebsd14") == "abc123"
    # the key is derived from the machine id and the user name
    assert crypto.derive_key("m", "u") != crypto.derive_key("m", "v")
    assert crypto.derive_key("claude-pool/no-machine-id", "u") == crypto.derive_key("claude-pool/no-machine-id", "u")


def test_username_is_the_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "somebody-else")
    assert crypto.username() == LOGIN_NAME


def test_store_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_POOL_CREDENTIAL_STORE", raising=False)
    assert credstore.store_kind("auto", platform="darwin") == "keychain"
    assert credstore.store_kind("auto", platform="linux") == "file"
    assert credstore.store_kind("auto", platform="win32") == "file"
    assert credstore.store_kind("", platform="darwin") == "keychain"
    assert credstore.store_kind("keychain", platform="linux") == "keychain"
    assert credstore.store_kind("file", platform="darwin") == "file"
    monkeypatch.setenv("CLAUDE_POOL_CREDENTIAL_STORE", "file")
    assert credstore.store_kind("keychain", platform="darwin") == "file"
    monkeypatch.setenv("CLAUDE_POOL_CREDENTIAL_STORE", "keychain")
    assert credstore.store_kind("file", platform="linux") == "keychain"
    assert isinstance(credstore.default_store("file"), credstore_keychain.KeychainCredentialStore)
    monkeypatch.setenv("CLAUDE_POOL_CREDENTIAL_STORE", "vault")
    with pytest.raises(ProviderError, match="vault"):
        credstore.store_kind("auto", platform="linux")
    monkeypatch.delenv("CLAUDE_POOL_CREDENTIAL_STORE")
    with pytest.raises(ProviderError):
        credstore.store_kind("gnome-keyring", platform="linux")


def test_keychain_store_unit_with_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kc = Keychain(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("FAKE_SECURITY_WRITE", raising=False)
    store = credstore_keychain.KeychainCredentialStore(security=str(kc.bin / "security"))
    assert store.observe() is None
    value = json.dumps({"claudeAiOauth": {"accessToken": "tok \"quoted\" \\ back", "refreshToken": "r"}})
    store.write(value)
    assert store.observe() == value
    assert kc.get() == value
    assert not store.lock_path.exists()
    monkeypatch.setenv("FAKE_SECURITY_WRITE", "drop")
    with pytest.raises(ProviderError, match="did not take effect"):
        store.write(value.replace("r", "s"))
    monkeypatch.setenv("FAKE_SECURITY_WRITE", "fail")
    with pytest.raises(ProviderError, match="exit 1"):
        store.write(value.replace("r", "s"))
    assert kc.get() == value
    assert not store.lock_path.exists()
    missing = credstore_keychain.KeychainCredentialStore(security=str(tmp_path / "no-such-security"))
    with pytest.raises(ProviderError, match="not found"):
        missing.observe()
