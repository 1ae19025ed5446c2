"""The full CLI (argparse). Every mutating command goes through the same plan/apply engine, so
each is logged and can be shown before it happens."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NoReturn

from claude_pool import __version__

from .audit import REDACTOR, configure, log   # stdlib only: structlog comes with the first log call
from .errors import UserError


def _later(name: str) -> Callable[..., Any]:
    """`name` from reconciler/intents.py, imported when a command runs: intents needs the
    pydantic config, and this module's import (the parser, `--help`) stays stdlib-only."""
    def call(*args: Any, **kw: Any) -> Any:
        from . import intents

        return getattr(intents, name)(*args, **kw)

    call.__name__ = call.__qualname__ = name
    return call


AddKey, Import, Reconcile, Remove, Switch, check_id = map(_later, ("AddKey", "Import", "Reconcile", "Remove",
                                                                  "Switch", "check_id"))


def _out(text: str) -> None:
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


def _runtime(trigger: str):  # type: ignore[no-untyped-def]
    """This run's world and runtime (reconciler/runtime.py `build`), with logging set up."""
    from .runtime import build, load_config

    config = load_config()
    configure(trigger, max_bytes=config.log.max_bytes, keep=config.log.keep,
              stderr_level=os.environ.get("CLAUDE_POOL_LOG_LEVEL", "info"))
    return build(trigger, config)


def _run(trigger: str, intent, *, execute: bool, saved=None, network: bool = True):  # type: ignore[no-untyped-def]
    from . import engine

    world, rt = _runtime(trigger)
    return engine.run(world, rt, intent, execute=execute, saved=saved, network=network)


# ---- plan / apply / reconcile -------------------------------------------------------------

def cmd_plan(a: argparse.Namespace) -> int:
    from .render import plan_text

    outcome = _run("plan", Reconcile(live=True), execute=False)
    if outcome.error:   # the dry run failed a check: the very line `apply` would print
        raise UserError(outcome.error)
    plan = outcome.plan
    if a.out:
        from claude_pool.providers.fsutil import atomic_write

        atomic_write(Path(a.out), (plan.model_dump_json(indent=2) + "\n").encode(), mode=0o600)
    _out(plan.model_dump_json(indent=2) if a.json else plan_text(plan))
    if a.detailed_exitcode:
        return 2 if plan.actions else 0
    return 0


def cmd_apply(a: argparse.Namespace) -> int:
    from claude_pool.schema.plan import PlanFormatError, load_plan

    from .render import plan_text

    saved = None
    if a.planfile:
        try:
            saved = load_plan(Path(a.planfile).read_bytes(), a.planfile)
        except FileNotFoundError:
            raise UserError(f"no such plan file: {a.planfile}") from None
        except PlanFormatError as exc:
            raise UserError(str(exc)) from None
        except OSError:
            raise UserError(f"{a.planfile} is not a claude-pool plan") from None
    outcome = _run("apply", Reconcile(live=True), execute=True, saved=saved)
    if a.json:
        _out(json.dumps({"plan": outcome.plan.model_dump(mode="json"),
                         "applied": [x.model_dump(mode="json") for x in outcome.applied]}, indent=2))
    else:
        _out(plan_text(outcome.plan))
        if outcome.applied:
            _out(f"Applied {len(outcome.applied)} change{'s' if len(outcome.applied) != 1 else ''}.")
    return 0


def cmd_reconcile(a: argparse.Namespace) -> int:
    threshold = a.threshold
    if threshold is None:
        from .runtime import load_config

        threshold = load_config().policy.threshold
    if threshold > 1:
        threshold /= 100.0  # accept 90 as well as 0.9
    if not 0 <= threshold <= 1:
        raise UserError("--threshold must be between 0 and 1 (or a percentage)")
    trigger = os.environ.get("CLAUDE_POOL_TRIGGER", "reconcile")
    # the session-start hook sets this when the usage API did not answer in time
    network = os.environ.get("CLAUDE_POOL_NO_NETWORK") != "1"
    outcome = _run(trigger, Reconcile(if_needed=a.if_needed, threshold=threshold, live=a.live), execute=True,
                   network=network)
    if not outcome.applied and outcome.plan.notes and sys.stderr.isatty():
        for note in outcome.plan.notes:
            sys.stderr.write(f"claude-pool: {note}\n")
    return 0


