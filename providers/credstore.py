"""Which credential store Claude Code uses here. One line per store kind in REGISTRY."""

from __future__ import annotations

from typing import Callable

from .base import Provider
from .credstore_file import FileCredentialStore

REGISTRY: dict[str, Callable[[], Provider[str | None, str]]] = {
    "file": FileCredentialStore,
}


def default_store() -> Provider[str | None, str]:
    return REGISTRY["file"]()
