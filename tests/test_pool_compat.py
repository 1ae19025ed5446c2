"""The pool file stays byte-compatible with the Go claude-pool 0.3 (docs/ARCHITECTURE.md §3.1).

The pool files here are built from the format's facts alone (an independent HKDF / AES-GCM
implementation below), not with the product's own writer, then handed to the installed command.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from claude_pool.providers import crypto

GO_ZERO = "0001-01-01T00:00:00Z"


def spec_machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError:
            continue
        if value:
            return value
    return "claude-pool/no-machine-id"


def spec_username() -> str:
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = ""
    return name or os.environ.get("USER") or "user"


def spec_key(machine: str | None = None, user: str | None = None) -> bytes:
    ikm = f"{machine if machine is not None else spec_machine_id()}\x00{user if user is not None else spec_username()}"
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"claude-pool/store-salt/v1",
                info=b"claude-pool-store-v1").derive(ikm.encode("utf-8"))


def go_encrypt(plaintext: bytes, key: bytes) -> bytes:
    nonce = os.urandom(12)
    return b"CPL1" + nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def go_decrypt(data: bytes, key: bytes) -> bytes:
    assert data[:4] == b"CPL1"
    return AESGCM(key).decrypt(data[4:16], data[16:], None)


def go_pool(sandbox) -> dict:  # type: ignore[no-untyped-def]
    """A pool as the Go tool writes it: zero times, nanosecond times, omitted fields, and fields
    this implementation does not know."""
    fake = sandbox.fake
    fake.add_account("alice@example.com", five_hour=20, seven_day=5)
    fake.add_account("bob@example.com", five_hour=40)
    alice_blob = json.dumps(fake.credential_blob("alice@example.com"))
    return {
        "current": "alice",          # no "mode": absent means account
        # no current_key, key_cursor, saved_api_key_helper: zero values
        "accounts": [
            {"id": "alice", "email": "alice@example.com", "blob": alice_blob,
             "usage": {"five_hour": {"pct": 20, "resets_at": "2026-11-25T10:00:00.123456789Z"},
                       "seven_day": {"pct": 5, "resets_at": "2026-11-30T08:15:00Z", "go_window_extra": 7}},
             "usage_at": GO_ZERO,
             "go_account_extra": {"label": "work", "n": [1, 2, 3]}},
            # usage and usage_at omitted altogether
            {"id": "bob", "email": "bob@example.com",
             "blob": json.dumps(fake.credential_blob("bob@example.com"))},
        ],
        "api_keys": [{"id": "k1", "key": "sk-ant-api03-GOPOOLKEY-0123456789abcdefABCDEF"}],
        "go_top_extra": {"written_by": "claude-pool-go 0.3", "flags": [True, False]},
    }


def test_spec_key_derivation_matches_the_product():
    assert crypto.derive_key() == spec_key()
    assert crypto.derive_key("m", "u") == spec_key("m", "u")
    assert crypto.decrypt(go_encrypt(b"{}", spec_key()), crypto.derive_key()) == b"{}"


def test_a_go_pool_is_loaded(sandbox):
    sandbox.write_pool(go_encrypt(json.dumps(go_pool(sandbox)).encode(), spec_key()))
    listed = sandbox.list_json()
    assert listed["mode"] == "account"
    assert listed["current"] == "alice"
    assert listed["current_key"] == ""
    assert [a["id"] for a in listed["accounts"]] == ["alice", "bob"]
    alice, bob = listed["accounts"]
    assert alice["email"] == "alice@example.com"
    assert alice["usage"]["five_hour"]["pct"] == 20
    assert alice["usage"]["five_hour"]["resets_at"].startswith("2026-11-25T10:00:00.123456")
    assert alice["usage"]["seven_day"]["pct"] == 5
    assert alice["usage_at"] in (None, GO_ZERO)                # "never"
    assert bob["usage"]["five_hour"]["pct"] == 0
    assert bob["needs_relogin"] is False
    assert [k["id"] for k in listed["api_keys"]] == ["k1"]


def test_saving_a_go_pool_keeps_unknown_fields_and_the_go_encryption(sandbox):
    original = go_pool(sandbox)
    sandbox.write_pool(go_encrypt(json.dumps(original).encode(), spec_key()))

    sandbox.ok("key", "add", "--id", "k2", input="sk-ant-api03-SECONDKEY-0123456789abcdefXYZ\n")

    data = sandbox.pool_path.read_bytes()
    assert data[:4] == b"CPL1"
    saved = json.loads(go_decrypt(data, spec_key()))             # same key, Go's framing
    assert saved["go_top_extra"] == original["go_top_extra"]
    alice = next(a for a in saved["accounts"] if a["id"] == "alice")
    bob = next(a for a in saved["accounts"] if a["id"] == "bob")
    assert alice["go_account_extra"] == original["accounts"][0]["go_account_extra"]
    assert alice["usage"]["seven_day"]["go_window_extra"] == 7
    assert alice["blob"] == original["accounts"][0]["blob"]   # the blob is kept verbatim
    assert bob["blob"] == original["accounts"][1]["blob"]
    # what the Go tool reads back
    assert saved.get("mode", "account") == "account"
    assert saved["current"] == "alice"
    assert isinstance(saved.get("key_cursor", 0), int)
    assert alice["usage_at"] == GO_ZERO                          # never polled: Go's zero time
    assert bob["usage_at"] == GO_ZERO
    assert alice["usage"]["five_hour"]["pct"] == 20
    assert alice["usage"]["five_hour"]["resets_at"].startswith("2026-11-25T10:00:00.123456")
    assert alice["usage"]["five_hour"]["resets_at"].endswith("Z")
    assert [(k["id"], k["key"]) for k in saved["api_keys"]] == [
        ("k1", "sk-ant-api03-GOPOOLKEY-0123456789abcdefABCDEF"),
        ("k2", "sk-ant-api03-SECONDKEY-0123456789abcdefXYZ")]
    assert oct(sandbox.pool_path.stat().st_mode & 0o777) == oct(0o600)


def test_a_plaintext_pool_is_read_and_written_back_encrypted(sandbox):
    original = go_pool(sandbox)
    sandbox.write_pool(json.dumps(original, indent=2).encode())      # first byte is "{"

    assert [a["id"] for a in sandbox.list_json()["accounts"]] == ["alice", "bob"]
    sandbox.ok("key", "add", "--id", "k2", input="sk-ant-api03-SECONDKEY-0123456789abcdefXYZ\n")

    data = sandbox.pool_path.read_bytes()
    assert data[:4] == b"CPL1"
    assert b"GOPOOLKEY" not in data
    saved = json.loads(go_decrypt(data, spec_key()))
    assert [a["id"] for a in saved["accounts"]] == ["alice", "bob"]
    assert saved["go_top_extra"] == original["go_top_extra"]
    assert [k["id"] for k in saved["api_keys"]] == ["k1", "k2"]


def other_machine(plain: bytes) -> bytes:
    """Made by the Go tool on another machine: it decrypts with no key we have."""
    return go_encrypt(plain, spec_key("some-other-machine-id", spec_username()))


def foreign(plain: bytes) -> bytes:
    """Not a pool at all."""
    return b"\x89PNG\r\n\x1a\n" + os.urandom(200)


@pytest.mark.parametrize("make", [other_machine, foreign], ids=["another machine", "foreign file"])
@pytest.mark.parametrize("command", [("list", "--json"), ("import",), ("reconcile",)], ids=lambda c: " ".join(c))
def test_a_pool_that_cannot_be_read_is_refused_and_left_untouched(sandbox, make, command):
    sandbox.fake.add_account("carol@example.com", five_hour=10)
    sandbox.login("carol@example.com")                 # something import could take
    original = sandbox.write_pool(make(json.dumps({"current": "x", "accounts": [], "api_keys": []}).encode()))
    creds_before = sandbox.creds_bytes()

    line = sandbox.assert_refused(sandbox.run(*command), "untouched")
    if make is other_machine:
        assert "another machine" in line and "another user" in line, line
    assert sandbox.pool_path.read_bytes() == original
    assert sandbox.creds_bytes() == creds_before
    assert not sandbox.status_path.exists()


def test_a_pool_of_another_user_on_this_machine_is_refused(sandbox):
    original = sandbox.write_pool(go_encrypt(b'{"accounts": []}', spec_key(spec_machine_id(), "someone-else")))
    sandbox.assert_refused(sandbox.run("list", "--json"), "another user", "untouched")
    assert sandbox.pool_path.read_bytes() == original
