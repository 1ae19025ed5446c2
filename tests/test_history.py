"""Issue 20: the history of readings (providers/history.py), the pace forecast made from it
(reconciler/forecast.py), and where it shows: `list`'s text and `status`'s JSON."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from claude_pool.providers import history
from claude_pool.reconciler import forecast
from claude_pool.schema.timefmt import format_time
from datetime import datetime, timezone

H = 3600.0
D = 86400.0
NOW = 1_800_000_000.0


def ramp(start: float, end: float, pct0: float, rate: float, step: float) -> list[list[float]]:
    """Readings from `start` to `end` (epochs) every `step` seconds rising `rate` points per hour."""
    out, t = [], start
    while t <= end:
        out.append([t, pct0 + rate * (t - start) / H])
        t += step
    return out


# ---- the forecast function: a table ------------------------------------------------------------

CASES = [
    # name, points, now, resets_at, label, expected (None, or a dict of fields to check)
    ("too few readings", [[NOW - 2 * H, 10], [NOW - H, 20]], NOW, NOW + 3 * H, "5h", None),
    ("too close together", ramp(NOW - 600, NOW, 10, 10, 60), NOW, NOW + 3 * H, "5h", None),
    ("flat", ramp(NOW - 2 * H, NOW, 30, 0, 600), NOW, NOW + 3 * H, "5h", None),
    ("declining (no reset between)", [[NOW - 2 * H, 30], [NOW - H, 29.5], [NOW, 29.2]], NOW, NOW + 3 * H, "5h", None),
    ("runs out before its reset", ramp(NOW - 2 * H, NOW, 10, 20, 600), NOW, NOW + 3 * H, "5h",
     {"pct": 50.0, "pace": 20.0, "out_at": NOW + 2.5 * H, "out_before_reset": True, "at_reset": 100.0}),
    ("lasts until its reset", ramp(NOW - 2 * H, NOW, 10, 5, 600), NOW, NOW + 3 * H, "5h",
     {"pct": 20.0, "pace": 5.0, "out_at": NOW + 16 * H, "out_before_reset": False, "at_reset": 35.0}),
    ("weekly pace", ramp(NOW - 3 * D, NOW, 0, 1, 2 * H), NOW, NOW + 3 * D, "7d",
     {"pct": 72.0, "pace": 1.0, "out_at": NOW + 28 * H, "out_before_reset": True}),
    ("already full", ramp(NOW - 2 * H, NOW - H, 80, 20, 600), NOW, NOW + 3 * H, "5h",
     {"pct": 100.0, "out_at": NOW - H}),
    ("reset unknown", ramp(NOW - 2 * H, NOW, 10, 20, 600), NOW, None, "5h",
     {"pace": 20.0, "out_before_reset": None, "at_reset": None}),
    ("the period is over", ramp(NOW - 2 * H, NOW, 10, 20, 600), NOW, NOW - 1, "5h", None),
    # readings stamped in the future (a clock that was ahead, then set right) are ignored: the
    # fit is the honest ramp, not pulled by a 95% "tomorrow"
    ("readings from the future", ramp(NOW - 2 * H, NOW, 10, 20, 600) + [[NOW + D, 95], [NOW + 2 * D, 99]],
     NOW, NOW + 3 * H, "5h", {"pct": 50.0, "pace": 20.0}),
    # the clock jumped back an hour: readings arrive out of order; sorted, the pace is the same
    ("a clock that jumps back", [[NOW - H, 30], [NOW - 2 * H, 10], [NOW - 1.5 * H, 20], [NOW, 50],
                                 [NOW - 0.5 * H, 40]], NOW, NOW + 3 * H, "5h", {"pct": 50.0, "pace": 20.0}),
    # the clock jumped forward past the reset: the readings belong to a period that is over
    ("a clock that jumps forward past the reset", ramp(NOW - 2 * H, NOW, 10, 20, 600), NOW + 4 * H,
     NOW + 3 * H, "5h", None),
    # a reset the reset time missed (the window fell from 90 to 5): only the readings after it count
    ("a reset between readings", ramp(NOW - 4 * H, NOW - 2.5 * H, 60, 20, 600) + ramp(NOW - 2 * H, NOW, 5, 10, 600),
     NOW, NOW + 3 * H, "5h", {"pct": 25.0, "pace": 10.0}),
    # readings from before the period began (a week window that started a day ago) are not used
    ("readings before the period", ramp(NOW - 3 * D, NOW - 1.5 * D, 0, 2, 2 * H) + ramp(NOW - D, NOW, 1, 0.5, 2 * H),
     NOW, NOW + 6 * D, "7d", {"pct": 13.0, "pace": 0.5}),
    ("garbage readings", [["x", 1], [NOW, float("nan")], [None], [NOW - H, True]] + ramp(NOW - 2 * H, NOW, 10, 20, 600),
     NOW, NOW + 3 * H, "5h", {"pace": 20.0}),
]


@pytest.mark.parametrize("name,points,now,resets,label,expected", CASES, ids=[c[0] for c in CASES])
def test_pace(name, points, now, resets, label, expected) -> None:
    got = forecast.pace(points, now, resets, label)
    if expected is None:
        assert got is None, got
        return
    assert got is not None, name
    for key, value in expected.items():
        if isinstance(value, float) and key in ("out_at",):
            assert abs(got[key] - value) <= 60, (key, got)
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=0.05), (key, got)
        else:
            assert got[key] == value, (key, got)


def test_the_text_says_out_and_reset() -> None:
    fc = forecast.pace(ramp(NOW - 3 * D, NOW, 0, 1, 2 * H), NOW, NOW + 3 * D, "7d")
    assert forecast.text(fc, NOW) == "7d: out in ~28h, resets in ~3d"
    lasting = forecast.pace(ramp(NOW - 2 * H, NOW, 10, 5, 600), NOW, NOW + 3 * H, "5h")
    assert forecast.text(lasting, NOW) == "5h: ~35% at its reset in ~3h"
    assert forecast.text(None, NOW) == ""


def test_the_main_forecast_is_the_window_that_runs_out_first() -> None:
    five = forecast.pace(ramp(NOW - 2 * H, NOW, 10, 20, 600), NOW, NOW + 3 * H, "5h")
    week = forecast.pace(ramp(NOW - 3 * D, NOW, 0, 1, 2 * H), NOW, NOW + 3 * D, "7d")
    assert forecast.main_one({"5h": five, "7d": week}, NOW)["window"] == "5h"
    slow = forecast.pace(ramp(NOW - 2 * H, NOW, 10, 5, 600), NOW, NOW + 3 * H, "5h")
    assert forecast.main_one({"5h": slow, "7d": week}, NOW)["window"] == "7d"
    assert forecast.main_one({"5h": five}, NOW + 4 * H) is None   # its period is over


# ---- the history file and its cache ------------------------------------------------------------

def acct(aid: str, at: float, five: float, seven: float, resets5: float, resets7: float,
         opus: float | None = None) -> dict:
    def iso(e: float) -> str:
        return format_time(datetime.fromtimestamp(e, tz=timezone.utc))

    usage = {"five_hour": {"pct": five, "resets_at": iso(resets5)},
             "seven_day": {"pct": seven, "resets_at": iso(resets7)}, "scoped": []}
    if opus is not None:
        usage["scoped"] = [{"name": "Opus", "pct": opus, "resets_at": iso(resets7)}]
    return {"id": aid, "email": f"{aid}@example.com", "blob": '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-'
            + "s" * 40 + '"}}', "usage": usage, "usage_at": iso(at)}


def test_history_lines_cache_and_forecast(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    t0 = NOW - 2 * H
    for i in range(13):   # every 10 minutes for two hours, 5h rising 20 points an hour
        t = t0 + i * 600
        history.record([acct("a", t, 10 + 20 * (t - t0) / H, 40 + (t - t0) / H, NOW + 3 * H, NOW + 3 * D, opus=7),
                        acct("b", t, 3, 3, NOW + 3 * H, NOW + 3 * D)], complete=True, now=t, state_dir=state)
    lines = history.read(state_dir=state)
    a_lines = [x for x in lines if x["a"] == "a"]
    assert len(a_lines) == 13 and set(a_lines[-1]["w"]) == {"5h", "7d", "Opus"}
    assert a_lines[-1]["w"]["5h"] == [50.0, int(NOW + 3 * H)]
    # b never moved: one line, then nothing until the heartbeat (30 minutes) says it again
    assert len([x for x in lines if x["a"] == "b"]) == 5
    raw = (tmp_path / "state" / "history.jsonl").read_text()
    assert "sk-ant" not in raw and "example.com" not in raw and "blob" not in raw
    for name in ("history.jsonl", "forecast.json"):
        assert stat.S_IMODE(os.stat(tmp_path / "state" / name).st_mode) == 0o600
    fc = history.forecasts(state)
    assert fc["a"]["5h"]["pace"] == pytest.approx(20.0, abs=0.01)
    assert fc["a"]["5h"]["out_before_reset"] is True
    assert "5h" not in fc.get("b", {})   # flat: no forecast
    # the same reading again (a save with nothing new) writes nothing
    before = (tmp_path / "state" / "history.jsonl").stat().st_size
    history.record([acct("a", t0 + 12 * 600, 50, 42, NOW + 3 * H, NOW + 3 * D)], now=NOW, state_dir=state)
    assert (tmp_path / "state" / "history.jsonl").stat().st_size == before
    # an account removed from the pool leaves the cache at the next complete save
    history.record([acct("a", NOW + 60, 51, 42, NOW + 3 * H, NOW + 3 * D)], complete=True, now=NOW + 60, state_dir=state)
    assert set(history.forecasts(state)) == {"a"}


def test_history_rotates_and_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "MAX_BYTES", 4096)
    state = str(tmp_path / "state")
    for i in range(400):
        t = NOW + i * 60
        history.record([acct("a", t, i % 100, 40, NOW + 5 * H, NOW + 3 * D)], now=t, state_dir=state)
    main, rotated = tmp_path / "state" / "history.jsonl", tmp_path / "state" / "history.jsonl.1"
    assert rotated.exists() and main.stat().st_size <= 4096 and rotated.stat().st_size <= 4096
    assert not (tmp_path / "state" / "history.jsonl.2").exists()
    got = history.read(state_dir=state)
    assert got and got[-1]["w"]["5h"][0] == 399 % 100
    assert [x["t"] for x in got] == sorted(x["t"] for x in got)


def test_a_half_written_line_is_ended_and_skipped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.jsonl").write_bytes(b'{"t": 1, "a": "x", "w": {"5h": [1, nu')
    history.record([acct("a", NOW, 5, 5, NOW + H, NOW + D)], now=NOW, state_dir=str(state))
    got = history.read(state_dir=str(state))
    assert [x["a"] for x in got] == ["a"]


def test_a_reading_from_a_clock_far_ahead_is_not_taken(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    history.record([acct("a", NOW + D, 5, 5, NOW + 2 * D, NOW + 3 * D)], now=NOW, state_dir=state)
    assert history.read(state_dir=state) == []
    # ... and does not stop the honest readings after it
    history.record([acct("a", NOW, 5, 5, NOW + H, NOW + D)], now=NOW, state_dir=state)
    assert len(history.read(state_dir=state)) == 1


# ---- where it shows: a real pool save, `status` and `list` ------------------------------------

def _ramp_into_sandbox(sandbox, aid: str, now: float) -> None:
    """Readings of the last two hours, as the pool's saves would have recorded them."""
    state = str(sandbox.home / ".local" / "state" / "claude-pool")
    for i in range(12):
        t = now - 2 * H + i * 600
        history.record([acct(aid, t, 10 + 20 * i / 6, 40 + i / 6, now + 3 * H, now + 3 * D)], now=t, state_dir=state)


