"""The parts of config.toml the light paths need (the session-start look, the prompt hook), read
with tomllib only when the file exists; the full engine validates the whole file with pydantic
(schema/config.py) and takes its defaults from here and from reconciler/decision.py.
A file the light path cannot read is {"invalid": True}: the full engine then says why.
"""

from __future__ import annotations

import os
from typing import Any

from claude_pool.providers import paths

from .decision import DEFAULT_THRESHOLD

DEFAULT_API_BASE = "https://api.anthropic.com"
DEFAULT_HTTP_TIMEOUT = 5.0


def read_config() -> dict[str, Any]:
    """The parts of config.toml this path needs (tomllib; a bad file: the full engine says why)."""
    from claude_pool.providers.fsutil import read_regular

    try:
        text = read_regular(paths.config_file())   # None when missing; a FIFO: an error, never a hang
    except OSError:
        return {"invalid": True}
    data: dict = {}
    if text is not None:
        import tomllib   # only when there is a file: the parser's imports cost more than the rest

        try:
            data = tomllib.loads(text.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {"invalid": True}
    policy = data.get("policy") if isinstance(data.get("policy"), dict) else {}
    http = data.get("http") if isinstance(data.get("http"), dict) else {}
    endpoints = data.get("endpoints") if isinstance(data.get("endpoints"), dict) else {}
    store = data.get("store") if isinstance(data.get("store"), dict) else {}
    threshold = policy.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        return {"invalid": True}
    kind = store.get("credential_store", "auto")
    if not isinstance(kind, str):
        return {"invalid": True}
    timeout = http.get("timeout_seconds", DEFAULT_HTTP_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        return {"invalid": True}
    return {"threshold": float(threshold), "timeout": float(timeout),
            "api_base": os.environ.get("CLAUDE_POOL_API_BASE_URL") or endpoints.get("api_base") or DEFAULT_API_BASE,
            "store": kind or "auto"}   # the environment is credstore's to read
