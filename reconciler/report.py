"""`claude-pool report`: the last 7 days as one self-contained HTML page (issue 20: "see the week").

Inline SVG and CSS only: no script, no font, no image, no link to anything outside the file (the
tests check, and render it in a real headless Chromium). One panel per account: its windows over
the week (7d a thick line in the account's own colour, 5h a thin pale one, each model's weekly
window dashed), the hours on API keys shaded behind, the account's 429s marked, the switches to it
ticked; under it the forecast at this week's pace (reconciler/forecast.py). Everything comes from
files already on disk (the history, the pool, the audit log): no network.
"""

from __future__ import annotations

import html
import os
import time
from datetime import datetime

from . import forecast
from .status import duration
from .watch import Snapshot, _block, _epoch, _label, _pause, _when, gather, key_seconds

DAYS = 7
WIDTH, LEFT, RIGHT = 1100, 46, 1080
PANEL_H, TOP, BOTTOM = 170, 14, 144
#: one colour per account, in pool order (a 429 is this red, never an account's colour)
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939"]
RED_429 = "#d62728"
KEY_BAND = "#ececec"
GAP = 6 * 3600.0   # readings further apart than this are not joined by a line

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; background: #fff;
       margin: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 2px; }
.meta, .note { color: #555; }
.fc { margin: 2px 0 0; }
.warn { color: #a15c00; }
.bad { color: #b00020; }
svg { display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
table { border-collapse: collapse; margin-top: 6px; }
td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
"""


def _x(t: float, start: float, end: float) -> float:
    return LEFT + (t - start) / (end - start) * (RIGHT - LEFT)


def _y(pct: float) -> float:
    return BOTTOM - max(0.0, min(100.0, pct)) / 100.0 * (BOTTOM - TOP)


def series(lines: list[dict], aid: str) -> dict[str, list[tuple[float, float]]]:
    """{window label: [(epoch, pct)]} of one account from the history's lines."""
    out: dict[str, list[tuple[float, float]]] = {}
    for item in lines:
        if item.get("a") != aid:
            continue
        for label, w in item["w"].items():
            if isinstance(w, list) and w and isinstance(w[0], (int, float)):
                out.setdefault(label, []).append((float(item["t"]), float(w[0])))
    return out


def _polylines(points: list[tuple[float, float]], start: float, end: float) -> list[str]:
    """`points` attribute strings, one per run of readings with no long gap."""
    runs: list[list[tuple[float, float]]] = []
    for t, p in sorted(points):
        if t < start or t > end:
            continue
        if not runs or t - runs[-1][-1][0] > GAP:
            runs.append([])
        runs[-1].append((t, p))
    out = []
    for run in runs:
        if len(run) == 1:   # a lone reading: a short flat dash, so it shows
            t, p = run[0]
            run = [(t, p), (min(end, t + 1800), p)]
        out.append(" ".join(f"{_x(t, start, end):.1f},{_y(p):.1f}" for t, p in run))
    return out


def _key_spans(snap: Snapshot, start: float, end: float) -> list[tuple[float, float]]:
    """The stretches on API keys in [start, end]."""
    spans: list[tuple[float, float]] = []
    moves = [(e["t"], e["after"].startswith("apikey")) for e in snap.events if e["kind"] == "switch"]
    first = next((e for e in snap.events if e["kind"] == "switch"), None)
    on = first["before"].startswith("apikey") if first else snap.pool.get("mode") == "apikey"
    since = start
    for t, after in moves:
        if t > end:
            break
        if on and t > since:
            spans.append((max(since, start), t))
        on, since = after, max(t, start)
    if on:
        spans.append((since, end))
    return [(a, b) for a, b in spans if b > a]


def panel(snap: Snapshot, acc: dict, colour: str, lines: list[dict], start: float, end: float) -> str:
    aid = str(acc.get("id", ""))
    parts = [f'<svg width="{WIDTH}" height="{PANEL_H}" viewBox="0 0 {WIDTH} {PANEL_H}" role="img" '
             f'aria-label="{html.escape(aid)} usage over the last {DAYS} days">']
    for a, b in _key_spans(snap, start, end):
        parts.append(f'<rect x="{_x(a, start, end):.1f}" y="{TOP}" width="{max(1.0, _x(b, start, end) - _x(a, start, end)):.1f}" '
                     f'height="{BOTTOM - TOP}" fill="{KEY_BAND}"/>')
    for pct in (0, 50, 100):
        parts.append(f'<line x1="{LEFT}" x2="{RIGHT}" y1="{_y(pct):.1f}" y2="{_y(pct):.1f}" stroke="#d0d0d0" '
                     f'stroke-width="1"/><text x="{LEFT - 6}" y="{_y(pct) + 4:.1f}" text-anchor="end">{pct}%</text>')
    day = datetime.fromtimestamp(start).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    while day <= end:
        if day >= start:
            x = _x(day, start, end)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{BOTTOM}" stroke="#e4e4e4" stroke-width="1"/>'
                         f'<text x="{x + 3:.1f}" y="{BOTTOM + 14}">{datetime.fromtimestamp(day).strftime("%a %d")}</text>')
        day = (datetime.fromtimestamp(day + 36 * 3600).replace(hour=0, minute=0, second=0, microsecond=0)).timestamp()
    found = series(lines, aid)
    # the reading the pool holds now, so a fresh pool shows where it stands
    now_at = _epoch(acc.get("usage_at"))
    usage = acc.get("usage") or {}
    if now_at is not None and start <= now_at <= end:
        for key, label in (("five_hour", "5h"), ("seven_day", "7d")):
            w = usage.get(key) or {}
            if isinstance(w.get("pct"), (int, float)):
                found.setdefault(label, []).append((now_at, float(w["pct"])))
    for label in sorted(found, key=lambda k: {"5h": 0, "7d": 2}.get(k, 1)):
        style = {"5h": f'stroke="{colour}" stroke-opacity="0.45" stroke-width="1.5"',
                 "7d": f'stroke="{colour}" stroke-width="3.5"'}.get(
            label, f'stroke="{colour}" stroke-opacity="0.7" stroke-width="2" stroke-dasharray="6 4"')
        for pts in _polylines(found[label], start, end):
            parts.append(f'<polyline class="w-{html.escape(label)}" fill="none" stroke-linejoin="round" {style} '
                         f'points="{pts}"><title>{html.escape(aid)} {html.escape(label)}</title></polyline>')
    for e in snap.events:
        x = _x(e["t"], start, end)
        if e["t"] < start:
            continue
        if e["kind"] == "429" and e.get("target") == aid:
            parts.append(f'<path d="M{x - 5:.1f},{TOP - 2} L{x + 5:.1f},{TOP - 2} L{x:.1f},{TOP + 7} Z" fill="{RED_429}">'
                         f'<title>429 {html.escape(e.get("reason", ""))}</title></path>')
        elif e["kind"] == "switch" and _label(e["after"]) == aid:
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{BOTTOM - 8}" y2="{BOTTOM + 2}" stroke="#444" '
                         f'stroke-width="1.5"><title>switched to {html.escape(aid)}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def forecast_line(aid: str, per_window: dict | None, now: float) -> str:
    """`at this week's pace a runs out Thu 14:00, 9 h before its reset` (or why there is none)."""
    fc = forecast.main_one(per_window, now)
    if fc is None:
        return f"{aid}: not enough readings yet for a forecast (or its use is flat)"
    pace = "this week's" if fc["window"] == "7d" else "this session's" if fc["window"] == "5h" \
        else f"this week's {fc['window']}"
    resets = fc.get("resets_at")
    if fc.get("pct", 0) >= 100:
        return f"{aid}'s {fc['window']} window is full" + (f" until {_when(resets, now)}" if resets else "")
    if fc.get("out_before_reset") is False:
        return (f"at {pace} pace {aid} reaches ~{fc['at_reset']:.0f}% by its reset {_when(resets, now)} "
                f"({fc['pace']:.2g}%/h)")
    text = f"at {pace} pace {aid} runs out {_when(fc['out_at'], now)}"
    if resets:
        text += f", {_hours(resets - fc['out_at'])} before its reset"
    return text + f" ({fc['pace']:.2g}%/h)"


def _hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:.0f} h" if h >= 1.5 else f"{max(1, round(seconds / 60))} min"


def render(snap: Snapshot, lines: list[dict]) -> str:
    """The page."""
    now = snap.now
    start, end = now - DAYS * 86400, now
    pool = snap.pool
    accounts = pool.get("accounts") or []
    body: list[str] = [f"<h1>claude-pool: the last {DAYS} days</h1>",
                       f'<p class="meta">made {html.escape(datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M"))}'
                       f" from the history of readings, the pool and the audit log; thick line: 7-day window, "
                       f"thin: 5-hour, dashed: a model's weekly; grey bands: on API keys; red marks: 429s; "
                       f"ticks: switches to the account</p>"]
    if snap.error:
        body.append(f'<p class="bad">{html.escape(snap.error)}</p>')
    held = pool.get("current", "") if pool.get("mode") == "account" else ""
    for i, acc in enumerate(accounts):
        aid = str(acc.get("id", ""))
        colour = COLOURS[i % len(COLOURS)]
        notes = []
        if aid == held:
            notes.append("held now")
        for note, cls in ((_block(acc, now), "bad"), (_pause(acc, now), "warn")):
            if note:
                notes.append(f'<span class="{cls}">{html.escape(note)}</span>')
        if isinstance(acc.get("priority"), int):
            notes.append(f"tier {acc['priority']}")
        ends = acc.get("login_ends")
        if acc.get("needs_relogin"):
            notes.append('<span class="bad">needs re-login</span>')
        elif isinstance(ends, (int, float)):
            notes.append(f'<span class="warn">login ends {html.escape(_when(ends, now))}</span>' if ends > now
                         else '<span class="bad">login expired</span>')
        email = f' <span class="note">{html.escape(str(acc.get("email", "")))}</span>' if acc.get("email") else ""
        body.append(f'<h2 id="acc-{i}">{html.escape(aid)}{email}'
                    + (f' <span class="note">· {" · ".join(notes)}</span>' if notes else "") + "</h2>")
        body.append(panel(snap, acc, colour, lines, start, end))
        body.append(f'<p class="fc">{html.escape(forecast_line(aid, snap.forecasts.get(aid), now))}</p>')
    keys = pool.get("api_keys") or []
    billed = key_seconds(pool, snap.events, start, end)
    body.append("<h2>API keys</h2>")
    if keys:
        body.append(f"<p>{len(keys)} key(s): {html.escape(', '.join(str(k.get('id')) for k in keys))}; "
                    f"on API keys (billed) {duration(billed) if billed else 'not at all'} in the last {DAYS} days</p>")
    else:
        body.append("<p>no API key in the pool</p>")
    recent = [e for e in snap.events if e["t"] >= start][-30:]
    body.append("<h2>Switches and 429s</h2>")
    if recent:
        rows = []
        for e in reversed(recent):
            when = html.escape(_when(e["t"], now))
            if e["kind"] == "switch":
                what = f"{html.escape(_label(e['before']))} → {html.escape(_label(e['after']))}"
                why = html.escape(e.get("reason", ""))
            else:
                what = f'<span class="bad">429 on {html.escape(e["target"])}</span>'
                why = html.escape(e.get("reason", ""))
            rows.append(f"<tr><td>{when}</td><td>{what}</td><td class=\"note\">{why}</td></tr>")
        body.append("<table>" + "".join(rows) + "</table>")
    else:
        body.append(f"<p>none in the last {DAYS} days</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>claude-pool report</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(out: str, now: float | None = None) -> str:
    """Render the page from what is on disk and write it to `out` (atomically); returns its path."""
    from claude_pool.providers import history
    from claude_pool.providers.fsutil import atomic_write

    snap = gather(time.time() if now is None else now)
    page = render(snap, history.read(since=snap.now - DAYS * 86400))
    path = os.path.abspath(out)
    atomic_write(path, page.encode("utf-8"), mode=0o600)
    return path
