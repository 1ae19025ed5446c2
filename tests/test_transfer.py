"""Moving the pool to another machine (issue 20): `claude-pool export FILE [--move]` and
`claude-pool import-pool FILE [--replace]` (reconciler/transfer.py).

Real files in temp HOMEs, the fake Anthropic API on 127.0.0.1, the installed command. "Another
machine" is a real one as far as the pool key can tell: the importing command runs in its own
mount namespace where /etc/machine-id holds another id (`unshare -m` + a bind mount), so its pool
key differs (providers/crypto.py) and the pool it writes does not open with the first machine's key.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from claude_pool.providers import crypto
from claude_pool.reconciler import transfer
from conftest import Sandbox

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
PASS = "correct horse battery staple 7"
OTHER_MACHINE = "0123456789abcdef0123456789abcdef"


# ---------------------------------------------------------------------------- helpers

def _other_machine_prefix(tmp: Path) -> list[str] | None:
    """A command prefix that runs a program with /etc/machine-id saying OTHER_MACHINE (None: this
    system cannot: not root, no unshare, no /etc/machine-id)."""
    if shutil.which("unshare") is None or not os.path.exists("/etc/machine-id") or os.geteuid() != 0:
        return None
    mid = tmp / "machine-id"
    mid.write_text(OTHER_MACHINE + "\n", encoding="utf-8")
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/machine-id && exec "$@"', str(mid)]
    try:
        proc = subprocess.run([*prefix, "cat", "/etc/machine-id"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if proc.returncode == 0 and proc.stdout.strip() == OTHER_MACHINE else None


def other_machine(box: Sandbox, tmp: Path) -> Sandbox:
    """Make every command of `box` run on "another machine" (real processes)."""
    prefix = _other_machine_prefix(tmp)
    if prefix is None:
        pytest.skip("cannot give a process another machine id here (needs root, unshare and /etc/machine-id)")
    box.runas = prefix
    box._key = crypto.derive_key(OTHER_MACHINE, crypto.username())
    assert box.key != crypto.derive_key()
    return box


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process seals cost 2**12 (the file records its cost, and opening honours it); runs of the
    installed command in a subprocess keep the real 2**17."""
    monkeypatch.setattr(transfer, "LOG2_N", 12)


@pytest.fixture
def box_b(tmp_path: Path, fake, pycache_dir: Path):
    home = tmp_path / "home-b"
    home.mkdir()
    box = Sandbox(home, fake, pycache_dir)
    try:
        yield box
    finally:
        box.cleanup()


def _hand_blob(email: str, access: str, refresh: str, expires_ms: int) -> str:
    return json.dumps({"claudeAiOauth": {"accessToken": access, "refreshToken": refresh, "expiresAt": expires_ms,
                                         "scopes": ["user:inference"], "subscriptionType": "max"}})


def _entry(acc_id: str, email: str, access: str, refresh: str, expires_ms: int, **kw) -> dict:
    return {"id": acc_id, "email": email, "blob": _hand_blob(email, access, refresh, expires_ms),
            "usage": {"five_hour": {"pct": 10, "resets_at": None}, "seven_day": {"pct": 20, "resets_at": None}},
            "usage_at": "2030-01-01T00:00:00Z", **kw}


def _pool(accounts: list[dict], keys: dict[str, str] | None = None) -> dict:
    return {"mode": "account", "current": "", "current_key": "", "key_cursor": 0, "saved_api_key_helper": "",
            "accounts": accounts, "api_keys": [{"id": k, "key": v} for k, v in (keys or {}).items()]}


def _secrets_of(box: Sandbox) -> list[str]:
    found = []
    for acc in box.pool()["accounts"]:
        oauth = json.loads(acc["blob"])["claudeAiOauth"]
        found += [oauth["accessToken"], oauth["refreshToken"]]
    return found + [k["key"] for k in box.pool()["api_keys"]]


# ------------------------------------------------------------------------- the file itself

