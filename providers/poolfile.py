"""The pool file: encrypted (Go-compatible), locked (flock, providers/hotlock.py), written atomically 0600.

Beside it: `pool.json.lock` (the lock) and `status.json`, a plaintext summary with no secret so
`claude-pool status` answers without decrypting anything.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from claude_pool.schema.credentials import oauth_fingerprint
from claude_pool.schema.pool import Pool, exhausted_until
from claude_pool.schema.timefmt import format_time

from . import crypto, paths, poolcodec, sidecars
from .base import ProviderError
from .fsutil import clean_stale_temps, ensure_private_dir, write_all
from .hotlock import HotLock, LockTimeout
from .poolcodec import PoolError

LOCK_WAIT_SECONDS = 60.0


PoolUnwritable = poolcodec.PoolUnwritable
Reservation = poolcodec.Reservation


class PoolBusy(ProviderError):
    pass


def decision_digest(pool: Pool) -> str:
    """A digest of what decisions depend on (not the usage cache): a saved plan compares it."""
    parts = [pool.mode, pool.current, pool.current_key, pool.saved_api_key_helper]
    parts += [f"a:{a.id}:{oauth_fingerprint(a.blob)}:{int(a.needs_relogin)}"
              + (f":b{format_time(a.block.until)}" if a.block is not None and a.block.until else "")
              + (f":p{a.priority}:t{a.threshold}" if a.priority is not None or a.threshold is not None else "")
              + (f":z{format_time(a.paused.until)}" if a.paused is not None else "")   # the user's preferences
              for a in pool.accounts]
    parts += [f"k:{k.id}" for k in pool.api_keys]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def status_summary(pool: Pool) -> dict[str, object]:
    """What `claude-pool status` prints, precomputed at every save, with the accounts' login
    deadlines for the statusline and the session start (reconciler/deadlines.py)."""
    from claude_pool.reconciler.deadlines import status_fields

    return {**_summary(pool), **status_fields(pool.accounts)}


def _summary(pool: Pool) -> dict[str, object]:
    since = format_time(pool.switched_at) if pool.switched_at else None
    if pool.mode == "apikey":
        # An account is back when its latest exhausted window resets; the pool, when the first
        # account is back.
        now = datetime.now(timezone.utc)
        per_account = [t for acc in pool.accounts if not acc.needs_relogin
                       for t in [exhausted_until(acc, now)] if t is not None]
        summary: dict[str, object] = {"mode": "apikey", "name": pool.current_key, "since": since}
        if per_account:
            summary["resets_at"] = format_time(min(per_account))
            summary["resets_at_epoch"] = min(per_account).timestamp()  # status needs no datetime
        return summary
    if not pool.accounts and not pool.api_keys:
        return {"mode": "empty", "name": ""}
    held = pool.account(pool.current)
    summary = {"mode": "account", "name": pool.current, "since": since}
    if held is not None:
        # what the prompt hook needs to see a wall coming without decrypting the pool: the held
        # account's last reading and block (no secret), asked through reconciler/decision.py
        summary["held"] = held.model_dump(mode="json", include={"id", "usage", "usage_at", "usage_source",
                                                                  "block", "needs_relogin", "threshold", "paused"})
    return summary


class PoolFile:
    name = "pool"

    def __init__(self, path: Path | None = None, key: bytes | None = None) -> None:
        self.path = path or Path(paths.pool_file())
        self._key = key
        #: the identity (size, mtime_ns, inode) of the pool file last read or written
        self.identity: list[int] | None = None
        #: this run's open reservations (token refreshes in flight, one a thread)
        self.reserved: set[str] = set()
        #: this run's reservations whose rename failed (rescues), oldest first
        self.rescues: list[str] = []

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = crypto.derive_key()
        return self._key

    @property
    def status_path(self) -> Path:
        return self.path.parent / "status.json"

    def location(self) -> str:
        return str(self.path)

    def lock(self, timeout: float = LOCK_WAIT_SECONDS) -> HotLock:
        """The pool lock (not yet taken): the same flock on `pool.json.lock` as the hot paths'."""
        ensure_private_dir(self.path.parent)
        return HotLock(Path(str(self.path) + ".lock"), wait=timeout)

    @contextlib.contextmanager
    def hold(self, timeout: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        """The pool lock for one run (PoolBusy after `timeout` seconds)."""
        lock = lock_or_busy(self, timeout)
        try:
            yield
        finally:
            lock.release()

    def exists(self) -> bool:
        return self.path.exists()

    def observe(self) -> Pool:
        found = poolcodec.read_with_identity(self.path)   # a rescued refresh first (poolcodec.Reservation)
        if found is None:
            self.identity = None
            return Pool()
        data, self.identity = found
        raw = poolcodec.decode(data, self.key, self.path)
        try:
            return Pool.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            # the message names the field and the problem, never the value (it may be a token)
            raise PoolError(
                f"the pool file {self.path} is corrupt ({where}: {first.get('msg', 'invalid')}); it was left untouched"
            ) from None

    @contextlib.contextmanager
    def reserve(self) -> Iterator[Reservation]:
        """A write of the pool proven possible before a token refresh (PoolUnwritable: it is not,
        so do not refresh). Unused, it is abandoned; a failed commit leaves it for the next run."""
        spot = Reservation(self.path, claim=self.reserved.add)
        try:
            yield spot
        finally:
            if spot.fd is not None and not spot.keep:   # never committed: nothing to keep
                self.reserved.discard(str(spot.path))
                spot.abandon()

    def rescue(self, value: Pool, spot: Reservation) -> None:
        """Write `value` into a reservation without renaming it (a late token answer): a rescue
        that every reader takes first (poolcodec.read_with_identity)."""
        spot.fill(poolcodec.encode(poolcodec.go_shape(value.model_dump(mode="json")), self.key))

    def write(self, value: Pool, into: Reservation | None = None, renamed: dict[str, str] | None = None) -> None:
        """The one save of the pool file by the engine (atomic, 0600; the status summary beside it).
        `into`: the reservation a refresh made, so a rotated login is kept even when the folder
        stopped taking new files; if even that fails, the reservation stays for the next run.
        `renamed`: accounts renamed since the last save (old id -> new id), for the history."""
        ensure_private_dir(self.path.parent)
        clean_stale_temps(self.path.parent)
        try:
            self.identity = poolcodec.save(self.path, value.model_dump(mode="json"), self.key, into=into,
                                           keep=self.reserved)
        except OSError as exc:
            kept = ""
            if into is not None:
                kept = f"; the refreshed login was kept in {into.path} and is read back by the next run"
                self._align_rescues(value, into)
            raise PoolError(f"cannot write the pool file {self.path}: {exc.strerror or type(exc).__name__}{kept}") \
                from None
        with contextlib.suppress(OSError):
            self.write_status(value)
        from claude_pool.providers import history   # the readings' history and forecasts (issue 20)

        history.record_saved(self.path, lambda: value.model_dump(
            mode="json", include={"accounts": {"__all__": {"id", "usage", "usage_at"}}}), renamed=renamed)

    def _align_rescues(self, value: Pool, spot: Reservation) -> None:
        """Several refreshes of one run whose renames failed leave several rescues, each the pool as
        it was at its own save; readers take the newest, but two written within one tick of the
        file clock look equally new. So every rescue of this run is rewritten with the latest pool
        (which holds every rotated login so far): whichever is read, none is lost."""
        import os

        self.rescues.append(str(spot.path))
        data = poolcodec.encode(poolcodec.go_shape(value.model_dump(mode="json")), self.key)
        for path in self.rescues[:-1]:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def write_status(self, value: Pool) -> None:
        """The summary of `value`, which is the pool file last read or written by this provider."""
        sidecars.write_status(status_summary(value), self.identity, self.status_path)


def lock_or_busy(pool: PoolFile, timeout: float = LOCK_WAIT_SECONDS) -> HotLock:
    lock = pool.lock(timeout)
    try:
        lock.acquire()
    except LockTimeout:
        raise PoolBusy(f"another claude-pool run held the pool lock for {timeout:.0f}s; try again") from None
    return lock
