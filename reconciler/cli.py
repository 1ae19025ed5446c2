"""The `claude-pool` entry point: a light dispatcher.

Hot paths (`status` on every statusline render, `helper`, `hook`) import only their own light
module. Everything else goes to `commands`, which brings in argparse and the full stack.
"""

from __future__ import annotations

import importlib
import sys

# command -> module with main(argv) -> int; these never import pydantic, httpx or structlog
LIGHT = {
    "status": "claude_pool.reconciler.status",
    "helper": "claude_pool.reconciler.helper",
    "hook": "claude_pool.reconciler.hooks",
    "statusline": "claude_pool.reconciler.statusline",
    "wake": "claude_pool.reconciler.wake",
}


def error_line(command: "str | list[str]", exc: BaseException, redact: "object" = None) -> str:
    """The one stderr line for an error no handler knew (newline included, never a traceback).

    An OSError on a file (ours, or one we share with Claude Code) names the command, the file, what
    failed and what to do: `claude-pool list: cannot write /x/pool.json.lock: Permission denied;
    make it and its folder /x writable by you ...`; HOME unset is its own line; anything else is an
    internal error. `redact`: a function applied to the text (the audit log's redactor)."""
    if isinstance(command, list):   # argv: the command and, for `key add` or `config init`, its verb
        words = command[:2] if command[:1] in (["key"], ["config"], ["hook"]) else command[:1]
        command = " ".join(w for w in words if w.isidentifier() or w.replace("-", "").isalnum())
    prefix = f"claude-pool {command}".rstrip()
    if isinstance(exc, OSError):
        from claude_pool.providers import fsutil, paths

        if isinstance(exc, paths.HomeNotSet) or not exc.filename:
            text = str(exc) if isinstance(exc, paths.HomeNotSet) else f"{exc.strerror or type(exc).__name__}"
        else:
            text = fsutil.describe(exc, _verb(exc))
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    text = " ".join(text.split())   # one line, whatever the message held
    if callable(redact):
        text = redact(text)
    return f"{prefix}: {text}\n"


def _verb(exc: OSError) -> str:
    """Was it a read or a write that failed? The errno says so for a full or read-only disk; a
    file that is not there was being created; one we cannot read was being read."""
    import errno
    import os

    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EROFS, errno.EFBIG, errno.EEXIST):
        return "write"
    path = os.fspath(exc.filename)
    if not os.path.lexists(path):
        return "write"
    return "read" if not os.access(path, os.R_OK) else "write"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in LIGHT:
        return importlib.import_module(LIGHT[args[0]]).main(args[1:])
    if args == ["version"]:
        from claude_pool import __version__

        sys.stdout.write(f"claude-pool {__version__}\n")
        return 0
    if args == ["list", "--json"]:
        from claude_pool.reconciler import lightlist

        code = lightlist.main(args[1:])   # None: only the full engine can be sure of every byte
        if code is not None:
            return code
    from claude_pool.reconciler import commands

    if args[:1] == ["help"]:   # `help` and `help COMMAND [VERB]`, as git and pip have them
        topic = [w for w in args[1:3] if w != "help"]
        args = [*topic, "--help"]
    if args in ([], ["-h"], ["--help"]):
        # the parser alone (commands.py loads the engine only when a command runs): the same text
        parser = commands.build_parser()
        if args:
            parser.print_help()
            return 0
        parser.print_help(sys.stderr)
        return 1
    return commands.main(args)
