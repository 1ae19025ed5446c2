"""Which model Claude Code's requests go out with: the model decides which per-model weekly
windows bind (schema/limits.py). Standard library only (the session-start hook's light path).

What Claude Code tells us, most specific first: the hook's own input (SessionStart carries
`model` in the interactive TUI; StopFailure names the transcript, whose last answer names its
model), `ANTHROPIC_MODEL`, settings.json's `model`, then the model the statusline last saw.
Nothing found: unknown (None), and the policy's unknown-model rule applies.
"""

from __future__ import annotations

import json
import os
import time

from claude_pool.providers import fsutil, paths, sidecars
from claude_pool.schema.limits import model_of

ENV = "CLAUDE_POOL_MODEL"          # how a hook hands the model it learned to the full engine
FEED_MAX_AGE = 6 * 3600            # a statusline's model older than this says nothing
TRANSCRIPT_TAIL = 256 * 1024


def from_settings(path: str | None = None) -> str | None:
    try:
        data = json.loads(fsutil.read_text(path or paths.settings_file()))   # a FIFO: None, never a hang
    except (OSError, ValueError, RecursionError):
        return None
    return model_of(data.get("model")) if isinstance(data, dict) else None


def from_feed(now: float | None = None) -> str | None:
    data = sidecars.read_feed()
    if data is None or not isinstance(data.get("at"), (int, float)):
        return None
    if (now or time.time()) - data["at"] > FEED_MAX_AGE:
        return None
    return model_of(data.get("model"))


def from_transcript(path: object) -> str | None:
    """The model of the last real answer in a session's transcript (JSON lines); Claude Code's
    own error entries name the model "<synthetic>" and are skipped."""
    if not isinstance(path, str) or not path:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TRANSCRIPT_TAIL))
            tail = fh.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        message = entry.get("message") if isinstance(entry, dict) else None
        model = model_of(message.get("model")) if isinstance(message, dict) else None
        if model and not model.startswith("<"):
            return model
    return None


def detect(payload: dict | None = None) -> str | None:
    payload = payload or {}
    for found in (model_of(payload.get("model")), from_transcript(payload.get("transcript_path")),
                  model_of(os.environ.get(ENV)), model_of(os.environ.get("ANTHROPIC_MODEL"))):
        if found:
            return found
    return from_settings() or from_feed()
