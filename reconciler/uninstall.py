"""`claude-pool uninstall [--purge]`: leave Claude Code as it would be without claude-pool.

1. settings.json: our apiKeyHelper goes, a foreign one we displaced comes back; the pool is set
   back to account mode (so a later reinstall starts from "no helper").
2. The recovery wake sleeper is stopped.
3. The plugin's install (`~/.local/share/claude-pool`) and its PATH link (`~/.local/bin/claude-pool`)
   are removed; an installed plugin is told to stay idle (a marker in its data folder) until
   `claude plugin uninstall` removes it, so its next session does not install claude-pool again.
4. `--purge`: says what the pool and the audit log hold, then deletes them. Without it they stay,
   and the last lines say where.

Claude Code's own login (the credential store) is Claude Code's and is left as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

from claude_pool.providers import paths
from claude_pool.providers.base import ProviderError
from claude_pool.providers.poolfile import PoolFile, lock_or_busy
from claude_pool.providers.sessions import pid_alive
from claude_pool.providers.settings import SettingsFile

from .errors import UserError
from .runtime import helper_command, is_our_helper

POOL_FILES = ("pool.json", "pool.json.lock", "status.json", "usage-feed.json", "wake.json", "config.toml")


def run(purge: bool, say) -> int:  # type: ignore[no-untyped-def]
    pool_file = PoolFile()
    pool = None
    pool_error = ""
    lock = lock_or_busy(pool_file) if pool_file.exists() else None
    try:
        if pool_file.exists():
            try:
                pool = pool_file.observe()
            except ProviderError as exc:
                pool_error = str(exc)
        _restore_settings(pool, say)
        if pool is not None and (pool.mode == "apikey" or pool.saved_api_key_helper):
            pool.mode, pool.saved_api_key_helper = "account", ""
            pool_file.write(pool)
    finally:
        if lock is not None:
            lock.release()
    _stop_wake(say)
    _idle_plugin(say)
    if purge:
        _purge(pool, pool_error, say)
    else:
        where = [p for p in (paths.pool_file(), paths.audit_log()) if os.path.exists(p)]
        if where:
            say("Kept: " + ", ".join(where) + " (your accounts, API keys and the audit log; "
                "`claude-pool uninstall --purge` deletes them).")
    _remove_install(say)  # last: this process may be running from it
    return 0


def _restore_settings(pool, say) -> None:  # type: ignore[no-untyped-def]
    settings = SettingsFile()
    view = settings.observe()
    if view.error:
        raise UserError(view.error)
    if not is_our_helper(view.api_key_helper, helper_command()):
        say(f"settings.json: no claude-pool apiKeyHelper in {settings.location()}; left as it is.")
        return
    foreign = (pool.saved_api_key_helper if pool is not None else "") or None
    settings.write(foreign)
    if foreign:
        say(f"settings.json: claude-pool's apiKeyHelper removed, your own put back ({settings.location()}).")
    else:
        say(f"settings.json: claude-pool's apiKeyHelper removed ({settings.location()}); "
            "Claude Code uses its own login again.")


def _stop_wake(say) -> None:  # type: ignore[no-untyped-def]
    from claude_pool.providers import wake

    marker = wake.read_marker()
    if marker is None:
        return
    pid = int(marker.get("pid") or 0)
    if pid_alive(pid) and _looks_like_wake(pid):
        try:
            os.kill(pid, signal.SIGTERM)
            say(f"Stopped the scheduled wake-up (pid {pid}).")
        except OSError:
            pass
    try:
        wake.marker_path().unlink()
    except OSError:
        pass


def _looks_like_wake(pid: int) -> bool:
    """The pid is still a claude-pool wake sleeper (not a recycled pid), where that can be told."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = fh.read().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): the marker's pid is all there is
    return b"wake" in words and any(b"claude" in w for w in words)


def _remove_install(say) -> None:  # type: ignore[no-untyped-def]
    share = paths.install_dir()
    link = paths.bin_link()
    try:
        if os.readlink(link) == os.path.join(share, "current", "bin", "claude-pool"):
            os.unlink(link)
            say(f"Removed the command {link}.")
    except OSError:
        pass
    if os.path.isdir(share):
        shutil.rmtree(share, ignore_errors=True)
        say(f"Removed the installed program ({share}).")
    if not paths.managed_install():
        say(f"This claude-pool ({sys.prefix}) was not installed by the plugin: remove it the way you "
            "installed it (pip uninstall / pipx uninstall / uv tool uninstall claude-pool).")


def _idle_plugin(say) -> None:  # type: ignore[no-untyped-def]
    plugins = Path(paths.claude_dir()) / "plugins"
    try:
        installed = json.loads((plugins / "installed_plugins.json").read_text(encoding="utf-8")).get("plugins") or {}
    except (OSError, ValueError, AttributeError):
        installed = {}
    names = [n for n in installed if isinstance(n, str) and n.startswith("claude-pool@")]
    for name in names:
        market = name.split("@", 1)[1]
        data = plugins / "data" / f"claude-pool-{market}"
        try:
            data.mkdir(parents=True, exist_ok=True)
            (data / "uninstalled").write_text("claude-pool uninstall\n", encoding="utf-8")
        except OSError:
            continue
        say(f"The plugin {name} stays idle; remove it with: claude plugin uninstall {name}")


def _purge(pool, pool_error: str, say) -> None:  # type: ignore[no-untyped-def]
    pool_dir = Path(paths.pool_dir())
    if (pool_dir / "pool.json").exists():
        if pool is not None:
            accounts = ", ".join(a.id + (f" ({a.email})" if a.email else "") for a in pool.accounts) or "none"
            keys = ", ".join(k.id for k in pool.api_keys) or "none"
            say(f"Deleting {pool_dir / 'pool.json'}: accounts (their refresh tokens): {accounts}; "
                f"API keys: {keys}.")
        else:
            say(f"Deleting {pool_dir / 'pool.json'} (it could not be read: {pool_error}).")
    for name in POOL_FILES:
        try:
            (pool_dir / name).unlink()
        except OSError:
            pass
    try:
        pool_dir.rmdir()
    except OSError:
        pass
    state = Path(paths.state_dir())
    if state.is_dir():
        logs = sorted(p for p in state.iterdir() if p.is_file())
        if logs:
            lines = sum(_count_lines(p) for p in logs)
            say(f"Deleting the audit log {state} ({len(logs)} file(s), {lines} events: what claude-pool "
                "did and why, with no secrets).")
        shutil.rmtree(state, ignore_errors=True)
    say("Claude Code's own login is left as it is.")


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0
