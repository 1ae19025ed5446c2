"""Structured logging with structlog: human lines on stderr, JSON lines in the audit log.

A redaction processor runs before either output: it drops fields whose name says "secret" and
replaces every secret string this run knows of (tokens, keys), and anything shaped like an
Anthropic token, with a marker. Nothing reaches stderr or the audit log without passing it.

structlog is imported at the first log call, not with this module (the redactor is needed by
every command, structlog only by a run), and without its stdlib-logging bridge (`_structlog`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from claude_pool.providers import paths
from claude_pool.providers.fsutil import ensure_private_dir

from .deferred import defer

REDACTED = "[redacted]"
TOKEN_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9]{2,8}-[A-Za-z0-9_\-]{6,}|sk-ant-[A-Za-z0-9_\-]{16,}")
SECRET_FIELDS = {"blob", "token", "access_token", "refresh_token", "accesstoken", "refreshtoken",
                 "key", "api_key", "secret", "password", "authorization"}


class Redactor:
    def __init__(self) -> None:
        self._known: set[str] = set()

    def add(self, *secrets: str) -> None:
        self._known.update(s for s in secrets if s and len(s) >= 8)

    def text(self, value: str) -> str:
        for secret in sorted(self._known, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, REDACTED)
        return TOKEN_SHAPE.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: (REDACTED if str(k).lower() in SECRET_FIELDS else self.value(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.text(str(value))

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return self.value(event)


REDACTOR = Redactor()

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _Sink:
    """The last processor: appends the JSON line to the audit log and prints the human line."""

    def __init__(self, log_path: Path, stderr_level: str, max_bytes: int, keep: int) -> None:
        self.log_path = log_path
        self.stderr_level = _LEVELS[stderr_level]
        self.max_bytes = max_bytes
        self.keep = keep
        self.reported = False   # a failed write is said once per run

    def _rotate(self) -> None:
        try:
            if self.log_path.stat().st_size < self.max_bytes:
                return
        except FileNotFoundError:
            return
        if self.keep == 0:
            self.log_path.unlink(missing_ok=True)
            return
        for i in range(self.keep, 0, -1):  # audit.jsonl.2 -> .3, .1 -> .2, audit.jsonl -> .1
            src = self.log_path if i == 1 else self.log_path.with_name(f"{self.log_path.name}.{i - 1}")
            if src.exists():
                os.replace(src, self.log_path.with_name(f"{self.log_path.name}.{i}"))

    def _append(self, event: dict[str, Any]) -> None:
        """One whole line per event, or nothing: a write cut short (a full disk) is taken back, and
        a partial line some other writer left (killed mid-write) is ended before ours. A failure is
        said once per run on stderr; it never breaks the run."""
        line = (json.dumps(event, default=str, sort_keys=False) + "\n").encode("utf-8")
        try:
            ensure_private_dir(self.log_path.parent)
            self._rotate()
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self.log_path)
                if not stat.S_ISREG(st.st_mode):   # a FIFO would take the write, or block it
                    from claude_pool.providers.fsutil import NotRegularFile

                    raise NotRegularFile(self.log_path, st.st_mode)
            # read-write: the last byte is read to see whether the file ends with a whole line
            fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                append_line(fd, line, str(self.log_path))
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed(exc)   # the audit log must never break a run

    def _failed(self, exc: OSError) -> None:
        if self.reported:
            return
        self.reported = True
        from claude_pool.providers.fsutil import explain

        try:
            sys.stderr.write(f"claude-pool: warning: cannot write the audit log {self.log_path}: "
                             f"{' '.join(explain(exc).split())}; this run's events are not recorded\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def __call__(self, _logger: Any, method: str, event: dict[str, Any]) -> Any:
        self._append(event)
        if _LEVELS.get(method, 20) >= self.stderr_level and event.get("say"):
            prefix = "claude-pool: " if method in ("info", "debug") else f"claude-pool: {method}: "
            sys.stderr.write(prefix + str(event["say"]) + "\n")
            sys.stderr.flush()
        raise _structlog().DropEvent


def _lock(fd: int) -> bool:
    """An exclusive lock on the log while a line is appended or repaired (flock; none on Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    deadline = time.monotonic() + 1.0   # bounded: a stuck writer never holds a run up
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        except OSError:
            return False


def _unlock(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


def append_line(fd: int, line: bytes, name: str = "the audit log") -> None:
    """Append `line` (ending in a newline) to the file open on `fd` (O_APPEND) whole, or not at all.

    os.write may write less than asked (a full disk writes what fits): the rest is written in a
    loop, and a write that fails part-way is taken back (the file is cut to where the line began).
    A file that does not end in a newline (a writer killed mid-line, a cut that failed) is first cut
    back to its last whole line, so the next event never lands on a broken one. Every writer of the
    log takes the same flock around this, so a repair never cuts another writer's line."""
    from claude_pool.providers.fsutil import NotRegularFile

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):   # a FIFO or a device in its place: never written to
        raise NotRegularFile(name, st.st_mode)
    locked = _lock(fd)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        broken = start > 0 and hasattr(os, "pread") and os.pread(fd, 1, start - 1) != b"\n"
        if broken and locked:
            start = _cut_partial(fd, start)
        elif broken:
            line = b"\n" + line   # no lock, no cut: at least the broken line stays apart from ours
        done = 0
        try:
            while done < len(line):
                wrote = os.write(fd, line[done:])
                if wrote <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
                done += wrote
        except OSError:
            try:   # take back what part of it was written (under the lock: nobody appended after us)
                if locked and os.fstat(fd).st_size > start:
                    os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        if locked:
            _unlock(fd)


def _cut_partial(fd: int, end: int) -> int:
    """Cut the file back to just after its last newline (at most the last 1 MiB is searched; a
    longer broken tail is ended with a newline instead). Returns where the next line starts."""
    size = min(end, 1 << 20)
    tail = os.pread(fd, size, end - size)
    cut = tail.rfind(b"\n")
    if cut < 0 and size < end:
        os.write(fd, b"\n")
        return end + 1
    keep = end - size + cut + 1
    os.ftruncate(fd, keep)
    return keep


class _Quiet:
    """Before `configure` (an error on the way to it): nothing on stdout, where structlog's own
    default prints (a hook's stdout reaches the model), and no traceback; the command's own
    handler prints its one line."""

    def __call__(self, _logger: Any, _method: str, _event: dict[str, Any]) -> Any:
        raise _structlog().DropEvent


# What importing structlog runs that a run of ours never uses: its stdlib-logging bridge
# (`structlog/__init__` imports these; we log through our own processors into `_Sink`, no stdlib
# logging) and asyncio (imported by the bridge and by `structlog._native` for its async methods,
# about 30 ms of a run's start), deferred to their first use (reconciler/deferred.py).
_DEFERRED = ("asyncio", "structlog.stdlib", "structlog.threadlocal")
_STRUCTLOG: Any = None
_IMPORTING = threading.Lock()


def _structlog() -> Any:
    """The structlog module, imported at the first need (with `_Quiet` in place until
    `configure`), its stdlib bridge deferred (`_DEFERRED`)."""
    global _STRUCTLOG
    if _STRUCTLOG is None:
        with _IMPORTING:
            if _STRUCTLOG is None:
                if "structlog" not in sys.modules:
                    defer(_DEFERRED)
                import structlog

                if not structlog.is_configured():
                    structlog.configure(processors=[_Quiet()], cache_logger_on_first_use=False)
                _STRUCTLOG = structlog
    return _STRUCTLOG


def configure(trigger: str, *, stderr_level: str = "info", max_bytes: int = 1_048_576, keep: int = 3,
              log_path: Path | None = None) -> Any:
    """Set up this process's logging for one run; returns a logger bound to run id and trigger."""
    import uuid

    structlog = _structlog()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            REDACTOR,
            _Sink(log_path or Path(paths.audit_log()), stderr_level, max_bytes, keep),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(10),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=uuid.uuid4().hex[:12], trigger=trigger)
    return structlog.get_logger()


def log() -> Any:
    return _structlog().get_logger()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)
