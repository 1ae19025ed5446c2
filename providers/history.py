"""A bounded history of usage readings, and the forecasts made from it (issue 20: "see the week").

Two files in the state directory, beside the audit log, both 0600 and holding no secret (account
ids, window names, percentages and times only):

- `history.jsonl`: one line per reading that says something new, `{"t": epoch, "a": account id,
  "w": {"5h": [pct, resets epoch|null], "7d": [...], "<model>": [...]}}`. A reading is written when
  a window moved by half a point or more, a reset time changed, or 30 minutes passed since the
  account's last line. Appended whole lines only (one write, O_APPEND; a line a killed writer left
  half-written is ended first); when it would pass `MAX_BYTES` it becomes `history.jsonl.1` (the
  older one dropped), so both together hold about a week of a busy pool in at most 512 KiB.
- `forecast.json`: the cache `status` reads on every statusline render instead of the history:
  per account the last reading taken (`at`), the readings of each window's current period,
  thinned to `MAX_POINTS` (`p`, [[epoch, pct]...], with the period's reset `r`), and the forecast
  made from them (reconciler/forecast.py) when the last reading came in.

Writers: the pool's save (`providers/poolfile.py`, under the pool lock) and the session-start light
path (`reconciler/quicklook.py`, under the same lock), through `record`. It never raises: history is a
convenience, never a reason for a run to fail. Standard library only, no pathlib (a hot path calls it).
"""

from __future__ import annotations

import json
import math
import os
import stat

from claude_pool.providers import paths
from claude_pool.providers.fsutil import atomic_write, ensure_private_dir, read_regular

MAX_BYTES = 256 * 1024
MAX_POINTS = 96            # per window in the cache: about one per 1/96 of the window's length
HEARTBEAT = 30 * 60.0      # a line at least this often per account while readings come in
MOVED = 0.5                # a window that moved by this many points is worth a line
_LABELS = (("five_hour", "5h"), ("seven_day", "7d"))


def history_file(state_dir: str | None = None) -> str:
    return os.path.join(state_dir or paths.state_dir(), "history.jsonl")


def forecast_file(state_dir: str | None = None) -> str:
    return os.path.join(state_dir or paths.state_dir(), "forecast.json")


def _epoch(value: object) -> float | None:
    """An epoch from the pool's JSON time (RFC 3339, Go's zero time is None) or a number."""
    from claude_pool.schema.timefmt import parse_time

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value > 0 else None
    when = parse_time(value)
    return when.timestamp() if when is not None else None


def _pct(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return round(float(value), 2)
    return None


def windows_of(account: dict) -> dict[str, list]:
    """{label: [pct, resets epoch|None]} of an account in the pool's JSON form: "5h", "7d" and each
    model's own weekly window by its name."""
    usage = account.get("usage") if isinstance(account.get("usage"), dict) else {}
    out: dict[str, list] = {}
    for key, label in _LABELS:
        w = usage.get(key)  # type: ignore[union-attr]
        if isinstance(w, dict) and _pct(w.get("pct")) is not None:
            resets = _epoch(w.get("resets_at"))
            out[label] = [_pct(w.get("pct")), int(resets) if resets else None]
    for s in usage.get("scoped") or []:  # type: ignore[union-attr]
        if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] and _pct(s.get("pct")) is not None:
            resets = _epoch(s.get("resets_at"))
            out.setdefault(s["name"][:40], [_pct(s.get("pct")), int(resets) if resets else None])
    return out


# ---- the cache -------------------------------------------------------------------------------

def _read_json(path: str) -> dict:
    try:
        data = read_regular(path, 4 << 20)
        found = json.loads(data) if data else None
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def load_cache(state_dir: str | None = None) -> dict:
    """The cache (`{"accounts": {id: {...}}}`); {} when there is none or it cannot be read."""
    try:
        return _read_json(forecast_file(state_dir))
    except OSError:   # HOME unset
        return {}


