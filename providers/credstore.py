"""Which credential store Claude Code uses here. One line per store kind in REGISTRY.

Automatic by platform (the Keychain on macOS, the file elsewhere), overridden by
`CLAUDE_POOL_CREDENTIAL_STORE=keychain|file` or `credential_store` in config.toml's `[store]`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from .base import Provider, ProviderError
from .credstore_file import FileCredentialStore
from .credstore_keychain import KeychainCredentialStore

REGISTRY: dict[str, Callable[[], Provider[str | None, str]]] = {
    "file": FileCredentialStore,
    "keychain": KeychainCredentialStore,
}


def store_kind(configured: str = "auto", platform: str | None = None) -> str:
    kind = os.environ.get("CLAUDE_POOL_CREDENTIAL_STORE") or configured or "auto"
    if kind == "auto":
        kind = "keychain" if (platform or sys.platform) == "darwin" else "file"
    if kind not in REGISTRY:
        raise ProviderError(f"unknown credential store {kind!r} (expected one of: auto, {', '.join(REGISTRY)})")
    return kind


def default_store(configured: str = "auto") -> Provider[str | None, str]:
    return REGISTRY[store_kind(configured)]()
