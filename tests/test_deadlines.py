"""Login deadlines (README "Dead logins", docs/ARCHITECTURE.md §3.2): a login ends on the day its
`refreshTokenExpiresAt` says. It is kept through every refresh, shown by `list`, `list --json`, the
statusline and the session start, and a refresh refused past it says "login expired".

The real command, in-process, in a sandboxed HOME against the local fake API (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timezone

import pytest

from claude_pool.reconciler import deadlines
from claude_pool.schema.credentials import refreshed_blob

ALICE, BOB = "alice@example.com", "bob@example.com"
DAY = 86400.0


def import_logins(sandbox, *emails: str) -> None:  # type: ignore[no-untyped-def]
    """/login + import for each; the last one ends up active."""
    for email in emails:
        sandbox.login(email)
        sandbox.ok("import")


def line_of(text: str, account_id: str) -> str:
    return next(line for line in text.splitlines() if f" {account_id} " in line)


def state_dir(sandbox) -> str:  # type: ignore[no-untyped-def]
    return str(sandbox.home / ".local" / "state" / "claude-pool")


def markers(sandbox) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(n for n in os.listdir(state_dir(sandbox)) if n.startswith(deadlines.MARKER_PREFIX))


# ---- the one rule of a refresh ------------------------------------------------------------------

def _blob(**oauth: object) -> str:
    return json.dumps({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r", "expiresAt": 1, **oauth},
                       "mcpOAuth": {"x": 1}})


def _refreshed(raw: str, lifetime: object) -> dict:
    out = refreshed_blob(raw, access_token="a2", refresh_token="r2", expires_in=3600, scope=None,
                         now_ms=1_800_000_000_000, refresh_token_expires_in=lifetime)
    return json.loads(out)


@pytest.mark.parametrize("lifetime", [None, 30 * 86400, 999_999_999, "garbage"])
def test_a_known_deadline_survives_a_refresh_unchanged(lifetime: object) -> None:
    after = _refreshed(_blob(refreshTokenExpiresAt=1_800_100_000_000), lifetime)
    assert after["claudeAiOauth"]["refreshTokenExpiresAt"] == 1_800_100_000_000
    assert after["claudeAiOauth"]["accessToken"] == "a2" and after["mcpOAuth"] == {"x": 1}


def test_a_login_without_a_deadline_gains_the_one_the_answer_states() -> None:
    after = _refreshed(_blob(), 2 * 86400)
    assert after["claudeAiOauth"]["refreshTokenExpiresAt"] == 1_800_000_000_000 + 2 * 86400 * 1000
    # no lifetime in the answer: still unknown (never "now")
    assert "refreshTokenExpiresAt" not in _refreshed(_blob(), None)["claudeAiOauth"]
    for bad in (0, -5, True, float("nan"), "x", [], {}):
        assert "refreshTokenExpiresAt" not in _refreshed(_blob(), bad)["claudeAiOauth"], bad


@pytest.mark.parametrize("stored", [None, 0, "soon", 1_800_000_000, True])
def test_an_unreadable_deadline_is_unknown_and_the_answer_replaces_it(stored: object) -> None:
    raw = _blob(refreshTokenExpiresAt=stored)
    assert deadlines.blob_deadline_ms(raw) is None        # seconds, 0, text, a bool: never a date in 1970
    after = _refreshed(raw, 86400)
    assert after["claudeAiOauth"]["refreshTokenExpiresAt"] == 1_800_000_000_000 + 86400 * 1000
    assert _refreshed(raw, None)["claudeAiOauth"]["refreshTokenExpiresAt"] == stored   # kept as it came


# ---- shown: list, list --json, statusline, session start ----------------------------------------

def test_a_deadline_two_days_out_is_shown_everywhere(sandbox, fake):
    ends = time.time() + 2 * DAY + 1800
    fake.add_account(ALICE, five_hour=10, login_deadline=ends)
    fake.add_account(BOB, five_hour=20)                  # an older login: no deadline stated
    import_logins(sandbox, ALICE, BOB)                   # bob active

    assert sandbox.pool_oauth("alice")["refreshTokenExpiresAt"] == int(ends * 1000)
    listed = sandbox.ok("list").stdout
    assert "login ends in 2d0h" in line_of(listed, "alice"), listed
    assert "login ends" not in line_of(listed, "bob")

    accounts = {a["id"]: a for a in sandbox.list_json()["accounts"]}
    assert datetime.fromisoformat(accounts["alice"]["login_ends"].replace("Z", "+00:00")) == \
        datetime.fromtimestamp(int(ends * 1000) / 1000, tz=timezone.utc)
    assert accounts["bob"]["login_ends"] is None         # unknown: null, never "now"

    status = json.loads(sandbox.status_path.read_text())
    assert [e[:2] for e in status["logins_end"]] == [["alice", ALICE]]
    text = sandbox.status_path.read_text()
    for email in (ALICE, BOB):                           # status.json is plaintext: no token in it
        assert sandbox.access(email) not in text and sandbox.refresh_token(email) not in text

    badge = sandbox.ok("statusline", "--no-color", input="{}").stdout
    assert badge == "pool: bob · alice: login ends in 2d0h\n"
    assert "\033[33m" in sandbox.ok("statusline", input="{}").stdout   # in the warning colour

    # told to the user as Claude Code's systemMessage: one JSON object, the only thing on stdout
    first = sandbox.run("hook", "session-start", input='{"hook_event_name": "SessionStart"}')
    assert first.returncode == 0 and first.stdout.count("\n") == 1, (first.stdout, first.stderr)
    told = json.loads(first.stdout)
    assert list(told) == ["systemMessage"], told
    notice = [told["systemMessage"]]
    assert "alice (alice@example.com) login ends in 2d0h" in notice[0] and "login" not in first.stderr, told
    assert "/login" in notice[0] and "bob" not in notice[0]
    assert markers(sandbox) == [deadlines.MARKER_PREFIX + time.strftime("%Y-%m-%d")]

    # at most once a day: the next session start says nothing
    again = sandbox.run("hook", "session-start", input="{}")
    assert (again.returncode, again.stdout) == (0, "") and "login" not in again.stderr, again.stderr
    # the next day it does again (yesterday's marker is replaced)
    os.rename(os.path.join(state_dir(sandbox), markers(sandbox)[0]),
              os.path.join(state_dir(sandbox), deadlines.MARKER_PREFIX + "2000-01-01"))
    next_day = sandbox.run("hook", "session-start", input="{}", subprocess=True)   # a real stdout
    assert next_day.returncode == 0, next_day.stderr
    assert "alice (alice@example.com) login ends in" in json.loads(next_day.stdout)["systemMessage"]
    assert markers(sandbox) == [deadlines.MARKER_PREFIX + time.strftime("%Y-%m-%d")]


def test_a_far_or_unknown_deadline_is_listed_but_never_flagged(sandbox, fake):
    fake.add_account(ALICE, five_hour=10, login_deadline=time.time() + 20 * DAY + 1800)
    fake.add_account(BOB, five_hour=20)
    import_logins(sandbox, ALICE, BOB)

    assert "login ends in 20d0h" in line_of(sandbox.ok("list").stdout, "alice")   # listed whenever known
    assert sandbox.ok("statusline", "--no-color", input="{}").stdout == "pool: bob\n"
    start = sandbox.run("hook", "session-start", input="{}")
    assert (start.returncode, start.stdout) == (0, "") and "login" not in start.stderr, start.stderr
    assert markers(sandbox) == []                        # nothing said: nothing claimed for today


# ---- kept by a refresh ----------------------------------------------------------------------------

def test_a_refresh_keeps_the_deadline_even_when_the_server_states_a_later_one(sandbox, fake):
    ends = time.time() + 2 * DAY
    fake.add_account(ALICE, five_hour=10, login_deadline=ends)
    fake.add_account(BOB, five_hour=20, login_deadline=ends + DAY)
    import_logins(sandbox, BOB, ALICE)                   # alice active: Claude Code holds her login
    fake.set_usage(ALICE, login_deadline=ends + 28 * DAY)   # the next answer states 30 days
    fake.set_usage(BOB, login_deadline=ends + 28 * DAY)
    fake.expire_access_token(ALICE)
    fake.expire_access_token(BOB)

    sandbox.ok("reconcile", "--live")
    assert (fake.account(ALICE).refreshes, fake.account(BOB).refreshes) == (1, 1)
    assert sandbox.pool_oauth("alice")["refreshToken"] == sandbox.refresh_token(ALICE)   # it was refreshed
    assert sandbox.pool_oauth("alice")["refreshTokenExpiresAt"] == int(ends * 1000)      # not extended
    assert sandbox.pool_oauth("bob")["refreshTokenExpiresAt"] == int((ends + DAY) * 1000)
    held = sandbox.creds()["claudeAiOauth"]                                               # and in Claude Code's store
    assert (held["refreshToken"], held["refreshTokenExpiresAt"]) == (sandbox.refresh_token(ALICE), int(ends * 1000))
    assert "login ends in 1d23h" in line_of(sandbox.ok("list").stdout, "alice")


def test_a_login_without_a_deadline_gains_it_from_the_token_answer(sandbox, fake):
    fake.add_account(ALICE, five_hour=10)
    import_logins(sandbox, ALICE)
    assert "refreshTokenExpiresAt" not in sandbox.pool_oauth("alice")
    ends = time.time() + 5 * DAY
    fake.set_usage(ALICE, login_deadline=ends)           # the server now states the login's lifetime
    fake.expire_access_token(ALICE)

    sandbox.ok("reconcile", "--live")
    assert fake.account(ALICE).refreshes == 1
    got = sandbox.pool_oauth("alice")["refreshTokenExpiresAt"]
    assert abs(got - ends * 1000) < 5000, (got, ends)
    assert sandbox.creds()["claudeAiOauth"]["refreshTokenExpiresAt"] == got
    assert sandbox.list_json()["accounts"][0]["login_ends"] is not None


# ---- refused past the deadline ------------------------------------------------------------------

def test_a_refresh_refused_past_the_deadline_says_login_expired(sandbox, fake):
    ended = time.time() - 3600
    fake.add_account(ALICE, five_hour=5, login_deadline=ended)
    fake.add_account(BOB, five_hour=50, login_deadline=time.time() + 10 * DAY)
    import_logins(sandbox, BOB)
    sandbox.login(ALICE, expires_at_ms=int((time.time() - 60) * 1000))   # its access token is spent too
    sandbox.ok("import")
    fake.revoke(BOB)                                     # bob's token dies before his deadline
    fake.expire_access_token(BOB)

    out = sandbox.ok("reconcile", "--live")
    assert fake.account(ALICE).invalid_grants == 1       # the fake refuses a login past its deadline
    date = time.strftime("%Y-%m-%d", time.gmtime(int(ended * 1000) / 1000))
    expired = f"login expired on {date}: /login as {ALICE}, then claude-pool import"
    assert expired in out.stderr, out.stderr

    listed = sandbox.ok("list").stdout
    assert expired in line_of(listed, "alice") and "needs re-login" not in line_of(listed, "alice")
    assert "needs re-login" in line_of(listed, "bob")    # refused before its deadline: the usual words
    assert "login expired" not in line_of(listed, "bob")
    accounts = {a["id"]: a for a in sandbox.list_json()["accounts"]}
    assert accounts["alice"]["needs_relogin"] is True and accounts["alice"]["relogin_reason"] == expired
    assert "login expired" not in accounts["bob"]["relogin_reason"]
    events = [e for e in sandbox.audit() if e.get("event") == "needs_relogin" and e.get("target") == "alice"]
    assert events and events[-1]["reason"] == expired

    assert sandbox.ok("statusline", "--no-color", input="{}").stdout.endswith("· alice: login expired\n")
    start = sandbox.run("hook", "session-start", input="{}")
    assert f"alice ({ALICE}) login expired on {date}" in json.loads(start.stdout)["systemMessage"], start.stderr


# ---- the notice itself ----------------------------------------------------------------------------

def test_the_session_notice_is_once_a_day_and_never_raises(tmp_path, monkeypatch):
    pool_dir, state = tmp_path / "pool", tmp_path / "state"
    monkeypatch.setenv("CLAUDE_POOL_CONFIG_DIR", str(pool_dir))
    monkeypatch.setenv("CLAUDE_POOL_STATE_DIR", str(state))
    from claude_pool.providers import sidecars

    now = 1_900_000_000.0
    pool_dir.mkdir()
    (pool_dir / "pool.json").write_bytes(b"CPL1...")
    identity = sidecars.current_identity(str(pool_dir / "pool.json"))
    sidecars.write_status({"mode": "account", "name": "a", "logins_end": [
        ["a", "a@x.com", now + 5 * DAY], ["b", "b@x.com", now + DAY], ["c", "c@x.com", now - DAY],
        ["bad"], "junk", ["d", None, "soon"]]}, identity, str(pool_dir / "status.json"))

    out = io.StringIO()
    assert deadlines.session_notice(now, out) is True
    line = out.getvalue()
    assert line.count("\n") == 1 and line.index("c (c@x.com) login expired on") < line.index("b (b@x.com) login ends in 1d0h")
    assert "a@x.com" not in line                          # 5 days out: not yet
    assert deadlines.session_notice(now + 60, out) is False and out.getvalue() == line
    assert deadlines.session_notice(now + DAY, out) is True

    # whatever is broken, it says nothing and raises nothing
    (pool_dir / "status.json").write_text("{not json")
    assert deadlines.session_notice(now + 2 * DAY, out) is False
    monkeypatch.setenv("CLAUDE_POOL_STATE_DIR", str(pool_dir / "pool.json" / "x"))   # cannot be a directory
    sidecars.write_status({"mode": "account", "logins_end": [["b", "b@x.com", now]]}, identity,
                          str(pool_dir / "status.json"))
    assert deadlines.session_notice(now + 3 * DAY, out) is False
