"""Where every file lives (docs/ARCHITECTURE.md §3).

Plain strings built with os.path: `status`, `helper` and the hooks import this on every call,
and pathlib (with the urllib and re it pulls in) would cost them more than the rest of their work.
"""

from __future__ import annotations

import os
import sys

join = os.path.join


class HomeNotSet(OSError):
    """HOME is empty or unset: every default path hangs off it, and guessing (`/`, the password
    database's entry) would put the pool and Claude Code's files somewhere the user never meant."""

    def __init__(self) -> None:
        super().__init__(22, "HOME is not set (or is empty): set it to your home folder, e.g. "
                             "`export HOME=/home/$(id -un)`, and run again")   # 22: EINVAL

    def __str__(self) -> str:
        return str(self.strerror)


def home(platform: str | None = None) -> str:
    """Windows: %USERPROFILE% (where Claude Code looks); elsewhere $HOME, which must be set
    (HomeNotSet, one line, when it is empty or unset)."""
    if (platform or sys.platform) == "win32":
        return os.environ.get("USERPROFILE") or os.path.expanduser("~")
    found = os.environ.get("HOME", "")
    if not found.strip():
        raise HomeNotSet()
    return found


def pool_dir() -> str:
    """`$CLAUDE_POOL_CONFIG_DIR`, default `~/.config/claude-pool` (where the Go tool kept it)."""
    return os.environ.get("CLAUDE_POOL_CONFIG_DIR") or join(home(), ".config", "claude-pool")


def pool_file() -> str:
    return join(pool_dir(), "pool.json")


def pool_lock_file() -> str:
    return join(pool_dir(), "pool.json.lock")


def status_file() -> str:
    """A plaintext summary (mode, name, reset) written beside the pool; holds no secret."""
    return join(pool_dir(), "status.json")


def feed_file() -> str:
    """The statusline's free usage reading of the active account (no secret)."""
    return join(pool_dir(), "usage-feed.json")


def wake_file() -> str:
    return join(pool_dir(), "wake.json")


def config_file() -> str:
    return join(pool_dir(), "config.toml")


def state_dir() -> str:
    env = os.environ.get("CLAUDE_POOL_STATE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_STATE_HOME") or join(home(), ".local", "state")
    return join(base, "claude-pool")


def audit_log() -> str:
    return join(state_dir(), "audit.jsonl")


def claude_dir() -> str:
    """Claude Code's own directory: `$CLAUDE_CONFIG_DIR`, default `~/.claude`."""
    return os.environ.get("CLAUDE_CONFIG_DIR") or join(home(), ".claude")


def credentials_file() -> str:
    return join(claude_dir(), ".credentials.json")


def settings_file() -> str:
    return join(claude_dir(), "settings.json")


def sessions_dir() -> str:
    return join(claude_dir(), "sessions")


def install_dir() -> str:
    """Where the plugin's bootstrap installs claude-pool: `${XDG_DATA_HOME:-~/.local/share}/claude-pool`
    (`versions/<name>/` virtual environments, `current` a link to the one in use)."""
    base = os.environ.get("XDG_DATA_HOME") or join(home(), ".local", "share")
    return join(base, "claude-pool")


def bin_link() -> str:
    """The command on PATH the bootstrap links to `install_dir()/current/bin/claude-pool`."""
    return join(home(), ".local", "bin", "claude-pool")


def managed_install() -> bool:
    """This claude-pool runs from the bootstrap's install (not a pip/pipx/checkout of the user's)."""
    versions = os.path.realpath(join(install_dir(), "versions")) + os.sep
    return os.path.realpath(sys.prefix).startswith(versions)


def stable_program() -> str:
    """The path of the bootstrap-installed claude-pool that survives updates: the PATH link when it
    is ours, else `current/bin/claude-pool` (never a versioned folder, which an update removes)."""
    current = join(install_dir(), "current", "bin", "claude-pool")
    link = bin_link()
    try:
        if os.readlink(link) == current:
            return link
    except OSError:
        pass
    return current


def is_our_helper(command: str | None, ours: str = "") -> bool:
    """Is this apiKeyHelper command ours: exactly `ours`, or any `<path>/claude-pool* helper` (another
    install of ours writes the same shape)? The engine (reconciler/runtime.py) and the light paths
    (reconciler/lightlist.py, helper.py) both ask this."""
    if not command:
        return False
    if ours and command.strip() == ours:
        return True
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return len(words) >= 2 and words[-1] == "helper" and os.path.basename(words[-2].strip('"')).startswith("claude-pool")


def helper_program_stale(command: str) -> bool | None:
    """Of a helper command of ours (`<program> helper`): True when its program cannot keep working
    (gone, or inside Claude Code's plugin folders, which `claude plugin uninstall` deletes), False
    when it can, None when the command does not parse as one. The engine (reconciler/observe.py)
    and the light `list --json` (reconciler/lightlist.py) both ask this."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 2:
        return None
    program = os.path.abspath(os.path.expanduser(words[-2].strip('"')))
    plugins = os.path.join(os.path.abspath(claude_dir()), "plugins") + os.sep
    return not os.path.exists(program) or program.startswith(plugins)
