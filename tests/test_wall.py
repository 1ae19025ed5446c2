"""Never send a prompt into a wall the pool already knows about (issue 16): when status.json's
facts (the held account's reading or block, the statusline's feed) say the held account cannot
take the request, the prompt hook waits (up to 1 s) for the move; otherwise it detaches at once
and never loads the decision module. Mid-turn, the statusline and PostToolUse ask for a
reconcile near a limit, at most once per 15 s per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from claude_pool.providers import turns
from test_ratelimits import ALICE, BOB


def _creds_email(sandbox, fake) -> str:
    token = sandbox.creds()["claudeAiOauth"]["accessToken"]
    return next(a.email for a in fake.accounts() if a.access_token == token)


@pytest.mark.slow
def test_the_prompt_hook_moves_before_the_prompt_when_the_held_account_is_known_out(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")                                   # the pool now knows alice is at 100 %
    assert sandbox.pool()["current"] == "alice"
    # the budget (1 s) is the product's; a loaded test machine may need longer to start Python
    proc = sandbox.run("hook", "prompt-submit", input=json.dumps({"session_id": "s-9", "prompt": "hi"}),
                       env={"CLAUDE_POOL_WALL_BUDGET": "30"})
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    # the moment the hook returns, the prompt goes out: it must go out on bob
    assert _creds_email(sandbox, fake) == BOB
    assert sandbox.pool()["current"] == "bob"


def _probe(sandbox, code: str) -> str:
    env = sandbox.full_env({"PYTHONPATH": os.getcwd()})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_with_nothing_near_a_wall_the_hooks_stay_light(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=30)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")
    code = ("import sys; from claude_pool.reconciler import hooks; w = hooks.known_wall(); "
            "n = hooks.known_wall(near=True); print(w, n, 'claude_pool.reconciler.decision' in sys.modules)")
    assert _probe(sandbox, code) == "False False False"


def test_near_a_limit_the_statusline_asks_for_a_look_once_per_interval(sandbox, fake, tmp_path) -> None:
    fake.add_account(ALICE, five_hour=88, five_hour_resets_at=time.time() + 3600)
    fake.add_account(BOB, five_hour=10)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("list")
    code = ("from claude_pool.reconciler import hooks; hooks.spawn.detached = lambda *a, **k: 0; "
            "print(hooks.nudge('s-1', 't'), hooks.nudge('s-1', 't'), hooks.nudge('s-2', 't'))")
    assert _probe(sandbox, code) == "True False True"


def test_turn_marks_and_intervals(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_POOL_STATE_DIR", str(tmp_path))
    assert turns.started("s-1") is None
    turns.mark("s-1", now=1000.0)
    assert turns.started("s-1") == 1000.0
    turns.mark("../etc/passwd")                           # not a session id: ignored
    assert not (tmp_path / "etc").exists() and sorted(os.listdir(tmp_path / "turns")) == ["s-1"]
    assert turns.due("s-1", 15, now=2000.0) and not turns.due("s-1", 15, now=2010.0) and turns.due("s-1", 15, now=2016.0)



def test_the_hooks_gate_is_the_decisions_near_and_looks_at_percentages_only(tmp_path, monkeypatch) -> None:
    from claude_pool.reconciler import decision, hooks

    assert hooks._GATE_PCT == decision.NEAR
    feed = {"name": "a", "at": 1.8e9, "since": None, "five_hour": {"pct": 40.0, "resets_at": 1.8e9},
            "seven_day": {"pct": 10.0, "resets_at": None}}
    assert not hooks._near(feed, 85.0), "an epoch time is not a percentage"
    assert hooks._near(dict(feed, five_hour={"pct": 90.0, "resets_at": None}), 85.0)
    usage = {"five_hour": {"pct": 0}, "seven_day": {"pct": 0}, "scoped": [{"name": "Opus", "pct": 99}]}
    assert hooks._near(usage, 85.0)
    monkeypatch.setenv("CLAUDE_POOL_CONFIG_DIR", str(tmp_path))
    assert hooks._gate(hooks._threshold()) == 85.0
    (tmp_path / "config.toml").write_text("[policy]\nthreshold = 0.6\n")
    assert hooks._gate(hooks._threshold()) == 60.0, "a lower threshold lowers the gate"


def test_the_statusline_says_when_the_held_account_is_out(sandbox, fake) -> None:
    """Every account out and no key: the pool stays on one, and the badge says it is out and when
    it is back (the later of its windows at 100%), from the pool's reading or from Claude Code's
    own rate limits of this render; an account with room says nothing of the kind."""
    now = time.time()
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=now + 3600)
    fake.add_account(BOB, five_hour=100, five_hour_resets_at=now + 2 * 3600,
                     seven_day=100, seven_day_resets_at=now + 3 * 3600)
    sandbox.seed(ALICE, BOB)
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] in ("alice", "bob") and sandbox.pool()["mode"] == "account"
    held = sandbox.pool()["current"]
    back = {"alice": "59m", "bob": "2h59m"}[held]
    line = sandbox.ok("statusline", "--no-color", input=json.dumps({"session_id": "s"})).stdout
    assert line == f"pool: {held} · out, back in {back}\n", line
    colored = sandbox.ok("statusline", input=json.dumps({"session_id": "s"})).stdout
    assert colored.startswith(f"pool: {held}\x1b[33m · out, back in ")
    # alice's window reset and bob has room again: nothing is out
    fake.set_usage(ALICE, five_hour=5)
    fake.set_usage(BOB, five_hour=5, seven_day=5)
    sandbox.ok("reconcile", "--live")
    quiet = {"five_hour": {"used_percentage": 5, "resets_at": int(now) + 3600}}
    line = sandbox.ok("statusline", "--no-color", input=json.dumps({"rate_limits": quiet})).stdout
    assert line == f"pool: {sandbox.pool()['current']}\n", line
    # Claude Code's own rate limits say the held account hit its weekly limit: the badge says so at once
    full = {"seven_day": {"used_percentage": 100, "resets_at": int(now) + 4 * 3600 + 30}}
    line = sandbox.ok("statusline", "--no-color", input=json.dumps({"rate_limits": full})).stdout
    assert line == f"pool: {sandbox.pool()['current']} · out, back in 4h00m\n", line
    # ... but not in the first 30 s after a switch: those rate limits may be the previous account's
    status = json.loads(sandbox.status_path.read_text())
    status["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    sandbox.status_path.write_text(json.dumps(status))
    line = sandbox.ok("statusline", "--no-color", input=json.dumps({"rate_limits": full})).stdout
    assert line == f"pool: {sandbox.pool()['current']}\n", line


def test_the_statusline_says_when_the_session_bypasses_the_pool(sandbox, fake) -> None:
    """A session whose environment holds ANTHROPIC_AUTH_TOKEN, or an ANTHROPIC_API_KEY the user
    approved at Claude Code's prompt, does not send the pool's credential: the badge says so (the
    variable's name, never its value) and no feed is recorded; an API key the user did not
    approve is not used by an interactive session, so the usual badge stays."""
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE)
    key = "sk-ant-api03-STATUSLINEKEY-" + "w" * 40
    limits = {"five_hour": {"used_percentage": 12, "resets_at": int(time.time()) + 3600}}
    payload = json.dumps({"session_id": "s", "rate_limits": limits})
    claude_json = sandbox.home / ".claude.json"
    claude_json.write_text(json.dumps({"customApiKeyResponses": {"approved": [], "rejected": [key[-20:]]}}))
    line = sandbox.ok("statusline", "--no-color", input=payload, env={"ANTHROPIC_API_KEY": key}).stdout
    assert line == "pool: alice\n", line
    claude_json.write_text(json.dumps({"customApiKeyResponses": {"approved": [key[-20:]], "rejected": []}}))
    if sandbox.feed_path.exists():
        sandbox.feed_path.unlink()
    line = sandbox.ok("statusline", "--no-color", input=payload, env={"ANTHROPIC_API_KEY": key}).stdout
    assert line == "pool: bypassed by ANTHROPIC_API_KEY\n", line
    assert not sandbox.feed_path.exists()   # that session's rate limits are not the account's
    colored = sandbox.ok("statusline", input=payload, env={"ANTHROPIC_AUTH_TOKEN": "gateway-SECRET"}).stdout
    assert colored == "\x1b[33mpool: bypassed by ANTHROPIC_AUTH_TOKEN\x1b[0m\n" and "SECRET" not in colored


def test_status_names_the_variable_a_session_sends_instead_of_the_pools(sandbox, fake) -> None:
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE)
    assert "bypassed_by" not in json.loads(sandbox.ok("status").stdout)
    got = json.loads(sandbox.ok("status", env={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-STATUSSECRET"}).stdout)
    assert got["bypassed_by"] == "CLAUDE_CODE_OAUTH_TOKEN" and got["name"] == "alice"
    assert "STATUSSECRET" not in json.dumps(got)
    # on API keys the pool's helper outranks that login variable: nothing is bypassed
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-WALLKEY-" + "k" * 40)
    sandbox.ok("switch", "k1")
    got = json.loads(sandbox.ok("status", env={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-STATUSSECRET"}).stdout)
    assert got["mode"] == "apikey" and "bypassed_by" not in got
    line = sandbox.ok("statusline", "--no-color", input="{}", env={"CLAUDE_CODE_OAUTH_TOKEN": "x"}).stdout
    assert line.startswith("pool: API key k1"), line
    got = json.loads(sandbox.ok("status", env={"ANTHROPIC_AUTH_TOKEN": "gw"}).stdout)
    assert got["bypassed_by"] == "ANTHROPIC_AUTH_TOKEN"   # that one outranks the helper too


def test_the_example_statusline_script_builds_its_line_from_status(sandbox, fake) -> None:
    """examples/statusline.sh, the README's do-it-yourself statusline: an account, a bypassing
    credential, and API keys with the time until an account is back, each from `claude-pool status`."""
    from conftest import CLAUDE_POOL

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "statusline.sh")
    env = sandbox.full_env({"PATH": f"{os.path.dirname(CLAUDE_POOL)}:/usr/bin:/bin"})

    def line(**extra: str) -> str:
        out = subprocess.run(["sh", script], env={**env, **extra}, input="{}", capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert line() == "pool: empty\n"
    fake.add_account(ALICE, five_hour=10)
    sandbox.seed(ALICE)
    assert line() == "pool: alice\n"
    assert line(ANTHROPIC_AUTH_TOKEN="gateway-SECRET") == "\x1b[33mpool: bypassed by ANTHROPIC_AUTH_TOKEN\x1b[0m\n"
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-EXAMPLEKEY-" + "e" * 40)
    sandbox.ok("switch", "k1")
    assert line().startswith("\x1b[33mpool: API key k1")
