"""`claude-pool uninstall [--purge]`: leave Claude Code as it would be without claude-pool.

1. settings.json: our apiKeyHelper goes, a foreign one we displaced comes back; the pool is set
   back to account mode (so a later reinstall starts from "no helper").
2. Where Claude Code lands: the login it keeps and whether it has room (cached readings, no
   network); one that is out (100% or a 429 block) is first switched, through the engine, to the
   account with the most room, and the user is told.
3. The recovery wake sleeper is stopped.
4. The plugin's install (`~/.local/share/claude-pool`) and its PATH link (`~/.local/bin/claude-pool`)
   are removed, all but the marker `~/.local/share/claude-pool/uninstalled`, which keeps the
   plugin idle from every entry point (hooks, slash commands, a shell) until it is removed or the
   plugin is uninstalled and installed again (plugin/scripts/claude-pool); the plugin's data
   folder gets the marker earlier plugin versions look for.
5. `--purge`: says what the pool and the audit log hold, then deletes them. Without it they stay,
   and the last lines say where and which command purges them once the program is gone (the
   plugin's own script does it with no program: plugin/scripts/claude-pool).

Claude Code's login is switched only as in 2; its credential store is otherwise left as it is.
"""

from __future__ import annotations

import json
import os
import shlex
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
    if pool is not None and pool.accounts:
        _land(say)
    _stop_wake(say)
    markers, wrappers = _idle_plugin(say)
    if purge:
        _purge(pool, pool_error, say)
    else:
        where = [p for p in (paths.pool_file(), paths.audit_log()) if os.path.exists(p)]
        if where:
            again = "claude-pool uninstall --purge"
            if paths.managed_install() and wrappers:  # the program goes now: the plugin's script purges
                again = f"{wrappers[0]} uninstall --purge"
            elif paths.managed_install():
                again = f"rm -rf {shlex.quote(paths.pool_dir())} {shlex.quote(paths.state_dir())}"
            say("Kept: " + ", ".join(where) + " (your accounts, API keys and the audit log; "
                f"`{again}` deletes them).")
    share_existed = os.path.isdir(paths.install_dir())
    _remove_install(say)  # last: this process may be running from it
    if markers or share_existed:
        _write_marker(markers, say)
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


def _land(say) -> None:  # type: ignore[no-untyped-def]
    """Say which login Claude Code keeps and whether it has room (the pool's cached readings: no
    network). One that is out (at 100% or blocked by a 429) is first switched, through the engine
    (`claude-pool switch`'s path), to the account with the most room, when one has room."""
    from claude_pool.reconciler import decision

    from .commands import _refuses, _run
    from .intents import Reconcile, Switch

    try:
        observed = _run("uninstall", Reconcile(), execute=False, network=False).observed
        pool, now, held = observed.pool, observed.now, observed.store.account
        if not observed.store.present:
            say("Claude Code holds no login now: run /login in Claude Code.")
            return
        if not held:
            say("Claude Code keeps a login that is not in the pool" +
                (f" ({observed.store.email})." if observed.store.email else "."))
            return
        acc = pool.account(held)
        out = _refuses(acc, now)
        if not out:
            room = _room(observed, held, now)
            say(f"Claude Code keeps account {_who(acc)}: " + (f"it has room now ({room})." if room.startswith("last")
                else f"nothing says it is out ({room})."))
            return
        live = [a for a in pool.accounts if not a.needs_relogin and a.id != held and not _refuses(a, now)]
        cands = decision.trusted([observed.accounts[a.id] for a in live if a.id in observed.accounts])
        pick = decision.best(cands, {a.id: a for a in pool.accounts}, now, held) if cands else None
        if pick is None or _refuses(pool.account(pick.id), now):
            say(f"Claude Code keeps account {_who(acc)}, but {out}: no other account in the pool has room "
                "now (cached readings).")
            return
        switched = _run("uninstall", Switch(pick.id), execute=True, network=False)
        if switched.applied:
            say(f"Claude Code held account {_who(acc)}, but {out}: switched it to account "
                f"{_who(pool.account(pick.id))}, which has the most room "
                f"({_room(observed, pick.id, now)}); it keeps that login.")
    except (UserError, ProviderError, OSError) as exc:
        say(f"Could not tell which login Claude Code keeps: {exc}")


