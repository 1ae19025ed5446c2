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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in LIGHT:
        return importlib.import_module(LIGHT[args[0]]).main(args[1:])
    from claude_pool.reconciler import commands

    return commands.main(args)
