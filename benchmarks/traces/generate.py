"""Generate the simulator's traces (seeded, so the files are reproducible):

    python benchmarks/traces/generate.py            # rewrites the *.json beside this file

Units are abstract; every account here has a five-hour limit of 100 units and a seven-day limit
of 1200 (a plan whose week holds 12 full five-hour windows), unless said otherwise.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEEK = 168.0


def account(aid: str, reset: float, *, five: float = 100, week: float = 1200, scoped: dict | None = None,
            used: float = 0, scoped_used: dict | None = None) -> dict:
    out = {"id": aid, "five_hour_limit": five, "seven_day_limit": week, "weekly_reset_at_hour": reset}
    if scoped:
        out["scoped"] = scoped
    if used:
        out["seven_day_used_at_start"] = used
    if scoped_used:
        out["scoped_used_at_start"] = scoped_used
    return out


def workdays(rng: random.Random, weeks: int, *, days: range, start: float, end: float, per_hour: float,
             units: tuple[int, int], model: str | dict = "sonnet", session_hours: float = 2.5,
             prefix: str = "s", print_mode: bool = False) -> list[dict]:
    """Poisson-ish prompts during [start, end) of the given weekdays, in sessions of a few hours."""
    reqs = []
    n = 0
    for week in range(weeks):
        for day in days:
            t = week * WEEK + day * 24 + start + rng.uniform(-0.25, 0.25)
            stop = week * WEEK + day * 24 + end + rng.uniform(-0.25, 0.25)
            session_end = -1.0
            sid = ""
            while True:
                t += rng.expovariate(per_hour)
                if t >= stop:
                    break
                if t >= session_end:
                    n += 1
                    sid = f"{prefix}{n}"
                    session_end = t + rng.uniform(0.5, 2) * session_hours
                    sess_model = model if isinstance(model, str) else rng.choices(list(model), list(model.values()))[0]
                req = {"t": round(t, 4), "session": sid, "units": rng.randint(*units), "model": sess_model}
                if print_mode:
                    req["print"] = True
                reqs.append(req)
    return reqs


def trace(name: str, weeks: int, accounts: list[dict], keys: int, requests: list[dict]) -> dict:
    requests = sorted((r for r in requests if 0 <= r["t"] <= weeks * WEEK), key=lambda r: (r["t"], r["session"]))
    return {"name": name, "duration_hours": weeks * WEEK, "accounts": accounts, "api_keys": keys,
            "requests": requests}


def steady_9to5(seed: int = 1) -> dict:
    """A developer, weekdays 9:00-17:30 on two accounts whose weeks reset on different days."""
    rng = random.Random(seed)
    reqs = workdays(rng, 3, days=range(5), start=9, end=17.5, per_hour=5, units=(3, 7))
    return trace("steady-9to5", 3, [account("a", 40, used=300), account("b", 112, used=600)], 2, reqs)


def heavy_3acc(seed: int = 2) -> dict:
    """A heavy user, 8:00-22:00 every day, on three accounts with staggered weekly resets, at about
    1.3x what the three weeks hold."""
    rng = random.Random(seed)
    reqs = workdays(rng, 3, days=range(7), start=8, end=22, per_hour=6.5, units=(5, 11))
    accs = [account("a", 20, used=500), account("b", 76, used=200), account("c", 132, used=900)]
    return trace("heavy-3acc", 3, accs, 2, reqs)


def agent_24x7(seed: int = 3) -> dict:
    """An agent running `claude -p` around the clock on two accounts, at about 1.15x capacity."""
    rng = random.Random(seed)
    reqs = workdays(rng, 3, days=range(7), start=0, end=24, per_hour=2.6, units=(4, 10), prefix="p",
                    session_hours=0.2, print_mode=True)
    return trace("agent-24x7", 3, [account("a", 30, used=400), account("b", 114, used=100)], 2, reqs)


def opus_heavy(seed: int = 4) -> dict:
    """A heavy Opus user (most sessions on Opus) on two accounts with a scoped weekly Opus limit."""
    rng = random.Random(seed)
    reqs = workdays(rng, 3, days=range(6), start=9, end=20, per_hour=5, units=(4, 9),
                    model={"opus": 0.75, "sonnet": 0.25})
    accs = [account("a", 50, scoped={"opus": 500}, scoped_used={"opus": 200}, used=300),
            account("b", 130, scoped={"opus": 500}, scoped_used={"opus": 100}, used=200)]
    return trace("opus-heavy", 3, accs, 2, reqs)


def light(seed: int = 5) -> dict:
    """A light user, a couple of hours most weekdays, two accounts and a key never needed."""
    rng = random.Random(seed)
    reqs = workdays(rng, 3, days=range(5), start=10, end=12.5, per_hour=4, units=(2, 6))
    return trace("light", 3, [account("a", 60), account("b", 150)], 1, reqs)


def scale(seed: int = 6, n: int = 20000, weeks: int = 4) -> dict:
    """The speed test's trace: about n requests over `weeks` weeks on three accounts (not stored)."""
    rng = random.Random(seed)
    per_hour = n / (weeks * 7 * 16)
    reqs = workdays(rng, weeks, days=range(7), start=7, end=23, per_hour=per_hour, units=(1, 3))
    accs = [account("a", 20), account("b", 76), account("c", 132)]
    return trace("scale", weeks, accs, 2, reqs)


TRACES = {"steady-9to5": steady_9to5, "heavy-3acc": heavy_3acc, "agent-24x7": agent_24x7,
          "opus-heavy": opus_heavy, "light": light}


def main() -> int:
    for name, make in TRACES.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(make(), separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"{path.name}: {len(json.loads(path.read_text())['requests'])} requests, "
              f"{path.stat().st_size // 1024} KiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
