"""The two plaintext files beside the pool, in one place: `status.json` and `usage-feed.json`.

Neither holds a secret; both are written atomically (0600) and read with the standard library
only, by the hot paths (`status`, `statusline`, `helper`, the session-start look) and the engine
alike.

- `status.json` (`Status`): what `claude-pool status` prints, precomputed at every pool save, the
  accounts' known login deadlines (ids, emails and times: no secret), plus `pool`: the identity
  (size, mtime_ns, inode) of the pool file it was made from. It is trusted only while the pool is
  still that very file; any other writer (the Go tool) makes `status` rebuild it.
- `usage-feed.json` (`Feed`): the active account's usage as the statusline last saw it in Claude
  Code's statusLine input (free data, no API call); observe takes it as a cached reading and
  reconciler/model.py takes the model from it.
"""

from __future__ import annotations

import json
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a hot path)

from . import paths

if TYPE_CHECKING:  # `status` runs on every statusline render
    from typing import TypedDict

    class Status(TypedDict, total=False):
        mode: str                 # "account" | "apikey" | "empty"
        name: str                 # the active account or key
        since: str | None         # when the pool last switched (RFC 3339), for the feed's check
        resets_at: str            # apikey: when the first account is back (RFC 3339)
        resets_at_epoch: float    # the same, as epoch seconds (no datetime parsing on the hot path)
        pool: list[int] | None    # identity of the pool file this was made from
        held: dict                # account mode: the active account's reading and block, as the
                                  # pool file has them (no blob): the prompt hook's known-wall check
        # login deadlines (reconciler/deadlines.py status_fields), only the known ones:
        login_ends_epoch: float   # the earliest, epoch seconds (the statusline's marker)
        logins_end: list          # [[id, email, epoch seconds], ...] earliest first (the session-start notice)


    class FeedWindow(TypedDict):
        pct: float
        resets_at: float | None   # epoch seconds


    class Feed(TypedDict, total=False):
        name: str                 # the account active when it was recorded
        at: float                 # epoch seconds
        since: str | None         # the pool's switched_at then (Status.since)
        five_hour: FeedWindow
        seven_day: FeedWindow
        model: str
else:
    Status = FeedWindow = Feed = dict


#: status.json and usage-feed.json are a few KB; anything much larger is not ours
SIDECAR_LIMIT = 1 << 20


def _read_json(path: str) -> dict | None:
    """The file's JSON object, or None: missing, unreadable, not JSON, or not a regular file (a
    FIFO is never opened for a blocking read: providers/fsutil.py `read_text`)."""
    from .fsutil import read_text

    try:
        data = json.loads(read_text(path, SIDECAR_LIMIT))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: str, data: dict) -> None:
    from pathlib import Path

    from .fsutil import atomic_write  # writers only: readers stay light

    atomic_write(Path(path), json.dumps(data).encode("utf-8"), mode=0o600, follow_symlink=False)


def identity(st: os.stat_result) -> list[int]:
    """Which pool file this is: size, mtime in ns, inode. Every writer (this tool's and the Go
    tool's) replaces the file by a rename, so any write changes it, even within one second."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def current_identity(path: "str | os.PathLike[str]") -> list[int] | None:
    try:
        return identity(os.stat(path))
    except OSError:
        return None


# ---- status.json ---------------------------------------------------------------------------

def read_status(status_path: str | None = None, pool_path: str | None = None) -> Status | None:
    """The summary, only while it describes the pool file as it is now."""
    data = _read_json(status_path or paths.status_file())
    if data is None or "mode" not in data:
        return None
    if data.get("pool") != current_identity(pool_path or paths.pool_file()):
        return None  # made from another pool file: something else wrote the pool since
    return data  # type: ignore[return-value]


def write_status(summary: Status | dict, pool_identity: list[int] | None, status_path: "str | os.PathLike[str] | None" = None) -> None:
    _write_json(str(status_path or paths.status_file()), dict(summary, pool=pool_identity))


def carry_status(read_from: list[int], written: list[int], *, name: str | None = None) -> None:
    """A hot path rewrote the pool without changing what `status` shows (a usage reading) or
    changing only the key's name (the helper): move status.json over to the file just written,
    when it described the one read; else leave it (`status` rebuilds it once)."""
    path = paths.status_file()
    data = _read_json(path)
    if data is None or data.get("pool") != read_from:
        return
    if name is not None:
        if data.get("mode") != "apikey":
            return
        data["name"] = name
    try:
        write_status(data, written, path)
    except OSError:
        pass


# ---- usage-feed.json -----------------------------------------------------------------------

def read_feed(path: str | None = None) -> Feed | None:
    data = _read_json(path or paths.feed_file())
    return data  # type: ignore[return-value]


def write_feed(feed: Feed, path: str | None = None) -> None:
    _write_json(path or paths.feed_file(), dict(feed))


class FeedFile:
    """The feed as a run's world reads it (providers/world.py `Feed`)."""

    name = "usage-feed.json"

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def location(self) -> str:
        return self.path or paths.feed_file()

    def observe(self) -> Feed | None:
        return read_feed(self.path)


# ---- claude-dir.json: the folder Claude Code's sessions use ----------------------------------

#: the note is refreshed once a day while the folder stays the same (a session start writes it)
CLAUDE_DIR_REFRESH = 86400.0


def claude_dir_file() -> str:
    return os.path.join(paths.state_dir(), "claude-dir.json")


def note_claude_dir(now: float) -> None:
    """At session start (Claude Code's environment): remember which folder Claude Code uses
    (`$CLAUDE_CONFIG_DIR` or `~/.claude`), so a claude-pool run from a shell that names another one
    can say its writes do not reach these sessions. Written only when it changed, or once a day."""
    here = os.path.realpath(paths.claude_dir())
    seen = _read_json(claude_dir_file())
    if seen and seen.get("dir") == here and isinstance(seen.get("at"), (int, float)) \
            and 0 <= now - seen["at"] < CLAUDE_DIR_REFRESH:
        return
    os.makedirs(paths.state_dir(), mode=0o700, exist_ok=True)
    _write_json(claude_dir_file(), {"dir": here, "at": now})


def claude_dir_seen() -> dict | None:
    """{"dir": the folder, "at": epoch} of the last session start, or None."""
    data = _read_json(claude_dir_file())
    return data if data and isinstance(data.get("dir"), str) and isinstance(data.get("at"), (int, float)) else None