def test_the_file_is_sealed_with_the_header_as_associated_data() -> None:
    payload = {"format": transfer.EXPORT_FORMAT, "version": 1, "accounts": [], "api_keys": [{"id": "k", "key": "v"}]}
    data = transfer.seal(payload, PASS)
    assert data.startswith(b"CPEXPORT\x01")
    assert transfer.unseal(data, PASS, "f") == payload
    # two exports of the same pool share no salt, nonce or ciphertext
    again = transfer.seal(payload, PASS)
    assert data[:len(transfer.MAGIC) + 10] == again[:len(transfer.MAGIC) + 10] and data[18:] != again[18:]
    # every byte of the header is bound: a flipped salt, nonce or cost byte fails like a ciphertext byte
    for i in [len(transfer.MAGIC) + 1, 20, transfer.HEADER_LEN - 1, transfer.HEADER_LEN, len(data) - 1]:
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(transfer.ExportError):
            transfer.unseal(bytes(bad), PASS, "f")
    with pytest.raises(transfer.ExportError, match="wrong passphrase"):
        transfer.unseal(data, PASS + "x", "f")
    with pytest.raises(transfer.ExportError, match="not a claude-pool export"):
        transfer.unseal(b'{"accounts": []}', PASS, "f")
    # a header asking for absurd scrypt memory is refused before any derivation
    huge = bytearray(data)
    huge[len(transfer.MAGIC) + 1] = 30
    with pytest.raises(transfer.ExportError, match="damaged"):
        transfer.unseal(bytes(huge), PASS, "f")
    # a sealed JSON that is not an export is not imported
    with pytest.raises(transfer.ExportError, match="no claude-pool export"):
        transfer.unseal(transfer.seal({"accounts": []}, PASS), PASS, "f")


def test_round_trip_in_process(sandbox: Sandbox, box_b: Sandbox, fake, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=50)
    sandbox.seed(ALICE, BOB, keys={"k1": "sk-ant-api03-" + "K" * 40})
    sandbox.ok("list")                                   # live readings, kept in the pool
    out = sandbox.ok("export", str(sandbox.home / "pool.export"), input=PASS + "\n").stdout
    assert "Exported 2 accounts and 1 API key" in out and "alice (alice@example.com)" in out
    export = sandbox.home / "pool.export"
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    before_a = sandbox.pool()

    # "another machine": this process's machine id differs while box_b's commands run
    monkeypatch.setattr(crypto, "_linux_machine_id", lambda: OTHER_MACHINE)
    box_b._key = crypto.derive_key(OTHER_MACHINE, crypto.username())
    out = box_b.ok("import-pool", str(export), input=PASS + "\n").stdout
    assert "Added account alice (alice@example.com)." in out and "Added API key k1." in out, out
    pool_b = box_b.pool()
    assert [(a["id"], a["email"], a["blob"]) for a in pool_b["accounts"]] == \
        [(a["id"], a["email"], a["blob"]) for a in before_a["accounts"]]
    assert [a["usage"]["five_hour"]["pct"] for a in pool_b["accounts"]] == [10, 50]   # the readings came along
    assert pool_b["api_keys"] == before_a["api_keys"]
    # written with this machine's key: the first machine's key does not open it
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(box_b.pool_path.read_bytes(), crypto.derive_key(_real_machine_id(), crypto.username()))
    # and it converged: the pool chose alice (the most headroom) and Claude Code holds her login
    assert box_b.pool()["current"] == "alice"
    assert box_b.creds()["claudeAiOauth"]["accessToken"] == fake.account(ALICE).access_token
    assert any(e.get("trigger") == "import-pool" and e.get("action") == "import_account"
               and e.get("target") == "alice" for e in box_b.audit())
    # importing the same file again changes no login
    again = box_b.ok("import-pool", str(export), input=PASS + "\n").stdout
    assert "Unchanged account alice (alice@example.com): the same login." in again
    assert "Unchanged API key k1." in again


def _real_machine_id() -> str:
    with open("/etc/machine-id", encoding="utf-8") as fh:
        return fh.read().strip() or crypto.NO_MACHINE_ID


# --------------------------------------------------------------- two machines, real processes

