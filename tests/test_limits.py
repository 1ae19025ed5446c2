"""Parsing every usage window (both shapes) and Claude Code's rate-limit messages. Pure, in memory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from claude_pool.schema.limits import families, parse_refusal, parse_windows, scope_applies
from claude_pool.schema.usage import UsageFormatError, parse_usage

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)

# The shape real answers had in 2026: both shapes at once, nulls, an unknown kind, a scoped
# limit only in limits[] (a new model with no legacy key), percent null, no reset.
REAL = {
    "five_hour": {"utilization": 12, "resets_at": "2026-11-27T17:05:00.123456789Z"},
    "seven_day": {"utilization": 40, "resets_at": "2026-11-30T15:00:00+00:00"},
    "seven_day_opus": {"utilization": 100, "resets_at": "2026-11-30T15:00:00Z"},
    "seven_day_sonnet": None,
    "seven_day_cowork": None,
    "seven_day_oauth_apps": {"utilization": 5, "resets_at": None},
    "extra_usage": {"is_enabled": True, "monthly_limit": 5000, "used_credits": 1000, "utilization": 20},
    "spend": {"used": {"amount": 1000}, "limit": {"amount": 5000}, "percent": 20, "enabled": True,
              "disabled_reason": None},
    "limits": [
        {"kind": "session", "group": "session", "percent": 99, "resets_at": None},
        {"kind": "weekly_scoped", "group": "weekly", "percent": 57, "severity": "normal", "resets_at": None,
         "scope": {"model": {"id": None, "display_name": "Fable"}}, "is_active": False},
        {"kind": "weekly_scoped", "group": "weekly", "percent": None, "severity": "warning",
         "resets_at": "2026-12-01T00:00:00Z", "scope": {"model": {"id": None, "display_name": "Opus"}},
         "is_active": True},
        {"kind": "weekly_scoped", "percent": 3, "scope": {"model": {"display_name": "Haiku"}}},
        {"kind": "inactive_pool", "percent": 80},
        {"kind": "weekly_scoped", "percent": 50},       # no scope: ignored
        "not an object",
        {"kind": "weekly_scoped", "percent": "lots", "scope": {"model": {"display_name": "Mystery"}}},
    ],
}


def test_real_shaped_answer_keeps_every_window() -> None:
    u = parse_usage(REAL)
    assert (u.five_hour.pct, u.seven_day.pct) == (12.0, 40.0)   # the legacy key wins over limits[]
    assert u.five_hour.resets_at == datetime(2026, 11, 27, 17, 5, 0, 123456, tzinfo=timezone.utc)
    scoped = {s.name: s for s in u.scoped}
    assert set(scoped) == {"Fable", "Haiku", "Mystery", "Opus"}     # not oauth_apps / cowork / sonnet (null)
    assert scoped["Opus"].pct == 100.0 and scoped["Opus"].source == "limits"   # limits[] entry, legacy number
    assert scoped["Opus"].active is True and scoped["Opus"].severity == "warning"
    assert scoped["Opus"].resets_at == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert scoped["Fable"].pct == 57.0 and scoped["Fable"].resets_at is None and scoped["Fable"].active is False
    assert scoped["Mystery"].pct is None                            # percent not a number: unknown
    assert u.extra_usage is not None and u.extra_usage.enabled and u.extra_usage.pct == 20.0
    assert u.extra_usage.available()


def test_only_limits_shape_and_a_new_models_window() -> None:
    u = parse_usage({"limits": [
        {"kind": "session", "percent": 30, "resets_at": "2026-11-27T18:00:00Z"},
        {"kind": "weekly_all", "percent": 60, "resets_at": None},
        {"kind": "weekly_scoped", "percent": 100, "resets_at": None, "scope": {"model": {"display_name": "Fable"}}},
        {"kind": "weekly_scoped", "scope": "opus", "percent": 3},
    ]})
    assert (u.five_hour.pct, u.seven_day.pct) == (30.0, 60.0)
    assert [(s.name, s.pct) for s in u.scoped] == [("Fable", 100.0), ("opus", 3.0)]
    assert u.binding(families("claude-fable-1")) == 100.0
    assert u.binding(families("claude-opus-4-8")) == 60.0


@pytest.mark.parametrize("body", [{}, {"five_hour": None, "seven_day": None}, {"limits": []},
                                  {"limits": [{"kind": "weekly_scoped", "percent": 5, "scope": "opus"}]},
                                  {"seven_day_opus": {"utilization": 5}}, [], "x", None])
def test_no_general_window_is_an_error_never_zero(body: object) -> None:
    with pytest.raises(UsageFormatError):
        parse_usage(body)


def test_scoped_null_and_percent_null_do_not_bind() -> None:
    found = parse_windows({"five_hour": {"utilization": 10}, "seven_day_opus": {"utilization": None},
                           "limits": [{"kind": "weekly_scoped", "percent": None, "scope": {"model": {"display_name": "Sonnet"}}}]})
    assert found is not None
    assert [(s["name"], s["pct"]) for s in found["scoped"]] == [("Opus", None), ("Sonnet", None)]
    assert parse_usage({"five_hour": {"utilization": 10}, "seven_day_opus": {"utilization": None}}).binding(
        families("opus")) == 10.0


@pytest.mark.parametrize("model, scope, applies", [
    ("claude-opus-4-8", "Opus", True), ("opus", "Opus", True), ("opus[1m]", "Opus", True),
    ("claude-sonnet-5", "Opus", False), ("sonnet", "Sonnet", True), ("claude-opus-4-8", "Opus 4.8", True),
    ("claude-opus-4-1", "Opus 4.8", False), ("opusplan", "Sonnet", True), ("opusplan", "Opus", True),
    (None, "Opus", False), ("default", "Opus", False), ("claude-fable-1", "Fable", True), ("haiku", "", False),
])
def test_which_windows_bind_a_model(model: str | None, scope: str, applies: bool) -> None:
    assert scope_applies(scope, families(model)) is applies


@pytest.mark.parametrize("message, expect", [
    ("You've hit your session limit · resets 4:56pm (UTC)",
     {"kind": "usage", "window": "five_hour", "resets_at": datetime(2026, 11, 27, 16, 56, tzinfo=timezone.utc)}),
    ("You've hit your session limit · resets 2:10pm (UTC)",      # already past today: tomorrow
     {"window": "five_hour", "resets_at": datetime(2026, 11, 28, 14, 10, tzinfo=timezone.utc)}),
    ("You've hit your weekly limit · resets Jan 15, 2027, 8am (UTC)",
     {"window": "seven_day", "resets_at": datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)}),
    ("You've hit your session limit · resets 4pm (America/New_York)",
     {"window": "five_hour", "resets_at": datetime(2026, 11, 27, 21, 0, tzinfo=timezone.utc)}),
    ("You've hit your weekly limit · resets Dec 1, 9am (Europe/Berlin)",
     {"window": "seven_day", "resets_at": datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)}),
    ("You've hit your Opus limit · resets Dec 1, 9am (UTC)", {"model": "opus", "window": ""}),
    ("You've hit your session limit · resets 4:56pm (Mars/Olympus)",   # unknown zone: UTC
     {"resets_at": datetime(2026, 11, 27, 16, 56, tzinfo=timezone.utc)}),
    ("You've hit your session limit · resets 13:99pm (UTC)", {"window": "five_hour", "resets_at": None}),
    ("API Error: Server is temporarily limiting requests (not your usage limit) · Rate limited",
     {"kind": "server"}),
    ("", {"kind": "unknown"}),
    (None, {"kind": "unknown"}),
    ("API Error: 429 rate_limit_error", {"kind": "unknown"}),
    ("Claude usage limit reached. Your limit will reset at 5pm", {"kind": "usage"}),
])
def test_claude_codes_rate_limit_messages(message: str, expect: dict) -> None:
    said = parse_refusal(message, NOW)
    for key, value in expect.items():
        assert said[key] == value, (key, said)


def test_a_huge_message_is_cut_not_slow() -> None:
    said = parse_refusal("You've hit your session limit · resets " + "9" * 100000, NOW)
    assert said["kind"] == "usage" and said["resets_at"] is None
    assert NOW + timedelta(days=1) > NOW


# ---- the session-start hook's own HTTP call (reconciler/quicklook.py), in process -------------

def test_light_usage_call_against_the_fake(fake) -> None:  # type: ignore[no-untyped-def]
    from claude_pool.reconciler.quicklook import bounded_usage_call

    acct = fake.add_account("a@example.com", five_hour=33, scoped=[{"name": "Opus", "pct": 100, "resets_at": None}])
    status, body, _ = bounded_usage_call(fake.base_url, acct.access_token, 2.0)
    assert status == 200
    found = parse_windows(body)
    assert found is not None and found["five_hour"]["pct"] == 33.0
    assert [(s["name"], s["pct"]) for s in found["scoped"]] == [("Opus", 100.0)]
    assert bounded_usage_call(fake.base_url, "sk-ant-oat01-wrong", 2.0)[0] == 401
    rec = fake.requests[-1]
    assert rec["path"] == "/api/oauth/usage" and rec["auth_kind"] == "bearer"


def test_light_usage_call_is_bounded_and_refuses_what_the_engine_refuses() -> None:
    import socket as _socket

    from claude_pool.reconciler.quicklook import _dechunk, _split_base, bounded_usage_call

    silent = _socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)   # the kernel accepts; nobody ever answers
    try:
        with pytest.raises(OSError):
            bounded_usage_call(f"http://127.0.0.1:{silent.getsockname()[1]}", "tok", 0.3)
    finally:
        silent.close()
    with pytest.raises(OSError):
        bounded_usage_call("http://example.com", "tok", 0.3)          # plain http off loopback
    with pytest.raises(OSError):
        bounded_usage_call("ftp://127.0.0.1", "tok", 0.3)
    with pytest.raises(OSError):
        bounded_usage_call("http://127.0.0.1:1", "tok\u00e9", 0.3)    # not sendable in a header
    assert _split_base("https://api.anthropic.com") == ("https", "api.anthropic.com", 443, "api.anthropic.com", "")
    assert _split_base("http://[::1]:8080/prefix/") == ("http", "::1", 8080, "[::1]:8080", "/prefix")
    assert _dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n") == b'{"a":1}'


# ---- the block a refusal puts on an account (reconciler/observe.py), pure --------------------

def _account(**usage):  # type: ignore[no-untyped-def]
    from claude_pool.schema.pool import Account

    return Account(id="a", usage=parse_usage(usage) if usage else None, usage_at=NOW if usage else None)


@pytest.mark.parametrize("message, usage, source, until", [
    ("You've hit your session limit · resets 4:56pm (UTC)", {}, "message",
     datetime(2026, 11, 27, 16, 57, tzinfo=timezone.utc)),
    ("You've hit your session limit", {"five_hour": {"utilization": 100, "resets_at": "2026-11-27T16:00:00Z"},
                                       "seven_day": {"utilization": 10, "resets_at": "2026-11-29T00:00:00Z"}},
     "window", datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)),
    ("You've hit your weekly limit", {"five_hour": {"utilization": 100, "resets_at": "2026-11-27T16:00:00Z"},
                                      "seven_day": {"utilization": 10, "resets_at": "2026-11-29T00:00:00Z"}},
     "window", datetime(2026, 11, 29, tzinfo=timezone.utc)),
    ("You've hit your session limit", {}, "cooldown", NOW + timedelta(minutes=10)),
    # a reset further away than any window: not believed
    ("You've hit your weekly limit · resets Jan 15, 2029, 8am (UTC)", {}, "cooldown", NOW + timedelta(minutes=10)),
])
def test_refusal_block(message: str, usage: dict, source: str, until: datetime) -> None:
    from claude_pool.reconciler.learn import refusal_block

    block = refusal_block(message, _account(**usage), NOW, families("opus"))
    assert block is not None and block.source == source and block.until == until
    assert refusal_block("Server is temporarily limiting requests (not your usage limit)", _account(), NOW, None) is None
    assert refusal_block("API Error: 429 rate_limit_error", _account(), NOW, None) is None
