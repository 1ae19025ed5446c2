"""Which credential store Claude Code uses here. One line per store kind in REGISTRY.

Automatic by platform (the Keychain on macOS, the file elsewhere), overridden by
`CLAUDE_POOL_CREDENTIAL_STORE=keychain|file` or `credential_store` in config.toml's `[store]`.

Standard library only, and a store's module is imported only when that store is built: the
light paths (reconciler/quicklook.py) take the kind from this same table, and config.toml is
validated against it (schema/config.py). Adding a store: its module (a class following
providers/world.py `CredentialStore`) and its line here.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

from .base import ProviderError


class StoreKind(NamedTuple):
    #: "module:Class" in claude_pool.providers; the class takes no argument
    factory: str
    #: the platforms (sys.platform) where Claude Code keeps its login there; "*": every other one
    auto_on: tuple[str, ...] = ()
    #: a plain file at paths.credentials_file(), which the light paths may read by themselves
    plain_file: bool = False


REGISTRY: dict[str, StoreKind] = {
    "file": StoreKind("credstore_file:FileCredentialStore", auto_on=("*",), plain_file=True),
    "keychain": StoreKind("credstore_keychain:KeychainCredentialStore", auto_on=("darwin",)),
}



def choices() -> tuple[str, ...]:
    """What `credential_store` may say."""
    return ("auto", *REGISTRY)


def store_kind(configured: str = "auto", platform: str | None = None) -> str:
    kind = os.environ.get("CLAUDE_POOL_CREDENTIAL_STORE") or configured or "auto"
    if kind == "auto":
        platform = platform or sys.platform
        kind = next((k for k, s in REGISTRY.items() if platform in s.auto_on), "")
        kind = kind or next(k for k, s in REGISTRY.items() if "*" in s.auto_on)
    if kind not in REGISTRY:
        raise ProviderError(f"unknown credential store {kind!r} (expected one of: {', '.join(choices())})")
    return kind


def default_store(configured: str = "auto") -> Any:
    """The credential store of the kind configured (a providers/world.py `CredentialStore`)."""
    import importlib

    module, _, name = REGISTRY[store_kind(configured)].factory.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)()
