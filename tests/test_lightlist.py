"""`list --json` on the light path (reconciler/lightlist.py) prints exactly what the full engine
prints, byte for byte, on every pool where it answers at all; where it cannot be sure it hands
over to the full engine. Hundreds of random pools in this process (the same `now` on both sides),
then the installed command in a subprocess, which must not load pydantic on a steady pool."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from claude_pool.providers import crypto
from claude_pool.reconciler import lightlist
from claude_pool.schema.timefmt import format_time

NOW = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=timezone.utc)
OURS = Path(sys.executable).parent / "claude-pool"     # a program named claude-pool that exists


def _env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith(("ANTHROPIC_", "CLAUDE_", "XDG_")) or k == "CLAUDECODE":
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLAUDE_POOL_WAKE", "0")


def full_engine(now: datetime) -> tuple[int, str]:
    """`claude-pool list --json` through the full engine, in this process, at `now`."""
    from claude_pool.providers import world
    from claude_pool.reconciler import commands

    out, err = io.StringIO(), io.StringIO()
    saved = world.utc_now
    world.utc_now = lambda: now
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = commands.main(["list", "--json"])
    finally:
        world.utc_now = saved
    return code, out.getvalue()


# ---- random pools -------------------------------------------------------------------------------------

def _t(r: random.Random, *, none: float = 0.2) -> object:
    """A time near NOW: past, future, far, the Go zero, null, or (rarely) something else."""
    x = r.random()
    if x < none:
        return None
    if x < none + 0.05:
        return "0001-01-01T00:00:00Z"
    if x < none + 0.06:
        return r.choice(["yesterday", 12, "2026-03-10T12:00:00+02:00", "2026-03-10T11:59:00.123456789Z"])
    return format_time(NOW + timedelta(seconds=r.choice([-1, 1]) * r.choice([5, 90, 200, 3600, 5 * 3600, 86400 * 3])
                                       + r.random()))


def _pct(r: random.Random) -> object:
    x = r.random()
    if x < 0.01:
        return r.choice(["50", True, 1e-05, None])
    return r.choice([0, 10, 49.5, 60, 85, 94.9, 96, 100, 33.333333333333336, r.uniform(0, 100)])


def _window(r: random.Random) -> dict:
    w = {"pct": _pct(r), "resets_at": _t(r)}
    if r.random() < 0.05:
        w["unknown_key"] = r.choice([1, "x", [1.5, {"a": None}], {"é": "\u2028"}])
    return w


def _usage(r: random.Random) -> object:
    if r.random() < 0.05:
        return None
    u: dict = {"five_hour": _window(r), "seven_day": _window(r)}
    if r.random() < 0.3:
        u["scoped"] = [{"name": r.choice(["Opus", "Sonnet"]), "source": "limits", "pct": r.choice([None, 40, 100]),
                        "resets_at": _t(r), "active": r.choice([None, True]), "severity": ""}]
    if r.random() < 0.1:
        u["extra_usage"] = {"enabled": r.random() < 0.5, "pct": r.choice([None, 20.0]), "used": None,
                            "limit": None, "disabled_reason": ""}
    if r.random() < 0.05:
        u["extra_field"] = {"nested": [1, 2.5]}
    return u


def _blob(r: random.Random, name: str) -> str:
    inner: dict = {"accessToken": f"sk-ant-oat01-{name}-{r.randrange(10**6)}",
                   "refreshToken": f"sk-ant-ort01-{name}-{r.randrange(10**6)}",
                   "expiresAt": r.choice([int(NOW.timestamp() * 1000) + 3600_000, 0]),
                   "scopes": ["user:inference"], "subscriptionType": "max"}
    if r.random() < 0.3:
        inner["refreshTokenExpiresAt"] = int(NOW.timestamp() * 1000) + r.choice([-1, 1]) * 86400_000 * 5
    if r.random() < 0.01:
        inner["expiresAt"] = "1770000000000"     # pydantic rewrites this one
    return json.dumps({"claudeAiOauth": inner})


def _identity(email: str, r: random.Random) -> dict:
    return {"accountUuid": f"u-{email}", "emailAddress": email, "organizationUuid": "o2" if r.random() < 0.1 else "o1",
            "displayName": email.split("@")[0]}


def random_world(r: random.Random, home: Path) -> None:
    """Writes a random pool, Claude Code's files and sometimes the statusline's feed under `home`."""
    names = [f"acc{i}" for i in range(r.choice([0, 1, 2, 2, 3, 3, 4]))]
    accounts = []
    for name in names:
        email = f"{name}@example.com"
        acc: dict = {"id": name, "email": email, "blob": _blob(r, name), "usage": _usage(r),
                     "usage_at": _t(r, none=0.25)}
        if r.random() < 0.15:
            acc["needs_relogin"], acc["relogin_reason"] = True, r.choice(["", "login expired on 2026-03-01"])
        if r.random() < 0.1:
            acc["relogin_reason"] = "left over"
        if r.random() < 0.1:
            acc["block"] = {"until": _t(r, none=0.1), "source": "message", "reason": "You've hit your limit",
                            "model": r.choice(["", "", "opus"]), "at": _t(r, none=0.3)}
        if r.random() < 0.15:
            acc["usage_backoff"] = {"until": _t(r, none=0), "delay": r.choice([60, 3600, "x"]),
                                    "at": _t(r, none=0.1), "retry_after": r.choice([None, 0, 3600])}
        if r.random() < 0.1:
            acc["usage_calls"] = [NOW.timestamp() - 30, NOW.timestamp() - 100]
        if r.random() < 0.8:
            acc["oauth_account"] = _identity(email, r)
        if r.random() < 0.1:
            acc["priority"] = r.choice([1, 2, 0, "3"])
        if r.random() < 0.1:
            acc["threshold"] = r.choice([0.5, 0.99, 2, None])
        if r.random() < 0.08:
            acc["paused"] = r.choice([{"at": _t(r), "until": _t(r), "reason": "travel"}, "yes", {"until": 5}])
        if r.random() < 0.01:
            acc["needs_relogin"] = 1    # pydantic's own reading
        accounts.append(acc)
    keys = [{"id": f"key{i}", "key": r.choice([f"sk-ant-api03-{'x' * 40}{i}", "short", ""])}
            for i in range(r.choice([0, 0, 1, 2]))]
    mode = r.choice(["account", "account", "apikey", None])
    current = r.choice(names + ["", "gone"]) if names else r.choice(["", "gone"])
    if names and r.random() < 0.85:
        current = r.choice(names[:2])
    if current in names and r.random() < 0.5:
        # the steady state: the active account has the most room (and other accounts vary)
        mine = next(a for a in accounts if a["id"] == current)
        mine["usage"] = {"five_hour": {"pct": r.choice([5, 20.5]), "resets_at": format_time(NOW + timedelta(hours=2))},
                         "seven_day": {"pct": 10, "resets_at": format_time(NOW + timedelta(hours=30))}}
        mine["usage_at"] = format_time(NOW - timedelta(minutes=r.choice([1, 30])))
    current_key = r.choice([k["id"] for k in keys] + [""]) if keys else ""
    pool: dict = {"mode": mode, "current": current, "current_key": current_key,
                  "key_cursor": r.choice([0, 0, 1]), "saved_api_key_helper": r.choice(["", "", "echo foreign"]),
                  "accounts": accounts, "api_keys": keys}
    if r.random() < 0.05:
        pool["future_field"] = {"kept": True}
    pool_dir = home / ".config" / "claude-pool"
    pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (pool_dir / "pool.json").write_bytes(crypto.encrypt(json.dumps(pool).encode(), crypto.derive_key()))
    claude = home / ".claude"
    claude.mkdir(exist_ok=True)
    # Claude Code's login: the current account's very blob, another's, a foreign one, or none
    by_id = {a["id"]: a for a in accounts}
    x = r.random()
    if x < 0.75 and current in by_id:
        (claude / ".credentials.json").write_text(by_id[current]["blob"])
    elif x < 0.8 and accounts:
        (claude / ".credentials.json").write_text(r.choice(accounts)["blob"])
    elif x < 0.84:
        (claude / ".credentials.json").write_text(_blob(r, "foreign"))
    elif x < 0.86:
        (claude / ".credentials.json").write_text("not json")
    settings: dict | None = r.choice([None, {}, {"model": "opus"}, {"theme": "dark"}])
    y = r.random()
    if y < 0.25:
        settings = dict(settings or {}, apiKeyHelper=f"{OURS} helper")
    elif y < 0.3:
        settings = dict(settings or {}, apiKeyHelper=str(home / "gone" / "claude-pool") + " helper")
    elif y < 0.4:
        settings = dict(settings or {}, apiKeyHelper="echo foreign")
    if settings is not None:
        (claude / "settings.json").write_text(json.dumps(settings))
    shown = r.random()
    if shown < 0.7 and current in by_id:
        (home / ".claude.json").write_text(json.dumps({"oauthAccount": _identity(by_id[current]["email"], r),
                                                       "projects": {}}))
    elif shown < 0.75:
        (home / ".claude.json").write_text(json.dumps({"oauthAccount": _identity("other@example.com", r)}))
    elif shown < 0.8:
        (home / ".claude.json").write_text(json.dumps({"numStartups": 3}))
    if r.random() < 0.1 and current:
        (pool_dir / "usage-feed.json").write_text(json.dumps({
            "name": current, "at": NOW.timestamp() - r.choice([10, 600]), "since": None,
            "five_hour": {"pct": 20, "resets_at": NOW.timestamp() + 3600}}))


@pytest.mark.parametrize("seed,cases", [(19, 150), pytest.param(20, 350, marks=pytest.mark.slow)])
def test_the_light_listing_is_the_full_engines_on_random_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 seed: int, cases: int):
    r = random.Random(seed)
    light_answers = 0
    for i in range(cases):
        home = tmp_path / f"h{i}"
        home.mkdir()
        _env(home, monkeypatch)
        random_world(r, home)
        light = lightlist.render(NOW)
        pool_before = (home / ".config" / "claude-pool" / "pool.json").read_bytes()
        code, full = full_engine(NOW)
        if light is None:
            continue
        light_answers += 1
        assert code == 0, f"case {i}: the light path answered where the full engine failed"
        assert light + "\n" == full, f"case {i}: the light listing differs from the full engine's"
        # the full engine saved nothing either: the light path skipped no learning
        assert (home / ".config" / "claude-pool" / "pool.json").read_bytes() == pool_before, f"case {i}"
    # the light path must answer for a good share of these pools, or it is not a light path
    assert light_answers >= cases // 10, f"the light path answered {light_answers} of {cases} times"


def test_steady_pools_are_answered_light(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The common steady states: account mode on the best account, API-key mode with every account
    exhausted; both with a foreign helper or none, keys masked, a live block, a backoff."""
    _env(tmp_path, monkeypatch)
    until = format_time(NOW + timedelta(hours=2))
    key = "sk-ant-api03-" + "k" * 40
    a = {"id": "a", "email": "a@x", "blob": _blob(random.Random(1), "a"),
         "usage": {"five_hour": {"pct": 10, "resets_at": until}, "seven_day": {"pct": 20, "resets_at": None}},
         "usage_at": format_time(NOW - timedelta(minutes=3)),
         "usage_backoff": {"until": until, "delay": 3600, "at": format_time(NOW), "retry_after": 3600}}
    b = {"id": "b", "email": "b@x", "blob": _blob(random.Random(2), "b"),
         "usage": {"five_hour": {"pct": 100, "resets_at": until}, "seven_day": {"pct": 20, "resets_at": None}},
         "usage_at": format_time(NOW - timedelta(minutes=3)),
         "block": {"until": until, "source": "message", "reason": "limit", "model": "", "at": format_time(NOW)}}
    pool_dir = tmp_path / ".config" / "claude-pool"
    pool_dir.mkdir(parents=True)
    claude = tmp_path / ".claude"
    claude.mkdir()

    def write(pool: dict) -> None:
        (pool_dir / "pool.json").write_bytes(crypto.encrypt(json.dumps(pool).encode(), crypto.derive_key()))

    write({"mode": "account", "current": "a", "accounts": [a, b], "api_keys": [{"id": "k", "key": key}]})
    (claude / ".credentials.json").write_text(a["blob"])
    (claude / "settings.json").write_text(json.dumps({"apiKeyHelper": "echo foreign"}))
    light = lightlist.render(NOW)
    assert light is not None
    assert light + "\n" == full_engine(NOW)[1]
    shown = json.loads(light)
    assert shown["api_keys"][0]["masked"] == "sk-ant-api…kkkk" and key not in light
    assert shown["accounts"][0]["usage_throttled_until"] == until and shown["accounts"][1]["blocked"]["until"] == until

    a["usage"]["five_hour"]["pct"] = 100
    write({"mode": "apikey", "current": "a", "current_key": "k", "accounts": [a, b],
           "api_keys": [{"id": "k", "key": key}]})
    (claude / "settings.json").write_text(json.dumps({"apiKeyHelper": f"{OURS} helper"}))
    light = lightlist.render(NOW)
    assert light is not None
    assert light + "\n" == full_engine(NOW)[1]
    # a change pending (the helper gone from settings.json: back to account mode): the full engine answers
    (claude / "settings.json").write_text("{}")
    assert lightlist.render(NOW) is None
    assert json.loads(full_engine(NOW)[1])["pending_changes"] > 0


