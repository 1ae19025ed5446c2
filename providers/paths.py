"""Where every file lives (SPEC §3). Standard library only: the hot paths import this."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def pool_dir() -> Path:
    """`$CLAUDE_POOL_CONFIG_DIR`, default `~/.config/claude-pool` (where the Go tool kept it)."""
    env = os.environ.get("CLAUDE_POOL_CONFIG_DIR")
    return Path(env) if env else home() / ".config" / "claude-pool"


def pool_file() -> Path:
    return pool_dir() / "pool.json"


def pool_lock_file() -> Path:
    return pool_dir() / "pool.json.lock"


def status_file() -> Path:
    """A plaintext summary (mode, name, reset) written beside the pool; holds no secret."""
    return pool_dir() / "status.json"


def config_file() -> Path:
    return pool_dir() / "config.toml"


def state_dir() -> Path:
    env = os.environ.get("CLAUDE_POOL_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else home() / ".local" / "state"
    return base / "claude-pool"


def audit_log() -> Path:
    return state_dir() / "audit.jsonl"


def claude_dir() -> Path:
    """Claude Code's own directory: `$CLAUDE_CONFIG_DIR`, default `~/.claude`."""
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env) if env else home() / ".claude"


def credentials_file() -> Path:
    return claude_dir() / ".credentials.json"


def settings_file() -> Path:
    return claude_dir() / "settings.json"


def claude_refresh_lock() -> Path:
    return claude_dir() / ".oauth_refresh.lock"


def sessions_dir() -> Path:
    return claude_dir() / "sessions"
