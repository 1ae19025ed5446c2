"""The Go claude-pool 0.3 and this one on the same pool, taking turns.

The Go tool's writes are made here the way it makes them, from the format's facts alone: its fixed
struct (every field it does not know is dropped, `omitempty` fields left out), json.MarshalIndent,
AES-256-GCM with the independent key derivation of test_pool_compat, a temp file renamed over the
pool. Its helper's rotation is its NextKey: `key_cursor = (key_cursor + 1) % n`, serve that key.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from test_pool_compat import GO_ZERO, go_decrypt, go_encrypt, spec_key

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
KEYS = {"k1": "sk-ant-api03-GOINTEROP1-0123456789abcdefABCDEF",
        "k2": "sk-ant-api03-GOINTEROP2-0123456789abcdefABCDEF",
        "k3": "sk-ant-api03-GOINTEROP3-0123456789abcdefABCDEF"}
NO_RECONCILE = {"CLAUDE_POOL_HELPER_NO_RECONCILE": "1", "CLAUDE_POOL_WAKE": "0"}


def go_load(sandbox) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(go_decrypt(sandbox.pool_path.read_bytes(), spec_key()))


def go_struct(pool: dict) -> dict:
    """What the Go tool's Store marshals from `pool`: its fields only, in its order, omitempty."""
    out: dict = {}
    for name in ("mode", "current", "current_key", "key_cursor", "saved_api_key_helper"):
        if pool.get(name):
            out[name] = pool[name]
    accounts = []
    for a in pool.get("accounts") or []:
        acc: dict = {"id": a["id"]}
        if a.get("email"):
            acc["email"] = a["email"]
        acc["blob"] = a.get("blob", "")
        usage = a.get("usage") or {}
        acc["usage"] = {w: {"pct": (usage.get(w) or {}).get("pct", 0),
                            "resets_at": (usage.get(w) or {}).get("resets_at") or GO_ZERO}
                        for w in ("five_hour", "seven_day")}
        acc["usage_at"] = a.get("usage_at") or GO_ZERO
        accounts.append(acc)
    out["accounts"] = accounts
    keys = [{"id": k["id"], "key": k["key"]} for k in pool.get("api_keys") or []]
    if keys:
        out["api_keys"] = keys
    return out


