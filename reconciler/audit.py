"""Structured logging with structlog: human lines on stderr, JSON lines in the audit log.

A redaction processor runs before either output: it drops fields whose name says "secret" and
replaces every secret string this run knows of (tokens, keys), and anything shaped like an
Anthropic token, with a marker. Nothing reaches stderr or the audit log without passing it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from claude_pool.providers import paths
from claude_pool.providers.fsutil import ensure_private_dir

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
        try:
            ensure_private_dir(self.log_path.parent)
            self._rotate()
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(event, default=str, sort_keys=False) + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except OSError:
            pass  # the audit log must never break a run

    def __call__(self, _logger: Any, method: str, event: dict[str, Any]) -> Any:
        self._append(event)
        if _LEVELS.get(method, 20) >= self.stderr_level and event.get("say"):
            prefix = "claude-pool: " if method in ("info", "debug") else f"claude-pool: {method}: "
            sys.stderr.write(prefix + str(event["say"]) + "\n")
            sys.stderr.flush()
        raise structlog.DropEvent


def configure(trigger: str, *, stderr_level: str = "info", max_bytes: int = 1_048_576, keep: int = 3,
              log_path: Path | None = None) -> structlog.typing.FilteringBoundLogger:
    """Set up this process's logging for one run; returns a logger bound to run id and trigger."""
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
    return structlog.get_logger()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)
