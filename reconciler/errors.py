"""Error kinds the CLI turns into one clear line (never a traceback)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit 1. Never carries a secret."""


class StalePlan(UserError):
    pass