def test_a_pool_save_records_the_reading(sandbox, fake) -> None:
    fake.add_account("alice@example.com", five_hour=37, seven_day=12)
    sandbox.seed("alice@example.com")
    sandbox.ok("list")   # polls, keeps the reading: one pool save
    lines = history.read(state_dir=str(sandbox.home / ".local" / "state" / "claude-pool"))
    assert [(x["a"], x["w"]["5h"][0], x["w"]["7d"][0]) for x in lines] == [("alice", 37.0, 12.0)]


def test_status_json_has_the_forecast_and_list_shows_the_pace(sandbox, fake) -> None:
    now = time.time()
    # the live reading `list` takes goes on where the history left off (50% at the same reset)
    fake.add_account("alice@example.com", five_hour=50, five_hour_resets_at=now + 3 * H,
                     seven_day=42, seven_day_resets_at=now + 3 * D)
    fake.add_account("bob@example.com", five_hour=10)
    sandbox.seed("alice@example.com", "bob@example.com")
    assert "forecast" not in sandbox.status()   # no history yet: no forecast
    _ramp_into_sandbox(sandbox, "alice", now)
    status = sandbox.status()
    fc = status["forecast"]["alice"]
    assert set(status["forecast"]) == {"alice"}
    assert fc["window"] == "5h" and fc["pace_pct_per_hour"] == pytest.approx(20.0, abs=0.01)
    assert fc["out_before_reset"] is True
    assert 2.4 * H <= fc["out_in_seconds"] <= 2.6 * H and fc["resets_in_seconds"] <= 3 * H
    assert fc["out_at"].endswith("Z") and fc["resets_at"].endswith("Z")
    listed = sandbox.ok("list").stdout
    alice = next(line for line in listed.splitlines() if " alice " in line)
    bob = next(line for line in listed.splitlines() if " bob " in line)
    assert "pace 5h: out in ~2h, resets in ~3h" in alice, listed
    assert "pace" not in bob, listed


