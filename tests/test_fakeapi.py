"""Tests for the fake Anthropic server (real HTTP over loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from fakeapi import FakeAccount, FakeAnthropic

BETA = {"anthropic-beta": "oauth-2025-04-20"}
MSG_BODY = {"model": "claude-test-1", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake):
    with httpx.Client(base_url=fake.base_url, timeout=5.0) as c:
        yield c


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", **BETA}


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# ------------------------------------------------------------------ basics

def test_account_defaults_and_blob(fake):
    acct = fake.add_account("a@example.com", five_hour=12.5)
    assert isinstance(acct, FakeAccount)
    assert acct.access_token.startswith("sk-ant-oat01-")
    assert acct.refresh_token.startswith("sk-ant-ort01-")
    assert acct.five_hour_resets_at > time.time() + 2 * 3600
    assert acct.seven_day_resets_at > time.time() + 3 * 86400
    assert not acct.exhausted()
    assert acct.access_token not in repr(acct)
    assert fake.account("a@example.com") is acct
    assert fake.token_url == fake.base_url + "/v1/oauth/token"

    blob = fake.credential_blob("a@example.com")["claudeAiOauth"]
    assert blob["accessToken"] == acct.access_token
    assert blob["refreshToken"] == acct.refresh_token
    assert abs(blob["expiresAt"] - (time.time() + 8 * 3600) * 1000) < 60_000
    assert blob["scopes"] == ["user:inference", "user:profile", "user:sessions:claude_code"]
    assert blob["subscriptionType"] == "max"
    assert blob["rateLimitTier"] == "default_claude_max_20x"
    assert fake.credential_blob("a@example.com", expires_at_ms=5)["claudeAiOauth"]["expiresAt"] == 5


def test_root_and_404(client):
    assert client.get("/").json() == {}
    head = client.head("/")
    assert head.status_code == 200 and head.content == b""
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["type"] == "error"


def test_count_tokens(client):
    r = client.post("/v1/messages/count_tokens", json=MSG_BODY)
    assert r.json() == {"input_tokens": 10}


# ------------------------------------------------------------------- usage

def test_usage_ok(fake, client):
    acct = fake.add_account("a@example.com", five_hour=42.0, seven_day=7.0)
    r = client.get("/api/oauth/usage", headers=bearer(acct.access_token))
    assert r.status_code == 200
    data = r.json()
    assert data["five_hour"]["utilization"] == 42.0
    assert data["seven_day"]["utilization"] == 7.0
    assert data["five_hour"]["resets_at"].endswith("+00:00")
    assert data["seven_day_opus"] is None
    assert data["seven_day_sonnet"] == {"utilization": 1.0, "resets_at": None}
    assert data["extra_usage"]["is_enabled"] is False
    assert fake.count("/api/oauth/usage") == 1
    rec = fake.requests[-1]
    assert rec["auth_kind"] == "bearer" and rec["email"] == "a@example.com" and rec["token"] == acct.access_token


def test_usage_null_reset(fake, client):
    acct = fake.add_account("a@example.com", five_hour_resets_at=None)
    assert client.get("/api/oauth/usage", headers=bearer(acct.access_token)).json()["five_hour"]["resets_at"] is None


def test_usage_unknown_token(fake, client):
    fake.add_account("a@example.com")
    for headers in (bearer("sk-ant-oat01-bogus"), {}):
        r = client.get("/api/oauth/usage", headers=headers)
        assert r.status_code == 401
        assert r.json() == {"type": "error", "error": {"type": "authentication_error",
                                                       "message": "Invalid bearer token"}}


def test_usage_limits_shape(fake, client):
    acct = fake.add_account("a@example.com", five_hour=30, seven_day=60, usage_mode="limits")
    limits = client.get("/api/oauth/usage", headers=bearer(acct.access_token)).json()["limits"]
    assert [item["kind"] for item in limits] == ["session", "weekly_all", "weekly_scoped"]
    assert limits[0]["percent"] == 30 and limits[1]["percent"] == 60
    assert limits[2]["scope"] == "opus"


@pytest.mark.parametrize("mode, status, check", [
    ("429", 429, lambda r: r.headers["retry-after"] == "60" and r.json()["error"]["type"] == "rate_limit_error"),
    ("500", 500, lambda r: r.json() == {"type": "error", "error": {"type": "api_error",
                                                                   "message": "Internal server error"}}),
    ("garbage", 200, lambda r: r.text == "not json at all {{{"),
    ("html", 200, lambda r: r.headers["content-type"].startswith("text/html") and "<html" in r.text),
    ("empty", 200, lambda r: r.json() == {}),
    ("nulls", 200, lambda r: r.json() == {"five_hour": None, "seven_day": None}),
])
def test_usage_modes(fake, client, mode, status, check):
    acct = fake.add_account("a@example.com", usage_mode=mode)
    r = client.get("/api/oauth/usage", headers=bearer(acct.access_token))
    assert r.status_code == status
    assert check(r)
    # keep-alive: the same connection still works afterwards
    assert client.get("/").status_code == 200


def test_usage_delay():
    with FakeAnthropic(usage_delay=0.3) as fake, httpx.Client(base_url=fake.base_url) as c:
        acct = fake.add_account("a@example.com")
        t0 = time.monotonic()
        assert c.get("/api/oauth/usage", headers=bearer(acct.access_token)).status_code == 200
        assert time.monotonic() - t0 >= 0.3


def test_require_oauth_beta():
    with FakeAnthropic(require_oauth_beta=True) as fake, httpx.Client(base_url=fake.base_url) as c:
        acct = fake.add_account("a@example.com")
        no_beta = {"Authorization": f"Bearer {acct.access_token}"}
        assert c.get("/api/oauth/usage", headers=no_beta).status_code == 401
        assert c.get("/api/oauth/usage", headers=bearer(acct.access_token)).status_code == 200


def test_stop_during_timeout_request_is_fast():
    fake = FakeAnthropic().start()
    acct = fake.add_account("a@example.com", usage_mode="timeout")
    outcome = {}

    def call():
        try:
            httpx.get(fake.base_url + "/api/oauth/usage", headers=bearer(acct.access_token), timeout=10)
            outcome["result"] = "response"
        except httpx.HTTPError as exc:
            outcome["result"] = type(exc).__name__

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 2
    while fake.count("/api/oauth/usage") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 1.5
    t.join(2)
    assert not t.is_alive()
    assert outcome["result"] != "response"


# ----------------------------------------------------------------- profile

def test_profile(fake, client):
    acct = fake.add_account("jane.doe@example.com")
    r = client.get("/api/oauth/profile", headers=bearer(acct.access_token))
    assert r.status_code == 200
    data = r.json()
    assert data["account"]["uuid"] == acct.uuid
    assert data["account"]["email_address"] == "jane.doe@example.com"
    assert data["account"]["full_name"] and data["account"]["display_name"]
    assert data["organization"]["organization_type"] == "claude_max"
    assert data["organization"]["uuid"] and data["organization"]["name"]
    assert client.get("/api/oauth/profile", headers=bearer("nope")).status_code == 401


# ----------------------------------------------------------------- refresh

def test_refresh_rotation(fake, client):
    acct = fake.add_account("a@example.com", five_hour=5)
    old_access, old_refresh = acct.access_token, acct.refresh_token
    body = {"grant_type": "refresh_token", "refresh_token": old_refresh, "client_id": "cid"}

    r = client.post("/v1/oauth/token", json=body)
    assert r.status_code == 200
    tok = r.json()
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] == 28800
    assert tok["scope"] == "user:inference user:profile user:sessions:claude_code"
    assert tok["account"] == {"uuid": acct.uuid, "email_address": "a@example.com"}
    assert tok["organization"]["uuid"]
    assert tok["access_token"] != old_access and tok["refresh_token"] != old_refresh
    assert acct.access_token == tok["access_token"] and acct.refresh_token == tok["refresh_token"]

    # new access token works; old one still tolerated
    assert client.get("/api/oauth/usage", headers=bearer(tok["access_token"])).status_code == 200
    assert client.get("/api/oauth/usage", headers=bearer(old_access)).status_code == 200

    # reusing the rotated refresh token fails
    r = client.post("/v1/oauth/token", json=body)
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    assert fake.invalid_grants == 1
    assert acct.invalid_grants == 1
    assert fake.requests[-1]["email"] == "a@example.com"

    # unknown token fails too
    r = client.post("/v1/oauth/token", json={**body, "refresh_token": "sk-ant-ort01-unknown"})
    assert r.json()["error"] == "invalid_grant"
    assert fake.invalid_grants == 2

    # form-encoded with the current token works
    r = client.post("/v1/oauth/token", data={"grant_type": "refresh_token",
                                             "refresh_token": acct.refresh_token, "client_id": "cid"})
    assert r.status_code == 200
    assert acct.refreshes == 2


def test_refresh_revoked_and_bad_requests(fake, client):
    acct = fake.add_account("a@example.com", revoked=True)
    r = client.post("/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": acct.refresh_token})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert fake.invalid_grants == 1

    r = client.post("/v1/oauth/token", json={"refresh_token": acct.refresh_token})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert fake.invalid_grants == 1


def test_expire_access_token(fake, client):
    acct = fake.add_account("a@example.com")
    fake.expire_access_token("a@example.com")
    assert client.get("/api/oauth/usage", headers=bearer(acct.access_token)).status_code == 401
    r = client.post("/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": acct.refresh_token})
    assert client.get("/api/oauth/usage", headers=bearer(r.json()["access_token"])).status_code == 200


# ---------------------------------------------------------------- messages

def test_messages_bearer_account(fake, client):
    acct = fake.add_account("a@example.com", five_hour=25, seven_day=50)
    r = client.post("/v1/messages?beta=true", json=MSG_BODY, headers=bearer(acct.access_token))
    assert r.status_code == 200
    msg = r.json()
    assert msg["id"].startswith("msg_fake")
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["model"] == "claude-test-1"
    assert msg["content"] == [{"type": "text", "text": "ok from fake (a@example.com)"}]
    assert msg["stop_reason"] == "end_turn" and msg["stop_sequence"] is None
    assert msg["usage"]["input_tokens"] > 0 and msg["usage"]["output_tokens"] > 0
    assert r.headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert float(r.headers["anthropic-ratelimit-unified-5h-utilization"]) == pytest.approx(0.25)
    assert float(r.headers["anthropic-ratelimit-unified-7d-utilization"]) == pytest.approx(0.5)
    assert int(r.headers["anthropic-ratelimit-unified-5h-reset"]) == int(acct.five_hour_resets_at)
    assert int(r.headers["anthropic-ratelimit-unified-7d-reset"]) == int(acct.seven_day_resets_at)

    reqs = fake.messages_requests()
    assert len(reqs) == 1
    assert reqs[0]["auth_kind"] == "bearer" and reqs[0]["email"] == "a@example.com"
    assert reqs[0]["path"] == "/v1/messages" and reqs[0]["body"]["model"] == "claude-test-1"


def test_messages_exhausted_account(fake, client):
    acct = fake.add_account("a@example.com", seven_day=100)
    assert acct.exhausted()
    r = client.post("/v1/messages", json=MSG_BODY, headers=bearer(acct.access_token))
    assert r.status_code == 429
    assert r.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert r.headers["retry-after"] == "60"
    assert r.json() == {"type": "error", "error": {"type": "rate_limit_error", "message":
                        "This request would exceed your account's rate limit. Please try again later."}}


def test_messages_api_keys(fake, client):
    fake.add_api_key("sk-ant-api03-good-1234")
    fake.add_api_key("sk-ant-api03-spent-9999", exhausted=True)
    r = client.post("/v1/messages", json=MSG_BODY, headers={"x-api-key": "sk-ant-api03-good-1234"})
    assert r.status_code == 200
    assert "sk-ant-api03-good" not in r.text  # only a short id is echoed
    assert "anthropic-ratelimit-unified-5h-utilization" not in r.headers
    # apiKeyHelper style: key sent as Bearer as well
    r = client.post("/v1/messages", json=MSG_BODY, headers={"Authorization": "Bearer sk-ant-api03-good-1234"})
    assert r.status_code == 200
    r = client.post("/v1/messages", json=MSG_BODY, headers={"x-api-key": "sk-ant-api03-spent-9999"})
    assert r.status_code == 429
    kinds = [(m["auth_kind"], m["token"], m["email"]) for m in fake.messages_requests()]
    assert kinds == [("x-api-key", "sk-ant-api03-good-1234", None),
                     ("bearer", "sk-ant-api03-good-1234", None),
                     ("x-api-key", "sk-ant-api03-spent-9999", None)]


def test_messages_unknown_credential(fake, client):
    r = client.post("/v1/messages", json=MSG_BODY, headers={"x-api-key": "sk-nope"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = client.post("/v1/messages", json=MSG_BODY)
    assert r.status_code == 401


def test_messages_stream(fake, client):
    acct = fake.add_account("a@example.com")
    r = client.post("/v1/messages?beta=true", json={**MSG_BODY, "stream": True},
                    headers=bearer(acct.access_token))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                            "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_fake") and start["model"] == "claude-test-1"
    assert start["usage"]["input_tokens"] > 0
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[2][1]["delta"] == {"type": "text_delta", "text": "ok from fake (a@example.com)"}
    assert events[4][1]["delta"]["stop_reason"] == "end_turn"
    assert events[4][1]["usage"]["output_tokens"] > 0


# ----------------------------------------------------------------- control

def test_control_endpoint(fake, client):
    ctl = "/_fake/control"
    blob = client.post(ctl, json={"op": "add_account", "email": "c@example.com",
                                  "five_hour": 10, "seven_day": 20}).json()
    token = blob["claudeAiOauth"]["accessToken"]
    assert fake.account("c@example.com").access_token == token
    assert client.post(ctl, json={"op": "add_account", "email": "c@example.com"}).status_code == 400

    r = client.post(ctl, json={"op": "set_usage", "email": "c@example.com", "five_hour": 100, "usage_mode": "limits"})
    assert r.status_code == 200 and r.json()["exhausted"] is True
    assert client.post("/v1/messages", json=MSG_BODY, headers=bearer(token)).status_code == 429
    assert client.post(ctl, json={"op": "set_usage", "email": "zz@x", "five_hour": 1}).status_code == 404
    assert client.post(ctl, json={"op": "set_usage", "email": "c@example.com",
                                  "usage_mode": "bogus"}).status_code == 400

    assert client.post(ctl, json={"op": "add_api_key", "key": "sk-ant-api03-ctl-0001"}).status_code == 200
    assert client.post("/v1/messages", json=MSG_BODY,
                       headers={"x-api-key": "sk-ant-api03-ctl-0001"}).status_code == 200
    client.post("/v1/messages", json=MSG_BODY, headers={"x-api-key": "sk-unknown-credential"})

    assert client.post(ctl, json={"op": "revoke", "email": "c@example.com"}).status_code == 200
    refresh = blob["claudeAiOauth"]["refreshToken"]
    assert client.post("/v1/oauth/token", json={"grant_type": "refresh_token",
                                                "refresh_token": refresh}).status_code == 400

    state = client.post(ctl, json={"op": "state"}).json()
    assert state["invalid_grants"] == 1
    (acct,) = state["accounts"]
    assert acct["email"] == "c@example.com" and acct["five_hour"] == 100 and acct["revoked"] is True
    assert acct["messages"] == 1 and acct["invalid_grants"] == 1
    assert state["counts"]["/v1/messages"] == 3
    assert "/_fake/control" not in state["counts"]
    assert [m["email"] for m in state["messages"]] == ["c@example.com", None, None]
    assert all("body" not in m for m in state["messages"])
    assert "sk-unknown-credential" not in json.dumps(state)
    assert client.post(ctl, json={"op": "nope"}).status_code == 400


def test_reset_log(fake, client):
    acct = fake.add_account("a@example.com")
    client.get("/api/oauth/usage", headers=bearer(acct.access_token))
    fake.reset_log()
    assert fake.requests == [] and fake.count("/api/oauth/usage") == 0 and acct.usage_calls == 0


def test_module_main_prints_base_url():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(root / "tests" / "fakeapi.py"), "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        state = httpx.post(base + "/_fake/control", json={"op": "state"}, timeout=5).json()
        assert state["accounts"] == [] and state["counts"] == {}
    finally:
        proc.terminate()
        proc.wait(5)
    assert proc.stderr.read() == ""


# ---- what ships: the demo's fake, without the Messages API ----------------------------------------

# Code that only the Messages API, its stream and the control channel need.
_TEST_ONLY = ("/v1/messages", "text/event-stream", "content_block_delta", "/_fake/control", "add_api_key")


def test_the_demos_fake_answers_only_what_claude_pool_calls():
    from claude_pool import demoapi

    with demoapi.FakeAnthropic() as server, httpx.Client(base_url=server.base_url, timeout=5.0) as c:
        acct = server.add_account("a@example.com", five_hour=40)
        assert c.get("/api/oauth/usage", headers=bearer(acct.access_token)).json()["five_hour"]["utilization"] == 40
        assert c.get("/api/oauth/profile", headers=bearer(acct.access_token)).status_code == 200
        old = acct.refresh_token
        r = c.post("/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": old})
        assert r.status_code == 200 and acct.refresh_token != old  # rotation, as the demo shows
        assert c.post("/v1/messages", json=MSG_BODY, headers=bearer(acct.access_token)).status_code == 404
        assert c.post("/_fake/control", json={"op": "state"}).status_code == 404
        assert not hasattr(server, "add_api_key")
        with pytest.raises(ValueError):
            server.set_usage("a@example.com", refuse={"*": {}})


def _shipped_sources(root: Path) -> dict[str, str]:
    """Every file setuptools puts in the wheel, per pyproject's package mapping (no package data)."""
    import tomllib

    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "package-data" not in config and "include-package-data" not in config, "update this test"
    files = {}
    for package in config["packages"]:
        folder = root / config["package-dir"][package]
        for path in folder.glob("*.py"):
            files[f"{package.replace('.', '/')}/{path.name}"] = path.read_text(encoding="utf-8")
    return files


def test_the_package_ships_no_messages_api():
    root = Path(__file__).resolve().parents[1]
    files = _shipped_sources(root)
    assert "claude_pool/demoapi.py" in files and "claude_pool/reconciler/demo.py" in files
    offenders = {name: [m for m in _TEST_ONLY if m in text] for name, text in files.items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_what_setuptools_builds_ships_no_messages_api(tmp_path):
    """The same, on what setuptools itself puts in the wheel: its build_py step, from a copy of the
    checkout without .venv or build litter (a pure-Python wheel is exactly that tree)."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    src, out = tmp_path / "src", tmp_path / "lib"
    shutil.copytree(root, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".cache", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                           "--build-lib", str(out)], cwd=src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "claude_pool/demoapi.py" in names and "claude_pool/reconciler/demo.py" in names, names
    assert not any("fakeapi" in n or n.startswith("tests/") for n in names), names
    texts = {n: (out / n).read_text(encoding="utf-8") for n in names if n.endswith(".py")}
    assert {n: [m for m in _TEST_ONLY if m in t] for n, t in texts.items() if any(m in t for m in _TEST_ONLY)} == {}