def forecasts(state_dir: str | None = None) -> dict[str, dict]:
    """{account id: {label: forecast}} as the writer last made them (not checked against now)."""
    accounts = load_cache(state_dir).get("accounts")
    out: dict[str, dict] = {}
    if isinstance(accounts, dict):
        for aid, entry in accounts.items():
            if isinstance(entry, dict) and isinstance(entry.get("f"), dict):
                out[str(aid)] = entry["f"]
    return out


def _thin(points: list, label: str) -> list:
    """At most MAX_POINTS, spread over the period: the first stays (the period's start), and a
    reading closer than length/MAX_POINTS to the one before replaces that one."""
    from claude_pool.reconciler.forecast import window_seconds

    gap = window_seconds(label) / MAX_POINTS
    out: list = []
    for pt in points:
        if len(out) >= 2 and pt[0] - out[-2][0] < gap:
            out[-1] = pt
        else:
            out.append(pt)
    return out[-MAX_POINTS:]


def _same_reset(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 600   # type: ignore[arg-type]


def _update(entry: dict, at: float, windows: dict[str, list], now: float) -> dict:
    """The account's cache entry with the reading `windows` taken at `at`."""
    from claude_pool.reconciler import forecast

    old = entry.get("w") if isinstance(entry.get("w"), dict) else {}
    new_w: dict[str, dict] = {}
    made: dict[str, dict] = {}
    for label, (pct, resets) in windows.items():
        prev = old.get(label) if isinstance(old.get(label), dict) else {}   # type: ignore[union-attr]
        points = [p for p in prev.get("p") or [] if isinstance(p, list) and len(p) == 2]
        if not _same_reset(prev.get("r"), resets):
            points = []   # a new period
        points = forecast.current_period(points + [[at, pct]], max(now, at), resets, forecast.window_seconds(label))
        points = _thin([[int(t), p] for t, p in points], label)
        new_w[label] = {"r": resets, "p": points}
        fc = forecast.pace(points, max(now, at), resets, label)
        if fc is not None:
            made[label] = fc
    return {"at": at, "w": new_w, "f": made, "h": entry.get("h"), "ht": entry.get("ht")}


def _worth_a_line(entry: dict, at: float, windows: dict[str, list]) -> bool:
    last, last_t = entry.get("h"), entry.get("ht")
    if not isinstance(last, dict) or not isinstance(last_t, (int, float)) or at - last_t >= HEARTBEAT or at < last_t:
        return True
    if set(last) != set(windows):
        return True
    for label, (pct, resets) in windows.items():
        before = last.get(label)
        if not isinstance(before, list) or len(before) != 2 or not isinstance(before[0], (int, float)):
            return True
        if abs(before[0] - pct) >= MOVED or not _same_reset(before[1], resets):
            return True
    return False


# ---- the history file ------------------------------------------------------------------------

def _append(path: str, line: bytes) -> None:
    """One whole line, or nothing; rotated to `<path>.1` first when it would pass MAX_BYTES."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            return   # a FIFO or a device in its place is never written to
        if st.st_size + len(line) > MAX_BYTES:
            os.replace(path, path + ".1")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        end = st.st_size
        if end and hasattr(os, "pread") and os.pread(fd, 1, end - 1) != b"\n":
            line = b"\n" + line   # a line a killed writer left half-written stays apart from ours
        written = os.write(fd, line)
        if written != len(line):   # a full disk: take the part back
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass
    finally:
        os.close(fd)


def record(accounts: list, *, complete: bool = False, now: float | None = None,
           state_dir: str | None = None, renamed: dict[str, str] | None = None) -> None:
    """Take the readings of `accounts` (the pool's JSON form: id, usage, usage_at) that are newer
    than the ones already taken: a history line when one says something new, and the cache with its
    forecasts. `complete`: these are all the pool's accounts (the others are forgotten). `renamed`:
    old id -> new id, accounts renamed since (`claude-pool rename`): their cache entry moves to the
    new name and a rename line (`{"t": epoch, "r": [old, new]}`) makes `read` give the lines before
    it the new name too. Never raises."""
    import time

    try:
        now = time.time() if now is None else now
        base = state_dir or paths.state_dir()
        cache = load_cache(base)
        known = cache.get("accounts") if isinstance(cache.get("accounts"), dict) else {}
        changed = False
        lines: list[bytes] = []
        for old, new in (renamed or {}).items():
            if old in known and new not in known:   # type: ignore[operator]
                known[new] = known.pop(old)   # type: ignore[union-attr, index]
                lines.append((json.dumps({"t": int(now), "r": [old, new]}, separators=(",", ":")) + "\n").encode())
                changed = True
        for acc in accounts:
            if not isinstance(acc, dict) or not isinstance(acc.get("id"), str) or not acc["id"]:
                continue
            aid = acc["id"]
            at = _epoch(acc.get("usage_at"))
            entry = known.get(aid) if isinstance(known.get(aid), dict) else {}   # type: ignore[union-attr]
            if at is None or at > now + 120 or (isinstance(entry.get("at"), (int, float)) and at <= entry["at"]):
                continue   # nothing new (or a reading from a clock far ahead)
            windows = windows_of(acc)
            if not windows:
                continue
            entry = _update(entry, at, windows, now)
            if _worth_a_line(entry, at, windows):
                lines.append((json.dumps({"t": int(at), "a": aid, "w": windows}, separators=(",", ":"))
                              + "\n").encode("utf-8"))
                entry["h"], entry["ht"] = windows, at
            known[aid] = entry   # type: ignore[index]
            changed = True
        if complete:
            ids = {a.get("id") for a in accounts if isinstance(a, dict)}
            for aid in [k for k in known if k not in ids]:   # type: ignore[union-attr]
                del known[aid]   # type: ignore[union-attr]
                changed = True
        if not changed:
            return
        ensure_private_dir(base)
        for line in lines:
            _append(history_file(base), line)
        atomic_write(forecast_file(base), json.dumps({"v": 1, "accounts": known}, separators=(",", ":")).encode(),
                     mode=0o600)
    except Exception:  # noqa: BLE001 - history never breaks a save
        return


def record_pool(pool_json: dict, **kw: object) -> None:
    """`record` every account of a pool in its JSON form."""
    accounts = pool_json.get("accounts") if isinstance(pool_json, dict) else None
    if isinstance(accounts, list):
        record(accounts, complete=True, **kw)   # type: ignore[arg-type]


def read(since: float | None = None, state_dir: str | None = None) -> list[dict]:
    """Every history line (the rotated file's first), oldest first, `t` >= since; broken lines
    skipped. Each: {"t": epoch, "a": id, "w": {label: [pct, resets|None]}}, `a` the account's
    name now (a rename line renames the lines before it)."""
    out: list[dict] = []
    renames: list[tuple[float, str, str]] = []
    path = history_file(state_dir)
    for name in (path + ".1", path):
        try:
            data = read_regular(name, 4 * MAX_BYTES)
        except OSError:
            continue
        for raw in (data or b"").splitlines():
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if (isinstance(item, dict) and isinstance(item.get("t"), (int, float)) and isinstance(item.get("r"), list)
                    and len(item["r"]) == 2 and all(isinstance(x, str) for x in item["r"])):
                renames.append((item["t"], item["r"][0], item["r"][1]))
                continue
            if not (isinstance(item, dict) and isinstance(item.get("t"), (int, float)) and isinstance(item.get("a"), str)
                    and isinstance(item.get("w"), dict)):
                continue
            if since is not None and item["t"] < since:
                continue
            out.append(item)
    renames.sort()
    for item in out:
        for at, old, new in renames:
            if at >= item["t"] and item["a"] == old:
                item["a"] = new
    out.sort(key=lambda x: x["t"])
    return out


def record_saved(pool_path: "str | os.PathLike[str]", dump: "object", renamed: dict[str, str] | None = None) -> None:
    """`record_pool` after a save of the pool file at `pool_path`, when it is this user's pool (a
    pool written elsewhere, e.g. by a test to a path of its own, has no history here). `dump()`
    gives the pool's JSON (called only then); `renamed` as `record`'s. Never raises."""
    try:
        if os.path.abspath(os.fspath(pool_path)) != os.path.abspath(paths.pool_file()):
            return
        record_pool(dump(), renamed=renamed)   # type: ignore[operator]
    except Exception:  # noqa: BLE001 - history never breaks a save
        return
