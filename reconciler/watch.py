"""`claude-pool watch`: the pool, redrawn every few seconds in the terminal (issue 20: "see it live").

Standard library only for the drawing (ANSI escapes, no curses): one row per account with a bar
per window (5h, 7d, each model's own weekly window), the time to each reset, the held one marked,
blocks, pauses, login deadlines and the pace forecast; the keys and the billed-key time today; the
last switches and 429s from the audit log.

No network: every frame reads what the runs and the hooks stored (the pool's readings, the
statusline's feed of the held account, the history's forecasts, the audit log); the readings are
the hooks' own, so watching changes nothing. `q` quits (the terminal is put in cbreak mode and
restored on exit, on Ctrl-C and on SIGTERM); a narrow terminal gets fewer columns; `--once` prints
one frame, with no escape codes when stdout is not a terminal.

`gather` collects one snapshot (plain data, no secret), `frame` renders it: both are used by
`report` too, and the tests call `frame` with a fixed `now`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from claude_pool.providers import paths

from . import forecast
from .status import duration

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
CYAN = "\x1b[36m"


# ---- the snapshot ------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """What one frame shows: the pool as plain JSON (never a token: only the fields read below
    are used), the forecasts, the audit log's recent events and when it was taken."""

    now: float
    pool: dict
    forecasts: dict = field(default_factory=dict)
    events: list = field(default_factory=list)      # the audit log's lines of interest, oldest first
    error: str = ""
    hook: tuple | None = None                        # (what, epoch) of the newest run Claude Code started


def _epoch(value: object) -> float | None:
    from claude_pool.schema.timefmt import parse_time

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value > 0 else None
    when = parse_time(value)
    return when.timestamp() if when is not None else None


def _audit_records(names: list[str], needles: tuple[bytes, ...], *, newest_first: bool = False):
    """The audit log's events (JSON objects) in these files, in this order, from the lines that
    hold one of `needles` (a cheap filter before parsing); unreadable files and lines skipped."""
    from claude_pool.providers.fsutil import read_regular

    for name in names:
        try:
            data = read_regular(name, 8 << 20)
        except OSError:
            continue
        lines = (data or b"").splitlines()
        for raw in reversed(lines) if newest_first else lines:
            if not any(n in raw for n in needles):
                continue
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if isinstance(ev, dict):
                yield ev


def last_hook(path: str | None = None) -> tuple[str, float] | None:
    """(what, epoch) of the newest audit event a run Claude Code started wrote (a hook, or the
    apiKeyHelper's background run), from the audit log or its last rotation; None: none there."""
    base = path or paths.audit_log()
    for ev in _audit_records([base, f"{base}.1"], (b'"hook:', b'"helper"'), newest_first=True):
        trigger = ev.get("trigger")
        if not isinstance(trigger, str) or not (trigger.startswith("hook:") or trigger == "helper"):
            continue
        t = _epoch(ev.get("time"))
        if t is not None:
            return (trigger[5:] if trigger.startswith("hook:") else "apiKeyHelper"), t
    return None


def hooks_line(now: float, path: str | None = None) -> str:
    """`list`'s last line: when Claude Code last ran claude-pool (is the plugin doing its job?)."""
    found = last_hook(path)
    if found is None:
        return "hooks: none in the audit log yet (the plugin runs them at every session start and prompt: see README, Install)"
    what, t = found
    return f"hooks: the last ran {duration(max(0.0, now - t))} ago ({what})"


def audit_events(since: float, path: str | None = None) -> list[dict]:
    """The switches and 429s of the audit log (and its rotated files) since `since`, oldest first:
    {"t", "kind": "switch"|"429", "before", "after", "target", "reason", "until"}."""
    base = path or paths.audit_log()
    out: list[dict] = []
    for ev in _audit_records([f"{base}.{i}" for i in (3, 2, 1)] + [base], (b"save_pool_state", b"rate_limited")):
        t = _epoch(ev.get("time"))
        if t is None or t < since:
            continue
        if ev.get("event") == "apply" and ev.get("action") == "save_pool_state" and ev.get("result") == "ok":
            if ev.get("before") != ev.get("after"):
                out.append({"t": t, "kind": "switch", "before": str(ev.get("before", "")),
                            "after": str(ev.get("after", "")), "reason": str(ev.get("reason", ""))})
        elif ev.get("event") == "rate_limited" and ev.get("action") == "block" and ev.get("result") == "ok":
            out.append({"t": t, "kind": "429", "target": str(ev.get("target", "")),
                        "reason": str(ev.get("reason", "")), "until": _epoch(ev.get("until"))})
    out.sort(key=lambda e: e["t"])
    return out


