"""Bad input anywhere is refused with one clear line on stderr, exit 1, no traceback, and nothing
is changed: not the pool, not Claude Code's login, not settings.json."""

from __future__ import annotations

import json

import pytest

from claude_pool.providers import crypto

ALICE, BOB = "alice@example.com", "bob@example.com"
KEY1 = "sk-ant-api03-BADINPUTKEY1-0123456789abcdefghijABCDEFGH"
SECRET_IN_POOL = "sk-ant-oat01-SECRETVALUEINAWRONGPLACE-0123456789abcdef"


# ---- a pool file that is not a pool -------------------------------------------------------------

def _encrypted(obj: object) -> bytes:
    return crypto.encrypt(json.dumps(obj).encode(), crypto.derive_key())


# each kind of damage, with the command that meets it (every command reads the pool first)
CORRUPT_POOLS = {
    "garbage bytes": (lambda: b"\x00\x01\x02 this is not a pool \xff\xfe" * 8, ("reconcile",)),
    "truncated CPL1 header": (lambda: b"CPL1" + b"\x07" * 9, ("list", "--json")),
    "truncated encrypted pool": (lambda: _encrypted({"current": "", "accounts": []})[:-7], ("plan",)),
    "encrypted JSON that is not an object": (lambda: _encrypted([{"id": "alice"}]), ("reconcile",)),
    "plaintext JSON that is not an object": (lambda: b'["alice", "bob"]', ("list", "--json")),
    "plaintext JSON that does not parse": (lambda: b'{"current": "alice", "accounts": [', ("import",)),
    "encrypted non-JSON": (lambda: crypto.encrypt(b"\x00not json\xff", crypto.derive_key()), ("list",)),
    "wrong type: accounts is a string": (lambda: _encrypted({"accounts": "alice,bob"}), ("apply",)),
    "wrong type: mode": (lambda: _encrypted({"mode": "turbo", "accounts": []}), ("switch", "alice")),
    "wrong type: usage holds a token": (lambda: _encrypted(
        {"accounts": [{"id": "alice", "blob": "{}", "usage": SECRET_IN_POOL}]}), ("reconcile",)),
    "wrong type: account without id": (
        lambda: json.dumps({"accounts": [{"email": "x@example.com"}]}).encode(), ("rm", "alice")),
}


@pytest.mark.parametrize("kind", list(CORRUPT_POOLS))
def test_a_corrupt_pool_is_refused_and_left_untouched(sandbox, fake, kind):
    fake.add_account(ALICE)
    sandbox.login(ALICE)
    make, command = CORRUPT_POOLS[kind]
    original = sandbox.write_pool(make())
    before = sandbox.snapshot()

    proc = sandbox.run(*command)
    sandbox.assert_refused(proc, "pool")
    assert "SECRETVALUE" not in proc.stderr + proc.stdout
    assert sandbox.snapshot() == before
    assert sandbox.pool_path.read_bytes() == original


def test_a_corrupt_pool_is_not_overwritten_by_a_save(sandbox, fake):
    original = sandbox.write_pool(_encrypted([{"id": "alice"}]))
    sandbox.assert_refused(sandbox.run("key", "add", "--id", "k1", input=KEY1), "pool")
    fake.add_account(ALICE)
    sandbox.login(ALICE)
    sandbox.assert_refused(sandbox.run("import"), "pool")
    assert sandbox.pool_path.read_bytes() == original


# ---- settings.json that is not a JSON object -----------------------------------------------------

@pytest.mark.parametrize("text", ['{ "model": "opus", "env": {', '["apiKeyHelper", "x"]\n'],
                         ids=["not JSON", "a JSON array"])
def test_settings_that_are_not_a_json_object_are_never_rewritten(sandbox, fake, text):
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=None)   # would enter API-key mode
    sandbox.seed(ALICE, keys={"k1": KEY1})
    sandbox.write_settings(text)
    before = sandbox.state()

    for command in ("reconcile", "apply"):
        sandbox.assert_refused(sandbox.run(command), "settings.json")
        assert sandbox.settings_path.read_text() == text
        assert sandbox.state() == before, command
    assert sandbox.pool()["mode"] == "account"