def refused(message: str, model: str | None, session_id: object = None) -> int:
    """The stop-failure hook on a 429: record what it says about the account that sent the
    request (learn.take_refusal: the one held when the session's turn began, or one the pool moved
    to since), then reconcile: live, but staying unless the account held now is the one at fault
    (or cannot serve). A server-side limit blocks nothing: the run only logs it and stays."""
    engine_environment()
    from claude_pool.providers import turns
    from claude_pool.schema.limits import parse_refusal

    from .intents import Refusal

    trigger = os.environ.get("CLAUDE_POOL_TRIGGER", "hook:stop-failure")
    try:
        if parse_refusal(message, datetime.now(timezone.utc))["kind"] == "server":
            _runtime(trigger)  # configures the audit log
            log().info("rate_limited", action="stay", target="credentials", result="server", model=model or "",
                       reason="the server is limiting requests (not your usage limit): no account is at fault, "
                              "nothing is blocked or switched")
            return 0
        began = turns.started(session_id)
        since = datetime.fromtimestamp(began, tz=timezone.utc) if began is not None else None
        world, rt = _runtime(trigger)
        from . import engine

        engine.run(world, rt, Reconcile(if_needed=True, live=True, threshold=rt.config.policy.threshold, model=model,
                                        refusal=Refusal(message=message, model=model, since=since)), execute=True)
    except UserError as exc:
        sys.stderr.write(f"claude-pool: {REDACTOR.text(str(exc))}\n")
        return 1
    return 0


# ---- editing the pool -----------------------------------------------------------------------

def _refuses(acc, now: datetime) -> str:  # type: ignore[no-untyped-def]
    """Why this account cannot take a request now, as far as the pool knows ("" when nothing
    says so): the one definition of exhausted (`exhausted_until`) and of a 429 block."""
    from claude_pool.schema.pool import exhausted_until, live_block

    from .status import duration

    if acc is None:
        return ""
    if acc.needs_relogin:
        return f"{acc.id} needs re-login"
    from .decision import paused

    if paused(acc, now):
        return f"{acc.id} is paused"
    block = live_block(acc, now, None, strict=False)
    if block is not None and block.until is not None:
        scope = f" for {block.model}" if block.model else ""
        return f"{acc.id} is blocked{scope} for {duration((block.until - now).total_seconds())} (429)"
    until = exhausted_until(acc, now, None)
    if until is not None:
        return f"{acc.id} is at 100% until its reset in {duration((until - now).total_seconds())}"
    return ""


