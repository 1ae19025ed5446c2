"""Issue 20 "see the week": `claude-pool report` writes one self-contained HTML page. Rendered for
a 5-account pool (blocks, a paused account, a login deadline, keys, switches and 429s) from a
week of history: no external reference of any kind, every account and its forecast line, and, in a
real headless Chromium (Debian's package), a screenshot in which every account's curve shows in its
own colour (the PNG decoded with zlib: no imaging library).

CLAUDE_POOL_UPDATE_PICTURES=1 also copies the screenshot to docs/report.png (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from claude_pool.providers import history
from claude_pool.reconciler import report
from test_watch import D, H, KEY, five_account_pool, iso

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None)


def week_of_history(sandbox, now: float) -> None:
    """Seven days of readings for every account, every 30 minutes, each on its own slope."""
    state = str(sandbox.audit_path.parent)
    for k, aid in enumerate(("alice", "bob", "carol", "dave", "erin")):
        for i in range(7 * 48):
            t = now - 7 * D + i * 1800
            five = (i * (3 + k)) % 100
            seven = min(100.0, 5 + k * 8 + i * (0.1 + 0.05 * k))
            history.record([{"id": aid, "usage": {
                "five_hour": {"pct": five, "resets_at": iso(t + 5 * H - (i % 10) * 1800)},
                "seven_day": {"pct": seven, "resets_at": iso(now + 3 * D + 4 * H)},
                "scoped": [{"name": "Opus", "pct": min(100.0, seven + 5), "resets_at": iso(now + 3 * D)}] if aid == "erin" else []},
                "usage_at": iso(t)}], now=t, state_dir=state)


def make_report(sandbox, fake, tmp_path: Path) -> tuple[Path, str]:
    now = time.time()
    week_of_history(sandbox, now)   # first: the pool's own readings (and alice's last hours) come after
    five_account_pool(sandbox, fake, now)
    out = tmp_path / "week.html"
    proc = sandbox.ok("report", "--out", str(out))
    assert str(out) in proc.stdout
    return out, out.read_text(encoding="utf-8")


EXTERNAL = [r"https?:", r"//[a-z0-9.-]+\.[a-z]{2,}", r"@import", r"url\(", r"<script", r"<link", r"<img",
            r"<iframe", r"<object", r"<embed", r"\bsrc\s*=", r"\bhref\s*=", r"xlink:href", r"ftp:", r"data:"]


@pytest.mark.slow   # two installs / a five-account week: the full suite (the quick loop keeps its budget)
def test_the_report_is_self_contained(sandbox, fake, tmp_path: Path) -> None:
    path, page = make_report(sandbox, fake, tmp_path)
    for pattern in EXTERNAL:
        assert not re.search(pattern, page, re.IGNORECASE), f"{pattern!r} in the page"
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 5
    for aid in ("alice", "bob", "carol", "dave", "erin"):
        assert f">{aid} <span" in page or f">{aid}<" in page, aid
    assert "paused until" in page and "holiday" in page
    assert "blocked" in page and "login ends" in page
    assert "429 on bob" in page and "keys (k1)" in page
    assert re.search(r"on API keys \(billed\) \d", page), "hours on API keys"
    # every account has a forecast line: carol's weekly pace runs out before its reset, bob's does
    # not, dave's window is already full
    lines = re.findall(r'<p class="fc">([^<]*)</p>', page)
    assert len(lines) == 5, lines
    assert re.fullmatch(r"at this week&#x27;s pace carol runs out \w{3} \d\d:\d\d, \d+ h before its reset "
                        r"\(0\.4%/h\)", lines[2]), lines
    assert re.fullmatch(r"at this week&#x27;s pace bob reaches ~86% by its reset \w{3} \d\d:\d\d \(0\.3%/h\)",
                        lines[1]), lines
    assert lines[3].startswith("dave&#x27;s 7d window is full until"), lines
    assert KEY not in page and "sk-ant" not in page and "accessToken" not in page
    assert os.stat(path).st_mode & 0o077 == 0


def test_the_report_with_no_history_still_renders(sandbox, fake, tmp_path: Path) -> None:
    fake.add_account("alice@example.com")
    sandbox.seed("alice@example.com")
    out = tmp_path / "r.html"
    sandbox.ok("report", "--out", str(out))
    page = out.read_text(encoding="utf-8")
    assert "not enough readings yet for a forecast" in page and "none in the last 7 days" in page


# ---- a real browser ------------------------------------------------------------------------------

def read_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixels) of an 8-bit RGB/RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _c, _f, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            channels = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(out)


def colour_counts(png: bytes, colours: list[str]) -> dict[str, int]:
    width, height, channels, px = read_png(png)
    wanted = {bytes.fromhex(c[1:]): c for c in colours}
    counts = dict.fromkeys(colours, 0)
    for i in range(0, len(px), channels):
        rgb = px[i:i + 3]
        if rgb in wanted:
            counts[wanted[rgb]] += 1
    return counts


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                             "./dev test installs it when run as root): the report's screenshot "
                                             "test needs a real browser")
def test_the_report_in_a_headless_browser_shows_every_accounts_curve(sandbox, fake, tmp_path: Path) -> None:
    path, page = make_report(sandbox, fake, tmp_path)
    shot = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--hide-scrollbars", "--force-device-scale-factor=1",
                           f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,1600",
                           path.as_uri()], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    png = shot.read_bytes()
    counts = colour_counts(png, report.COLOURS[:5] + [report.RED_429])
    for i, aid in enumerate(("alice", "bob", "carol", "dave", "erin")):
        # a 3.5-pixel line across a week's width: thousands of pixels of exactly its colour
        assert counts[report.COLOURS[i]] >= 500, (aid, counts)
    assert counts[report.RED_429] > 0, counts   # bob's 429 marker
    if os.environ.get("CLAUDE_POOL_UPDATE_PICTURES") == "1":
        shutil.copyfile(shot, REPO / "docs" / "report.png")


def test_the_colour_count_tells_a_missing_curve(tmp_path: Path) -> None:
    """The check above would fail if a curve were missing: a PNG with only two colours drawn."""
    width, height = 40, 10
    rows = b""
    for y in range(height):
        colour = bytes.fromhex(report.COLOURS[0][1:]) if y < 5 else b"\xff\xff\xff"
        rows += b"\x00" + colour * width
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    counts = colour_counts(png, report.COLOURS[:2])
    assert counts == {report.COLOURS[0]: 200, report.COLOURS[1]: 0}
