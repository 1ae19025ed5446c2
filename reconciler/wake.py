"""`claude-pool wake EPOCH` (internal): the detached recovery sleeper. Light: no heavy import
while it sleeps; it becomes a normal `reconcile` when due."""

from __future__ import annotations

import sys

from claude_pool.providers.wake import sleep_then_reconcile


def main(argv: list[str]) -> int:
    try:
        at = float(argv[0])
    except (IndexError, ValueError):
        sys.stderr.write("usage: claude-pool wake EPOCH_SECONDS (internal)\n")
        return 1
    return sleep_then_reconcile(at)