def _moved(outcome, gone: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    """The line a command adds when its run also moved Claude Code to another credential (what a
    reconcile on the cached readings does, issue 16): to which, and why. Read from what was
    applied; `gone`: the account the command removed (its own line says so)."""
    from claude_pool.schema.plan import HelperValue

    desired, observed, now = outcome.desired, outcome.observed, outcome.observed.now
    done = {x.type: x for x in outcome.applied}
    settings, cred, state = done.get("write_settings"), done.get("write_credential"), done.get("save_pool_state")
    before = state.before if state is not None else ""      # "account:alice", "apikey:k1"
    pool = observed.pool                                     # as the run left it
    if (settings is not None and settings.value is HelperValue.OURS) or (
            desired.mode == "apikey" and state is not None and before != state.after):
        what, why = f"API key {desired.current_key}", ""
        live = [acc for acc in pool.accounts if not acc.needs_relogin]
        if pool.accounts and not live:
            why = "every account needs re-login"
        elif live and all(_refuses(acc, now) for acc in live):
            blocked = any(" is blocked" in _refuses(acc, now) for acc in live)
            why = "every account is at 100%" + (" or blocked" if blocked else "")
    elif cred is not None or (settings is not None and desired.mode == "account"):
        target = cred.target if cred is not None else desired.current
        if not target:
            return []
        what = f"account {target}"
        prev = observed.store.account or (before.split(":", 1)[1] if before.startswith("account:") else "")
        if settings is not None or before.startswith("apikey:"):
            why = f"{target} has headroom again"
        elif prev and prev not in (target, gone):
            why = _refuses(pool.account(prev), now)
        else:
            why = ""
    else:
        return []
    return [f"Claude Code now uses {what}" + (f": {why}" if why else "") + "."]


def _hand_note(outcome, target: str) -> list[str]:  # type: ignore[no-untyped-def]
    """A credential chosen by hand is respected even when the pool knows it refuses requests; say so."""
    why = _refuses(outcome.observed.pool.account(target), outcome.observed.now)
    if not why:
        return []
    if why.endswith(" is paused"):
        return [f"Note: {why}: the next reconcile (a hook's) moves Claude Code off it again; "
                f"`claude-pool resume {target}` to keep it."]
    return [f"Note: {why}: requests on it are refused until then; `claude-pool reconcile` moves Claude Code "
            "to the credential with the most headroom."]


def cmd_switch(a: argparse.Namespace) -> int:
    check_id(a.id)
    outcome = _run("switch", Switch(a.id), execute=True, network=False)
    if not outcome.applied:
        _out(f"Already on {a.id}.")
    else:
        kind = "API key" if outcome.desired.mode == "apikey" else "account"
        _out(f"Claude Code now uses {kind} {a.id}.")
    for line in _hand_note(outcome, a.id):
        _out(line)
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    if a.id is not None:
        check_id(a.id)
    from . import engine

    world, rt = _runtime("import")
    outcome = engine.run(world, rt, Import(a.id), execute=True)
    target = outcome.desired.current
    email = outcome.observed.store.email
    imported = next((x for x in outcome.applied if x.type == "import_account"), None)
    if imported is not None and imported.change == "update":
        before = imported.previous_email  # type: ignore[union-attr]
        changed = f"; its email changed from {before} to {email}" if email and before and \
            email.lower() != before.lower() else ""
        _out(f"Updated {target} with the login Claude Code holds" + (f" ({email})" if email else "")
             + f"{changed}; it is the active account.")
    elif outcome.applied:
        _out(f"Imported {target}" + (f" ({email})" if email else "") + "; it is the active account.")
    else:
        _out(f"{target} is already in the pool and active.")
    for line in _hand_note(outcome, target):
        _out(line)
    from .render import nowhere_to_go

    hint = nowhere_to_go(len(rt.pool.accounts), len(rt.pool.api_keys))   # the pool as this run saved it
    if hint:
        _out(hint[1].upper() + hint[2:-1] + ".")
    return 0


def _read_key(arg: str | None) -> str:
    if arg is not None and arg != "-":
        return arg
    if arg is None and sys.stdin.isatty():
        import getpass

        return getpass.getpass("API key (hidden): ")
    try:
        return sys.stdin.read()
    except UnicodeDecodeError:
        raise UserError("the API key on stdin is not text (not UTF-8)") from None


# Clipboard readers, tried in order (the first one present that answers wins).
CLIPBOARD_READERS = (
    ["pbpaste"],                                            # macOS
    ["wl-paste", "--no-newline"],                           # Wayland
    ["xclip", "-selection", "clipboard", "-o"],             # X11
    ["xsel", "--clipboard", "--output"],                    # X11
    ["powershell.exe", "-NoProfile", "-Command", "Get-Clipboard"],  # Windows, WSL
)


def _read_clipboard() -> str:
    """The clipboard's text, for `key add --from-clipboard` (the /claude-pool:key-add slash command):
    the key goes from the clipboard to the pool without passing through the conversation, argv or
    a terminal. Never echoed, whatever it holds."""
    import shutil
    import subprocess

    for argv in CLIPBOARD_READERS:
        exe = shutil.which(argv[0])
        if not exe:
            continue
        try:
            proc = subprocess.run([exe, *argv[1:]], capture_output=True, timeout=5, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return proc.stdout.decode("utf-8", errors="replace")
    raise UserError("cannot read the clipboard (no pbpaste, wl-paste, xclip, xsel or powershell.exe answered); "
                    "run `claude-pool key add` in a terminal and paste the key at the hidden prompt")


def cmd_key_add(a: argparse.Namespace) -> int:
    if a.from_clipboard:
        if a.key is not None:
            raise UserError("--from-clipboard takes no key argument (never type a key into a command line)")
        key = _read_clipboard().strip()
        if not key.startswith("sk-"):
            raise UserError("the clipboard does not hold an API key (expected one starting with sk-ant-); "
                            "copy the key, then try again")
    else:
        key = _read_key(a.key).strip()
    if not key:
        raise UserError("the API key is empty")
    if any(ord(c) < 33 or ord(c) == 127 for c in key) or not key.isascii():
        raise UserError("the API key contains spaces, control characters or non-ASCII characters")
    REDACTOR.add(key)
    key_id = a.id if a.id is not None else "key-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    check_id(key_id, "key name")
    from . import engine
    from claude_pool.schema.listing import mask_key

    world, rt = _runtime("key add")
    rt.new_secrets[key_id] = key
    if any(k.key == key for k in world.pool.observe().api_keys):
        raise UserError("this API key is already in the pool")
    outcome = engine.run(world, rt, AddKey(key_id), execute=True, network=False)
    replaced = any(x.type == "add_key" and x.change == "update" for x in outcome.applied)
    _out(f"{'Replaced' if replaced else 'Added'} API key {key_id} ({mask_key(key)})"
         + (": the old key under this name is gone." if replaced else "."))
    for line in _moved(outcome):
        _out(line)
    return 0


def cmd_rm(a: argparse.Namespace) -> int:
    check_id(a.id)
    outcome = _run("rm", Remove(a.id), execute=True, network=False)
    _out(f"Removed {a.id}.")
    for line in _moved(outcome, gone=a.id):
        _out(line)
    return 0


# ---- preferences (issue 20): priority, threshold, pause, resume, rename ---------------------

def _prefer(intent) -> int:  # type: ignore[no-untyped-def]
    """Run a preference through the engine (plan/apply, audited) and say what changed and, when
    the pool moved because of it, where."""
    outcome = _run(intent.name, intent, execute=True, network=False)
    done = [x for x in outcome.applied if x.type == "set_preference"]
    if done:
        for x in done:
            _out(f"{x.target}: {x.after} (was: {x.before}).")
    else:
        _out(f"{outcome.desired.reason.split(';')[0]}.")   # "a: priority 2 already."
    for line in _moved(outcome):
        _out(line)
    return 0


def cmd_priority(a: argparse.Namespace) -> int:
    from .intents import Prefer

    check_id(a.id)
    value = a.value.strip().lower()
    if value == "default":
        return _prefer(Prefer(a.id, "priority", priority=None))
    if not value.isdigit() or not 1 <= int(value) <= 99:
        raise UserError(f"priority: expected a tier from 1 (spent first) to 99, or `default`; not {a.value!r}")
    return _prefer(Prefer(a.id, "priority", priority=int(value)))


def parse_threshold(text: str) -> float | None:
    """`0.8`, `80`, `80%` or `default` (None); one line on anything else."""
    value = text.strip().lower()
    if value == "default":
        return None
    try:
        number = float(value.rstrip("%"))
    except ValueError:
        number = float("nan")
    if value.endswith("%") or number > 1:
        number /= 100.0
    if not 0 < number <= 1:   # NaN fails this too
        raise UserError(f"threshold: expected a fraction (0.8), a percentage (80 or 80%) or `default`; not {text!r}")
    return number


def cmd_threshold(a: argparse.Namespace) -> int:
    from .intents import Prefer

    check_id(a.id)
    return _prefer(Prefer(a.id, "threshold", threshold=parse_threshold(a.value)))


def parse_until(text: str, now: datetime) -> datetime:
    """`--until`: a duration from now (`90m`, `3h`, `2d`, `1w`) or a time (ISO 8601; without an
    offset: local time); it must be in the future."""
    import re
    from datetime import timedelta

    value = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", value.lower())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        try:
            when = now + timedelta(**{unit: float(m.group(1))})
        except OverflowError:
            raise UserError(f"--until {text!r} is too far away") from None
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise UserError(f"--until: expected a duration (3h, 2d, 90m, 1w) or a time (2026-12-24T09:00); "
                            f"not {text!r}") from None
        if when.tzinfo is None:
            when = when.astimezone()   # a time without an offset is the user's local time
    if when <= now:
        raise UserError(f"--until {text!r} is not in the future")
    return when.astimezone(timezone.utc).replace(microsecond=0)


def cmd_pause(a: argparse.Namespace) -> int:
    import unicodedata

    from .intents import Prefer

    check_id(a.id)
    until = parse_until(a.until, datetime.now(timezone.utc)) if a.until is not None else None
    reason = (a.reason or "").strip()
    if len(reason) > 200 or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in reason):
        raise UserError("--reason: at most 200 characters, no control or invisible characters")
    return _prefer(Prefer(a.id, "paused", paused=True, until=until, reason=reason))


def cmd_resume(a: argparse.Namespace) -> int:
    from .intents import Prefer

    check_id(a.id)
    return _prefer(Prefer(a.id, "paused", paused=False))


def cmd_rename(a: argparse.Namespace) -> int:
    from .intents import Rename

    check_id(a.old)
    check_id(a.new, "new name")
    outcome = _run("rename", Rename(a.old, a.new), execute=True, network=False)
    done = next((x for x in outcome.applied if x.type == "rename"), None)
    _out(f"{done.done()[0].upper()}{done.done()[1:]}." if done is not None else f"{a.old} is already called {a.new}.")
    for line in _moved(outcome, gone=a.old):
        _out(line)
    return 0


# ---- looking -------------------------------------------------------------------------------

def cmd_list(a: argparse.Namespace) -> int:
    """Text and --json render one model (schema/listing.py). The text view polls (a live look,
    readings kept, nothing else changed); --json shows the pool as last read: no network."""
    from claude_pool.schema.backoff import clean_calls
    from claude_pool.schema.listing import build

    from . import engine
    from .render import list_text

    world, rt = _runtime("list")
    outcome = engine.run(world, rt, Reconcile(live=True), execute=False, network=not a.json)
    if rt.usage_dirty:
        with world.pool.hold():
            fresh = world.pool.observe()
            for acc in fresh.accounts:  # keep the readings and what the usage endpoint said, change nothing else
                mine = rt.pool.account(acc.id)
                if mine is None:
                    continue
                if mine.usage_at and (acc.usage_at is None or mine.usage_at > acc.usage_at):
                    acc.usage, acc.usage_at, acc.usage_source = mine.usage, mine.usage_at, mine.usage_source
                if max(mine.usage_calls, default=0) > max(acc.usage_calls, default=0):
                    acc.usage_backoff = mine.usage_backoff   # this run asked last: its answer stands
                acc.usage_calls = clean_calls(sorted(set(acc.usage_calls) | set(mine.usage_calls)))
            world.pool.write(fresh)
    view = build(rt.pool, outcome.observed, outcome.observed.now, len(outcome.plan.actions))
    if a.json:
        _out(view.model_dump_json(indent=2))
        return 0
    from .policy import bypass_notes
    from .watch import hooks_line

    # when Claude Code last ran us, and what makes it send something else than the pool's
    # credential (as `plan` notes it)
    _out(list_text(view) + "\n" + hooks_line(outcome.observed.now.timestamp())
         + "".join(f"\nnote: {n}" for n in bypass_notes(outcome.observed)))
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    # normally dispatched before argparse (reconciler/cli.py); here only for `--help` and direct calls
    from claude_pool.reconciler import status

    return status.main([])


def cmd_version(a: argparse.Namespace) -> int:
    _out(f"claude-pool {__version__}")
    return 0


def cmd_config(a: argparse.Namespace) -> int:
    from claude_pool.providers import paths
    from claude_pool.providers.fsutil import atomic_write, ensure_private_dir
    from claude_pool.schema.config import DEFAULT_CONFIG_TOML

    from .runtime import load_config

    path = Path(paths.config_file())
    if a.config_cmd == "init":
        if path.exists() and not a.force:
            raise UserError(f"{path} already exists (use --force to overwrite it)")
        try:
            before = load_config(path)
        except UserError:
            before = None           # an unreadable config.toml being replaced
        ensure_private_dir(path.parent)
        atomic_write(path, DEFAULT_CONFIG_TOML.encode(), mode=0o600)
        _out(f"Wrote {path}")
        if before != load_config(path):
            # the configuration changed: what a reconcile on the cached readings does under it now,
            # in one run (no network), so nothing is left pending (issue 16)
            for line in _moved(_run("config", Reconcile(), execute=True, network=False)):
                _out(line)
        return 0
    import tomli_w

    config = load_config()
    _out(f"# effective configuration ({path}{'' if path.exists() else ', not present: defaults'})")
    _out(tomli_w.dumps(config.model_dump(mode="json")))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    """`export FILE [--move]`: every account and key, encrypted with a passphrase (reconciler/transfer.py)."""
    from .transfer import export

    return export(a.file, move=a.move, out=_out)


def cmd_import_pool(a: argparse.Namespace) -> int:
    """`import-pool FILE [--replace]`: merge an export into this pool (reconciler/transfer.py)."""
    from .transfer import import_pool

    return import_pool(a.file, replace=a.replace, out=_out)


def cmd_uninstall(a: argparse.Namespace) -> int:
    from .uninstall import run

    return run(a.purge, _out)


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def cmd_watch(a: argparse.Namespace) -> int:
    """The pool, redrawn every few seconds (reconciler/watch.py; no network)."""
    from .watch import run

    if a.interval <= 0:
        raise UserError("--interval must be a positive number of seconds")
    return run(interval=a.interval, once=a.once)


def cmd_report(a: argparse.Namespace) -> int:
    """The week at a glance as one self-contained HTML page (reconciler/report.py; no network)."""
    from .report import write_report

    where = write_report(a.out)
    _out(f"report written to {where}")
    return 0


# ---- parser --------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr like every other error (exit 1)."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"claude-pool: {message} (see `{self.prog} --help`)\n")


class _Skipped:
    """A command's parser that `build_parser(only=...)` leaves out: every call on it does nothing."""

    def __getattr__(self, _name: str) -> Callable[..., "_Skipped"]:
        return lambda *_a, **_k: self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line. `only`: the command about to run (its parser alone is built, a few ms
    fewer on every command: argparse translates each help string as it is added); None: all of
    them, for `--help` and for a command that is not one."""
    p = _Parser(prog="claude-pool", description="Keep Claude Code on the credential with the most "
                "rate-limit headroom.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p.commands = sub.choices   # type: ignore[attr-defined]   # name (and alias) -> its parser

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, aliases: list[str] | None = None):
        if only is not None and only != name and only not in (aliases or []):
            return _Skipped()
        sp = sub.add_parser(name, help=help, description=help, aliases=aliases or [])
        sp.set_defaults(fn=fn)
        return sp

    sp = add("plan", cmd_plan, "show what would change and why, changing nothing")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.add_argument("--out", metavar="FILE", help="save the plan for `apply FILE`")
    sp.add_argument("--detailed-exitcode", action="store_true", help="exit 0: no changes, 2: changes, 1: error")
    sp = add("apply", cmd_apply, "plan and apply (for scripts); with PLANFILE, apply that saved plan")
    sp.add_argument("planfile", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = add("reconcile", cmd_reconcile, "the hooks' job: move to the credential with the most headroom",
             aliases=["auto"])
    sp.add_argument("--if-needed", action="store_true", help="stay while the current account is under the threshold")
    sp.add_argument("--threshold", type=float, default=None, metavar="T",
                    help="0..1 (default: [policy] threshold in config.toml, else 0.95)")
    sp.add_argument("--live", action="store_true", help="poll every account now, ignoring cached readings")
    sp.add_argument("--launch", action="store_true",
                    help="then run `claude` with the arguments after `--` (even if the pool step failed)")
    sp = add("switch", cmd_switch, "make an account (or API key) active")
    sp.add_argument("id")
    sp = add("import", cmd_import, "add the login Claude Code holds now as an account and make it active")
    sp.add_argument("--id", metavar="NAME")
    sp = add("key", lambda a: (p.parse_args(["key", "--help"]), 0)[1], "manage API keys")
    ksub = sp.add_subparsers(dest="key_cmd", metavar="add", parser_class=_Parser)
    kp = ksub.add_parser("add", help="register an API key (argument, stdin, or a hidden prompt)")
    kp.add_argument("--id", metavar="NAME")
    kp.add_argument("key", nargs="?", help="the key; better: omit it and paste at the prompt or pipe it on stdin")
    kp.add_argument("--from-clipboard", action="store_true",
                    help="read the key from the clipboard (what the /claude-pool:key-add slash command does)")
    kp.set_defaults(fn=cmd_key_add)
    sp = add("rm", cmd_rm, "remove an account or API key")
    sp.add_argument("id")
    sp = add("priority", cmd_priority, "an account's tier: 1 is spent first, a higher tier only when the lower "
             "ones have no room (`default` clears)")
    sp.add_argument("id")
    sp.add_argument("value", metavar="N|default")
    sp = add("threshold", cmd_threshold, "an account's own threshold, over the global one (0-1, a percentage, "
             "or `default`)")
    sp.add_argument("id")
    sp.add_argument("value", metavar="T|default")
    sp = add("pause", cmd_pause, "never choose this account (moving off it now if it is held); still shown, "
             "its login kept alive")
    sp.add_argument("id")
    sp.add_argument("--until", metavar="TIME", help="a duration (3h, 2d) or a time (2026-12-24T09:00); "
                    "default: until `claude-pool resume`")
    sp.add_argument("--reason", metavar="TEXT", help="shown by list and plan")
    sp = add("resume", cmd_resume, "end an account's pause")
    sp.add_argument("id")
    sp = add("rename", cmd_rename, "give an account or API key another name")
    sp.add_argument("old")
    sp.add_argument("new")
    sp = add("list", cmd_list, "accounts with live usage, then keys (masked)")
    sp.add_argument("--json", action="store_true", help="no network, no secrets")
    add("status", cmd_status, "{mode, name} as JSON for a statusline (no network)")
    sp = add("watch", cmd_watch, "the pool, redrawn every few seconds (q quits; no network)")
    sp.add_argument("--once", action="store_true", help="print one frame and exit")
    sp.add_argument("--interval", type=float, default=3.0, metavar="N", help="seconds between frames (default 3)")
    sp = add("report", cmd_report, "the last 7 days as one self-contained HTML page (no network)")
    sp.add_argument("--out", metavar="FILE.html", default="claude-pool-report.html",
                    help="where to write it (default ./claude-pool-report.html)")
    add("version", cmd_version, "print the version")
    sp = add("config", lambda a: (p.parse_args(["config", "--help"]), 0)[1], "config.toml")
    csub = sp.add_subparsers(dest="config_cmd", metavar="init|show", parser_class=_Parser)
    cp = csub.add_parser("init", help="write a commented default config.toml")
    cp.add_argument("--force", action="store_true")
    cp.set_defaults(fn=cmd_config)
    csub.add_parser("show", help="print the effective configuration").set_defaults(fn=cmd_config)
    sp = add("export", cmd_export, "write every account and API key to FILE, encrypted with a passphrase "
             "(typed at a hidden prompt, or the first line of stdin)")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--move", action="store_true",
                    help="mark the exported accounts here as moved to another machine (never refreshed or chosen here)")
    sp = add("import-pool", cmd_import_pool, "merge an `export` FILE into this pool (passphrase as for export)")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--replace", action="store_true",
                    help="replace an account whose id names another email here (or a key with another value)")
    sp = add("uninstall", cmd_uninstall, "restore settings.json, stop the wake-up, remove the installed program")
    sp.add_argument("--purge", action="store_true", help="also delete the pool and the audit log (says what they hold)")
    add("demo", cmd_demo, "run the sandboxed demo against a local fake Anthropic API")
    return p


def _launch(args: list[str]) -> int:
    """`reconcile --launch -- ARGS`: become `claude ARGS`."""
    if _NO_PLUGINS_SET:   # our setting, not the user's: claude and what it runs never inherit it
        os.environ.pop(NO_PLUGINS, None)
    try:
        os.execvp("claude", ["claude", *args])
    except OSError as exc:
        sys.stderr.write(f"claude-pool: cannot run claude: {exc.strerror}\n")
        return 127
    return 0  # not reached


# pydantic's documented switch: no scan of every installed distribution's entry points for pydantic
# plugins at the first model built (we use none). Set for this process (and the detached runs it
# starts) unless the user set it; a `--launch`ed claude does not inherit it.
NO_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_NO_PLUGINS_SET = False


def engine_environment() -> None:
    """Before the engine's first import: pydantic's plugin scan off (NO_PLUGINS) and its
    `importlib.metadata` left unrun unless something uses it (reconciler/deferred.py)."""
    global _NO_PLUGINS_SET
    if NO_PLUGINS not in os.environ:
        os.environ[NO_PLUGINS] = "__all__"
        _NO_PLUGINS_SET = True
    from .deferred import defer_pydantic_plugin_scan

    defer_pydantic_plugin_scan()


def main(argv: list[str]) -> int:
    engine_environment()
    launch: list[str] | None = None
    if argv and argv[0] in ("reconcile", "auto") and "--launch" in argv:
        i = argv.index("--launch")
        rest = argv[i + 1:]
        if "--" in rest:
            j = rest.index("--")
            argv, launch = argv[:i + 1] + rest[:j], rest[j + 1:]
        else:
            launch = []
    code = _main(argv)
    if launch is not None:
        return _launch(launch)
    return leave(code)


def leave(code: int) -> int:
    """End the process now, without the interpreter's teardown (about 55 ms of finalizers and
    garbage collection for a loaded engine), when nothing is left to clean up: every file was
    written whole and closed by the command itself (pool, sidecars, settings: atomic renames; the
    audit log: one os.write a line), so only the standard streams are flushed here. Only when this
    process is the command alone: its own standard streams (not a hook that moved stdout, not a
    run inside another program or a test), no other thread (a call given up on may still answer:
    the usual exit then), not interactive. Otherwise returns `code` for the usual exit."""
    import threading

    if (sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__ or sys.flags.interactive
            or threading.active_count() != 1):
        return code
    try:
        if "logging" in sys.modules:   # structlog's processors import it: handlers, if any, flushed
            sys.modules["logging"].shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):   # a closed pipe: the usual exit reports it as it always did
        return code
    os._exit(code)


def _main(argv: list[str]) -> int:
    # a command's own parser is all it needs; anything else (an unknown word, an option first)
    # gets the whole parser and its usual message
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    if argv and argv[0] not in parser.commands:   # type: ignore[attr-defined]
        parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 1
    if not getattr(args, "fn", None):
        parser.print_help(sys.stderr)
        return 1
    from claude_pool.providers.base import ProviderError

    try:
        return args.fn(args)
    except (UserError, ProviderError) as exc:  # a provider's error is one line for a person too
        sys.stderr.write(f"claude-pool: {REDACTOR.text(str(exc))}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("claude-pool: interrupted\n")
        return 130
    except Exception as exc:  # last line of defence: one line, no traceback, no secret
        try:
            log().exception("internal_error", error=type(exc).__name__)
        except Exception:
            pass
        from .cli import error_line   # an OSError names its file and the fix; else "internal error"
        sys.stderr.write(error_line(argv, exc, REDACTOR.text))
        return 1