@pytest.mark.slow   # two installs / a five-account week: the full suite (the quick loop keeps its budget)
def test_export_move_then_import_on_another_machine(sandbox: Sandbox, box_b: Sandbox, fake, tmp_path: Path) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=40)
    key = "sk-ant-api03-" + "Q" * 40
    sandbox.seed(ALICE, BOB, keys={"k1": key})
    sandbox.ok("list")
    other_machine(box_b, tmp_path)
    export = tmp_path / "moving.cpx"

    proc = sandbox.run("export", str(export), "--move", input=PASS + "\n", subprocess=True)
    assert proc.returncode == 0, proc.stderr
    assert "Marked 2 accounts here as moved to another machine" in proc.stdout
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    # on the first machine: shown as moved, never chosen (every account moved: the API key serves),
    # never polled or refreshed again
    listed = {a["id"]: a for a in sandbox.list_json()["accounts"]}
    assert all(a["needs_relogin"] and a["relogin_reason"].startswith("moved to another machine")
               for a in listed.values()), listed
    assert sandbox.status()["mode"] == "apikey"
    calls = (fake.account(ALICE).usage_calls, fake.account(ALICE).refreshes, fake.account(BOB).usage_calls)
    fake.expire_access_token(ALICE)
    sandbox.ok("reconcile", "--live")
    text = sandbox.ok("list").stdout
    assert text.count("moved to another machine on") == 2, text   # the text view says where they went
    assert (fake.account(ALICE).usage_calls, fake.account(ALICE).refreshes, fake.account(BOB).usage_calls) == calls

    # the second machine: the file opens with the passphrase on stdin, the pool is written with its key
    proc = box_b.run("import-pool", str(export), input=PASS + "\n")
    assert proc.returncode == 0, proc.stderr
    assert "Added account alice (alice@example.com)." in proc.stdout
    assert "Added account bob (bob@example.com)." in proc.stdout
    assert "Added API key k1." in proc.stdout
    raw = box_b.pool_path.read_bytes()
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(raw, crypto.derive_key())          # not the first machine's key
    pool_b = box_b.pool()
    assert {a["id"]: a.get("needs_relogin", False) for a in pool_b["accounts"]} == {"alice": False, "bob": False}
    assert pool_b["api_keys"] == [{"id": "k1", "key": key}]
    assert box_b.creds()["claudeAiOauth"]["refreshToken"] == fake.account(ALICE).refresh_token
    assert box_b.pool()["current"] == "alice"

    # no secret in any output, in either audit log, in argv; the passphrase nowhere at all
    secrets = _secrets_of(box_b) + [PASS]
    texts = [out + err for _, out, err in sandbox.transcript + box_b.transcript]
    texts += [sandbox.audit_text(), box_b.audit_text(), export.read_bytes().decode("latin-1")]
    for secret in secrets:
        for text in texts:
            assert secret not in text
    for args, _, _ in sandbox.transcript + box_b.transcript:
        assert PASS not in " ".join(args)
    assert {e.get("action") for e in box_b.audit() if e.get("trigger") == "import-pool"} >= {"import_account",
                                                                                               "add_key"}
    # the passphrase is never an argument
    refused = sandbox.run("export", str(tmp_path / "x"), "--passphrase", PASS, subprocess=True)
    assert refused.returncode == 1 and "unrecognized arguments" in refused.stderr
    assert not (tmp_path / "x").exists()

    # `import` of a fresh login (/login again: new tokens) on the first machine clears the mark
    with fake.lock:
        acct = fake._accounts[ALICE]
        acct.access_token, acct.refresh_token = "sk-ant-oat01-" + "N" * 40, "sk-ant-ort01-" + "N" * 40
        acct.access_token_valid = True
    sandbox.login(ALICE)
    sandbox.ok("import")
    listed = {a["id"]: a for a in sandbox.list_json()["accounts"]}
    assert not listed["alice"]["needs_relogin"] and listed["bob"]["needs_relogin"]