def _who(acc) -> str:  # type: ignore[no-untyped-def]
    return acc.id + (f" ({acc.email})" if acc.email else "")


def _room(observed, account_id: str, now) -> str:  # type: ignore[no-untyped-def]
    from claude_pool.reconciler.decision import window_pct

    obs = observed.accounts.get(account_id)
    if obs is None or obs.usage is None:
        return "no usage reading cached"
    five, seven = window_pct(obs.usage.five_hour, now), window_pct(obs.usage.seven_day, now)
    return f"last reading 5h {five:.0f}%, 7d {seven:.0f}%"


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
        program = any(name != "uninstalled" for name in os.listdir(share))
        shutil.rmtree(share, ignore_errors=True)
        if program:
            say(f"Removed the installed program ({share}).")
    if not paths.managed_install():
        say(f"This claude-pool ({sys.prefix}) was not installed by the plugin: remove it the way you "
            "installed it (pip uninstall / pipx uninstall / uv tool uninstall claude-pool).")


def _idle_plugin(say) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    plugins = Path(paths.claude_dir()) / "plugins"
    try:
        installed = json.loads((plugins / "installed_plugins.json").read_text(encoding="utf-8")).get("plugins") or {}
    except (OSError, ValueError, AttributeError):
        installed = {}
    names = [n for n in installed if isinstance(n, str) and n.startswith("claude-pool@")]
    markers: list[str] = []
    wrappers: list[str] = []
    for name in names:
        market = name.split("@", 1)[1]
        data = plugins / "data" / f"claude-pool-{market}"
        entries = installed.get(name)
        for entry in entries if isinstance(entries, list) else []:
            where = entry.get("installPath") if isinstance(entry, dict) else None
            script = Path(where) / "plugin" / "scripts" / "claude-pool" if isinstance(where, str) else None
            if script is not None and script.is_file():
                wrappers.append(shlex.quote(str(script)))
        try:
            data.mkdir(parents=True, exist_ok=True)
            (data / "uninstalled").write_text("claude-pool uninstall\n", encoding="utf-8")
        except OSError:
            continue
        markers.append(str(data / "uninstalled"))
        say(f"The plugin {name} stays idle; remove it with: claude plugin uninstall {name}")
    return markers, wrappers


def marker_path() -> str:
    """The "uninstalled" marker every entry point of the plugin sees (its hooks, its slash commands,
    whose `!` command may lack $CLAUDE_PLUGIN_DATA, a shell): plugin/scripts/claude-pool starts no
    install while it is there."""
    return os.path.join(paths.install_dir(), "uninstalled")


def _write_marker(markers: list[str], say) -> None:  # type: ignore[no-untyped-def]
    """Left in the install folder (all else there is gone). Its other lines name the plugin data
    folders' markers: when `claude plugin uninstall` has deleted one and the plugin is installed
    again, that plugin's session start takes it as asking for claude-pool back."""
    path = marker_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("claude-pool uninstall\n" + "".join(m + "\n" for m in markers))
    except OSError as exc:
        say(f"Could not write {path} ({exc.strerror}): the plugin may install claude-pool again.")
        return
    say(f"Nothing installs claude-pool again until you run: rm {_tilde(path)}")


def _tilde(path: str) -> str:
    home = os.environ.get("HOME", "")
    return "~" + path[len(home):] if home and path.startswith(home.rstrip("/") + "/") else path


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
    from claude_pool.providers.fsutil import TEMP_MARK
    from claude_pool.providers.poolcodec import PENDING_MARK

    # the pool's own files, and what a refresh or a killed writer left beside it (a rescued
    # refresh holds the pool, tokens included)
    leftovers = [p.name for p in pool_dir.iterdir() if p.name.startswith((PENDING_MARK, TEMP_MARK))] \
        if pool_dir.is_dir() else []
    for name in [*POOL_FILES, *leftovers]:
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
