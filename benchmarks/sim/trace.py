"""The trace file: accounts, API keys and the requests of weeks of work (docs/SIMULATOR.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TraceError(ValueError):
    """The trace file is not a valid trace."""


@dataclass(frozen=True)
class AccountSpec:
    id: str
    five_hour_limit: float
    seven_day_limit: float
    weekly_reset_at_hour: float
    scoped: dict[str, float] = field(default_factory=dict)
    seven_day_used_at_start: float = 0.0
    scoped_used_at_start: dict[str, float] = field(default_factory=dict)
    # the user's preferences (`claude-pool priority / threshold`): the tier (1 spent first; None:
    # the default tier) and the account's own threshold (a fraction; None: the policy's)
    priority: int | None = None
    threshold: float | None = None
    # `claude-pool pause` over the trace: (from hour, until hour or None: to the end), each the
    # command at `from` (the pool moves off the account then) ending by itself at `until`
    pauses: tuple[tuple[float, float | None], ...] = ()


@dataclass(frozen=True)
class Request:
    t: float            # hours since the start of the trace
    session: str
    units: float
    model: str
    print: bool = False


@dataclass(frozen=True)
class Trace:
    name: str
    duration_hours: float
    accounts: tuple[AccountSpec, ...]
    api_keys: int
    requests: tuple[Request, ...]

    @property
    def total_units(self) -> float:
        return sum(r.units for r in self.requests)


def _num(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TraceError(f"{what} must be a finite number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise TraceError(f"{what} must be {'> 0' if positive else '>= 0'}, not {value!r}")
    return value


def _priority(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
        raise TraceError(f"{what} must be a tier from 1 to 99, not {value!r}")
    return value


def _threshold(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if _num(value, what) == 0 or value > 1:
        raise TraceError(f"{what} must be a fraction over 0 and at most 1, not {value!r}")
    return float(value)


def _pauses(value: Any, what: str) -> tuple[tuple[float, float | None], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TraceError(f"{what} must be a list of [from hour, until hour or null]")
    out: list[tuple[float, float | None]] = []
    for j, item in enumerate(value):
        if not isinstance(item, list) or len(item) != 2:
            raise TraceError(f"{what}[{j}] must be [from hour, until hour or null]")
        start = float(_num(item[0], f"{what}[{j}][0]"))
        end = None if item[1] is None else float(_num(item[1], f"{what}[{j}][1]"))
        if end is not None and end <= start:
            raise TraceError(f"{what}[{j}]: until ({end}) must be after from ({start})")
        out.append((start, end))
    return tuple(sorted(out, key=lambda p: p[0]))


def from_dict(data: Any) -> Trace:
    if not isinstance(data, dict):
        raise TraceError("a trace is a JSON object")
    accounts = []
    raw_accounts = data.get("accounts")
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise TraceError("accounts: a non-empty list is required")
    seen: set[str] = set()
    for i, a in enumerate(raw_accounts):
        if not isinstance(a, dict) or not isinstance(a.get("id"), str) or not a["id"]:
            raise TraceError(f"accounts[{i}]: an object with a non-empty string id is required")
        if a["id"] in seen:
            raise TraceError(f"accounts[{i}]: duplicate id {a['id']!r}")
        seen.add(a["id"])
        scoped = a.get("scoped") or {}
        used = a.get("scoped_used_at_start") or {}
        if not isinstance(scoped, dict) or not isinstance(used, dict):
            raise TraceError(f"accounts[{i}]: scoped and scoped_used_at_start are objects")
        if set(used) - set(scoped):
            raise TraceError(f"accounts[{i}]: scoped_used_at_start names a model with no scoped limit")
        accounts.append(AccountSpec(
            id=a["id"],
            five_hour_limit=_num(a.get("five_hour_limit"), f"accounts[{i}].five_hour_limit", positive=True),
            seven_day_limit=_num(a.get("seven_day_limit"), f"accounts[{i}].seven_day_limit", positive=True),
            weekly_reset_at_hour=_num(a.get("weekly_reset_at_hour", 0), f"accounts[{i}].weekly_reset_at_hour"),
            scoped={str(m): _num(v, f"accounts[{i}].scoped.{m}", positive=True) for m, v in scoped.items()},
            seven_day_used_at_start=_num(a.get("seven_day_used_at_start", 0), f"accounts[{i}].seven_day_used_at_start"),
            scoped_used_at_start={str(m): _num(v, f"accounts[{i}].scoped_used_at_start.{m}") for m, v in used.items()},
            priority=_priority(a.get("priority"), f"accounts[{i}].priority"),
            threshold=_threshold(a.get("threshold"), f"accounts[{i}].threshold"),
            pauses=_pauses(a.get("pauses"), f"accounts[{i}].pauses"),
        ))
    keys = data.get("api_keys", 0)
    if isinstance(keys, bool) or not isinstance(keys, int) or keys < 0:
        raise TraceError("api_keys must be a non-negative integer")
    duration = _num(data.get("duration_hours"), "duration_hours", positive=True)
    raw_requests = data.get("requests")
    if not isinstance(raw_requests, list):
        raise TraceError("requests: a list is required")
    requests = []
    last = 0.0
    for i, r in enumerate(raw_requests):
        if not isinstance(r, dict):
            raise TraceError(f"requests[{i}]: an object is required")
        t = _num(r.get("t"), f"requests[{i}].t")
        if t < last:
            raise TraceError(f"requests[{i}]: requests must be sorted by t ({t} < {last})")
        if t > duration:
            raise TraceError(f"requests[{i}]: t={t} is past duration_hours={duration}")
        last = t
        session = r.get("session")
        model = r.get("model", "sonnet")
        if not isinstance(session, str) or not session or not isinstance(model, str) or not model:
            raise TraceError(f"requests[{i}]: session and model are non-empty strings")
        requests.append(Request(t=float(t), session=session, units=_num(r.get("units"), f"requests[{i}].units",
                                positive=True), model=model, print=bool(r.get("print", False))))
    return Trace(name=str(data.get("name", "")), duration_hours=float(duration), accounts=tuple(accounts),
                 api_keys=keys, requests=tuple(requests))


def load(path: str | Path) -> Trace:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise TraceError(f"{path}: not JSON ({exc})") from None
    return from_dict(data)
