"""Pool bytes <-> pool JSON (a dict), with the standard library and cryptography only.

The full provider (poolfile.py) validates the dict with pydantic; the helper, a hot path, edits
the dict directly (unknown fields survive either way).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the hot paths use this module)
if TYPE_CHECKING:
    from typing import Callable

from . import crypto
from .base import ProviderError
from .fsutil import atomic_write, ensure_private_dir, explain, read_regular_stat, write_all
from .sidecars import identity


class PoolError(ProviderError):
    """The pool cannot be used as it is; it is left untouched."""


# A pool write prepared before a token refresh (`PoolFile.reserve`): the temp file that will take
# the rotated login. If the final rename fails, it stays, and the next run reads it back first.
PENDING_MARK = ".claude-pool-pending-"
PENDING_SLACK = 64 * 1024   # room the refreshed pool may take beyond the current one (new fields, longer tokens)


class PoolUnwritable(PoolError):
    """A rotated login could not be kept: no refresh is made (the old token still works)."""


class Reservation:
    """Proof, made before a refresh, that the rotated login can be saved: a temp file created in
    the pool's own folder, written to the size the pool will take and fsynced. `commit` writes the
    new pool into it and renames it over the pool file."""

    def __init__(self, pool_path: Path, claim: "Callable[[str], None] | None" = None) -> None:
        self.pool_path = pool_path
        directory = pool_path.parent
        self.path = directory / f"{PENDING_MARK}{os.getpid()}-{os.urandom(4).hex()}-{pool_path.name}"
        if claim is not None:
            # named as this run's before it exists: a save by another of the run's threads (its
            # own refresh) removes every pending file it does not know to keep
            claim(str(self.path))
        self.fd: int | None = None
        try:
            ensure_private_dir(directory)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                size = pool_path.stat().st_size
            except OSError:
                size = 0
            write_all(self.fd, b"\0" * (size + PENDING_SLACK))
            os.fsync(self.fd)
        except OSError as exc:
            self.abandon()
            raise PoolUnwritable(
                f"cannot save a refreshed login in {directory}: {exc.strerror or type(exc).__name__}; no token was "
                "refreshed (the current ones still work). Make the folder writable (or free some space), then run "
                "again") from None

    #: a refresh given up at its deadline may still answer: the reservation is left to it
    keep = False

    def fill(self, data: bytes) -> None:
        """Write the pool into the reservation and close it, without renaming it."""
        if self.fd is None:
            return
        os.lseek(self.fd, 0, os.SEEK_SET)
        write_all(self.fd, data)
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None

    def commit(self, data: bytes) -> list[int]:
        assert self.fd is not None
        self.fill(data)
        os.replace(self.path, self.pool_path)
        return identity(os.stat(self.pool_path))

    def abandon(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def read_bytes(path: Path) -> bytes | None:
    found = read_with_identity(path)
    return None if found is None else found[0]


def read_with_identity(path: Path) -> tuple[bytes, list[int]] | None:
    """The pool's bytes and the identity of the very file they came from: the pool file, or a
    rescued refresh newer than it (a `Reservation` whose rename failed: it holds a rotated login
    the server no longer accepts the old one for, so every reader takes it first; the next save
    puts it in place)."""
    try:
        found = read_regular_stat(path)   # a FIFO or a device in its place: one line, never a hang
    except OSError as exc:
        raise PoolError(f"cannot read the pool file {path}: {explain(exc, 'read')}") from None
    rescued = _rescued(path, found[1].st_mtime_ns if found is not None else 0)
    if rescued is not None:
        return rescued
    return None if found is None else (found[0], identity(found[1]))


def _rescued(path: Path, newer_than_ns: int) -> tuple[bytes, list[int]] | None:
    best = None
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not entry.name.startswith(PENDING_MARK):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime_ns <= newer_than_ns or (best is not None and st.st_mtime_ns <= best[1][1]):
                    continue
                got = read_regular_stat(Path(entry.path))
            except OSError:
                continue
            if got is not None and (got[0].startswith(crypto.MAGIC) or got[0].lstrip().startswith(b"{")):
                best = (got[0], identity(got[1]))   # a reservation never committed holds zeros: skipped
    return best


def save(path: Path, data: dict, key: bytes, *, into: "Reservation | None" = None,
         keep: "set[str] | frozenset[str]" = frozenset()) -> list[int]:
    """The one save of the pool file, for the engine and the hot paths alike (under the pool
    lock): atomic (temp file, fsync, rename; or the reservation a refresh made), 0600, the Go
    tool's shape; then the rescued refreshes it supersedes are removed (`keep`: this run's own
    reservations still open). Returns the identity of the file written."""
    ensure_private_dir(path.parent)
    if into is not None and into.fd is not None:
        written = into.commit(encode(go_shape(data), key))
    else:
        written = identity(atomic_write(path, encode(go_shape(data), key), mode=0o600, follow_symlink=False))
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(PENDING_MARK) and entry.path not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    return written


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
    return save(path, data, key)


def go_shape(data: dict) -> dict:
    """`key_cursor` 0 is left out, as the Go tool leaves it out."""
    return data if data.get("key_cursor") else {k: v for k, v in data.items() if k != "key_cursor"}