def _overlay_feed(pool: dict) -> None:
    """The statusline's reading of the held account, when it is newer than the pool's."""
    from claude_pool.providers import sidecars

    try:
        feed = sidecars.read_feed()
    except OSError:
        return
    if not isinstance(feed, dict) or pool.get("mode") != "account":
        return
    acc = next((a for a in pool.get("accounts", []) if a.get("id") == feed.get("name") == pool.get("current")), None)
    at = feed.get("at")
    if acc is None or not isinstance(at, (int, float)) or at <= (_epoch(acc.get("usage_at")) or 0):
        return
    usage = dict(acc.get("usage") or {})
    for name in ("five_hour", "seven_day"):
        w = feed.get(name)
        if isinstance(w, dict) and isinstance(w.get("pct"), (int, float)):
            usage[name] = {"pct": float(w["pct"]), "resets_at": w.get("resets_at")}
    acc["usage"], acc["usage_at"] = usage, at


def gather(now: float | None = None) -> Snapshot:
    """The pool as the runs and hooks left it (no network, no lock: the pool is replaced whole)."""
    from claude_pool.providers import history
    from claude_pool.providers.poolfile import PoolFile

    from .deadlines import blob_deadline_ms

    now = time.time() if now is None else now
    try:
        real = PoolFile().observe()
    except Exception as exc:  # noqa: BLE001 - a frame says what is wrong and goes on
        return Snapshot(now=now, pool={}, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    ends = {a.id: blob_deadline_ms(a.blob) for a in real.accounts}
    pool = real.model_dump(mode="json")
    for acc in pool.get("accounts", []):
        acc.pop("blob", None)   # the one secret of an account: never carried further
        ms = ends.get(acc.get("id"))
        acc["login_ends"] = ms / 1000 if ms else None
    for key in pool.get("api_keys", []):
        key.pop("key", None)
    _overlay_feed(pool)
    return Snapshot(now=now, pool=pool, forecasts=history.forecasts(), events=audit_events(now - 8 * 86400),
                    hook=last_hook())


def key_seconds(pool: dict, events: list, start: float, end: float) -> float:
    """Seconds on API keys (billed) between start and end: from the switches of the audit log
    (or, without them, the pool's own memory of its switches) and the pool's mode now."""
    moves: list[tuple[float, bool, bool]] = []   # (when, on keys before, on keys after)
    for e in events:
        if e.get("kind") == "switch":
            moves.append((e["t"], e["before"].startswith("apikey"), e["after"].startswith("apikey")))
    if not moves:
        for h in pool.get("switches") or []:
            t = _epoch(h.get("at")) if isinstance(h, dict) else None
            if t is not None:
                moves.append((t, not h.get("before"), not h.get("after")))
    moves.sort()
    on_now = pool.get("mode") == "apikey"
    total, state, since = 0.0, (moves[0][1] if moves else on_now), start
    for t, _before, after in moves:
        if t >= end:
            break
        if state and t > since:
            total += t - max(since, start)
        state, since = after, max(t, start)
    if state:
        total += max(0.0, end - max(since, start))
    return total


def _midnight(now: float) -> float:
    local = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.timestamp()


# ---- the frame ---------------------------------------------------------------------------------

def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{RESET}" if color and code else text


def _level(pct: float) -> str:
    return RED if pct >= 90 else YELLOW if pct >= 70 else GREEN


def bar(pct: float, width: int, color: bool) -> str:
    """`[#####-----]` (width inside the brackets)."""
    pct = max(0.0, min(100.0, pct))
    full = int(round(pct / 100 * width))
    inside = "#" * full + "-" * (width - full)
    return "[" + _paint(inside, _level(pct), color) + "]"


def windows_of(acc: dict) -> list[tuple[str, float | None, float | None]]:
    """[(label, pct, resets epoch)] of an account: 5h, 7d, each model's weekly."""
    usage = acc.get("usage") or {}
    out = []
    for key, label in (("five_hour", "5h"), ("seven_day", "7d")):
        w = usage.get(key) or {}
        out.append((label, w.get("pct") if isinstance(w.get("pct"), (int, float)) else None, _epoch(w.get("resets_at"))))
    for s in usage.get("scoped") or []:
        if isinstance(s, dict) and s.get("name"):
            out.append((str(s["name"]), s.get("pct") if isinstance(s.get("pct"), (int, float)) else None,
                        _epoch(s.get("resets_at"))))
    return out


def _pause(acc: dict, now: float) -> str:
    """`paused until Fri 10:00 (reason)` or `paused`; '' when not paused (or the pause ended)."""
    p = acc.get("paused")
    if not p:
        return ""
    if not isinstance(p, dict):
        return "paused"
    until = _epoch(p.get("until"))
    if until is not None and until <= now:
        return ""
    text = "paused" + (f" until {_when(until, now)}" if until else "")
    return text + (f" ({p['reason']})" if p.get("reason") else "")


def _block(acc: dict, now: float) -> str:
    b = acc.get("block")
    if not isinstance(b, dict):
        return ""
    until = _epoch(b.get("until"))
    if until is None or until <= now:
        return ""
    scope = f" for {b['model']}" if b.get("model") else ""
    return f"blocked{scope} {duration(until - now)} (429)"


def _when(epoch: float, now: float) -> str:
    """A local time: `14:05` today, `Thu 14:05` within a week, else the date."""
    t = datetime.fromtimestamp(epoch)
    n = datetime.fromtimestamp(now)
    if t.date() == n.date():
        return t.strftime("%H:%M")
    if abs(epoch - now) < 6 * 86400:
        return t.strftime("%a %H:%M")
    return t.strftime("%Y-%m-%d")


def _cell(label: str, pct: float | None, resets: float | None, now: float, bar_w: int, color: bool) -> str:
    if pct is None:
        return f"{label} ?"
    shown = f"{math.floor(pct)}%"
    if resets is not None and resets > now:
        shown += f" {duration(resets - now)}"
    if bar_w <= 0:
        return f"{label} {shown}"
    return f"{label} {bar(pct, bar_w, color)} {shown}"


def _visible(text: str) -> int:
    """Length on screen (escape codes take none)."""
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", text))


def frame(snap: Snapshot, width: int = 100, color: bool = False, live: bool = False) -> str:
    """One frame as text, fitted to `width` columns (`live`: redrawn, so `q` quits)."""
    now = snap.now
    lines: list[str] = []
    pool = snap.pool
    stamp = datetime.fromtimestamp(now).strftime("%H:%M:%S")
    if snap.error:
        return f"claude-pool watch  {stamp}\n{snap.error}\n"
    mode = pool.get("mode", "account")
    held = pool.get("current", "") if mode == "account" else ""
    if mode == "apikey":
        head = f"on API keys ({pool.get('current_key') or '-'}): billed"
    else:
        head = f"holding {held}" if held else "holding nothing"
    title = f"claude-pool watch  {stamp}  {head}"
    lines.append(_paint(title, BOLD, color) + ("   (q quits)" if live and width >= 60 else ""))
    accounts = pool.get("accounts") or []
    if not accounts and not pool.get("api_keys"):
        lines.append("the pool is empty: run `claude-pool import` after /login in Claude Code")
        return "\n".join(lines) + "\n"
    # columns by width: bars of 10, of 5, or none; the forecast and notes while they fit
    bar_w = 10 if width >= 110 else 5 if width >= 80 else 0
    id_w = max([len(str(a.get("id", ""))) for a in accounts] + [2])
    for acc in accounts:
        aid = str(acc.get("id", ""))
        mark = "*" if aid == held else " "
        cells = []
        for label, pct, resets in windows_of(acc):
            if width < 50 and label not in ("5h", "7d"):
                continue
            cells.append(_cell(label, pct, resets, now, bar_w, color))
        if acc.get("needs_relogin"):
            cells = ["needs re-login (/login in Claude Code, then `claude-pool import`)"]
        elif _epoch(acc.get("usage_at")) is None:
            cells = ["usage unknown"]
        notes = []
        for note, code in ((_block(acc, now), RED), (_pause(acc, now), YELLOW)):
            if note:
                notes.append(_paint(note, code, color))
        if isinstance(acc.get("priority"), int):
            notes.append(f"tier {acc['priority']}")
        ends = acc.get("login_ends")
        if isinstance(ends, (int, float)) and not acc.get("needs_relogin"):
            left = ends - now
            notes.append(_paint(f"login ends {_when(ends, now)}" if left > 0 else "login expired",
                                YELLOW if left < 3 * 86400 else "", color))
        pace = forecast.text(forecast.main_one(snap.forecasts.get(aid), now), now)
        if pace:
            notes.append(_paint("pace " + pace, CYAN, color))
        row = f"{_paint(mark, BOLD, color)} {aid.ljust(id_w)}  " + "  ".join(cells)
        for note in notes:   # while it fits
            if _visible(row) + 2 + _visible(note) > width:
                break
            row += "  " + note
        lines.append(row)
    keys = pool.get("api_keys") or []
    if keys:
        billed = key_seconds(pool, snap.events, _midnight(now), now)
        names = ", ".join(("*" if mode == "apikey" and k.get("id") == pool.get("current_key") else "") + str(k.get("id"))
                          for k in keys)
        lines.append(f"keys: {names}   billed-key time today: {duration(billed) if billed else 'none'}")
    recent = snap.events[-5:] if width >= 50 else snap.events[-2:]
    if recent:
        lines.append(_paint("recent:", DIM, color))
        for e in reversed(recent):
            if e["kind"] == "switch":
                text = f"  {_when(e['t'], now)}  {_label(e['before'])} -> {_label(e['after'])}"
                text += f"  ({e['reason']})" if e.get("reason") else ""
            else:
                text = f"  {_when(e['t'], now)}  429 on {e['target']}" + (f": {e['reason']}" if e.get("reason") else "")
            lines.append(text[:width])
    if snap.hook is not None:   # is the plugin doing its job: when Claude Code last ran claude-pool
        what, t = snap.hook
        lines.append(_paint(f"hooks: the last ran {duration(max(0.0, now - t))} ago ({what})", DIM, color))
    return "\n".join(line if _visible(line) <= width else line[:width] for line in lines) + "\n"


def _label(state: str) -> str:
    """`account:alice` -> `alice`, `apikey:k1` -> `keys (k1)`."""
    kind, _, name = state.partition(":")
    if kind == "apikey":
        return f"keys ({name})"
    return name if kind == "account" else state


# ---- the loop ----------------------------------------------------------------------------------

def run(interval: float = 3.0, once: bool = False) -> int:
    import shutil

    out = sys.stdout
    tty = out.isatty()
    if once or not tty or not sys.stdin.isatty():
        width = shutil.get_terminal_size((100, 24)).columns if tty else int(os.environ.get("COLUMNS", "100") or 100)
        out.write(frame(gather(), width, color=tty))
        out.flush()
        return 0
    import select
    import signal
    import termios
    import tty as ttymod

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def stop(_sig: int, _frm: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        ttymod.setcbreak(fd)
        out.write("\x1b[?25l")   # hide the cursor
        while True:
            size = shutil.get_terminal_size((100, 24))
            text = frame(gather(), size.columns, color=True, live=True)
            out.write("\x1b[H\x1b[2J" + text.replace("\n", "\x1b[K\n"))
            out.flush()
            ready, _, _ = select.select([fd], [], [], max(0.5, interval))
            if ready:
                key = os.read(fd, 1)
                if key in (b"q", b"Q", b"\x03", b"\x04"):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGTERM, previous)
        out.write("\x1b[?25h" + RESET + "\n")
        out.flush()
    return 0