@pytest.mark.parametrize("damage", ["wrong passphrase", "truncated", "tampered", "not an export", "empty passphrase"])
def test_a_bad_file_changes_nothing(sandbox: Sandbox, box_b: Sandbox, fake, tmp_path: Path, damage: str) -> None:
    fake.add_account(ALICE)
    fake.add_account(BOB)
    sandbox.seed(ALICE, keys={"k1": "sk-ant-api03-" + "A" * 40})
    export = tmp_path / "pool.cpx"
    sandbox.ok("export", str(export), input=PASS + "\n")
    box_b.seed(BOB)
    before = box_b.snapshot()
    audit_before = box_b.audit_text()
    data = export.read_bytes()
    passphrase = PASS
    if damage == "wrong passphrase":
        passphrase = PASS + "!"
    elif damage == "truncated":
        export.write_bytes(data[:len(data) // 2])
    elif damage == "tampered":
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x40
        export.write_bytes(bytes(bad))
    elif damage == "not an export":
        export.write_bytes(box_b.pool_path.read_bytes())   # a pool file is not an export
    else:
        passphrase = ""
    proc = box_b.run("import-pool", str(export), input=passphrase + "\n", subprocess=True)
    line = Sandbox.assert_refused(proc)
    assert {"wrong passphrase": "wrong passphrase", "truncated": "truncated", "tampered": "altered",
            "not an export": "not a claude-pool export", "empty passphrase": "empty"}[damage] in line
    assert PASS not in proc.stderr + proc.stdout
    assert box_b.snapshot() == before                       # pool, Claude Code's login, settings: same bytes
    assert box_b.audit_text() == audit_before


def test_merge_keeps_the_newer_token_and_asks_before_replacing(sandbox: Sandbox, box_b: Sandbox,
                                                               tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    old, new = now_ms + 3_600_000, now_ms + 7_200_000
    sandbox.write_pool(_pool([
        _entry("alice", ALICE, "sk-ant-oat01-ALICEfile" + "a" * 30, "sk-ant-ort01-ALICEfile" + "a" * 30, new),
        _entry("bob", BOB, "sk-ant-oat01-BOBfile" + "b" * 30, "sk-ant-ort01-BOBfile" + "b" * 30, old),
        _entry("carol", CAROL, "sk-ant-oat01-CAROLfile" + "c" * 30, "sk-ant-ort01-CAROLfile" + "c" * 30, new),
        _entry("dave", "dave@example.com", "sk-ant-oat01-DAVEfile" + "d" * 30, "sk-ant-ort01-DAVEfile" + "d" * 30, new),
    ], keys={"k1": "sk-ant-api03-" + "F" * 40}))
    export = tmp_path / "pool.cpx"
    sandbox.ok("export", str(export), input=PASS + "\n")
    here = _pool([
        _entry("alice", ALICE, "sk-ant-oat01-ALICEhere" + "a" * 30, "sk-ant-ort01-ALICEhere" + "a" * 30, old),
        _entry("bob", BOB, "sk-ant-oat01-BOBhere" + "b" * 30, "sk-ant-ort01-BOBhere" + "b" * 30, new),
        _entry("carol", "someone-else@example.com", "sk-ant-oat01-ELSEhere" + "e" * 30,
               "sk-ant-ort01-ELSEhere" + "e" * 30, new),
        _entry("dave2", "dave@example.com", "sk-ant-oat01-DAVEhere" + "d" * 30, "sk-ant-ort01-DAVEhere" + "d" * 30, old),
    ], keys={"k1": "sk-ant-api03-" + "H" * 40})
    box_b.write_pool(here)

    out = box_b.run("import-pool", str(export), input=PASS + "\n", subprocess=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Updated account alice (alice@example.com): kept the file's token, the newer" in text, text
    assert "Kept account bob (bob@example.com): this pool's token is the newer" in text, text
    assert "Skipped account carol: it is someone-else@example.com here and carol@example.com in the file " \
           "(run again with --replace to replace it)." in text, text
    assert "Updated account dave2 (dave@example.com) (already here as dave2)" in text, text
    assert "Skipped API key k1: another key has this name here (run again with --replace" in text, text
    pool = {a["id"]: a for a in box_b.pool()["accounts"]}
    assert set(pool) == {"alice", "bob", "carol", "dave2"}                  # no duplicate of dave
    assert "ALICEfile" in pool["alice"]["blob"] and "BOBhere" in pool["bob"]["blob"]
    assert pool["carol"]["email"] == "someone-else@example.com" and "DAVEfile" in pool["dave2"]["blob"]
    assert box_b.pool()["api_keys"] == [{"id": "k1", "key": "sk-ant-api03-" + "H" * 40}]
    for secret in ("ALICEfile", "BOBhere", "ELSEhere", "CAROLfile", "FFFFFFFF", "HHHHHHHH"):
        assert secret not in text + out.stderr + box_b.audit_text()

    # --replace replaces the one whose email differs (and the key)
    out = box_b.run("import-pool", str(export), "--replace", input=PASS + "\n", subprocess=True)
    assert out.returncode == 0, out.stderr
    assert "Replaced account carol: someone-else@example.com -> carol@example.com (--replace)." in out.stdout
    assert "Replaced API key k1 (--replace)." in out.stdout
    pool = {a["id"]: a for a in box_b.pool()["accounts"]}
    assert pool["carol"]["email"] == CAROL and "CAROLfile" in pool["carol"]["blob"]
    assert box_b.pool()["api_keys"] == [{"id": "k1", "key": "sk-ant-api03-" + "F" * 40}]


# ------------------------------------------------------------------ the real Claude Code

@pytest.mark.slow
def test_the_imported_pool_serves_the_real_claude_code(fake, tmp_path: Path, pycache_dir: Path) -> None:
    """Export on one HOME, import on another with another machine id, and the real Claude Code
    (print mode, the plugin's hooks running the installed claude-pool on that machine) sends its
    requests with the imported login."""
    from proctools import find_claude

    if find_claude() is None:
        pytest.skip("the real Claude Code binary is not available (see tests/test_claude_e2e.py)")
    import test_claude_e2e as e2e

    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=60)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = e2e.Sandbox(tmp_path / "a", fake, pycache_dir)
    b = e2e.Sandbox(tmp_path / "b", fake, pycache_dir)
    try:
        a.seed(BOB, ALICE)
        a.cp("list")                                   # readings, so the new machine can choose at once
        export = tmp_path / "pool.cpx"
        proc = a.run("export", str(export), "--move", input=PASS + "\n", subprocess=True)
        assert proc.returncode == 0, proc.stderr
        other_machine(b, tmp_path)
        proc = b.run("import-pool", str(export), input=PASS + "\n")
        assert proc.returncode == 0, proc.stderr
        assert b.held_token() == fake.account(ALICE).access_token   # converged: alice has the most headroom
        fake.reset_log()

        proc = b.shell([*b.runas, e2e.CLAUDE, "--plugin-dir", str(e2e.PLUGIN), "-p", "say hi"],
                       timeout=e2e.CLAUDE_TIMEOUT)
        b.wait_quiet()
        e2e._assert_answered(b, proc, ALICE)
        msgs = fake.messages_requests()
        assert msgs and all(m["token"] == fake.account(ALICE).access_token for m in msgs), b.report()
        # the hooks ran on the new machine and read its pool (a pool they could not decrypt says so)
        assert "does not decrypt" not in proc.stderr and "cannot be decrypted" not in proc.stderr
        hooks = [e for e in b.audit() if str(e.get("trigger", "")).startswith("hook:")]
        assert hooks and not [e for e in hooks if e.get("level") == "error" or e.get("result") == "failed"], hooks
        assert b.status()["name"] == "alice"
    finally:
        for box in (a, b):
            try:
                box.wait_quiet(timeout=10)
            except pytest.fail.Exception:
                pass
            box.cleanup()


# ----------------------------------------------------------------------------- on a terminal

def _on_tty(box: Sandbox, args: list[str], replies: list[tuple[str, str]], timeout: float = 60) -> tuple[int, str]:
    """Run the installed command with a pseudo-terminal as its controlling terminal and stdin;
    each (prompt, reply): wait for the prompt, then type the reply. Returns (exit code, output)."""
    import fcntl
    import pty
    import select
    import termios

    master, slave = pty.openpty()

    def own_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([box.exe, *args], stdin=slave, stdout=slave, stderr=slave, env=box.env,
                            cwd=box.home, preexec_fn=own_tty, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout

    def read_some() -> bool:
        nonlocal seen
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return False
            if not chunk:
                return False
            seen += chunk
        return True

    try:
        for prompt, reply in replies:
            while prompt.encode() not in seen:
                if time.monotonic() > deadline or (not read_some() and proc.poll() is not None):
                    pytest.fail(f"no prompt {prompt!r}; saw {seen!r}")
            seen = seen.replace(prompt.encode(), b"<asked>", 1)
            time.sleep(0.1)
            os.write(master, reply.encode() + b"\n")
        while proc.poll() is None and time.monotonic() < deadline:
            read_some()
        while read_some() and select.select([master], [], [], 0)[0]:
            pass
        proc.wait(timeout=5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, seen.decode("utf-8", "replace")


@pytest.mark.slow   # real processes on a pseudo-terminal
def test_on_a_terminal_the_passphrase_is_hidden_and_asked_twice_and_a_replace_is_asked(
        sandbox: Sandbox, box_b: Sandbox, fake, tmp_path: Path) -> None:
    fake.add_account(ALICE)
    sandbox.seed(ALICE)
    export = tmp_path / "pool.cpx"
    code, out = _on_tty(sandbox, ["export", str(export)], [("(hidden): ", PASS), ("again: ", PASS + "typo")])
    assert code == 1 and "the two passphrases differ" in out and not export.exists(), out
    code, out = _on_tty(sandbox, ["export", str(export)], [("(hidden): ", PASS), ("again: ", PASS)])
    assert code == 0 and "Exported 1 account" in out, out
    assert PASS not in out                                     # never echoed
    box_b.write_pool(_pool([_entry("alice", "someone-else@example.com", "sk-ant-oat01-" + "E" * 40,
                                   "sk-ant-ort01-" + "E" * 40, int(time.time() * 1000))]))
    before = box_b.pool_bytes()
    code, out = _on_tty(box_b, ["import-pool", str(export)], [("(hidden): ", PASS), ("Replace it? [y/N] ", "")])
    assert code == 0 and "Skipped account alice" in out and "you said no" in out, out
    assert box_b.pool_bytes() == before
    code, out = _on_tty(box_b, ["import-pool", str(export)], [("(hidden): ", PASS), ("Replace it? [y/N] ", "y")])
    assert code == 0 and "Replaced account alice: someone-else@example.com -> alice@example.com (you said yes)" in out, out
    assert box_b.pool_account("alice")["email"] == ALICE
