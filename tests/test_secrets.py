"""No token, refresh token or API key ever reaches stdout, stderr, the audit log or a saved plan
(docs/ARCHITECTURE.md §7, §9), and every secret-bearing file has private permissions.

The test plants known secrets (the fake's credential blobs, API keys, a foreign apiKeyHelper
that embeds a key), runs a whole scenario through the installed command, including refreshes
that make the fake mint new tokens and a few failures, then searches everything it captured.
"""

from __future__ import annotations

import json
import secrets
import stat
import time

import pytest

ALICE, BOB = "alice@example.com", "bob@example.com"


def minted_secrets(fake) -> set[str]:  # type: ignore[no-untyped-def]
    """Every token the fake ever issued or was shown."""
    found: set[str] = set()
    for acc in fake.accounts():
        found |= {acc.access_token, acc.refresh_token}
        found |= acc.previous_access_tokens | acc.previous_refresh_tokens
    for rec in fake.requests:
        if rec.get("token"):
            found.add(rec["token"])
        body = rec.get("body")
        if isinstance(body, dict) and isinstance(body.get("refresh_token"), str):
            found.add(body["refresh_token"])
    return {s for s in found if s}


@pytest.mark.slow
def test_no_secret_reaches_any_output_log_or_plan(sandbox, fake, tmp_path):
    key_stdin = "sk-ant-api03-" + secrets.token_urlsafe(40)
    key_arg = "plainkey" + secrets.token_hex(20)          # not shaped like an Anthropic key at all
    helper_key = "sk-ant-api03-" + secrets.token_urlsafe(40)
    foreign_helper = f"echo {helper_key}"
    planted = {key_stdin, key_arg, helper_key}

    fake.add_account(ALICE, five_hour=20)
    fake.add_account(BOB, five_hour=60)
    first_blobs = []
    # alice's stored access token is already expired: the first live poll refreshes it
    first_blobs.append(sandbox.login(ALICE, expires_at_ms=int((time.time() - 600) * 1000)))
    sandbox.ok("import")
    first_blobs.append(sandbox.login(BOB))
    sandbox.ok("import")
    for blob in first_blobs:
        planted |= {blob["claudeAiOauth"]["accessToken"], blob["claudeAiOauth"]["refreshToken"]}
    sandbox.ok("key", "add", "--id", "k-stdin", input=key_stdin + "\n")
    sandbox.ok("key", "add", "--id", "k-arg", key_arg)
    sandbox.write_settings({"model": "opus", "apiKeyHelper": foreign_helper})

    plan_files = [tmp_path / "one.plan.json", tmp_path / "two.plan.json"]
    sandbox.ok("plan", "--json")
    assert fake.account(ALICE).refreshes == 1              # a token was minted and stored
    sandbox.ok("plan", "--out", str(plan_files[0]))
    sandbox.ok("apply", "--json")
    sandbox.ok("list")
    sandbox.ok("list", "--json")

    # fallback: every account exhausted (no known reset, so every run re-polls)
    fake.set_usage(ALICE, five_hour=100, five_hour_resets_at=None)
    fake.set_usage(BOB, five_hour=100, five_hour_resets_at=None)
    sandbox.ok("apply")
    assert sandbox.pool()["mode"] == "apikey"
    sandbox.ok("status")
    sandbox.ok("list")
    sandbox.run("plan", env={"CLAUDE_POOL_LOG_LEVEL": "debug"})

    # failures: a stale saved plan, an unknown id, a throttled poll, a dead refresh token
    sandbox.assert_refused(sandbox.run("apply", str(plan_files[0])), "stale")
    sandbox.assert_refused(sandbox.run("switch", "nobody"))
    sandbox.assert_refused(sandbox.run("key", "add", "--id", "k-dup", input=key_stdin))
    fake.set_usage(BOB, usage_mode="429")
    sandbox.run("plan")
    fake.expire_access_token(ALICE)
    fake.revoke(ALICE)
    sandbox.run("reconcile", env={"CLAUDE_POOL_LOG_LEVEL": "debug"})

    # recovery, once the usage endpoint's backoff on bob (its 429's retry-after: a minute) has passed
    pool = sandbox.pool()
    for acc in pool["accounts"]:
        acc["usage_backoff"] = None
    sandbox.write_pool(pool)
    fake.set_usage(BOB, usage_mode="ok", five_hour=10, five_hour_resets_at=time.time() + 3600)
    sandbox.ok("apply")
    assert sandbox.pool()["mode"] == "account"
    assert sandbox.settings()["apiKeyHelper"] == foreign_helper
    sandbox.ok("plan", "--json", "--out", str(plan_files[1]))
    sandbox.ok("list")
    sandbox.ok("status")

    all_secrets = planted | minted_secrets(fake)
    assert len(all_secrets) >= 9                          # 3 keys, 2 logins, 1 refresh (2 tokens)
    # the secrets are real: the pool holds them (so a leak would have something to leak)
    pool_text = json.dumps(sandbox.pool())
    assert key_stdin in pool_text and key_arg in pool_text
    assert fake.account(BOB).refresh_token in pool_text

    places = {f"claude-pool {' '.join(args)}: {name}": text
              for args, out, err in sandbox.transcript for name, text in (("stdout", out), ("stderr", err))}
    audit_files = sorted(sandbox.audit_path.parent.glob("audit.jsonl*"))
    assert audit_files
    places.update({str(p): p.read_text() for p in audit_files})
    places.update({str(p): p.read_text() for p in plan_files})
    places[str(sandbox.status_path)] = sandbox.status_path.read_text()
    leaks = [(where, secret[:12] + "…") for where, text in places.items() for secret in all_secrets
             if secret in text]
    assert leaks == []
    # not even a long prefix of a secret (a truncation is still a leak)
    for secret in all_secrets:
        prefix = secret[:24]
        assert not any(prefix in text for text in places.values()), f"a prefix of {secret[:12]}… leaked"

    # the audit log: JSON lines, private, one event per applied action with the fields docs/ARCHITECTURE.md §9 names
    events = sandbox.audit()
    assert len(events) == len(sandbox.audit_text().splitlines())
    assert all(isinstance(e, dict) for e in events)
    applied = [e for e in events if e.get("event") == "apply" or e.get("action") == "write_credential"]
    assert applied
    for event in applied:
        for field in ("time", "run_id", "trigger", "action", "target", "reason", "result"):
            assert field in event, (field, event)
    assert stat.S_IMODE(sandbox.audit_path.stat().st_mode) == 0o600


def test_files_holding_secrets_are_private(sandbox, fake):
    fake.add_account(ALICE)
    sandbox.login(ALICE)
    sandbox.ok("import")
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-" + secrets.token_urlsafe(40))
    fake.add_account(BOB, five_hour=0)
    fake.set_usage(ALICE, five_hour=50)
    sandbox.login(BOB)
    sandbox.ok("import")
    sandbox.ok("switch", "alice")                          # the store is rewritten by claude-pool

    assert stat.S_IMODE(sandbox.pool_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sandbox.pool_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(sandbox.creds_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sandbox.audit_path.stat().st_mode) == 0o600
    lock = sandbox.pool_path.with_name("pool.json.lock")
    if lock.exists():
        assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0
    assert sandbox.pool_path.read_bytes()[:4] == b"CPL1"
    assert b"sk-ant" not in sandbox.pool_path.read_bytes()
    # no temp file is left behind next to a secret
    leftovers = [p.name for d in (sandbox.pool_dir, sandbox.claude_dir) for p in d.iterdir()
                 if "tmp" in p.name]
    assert leftovers == []