# ---- a credential store that holds no usable login -----------------------------------------------

BAD_CREDENTIALS = {
    "not JSON": "this is not json {",
    "JSON without claudeAiOauth": json.dumps({"mcpOAuth": {"server": {"accessToken": "x"}}}),
    "claudeAiOauth of the wrong type": json.dumps({"claudeAiOauth": "sk-ant-oat01-x"}),
    # what Claude Code leaves after its refresh got invalid_grant
    "blank stub": json.dumps({"claudeAiOauth": {"accessToken": "", "refreshToken": "", "expiresAt": 0,
                                                "scopes": ["user:inference"], "subscriptionType": "max"}}),
}


@pytest.mark.parametrize("kind", list(BAD_CREDENTIALS))
def test_import_of_an_unusable_credential_is_refused(sandbox, fake, kind):
    fake.add_account(BOB)
    sandbox.seed(BOB, login=False)
    sandbox.write_creds(BAD_CREDENTIALS[kind])
    before = sandbox.snapshot()

    sandbox.assert_refused(sandbox.run("import"))
    assert sandbox.snapshot() == before
    assert [a["id"] for a in sandbox.pool()["accounts"]] == ["bob"]


def test_import_with_no_credential_at_all_is_refused(sandbox):
    sandbox.assert_refused(sandbox.run("import"), "login")
    assert not sandbox.pool_path.exists()


def test_a_blank_stub_in_the_store_is_never_adopted_into_the_pool(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=50)
    sandbox.seed(ALICE, BOB, current="alice")
    alice_blob = sandbox.pool_account("alice")["blob"]
    sandbox.write_creds(BAD_CREDENTIALS["blank stub"])

    for command in ("plan", "reconcile"):
        proc = sandbox.run(command)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert sandbox.pool_account("alice")["blob"] == alice_blob


# ---- key add with nothing to add -------------------------------------------------------------

@pytest.mark.parametrize("stdin", ["", " \n\t \n"], ids=["empty stdin", "whitespace"])
def test_key_add_with_an_empty_key_is_refused(sandbox, stdin):
    sandbox.assert_refused(sandbox.run("key", "add", "--id", "k1", input=stdin), "empty")
    assert not sandbox.pool_path.exists()


# ---- ids ---------------------------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "slash": "work/alice",
    "newline": "alice\nbob",
    "control char": "alice\x1b[31m",
    "dot-dot": "..",
    "300 chars": "a" * 300,
}
ID_COMMANDS = {
    "key add --id": lambda bad: (("key", "add", "--id", bad), KEY1 + "\n"),
    "import --id": lambda bad: (("import", "--id", bad), None),
    "switch": lambda bad: (("switch", bad), None),
    "rm": lambda bad: (("rm", bad), None),
}


@pytest.mark.parametrize("command", list(ID_COMMANDS))
@pytest.mark.parametrize("bad", list(BAD_IDS))
def test_bad_ids_are_refused(sandbox, fake, command, bad):
    fake.add_account(ALICE)
    fake.add_account(BOB)
    sandbox.seed(ALICE, keys={"k0": "sk-ant-api03-EXISTINGKEY-0123456789abcdefghij"})
    sandbox.login(BOB)                                   # a login `import` could take
    before = sandbox.snapshot()

    args, stdin = ID_COMMANDS[command](BAD_IDS[bad])
    sandbox.assert_refused(sandbox.run(*args, input=stdin))
    assert sandbox.snapshot() == before


def test_a_config_value_out_of_range_is_named_with_what_it_says_and_never_a_string(sandbox, fake):
    """config.toml's first bad value: where, what is wrong, the number it holds, how many more;
    a string is never repeated (a key pasted into the wrong table stays off the terminal)."""
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE)
    sandbox.write_config(f'[policy]\nthreshold = 2\napi_key = "{KEY1}"\n')
    proc = sandbox.run("plan")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line
    assert "policy.threshold: Input should be less than or equal to 1 (it says 2); and 1 more" in line, line
    assert KEY1 not in proc.stderr + proc.stdout