def go_save(sandbox, pool: dict) -> None:  # type: ignore[no-untyped-def]
    """The Go tool's Save: marshal its struct, encrypt, write `pool.json.tmp`, rename."""
    data = go_encrypt(json.dumps(go_struct(pool), indent=2).encode(), spec_key())
    sandbox.pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = sandbox.pool_path.with_name("pool.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, sandbox.pool_path)


def go_helper(sandbox) -> str:  # type: ignore[no-untyped-def]
    """The Go tool's `helper`: NextKey under its lock, save; returns the key id it served."""
    pool = go_load(sandbox)
    keys = pool["api_keys"]
    cursor = (pool.get("key_cursor", 0) + 1) % len(keys)
    pool["key_cursor"], pool["current_key"] = cursor, keys[cursor]["id"]
    go_save(sandbox, pool)
    return keys[cursor]["id"]


def key_id(secret: str) -> str:
    return next(k for k, v in KEYS.items() if v == secret.strip())


def relogin(sandbox, email: str) -> None:  # type: ignore[no-untyped-def]
    """/login again as `email`: new tokens in Claude Code's store (the pool's copy is now old)."""
    old = sandbox.fake.account(email).refresh_token
    r = httpx.post(sandbox.fake.token_url, json={"grant_type": "refresh_token", "refresh_token": old,
                                                 "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"})
    assert r.status_code == 200
    sandbox.login(email)


# ---------------------------------------------------------------------------------------------
# status and statusline after a Go write
# ---------------------------------------------------------------------------------------------

def test_a_go_write_within_the_same_second_is_seen_by_status_and_statusline(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    sandbox.seed(ALICE, BOB, current="bob")
    sandbox.ok("switch", "alice")                         # our save: status.json says alice
    assert sandbox.status()["name"] == "alice"
    ours = sandbox.pool_path.stat()
    status_mtime = sandbox.status_path.stat().st_mtime_ns

    pool = go_load(sandbox)                               # Go `switch bob`, in the same second
    pool["current"] = "bob"
    go_save(sandbox, pool)
    os.utime(sandbox.pool_path, ns=(ours.st_atime_ns, status_mtime))   # not even 1 ns newer
    assert sandbox.pool_path.stat().st_mtime_ns <= status_mtime

    assert sandbox.status() == {"mode": "account", "name": "bob"}
    line = sandbox.ok("statusline", "--no-color", input="{}").stdout
    assert line.strip() == "pool: bob"
    assert json.loads(sandbox.status_path.read_text())["name"] == "bob"   # rebuilt: fast again
    assert sandbox.status()["name"] == "bob"

    pool["current"] = "alice"                             # and back, the same way
    go_save(sandbox, pool)
    os.utime(sandbox.pool_path, ns=(ours.st_atime_ns, status_mtime))
    assert sandbox.ok("statusline", "--no-color", input="{}").stdout.strip() == "pool: alice"
    assert sandbox.status()["name"] == "alice"


def test_status_json_names_the_pool_file_it_was_made_from(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    sandbox.ok("key", "add", "--id", "k1", input=KEYS["k1"] + "\n")
    st = sandbox.pool_path.stat()
    summary = json.loads(sandbox.status_path.read_text())
    assert summary["pool"] == [st.st_size, st.st_mtime_ns, st.st_ino]
    assert summary["name"] == "alice"
    assert set(sandbox.status()) == {"mode", "name"}       # the identity is not printed


# ---------------------------------------------------------------------------------------------
# the key cursor, the Go meaning
# ---------------------------------------------------------------------------------------------

def go_apikey_pool(sandbox, **extra) -> dict:  # type: ignore[no-untyped-def]
    """A pool the Go tool put in API-key mode: cursor 0 (omitted), k2 announced as current_key."""
    sandbox.fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    pool = {"mode": "apikey", "current": "alice", "current_key": "k2",
            "accounts": [sandbox.account_entry(ALICE)],
            "api_keys": [{"id": k, "key": v} for k, v in KEYS.items()], **extra}
    go_save(sandbox, pool)
    sandbox.write_creds(pool["accounts"][0]["blob"])
    sandbox.write_settings({"apiKeyHelper": "/usr/local/bin/claude-pool helper"})   # as the Go tool leaves it
    return pool


def test_the_helper_on_a_go_api_key_pool_serves_current_key_first_and_advances_the_go_way(sandbox):
    go_apikey_pool(sandbox)
    assert "key_cursor" not in go_load(sandbox)
    served, cursors = [], []
    for _ in range(4):
        proc = sandbox.run("helper", env=NO_RECONCILE)
        assert proc.returncode == 0, proc.stderr
        served.append(key_id(proc.stdout))
        pool = go_load(sandbox)
        cursors.append(pool.get("key_cursor"))
        assert pool["current_key"] == served[-1]
    assert served == ["k2", "k3", "k1", "k2"]
    assert cursors == [1, 2, None, 1], "key_cursor is the index last served; 0 is left out"
    assert sandbox.status()["name"] == "k2"


def test_our_helper_and_the_go_helper_taking_turns_serve_each_key_once_a_round(sandbox):
    go_apikey_pool(sandbox)
    served = []
    for turn in range(6):
        if turn % 2 == 0:
            proc = sandbox.run("helper", env=NO_RECONCILE)
            assert proc.returncode == 0, proc.stderr
            served.append(key_id(proc.stdout))
        else:
            served.append(go_helper(sandbox))
    assert served == ["k2", "k3", "k1", "k2", "k3", "k1"]
    assert sandbox.status()["name"] == "k1"            # after a Go write: rebuilt, right


def test_entering_api_key_mode_announces_the_key_the_helper_then_serves(sandbox):
    sandbox.fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    sandbox.seed(ALICE, keys=KEYS, key_cursor=1)       # k2 was served last time
    proc = sandbox.run("reconcile", "--live", env={"CLAUDE_POOL_WAKE": "0"})
    assert proc.returncode == 0, proc.stderr
    pool = go_load(sandbox)
    assert (pool["mode"], pool["current_key"], pool.get("key_cursor")) == ("apikey", "k3", 1)
    assert sandbox.status()["name"] == "k3"
    proc = sandbox.run("helper", env=NO_RECONCILE)
    assert key_id(proc.stdout) == "k3"
    assert go_load(sandbox)["key_cursor"] == 2
    # a key chosen by hand is the one served next
    sandbox.ok("switch", "k1")
    assert key_id(sandbox.run("helper", env=NO_RECONCILE).stdout) == "k1"
    assert go_load(sandbox).get("key_cursor") is None    # index 0: omitted, as Go omits it


def test_removing_a_key_keeps_the_rotation_going(sandbox):
    go_apikey_pool(sandbox)
    assert key_id(sandbox.run("helper", env=NO_RECONCILE).stdout) == "k2"     # cursor 1
    sandbox.ok("rm", "k1")                       # an earlier key: the next one is still k3
    assert key_id(sandbox.run("helper", env=NO_RECONCILE).stdout) == "k3"
    sandbox.ok("rm", "k3")                       # the current key: the next one takes over
    pool = go_load(sandbox)
    assert [k["id"] for k in pool["api_keys"]] == ["k2"] and pool["current_key"] == "k2"
    assert key_id(sandbox.run("helper", env=NO_RECONCILE).stdout) == "k2"


# ---------------------------------------------------------------------------------------------
# import --id and key add --id replace an existing NAME
# ---------------------------------------------------------------------------------------------

def test_import_id_updates_the_named_account_when_the_profile_call_fails(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    sandbox.seed(ALICE, BOB, current="bob")
    relogin(sandbox, ALICE)                         # a new login, not matched by its tokens
    dead_api = {"CLAUDE_POOL_API_BASE_URL": "http://127.0.0.1:9"}   # the profile call fails
    proc = sandbox.run("import", "--id", "alice", env=dead_api)
    assert proc.returncode == 0, proc.stderr
    assert "Updated alice" in proc.stdout
    pool = sandbox.pool()
    assert [a["id"] for a in pool["accounts"]] == ["alice", "bob"], "a duplicate was added"
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)
    assert sandbox.pool_account("alice")["email"] == ALICE      # unknown now: kept
    assert pool["current"] == "alice"
    assert sandbox.status()["name"] == "alice"


def test_import_id_updates_the_named_account_and_says_the_email_changed(sandbox):
    for email in (ALICE, BOB, CAROL):
        sandbox.fake.add_account(email)
    sandbox.seed(ALICE, BOB, current="bob")
    sandbox.login(CAROL)
    proc = sandbox.ok("import", "--id", "alice")
    assert "Updated alice" in proc.stdout
    assert f"email changed from {ALICE} to {CAROL}" in proc.stdout
    assert [a["id"] for a in sandbox.pool()["accounts"]] == ["alice", "bob"]
    acc = sandbox.pool_account("alice")
    assert acc["email"] == CAROL and sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(CAROL)
    assert acc["usage_at"] in (None, GO_ZERO)           # alice's old readings are not carol's


def test_import_id_of_a_login_already_stored_under_another_name_is_refused(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    sandbox.seed(ALICE, BOB, current="bob")
    before = sandbox.state()
    line = sandbox.assert_refused(sandbox.run("import", "--id", "alice"), "already in the pool as bob")
    assert "rm bob" in line
    assert sandbox.state() == before


def test_key_add_id_replaces_an_existing_key_and_says_so(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.seed(ALICE)
    sandbox.ok("key", "add", "--id", "k1", input=KEYS["k1"] + "\n")
    proc = sandbox.ok("key", "add", "--id", "k1", input=KEYS["k2"] + "\n")
    assert proc.stdout.startswith("Replaced API key k1")
    assert [(k["id"], k["key"]) for k in sandbox.pool()["api_keys"]] == [("k1", KEYS["k2"])]
    assert KEYS["k2"] not in proc.stdout + proc.stderr
    sandbox.assert_refused(sandbox.run("key", "add", "--id", "alice", input=KEYS["k3"] + "\n"), "account")


# ---------------------------------------------------------------------------------------------
# what a Go write drops
# ---------------------------------------------------------------------------------------------

def test_a_go_write_costs_one_refresh_attempt_for_a_dead_account(sandbox):
    sandbox.fake.add_account(ALICE, five_hour=10)
    sandbox.fake.add_account(BOB, five_hour=20)
    sandbox.seed(ALICE, BOB, current="alice")
    sandbox.fake.revoke(BOB)
    sandbox.fake.expire_access_token(BOB)           # the next poll must refresh: invalid_grant
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool_account("bob")["needs_relogin"] is True
    assert sandbox.fake.account(BOB).invalid_grants == 1

    go_save(sandbox, go_load(sandbox))              # a Go `list`: needs_relogin is gone
    assert "needs_relogin" not in go_load(sandbox)["accounts"][1]
    sandbox.ok("reconcile", "--live")
    sandbox.ok("list")                              # polls every account again
    assert sandbox.fake.account(BOB).invalid_grants == 2, "more than one attempt after a Go write"
    assert sandbox.pool_account("bob")["needs_relogin"] is True
    assert sandbox.fake.account(ALICE).invalid_grants == 0


# ---------------------------------------------------------------------------------------------
# expiresAt as integer milliseconds; list percentages floored
# ---------------------------------------------------------------------------------------------

def test_expires_at_is_normalized_to_integer_ms_and_nothing_else_changes():
    from claude_pool.schema.credentials import normalized_blob, parse_oauth

    mcp = '"mcpOAuth":{"s|1":{"accessToken":"m","expiresAt":1780000000000.0,"note":"caf\u00e9"}}'
    for given in ("4100000000000.0", '"4100000000000"', "4100000000000.7", '"4100000000000.0"', "4.1e12"):
        raw = '{"claudeAiOauth":{"accessToken":"a","expiresAt":%s,"scopes":["x"]},%s}' % (given, mcp)
        out = normalized_blob(raw)
        data = json.loads(out)
        assert data["claudeAiOauth"]["expiresAt"] == 4100000000000 and type(data["claudeAiOauth"]["expiresAt"]) is int
        assert data["mcpOAuth"] == json.loads("{" + mcp + "}")["mcpOAuth"]          # verbatim
        assert isinstance(data["mcpOAuth"]["s|1"]["expiresAt"], float)
        assert list(data) == ["claudeAiOauth", "mcpOAuth"] and list(data["claudeAiOauth"]) == [
            "accessToken", "expiresAt", "scopes"]
        assert parse_oauth(raw).expiresAt == 4100000000000
    for same in ('{"claudeAiOauth":{"accessToken":"a","expiresAt":4100000000000}}',
                 '{"claudeAiOauth": {"accessToken": "a", "expiresAt": null}}',
                 '{"claudeAiOauth":{"accessToken":"a","expiresAt":"soon"}}',
                 '{"claudeAiOauth":{"accessToken":"a","expiresAt":true}}',
                 '{"claudeAiOauth":{"accessToken":"a"}}', "not json", "[1]"):
        assert normalized_blob(same) == same                # untouched, byte for byte


def test_a_float_or_string_expiry_is_stored_and_written_as_integer_ms(sandbox):
    sandbox.fake.add_account(ALICE)
    sandbox.fake.add_account(BOB)
    for email, form in ((ALICE, "{:.1f}"), (BOB, '"{}"')):
        blob = sandbox.fake.credential_blob(email)
        ms = blob["claudeAiOauth"]["expiresAt"]
        text = json.dumps(blob).replace(f'"expiresAt": {ms}', f'"expiresAt": {form.format(ms)}')
        assert text != json.dumps(blob)
        sandbox.write_creds(text)
        sandbox.ok("import")
        stored = go_load(sandbox)["accounts"][-1]["blob"]
        assert f'"expiresAt":{ms},' in stored.replace(" ", ""), "the Go tool reads an int64 here"
        assert json.loads(stored)["claudeAiOauth"] == blob["claudeAiOauth"]
    sandbox.ok("switch", "alice")
    assert type(sandbox.creds()["claudeAiOauth"]["expiresAt"]) is int


def test_list_percentages_are_floored():
    from datetime import datetime, timezone

    from claude_pool.reconciler.render import percent, window
    from claude_pool.schema.pool import UsageWindow

    assert [percent(p) for p in (0, 0.4, 99.5, 99.99, 100, 100.0, 42.0)] == \
        ["0%", "0%", "99%", "99%", "100%", "100%", "42%"]
    assert window(UsageWindow(pct=99.6), datetime.now(timezone.utc)) == "99%"


@pytest.mark.parametrize("n_keys", [1, 3])
def test_status_json_follows_every_helper_call(sandbox, n_keys):
    """After each `helper`, status.json still names the pool file as it is, so `status` answers
    from it (its fast path) instead of decrypting the pool."""
    sandbox.fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    sandbox.seed(ALICE)
    for kid in list(KEYS)[:n_keys]:
        sandbox.ok("key", "add", "--id", kid, input=KEYS[kid] + "\n")
    proc = sandbox.run("reconcile", "--live", env={"CLAUDE_POOL_WAKE": "0"})
    assert proc.returncode == 0, proc.stderr
    for _ in range(4):
        before = sandbox.pool_bytes()
        proc = sandbox.run("helper", env=NO_RECONCILE)
        assert proc.returncode == 0, proc.stderr
        if n_keys == 1:
            assert sandbox.pool_bytes() == before, "one key: nothing moved, the pool is not rewritten"
        st = sandbox.pool_path.stat()
        summary = json.loads(sandbox.status_path.read_text())
        assert summary["pool"] == [st.st_size, st.st_mtime_ns, st.st_ino], "status would take its slow path"
        assert summary["name"] == key_id(proc.stdout) == go_load(sandbox)["current_key"]
