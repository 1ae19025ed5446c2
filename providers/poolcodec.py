"""Pool bytes <-> pool JSON (a dict), with the standard library and cryptography only.

The full provider (poolfile.py) validates the dict with pydantic; the helper, a hot path, edits
the dict directly (unknown fields survive either way).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import crypto
from .base import ProviderError
from .fsutil import atomic_write, ensure_private_dir, explain, read_regular_stat
from .sidecars import identity


class PoolError(ProviderError):
    """The pool cannot be used as it is; it is left untouched."""


def read_bytes(path: Path) -> bytes | None:
    found = read_with_identity(path)
    return None if found is None else found[0]


def read_with_identity(path: Path) -> tuple[bytes, list[int]] | None:
    """The pool's bytes and the identity of the very file they came from."""
    try:
        found = read_regular_stat(path)   # a FIFO or a device in its place: one line, never a hang
    except OSError as exc:
        raise PoolError(f"cannot read the pool file {path}: {explain(exc, 'read')}") from None
    return None if found is None else (found[0], identity(found[1]))


def decode(data: bytes, key: bytes, path: Path) -> dict:
    if data.startswith(crypto.MAGIC):
        try:
            data = crypto.decrypt(data, key)
        except crypto.DecryptError:
            raise PoolError(
                f"the pool file {path} could not be decrypted: it was probably made on another machine "
                "or by another user. It was left untouched; to start over, move it aside and run "
                "`claude-pool import`."
            ) from None
    elif not data.lstrip().startswith(b"{"):
        raise PoolError(
            f"{path} is not a claude-pool pool file (no CPL1 header, not JSON); it was left untouched. "
            "Move it aside to start a new pool."
        )
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise PoolError(f"the pool file {path} is corrupt (not JSON inside); it was left untouched") from None
    if not isinstance(raw, dict):
        raise PoolError(f"the pool file {path} is corrupt (not a JSON object); it was left untouched")
    return raw


def encode(data: dict, key: bytes) -> bytes:
    return crypto.encrypt(json.dumps(data, indent=2).encode("utf-8"), key)


def write(path: Path, data: dict, key: bytes) -> list[int]:
    """Write the pool; returns the identity of the file written. `key_cursor` 0 is left out, as
    the Go tool leaves it out."""
    ensure_private_dir(path.parent)
    return identity(atomic_write(path, encode(go_shape(data), key), mode=0o600, follow_symlink=False))


def go_shape(data: dict) -> dict:
    """`key_cursor` 0 is left out, as the Go tool leaves it out."""
    return data if data.get("key_cursor") else {k: v for k, v in data.items() if k != "key_cursor"}