def test_every_field_of_the_listing_is_declared():
    """A field added to schema/listing.py must be added to reconciler/lightlist.py (one line)."""
    from claude_pool.schema.listing import AccountView, KeyView, Listing

    assert [f for f, _ in lightlist.ACCOUNT_FIELDS] == list(AccountView.model_fields)
    assert [f for f, _ in lightlist.KEY_FIELDS] == list(KeyView.model_fields)
    assert [f for f, _ in lightlist.LISTING_FIELDS] == list(Listing.model_fields)


PROBE = r"""
import json, os, sys
sys.argv = ["claude-pool", "list", "--json"]
from claude_pool.reconciler.cli import main
code = main()
sys.stdout.flush()
with open(os.environ["PROBE_OUT"], "w") as fh:
    json.dump(sorted({m.split(".")[0] for m in sys.modules}), fh)
os._exit(code)
"""


def test_the_installed_command_answers_light(sandbox, tmp_path: Path):
    """The real command in a subprocess: the same listing as the full engine (but for `now`), and
    neither pydantic nor the engine loaded on a steady pool."""
    sandbox.fake.add_account("a@example.com", five_hour=10, seven_day=20)
    sandbox.fake.add_account("b@example.com", five_hour=50, seven_day=20)
    sandbox.seed("a@example.com", "b@example.com")
    env = dict(sandbox.env, PROBE_OUT=str(tmp_path / "modules.json"))
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads((tmp_path / "modules.json").read_text()))
    assert not loaded & {"pydantic", "httpx", "structlog", "argparse"}, sorted(loaded)
    installed = subprocess.run([sandbox.exe, "list", "--json"], env=sandbox.env, capture_output=True, text=True,
                               timeout=60)
    assert installed.returncode == 0, installed.stderr
    full = subprocess.run([sys.executable, "-c", "import sys; from claude_pool.reconciler import commands; "
                           "sys.exit(commands.main(['list', '--json']))"], env=sandbox.env, capture_output=True,
                          text=True, timeout=60)
    assert full.returncode == 0, full.stderr

    def but_now(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith('  "now": ')]

    assert but_now(proc.stdout) == but_now(full.stdout) == but_now(installed.stdout)
    assert json.loads(proc.stdout)["accounts"][0]["active"] is True