def test_the_session_start_light_path_records_its_reading(sandbox, fake) -> None:
    fake.add_account("alice@example.com", five_hour=21, seven_day=7)
    sandbox.seed("alice@example.com")
    sandbox.ok("hook", "session-start", input='{"hook_event_name": "SessionStart"}')
    assert sandbox.pool_account("alice")["usage"]["five_hour"]["pct"] == 21   # the light look saved it
    lines = history.read(state_dir=str(sandbox.home / ".local" / "state" / "claude-pool"))
    assert [(x["a"], x["w"]["5h"][0], x["w"]["7d"][0]) for x in lines] == [("alice", 21.0, 7.0)]


def test_a_rename_carries_the_history_over(tmp_path: Path) -> None:
    """`record(renamed=...)`: the cache entry moves to the new name (so the forecast goes on), and
    `read` gives every line before the rename the new name; an account that takes the old name
    afterwards starts a history of its own."""
    state = str(tmp_path / "state")
    t0 = NOW - 2 * H
    for i in range(7):
        t = t0 + i * 600
        history.record([acct("a", t, 10 + 20 * i / 6, 40, NOW + 3 * H, NOW + 3 * D)], complete=True, now=t,
                       state_dir=state)
    before = history.forecasts(state)["a"]
    t1 = t0 + 3600 + 60
    history.record([acct("work", t0 + 3600, 30, 40, NOW + 3 * H, NOW + 3 * D)], complete=True, now=t1,
                   state_dir=state, renamed={"a": "work"})
    assert set(history.forecasts(state)) == {"work"} and history.forecasts(state)["work"] == before
    # the same save again (a second save in the run): nothing moves twice, no second line
    size = (tmp_path / "state" / "history.jsonl").stat().st_size
    history.record([acct("work", t0 + 3600, 30, 40, NOW + 3 * H, NOW + 3 * D)], complete=True, now=t1,
                   state_dir=state, renamed={"a": "work"})
    assert (tmp_path / "state" / "history.jsonl").stat().st_size == size
    # a new account named "a" later: its own history
    history.record([acct("work", t1 + 600, 32, 40, NOW + 3 * H, NOW + 3 * D),
                    acct("a", t1 + 600, 5, 5, NOW + 3 * H, NOW + 3 * D)], complete=True, now=t1 + 600, state_dir=state)
    lines = history.read(state_dir=state)
    assert [x["a"] for x in lines] == ["work"] * 7 + ["work", "a"]
    assert [x["w"]["5h"][0] for x in lines if x["a"] == "a"] == [5.0]
    assert all("r" not in x for x in lines)


def test_rename_by_command_keeps_the_accounts_history(sandbox, fake) -> None:
    """`claude-pool rename` through plan/apply: the pool's save carries the history over, so the
    report and `watch` see the account's past under its new name."""
    now = time.time()
    fake.add_account("alice@example.com", five_hour=50, five_hour_resets_at=now + 3 * H,
                     seven_day=42, seven_day_resets_at=now + 3 * D)
    sandbox.seed("alice@example.com")
    _ramp_into_sandbox(sandbox, "alice", now)
    state = str(sandbox.home / ".local" / "state" / "claude-pool")
    ramp = [x for x in history.read(state_dir=state) if x["a"] == "alice"]
    assert len(ramp) >= 12
    assert sandbox.ok("rename", "alice", "work").stdout == "Renamed account alice to work.\n"
    lines = history.read(state_dir=state)
    assert {x["a"] for x in lines} == {"work"} and len(lines) >= len(ramp)
    assert set(history.forecasts(state)) == {"work"}
    assert "work" in sandbox.status().get("forecast", {})
