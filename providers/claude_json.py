"""Claude Code's `.claude.json`: only `oauthAccount` is ours to change (docs/ARCHITECTURE.md §3, §7).

`oauthAccount` (`accountUuid`, `emailAddress`, `organizationUuid`, `displayName`, ...) is the
account Claude Code shows in its banner and `/status`. The rest of the file is Claude Code's own
large state (projects, MCP servers, tips history...), rewritten by it often, so a write here is
made the way Claude Code makes its own (2.1.197):

- under its lock, `<file>.lock` (a directory, proper-lockfile style, stale after 10 s): a write
  never lands while Claude Code is in the middle of one of its own;
- read, parse, replace `oauthAccount`, dump (2-space indent; every other key kept, in order);
- a temp file beside the file's target (a symlink stays a symlink), fsync, and, right before the
  rename, the file read again and compared with what was parsed (bytes, inode, size, mtime): if
  another writer (Claude Code writes without the lock when it cannot get it) changed it
  meanwhile, nothing is renamed and the whole read-modify-write is made again, a few times at
  most; then the file is left as it is (`LeftAlone`);
- the file keeps its mode; it is never created, and one that is not a regular file holding a
  JSON object (or not UTF-8, or a number JSON cannot round-trip) is never rewritten.

Nothing here is a secret: `oauthAccount` holds ids, an email, names and billing facts.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from pathlib import Path
from typing import NamedTuple
from . import claude_lock, paths
from .base import ProviderError
from .fsutil import TEMP_MARK, WriteRefused, check_respected, describe, fsync_dir, read_regular_stat, write_all

#: how many read-modify-writes a write tries before it leaves the file alone
ATTEMPTS = 5
#: the most a write spends on waiting for Claude Code's lock and on retries, in seconds (cut
#: further to a hook's deadline, `CLAUDE_POOL_DEADLINE`)
BUDGET = 2.0
_BOM = b"\xef\xbb\xbf"


def claude_json_path() -> str:
    """Where Claude Code keeps it (2.1.197): `<Claude Code dir>/.config.json` when that exists
    (an old layout), else `.claude.json` in `$CLAUDE_CONFIG_DIR`, default the home folder
    (`.claude-custom-oauth.json` with `CLAUDE_CODE_CUSTOM_OAUTH_URL`)."""
    legacy = os.path.join(paths.claude_dir(), ".config.json")
    if os.path.exists(legacy):
        return legacy
    suffix = "-custom-oauth" if os.environ.get("CLAUDE_CODE_CUSTOM_OAUTH_URL") else ""
    return os.path.join(os.environ.get("CLAUDE_CONFIG_DIR") or paths.home(), f".claude{suffix}.json")


class LeftAlone(ProviderError):
    """The file was left as it is; the message (one line, no secret) says why."""


class ClaudeJsonView(NamedTuple):
    """What the file says: `present` when it is a regular file holding a JSON object (the only
    kind ever rewritten), its `oauthAccount` (None when it has none), or why it cannot be used.
    (A NamedTuple, not a dataclass: `list --json`'s light path reads it, and dataclasses brings
    inspect, a few ms of a 60 ms command.)"""

    present: bool = False
    account: dict | None = None
    error: str = ""


def identity_key(account: object) -> tuple[str, str, str] | None:
    """(email lowercased, account uuid, organization uuid) of an oauthAccount; None without an email."""
    if not isinstance(account, dict):
        return None
    email = account.get("emailAddress")
    if not isinstance(email, str) or not email:
        return None
    return (email.lower(), str(account.get("accountUuid") or ""), str(account.get("organizationUuid") or ""))


def same_identity(a: object, b: object) -> bool:
    """Do two oauthAccounts name the same account: same email, and the same account and
    organization uuids wherever both say one (one person can be in two organizations)."""
    ka, kb = identity_key(a), identity_key(b)
    if ka is None or kb is None:
        return False
    return ka[0] == kb[0] and all(x == y for x, y in zip(ka[1:], kb[1:]) if x and y)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):   # 1e999 would come back as Infinity, which no JSON parser reads
        raise ValueError("number out of range")
    return value


def _constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse(raw: bytes, where: str) -> tuple[dict, bool, bool]:
    """(the object, had a BOM, ended with a newline); LeftAlone when it is not one we may rewrite."""
    bom = raw.startswith(_BOM)
    try:
        text = raw[len(_BOM) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError:
        raise LeftAlone(f"{where} is not UTF-8 text; left as it is") from None
    try:
        data = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except (ValueError, RecursionError):
        raise LeftAlone(f"{where} is not valid JSON; left as it is") from None
    if not isinstance(data, dict):
        raise LeftAlone(f"{where} is not a JSON object; left as it is")
    return data, bom, text.endswith("\n")


def dump(data: dict, bom: bool = False, newline: bool = False) -> bytes:
    """As Claude Code writes it (`JSON.stringify(config, null, 2)`): 2-space indent, non-ASCII as
    is (escaped only where a string holds a lone surrogate, which UTF-8 cannot carry)."""
    try:
        out = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        out = json.dumps(data, indent=2).encode("ascii")
    return (_BOM if bom else b"") + out + (b"\n" if newline else b"")


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _deadline_left() -> float | None:
    try:
        return float(os.environ["CLAUDE_POOL_DEADLINE"]) - time.time()
    except (KeyError, ValueError):
        return None


class ClaudeJsonFile:
    """providers/world.py `ClaudeJson`: observe `oauthAccount`, write it (nothing else)."""

    name = ".claude.json"

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else Path(claude_json_path())
        self.lock_path = Path(f"{self.path}.lock")

    def location(self) -> str:
        return str(self.path)

    def temp_dirs(self, *known: Path | str) -> list[str]:
        """The folder our temp files go to (the file's target's), unless one of `known` already
        is: the run's temp sweeper looks there too."""
        here = os.path.dirname(os.path.realpath(self.path))
        return [] if any(os.path.realpath(k) == here for k in known) else [here]

    def observe(self) -> ClaudeJsonView:
        try:
            found = read_regular_stat(self.path)
        except OSError as exc:
            return ClaudeJsonView(error=describe(exc, "read", self.path))
        if found is None:
            return ClaudeJsonView(error=f"{self.path} does not exist")
        try:
            data, _, _ = parse(found[0], str(self.path))
        except LeftAlone as exc:
            return ClaudeJsonView(error=str(exc))
        account = data.get("oauthAccount")
        return ClaudeJsonView(present=True, account=account if isinstance(account, dict) else None)

    def write(self, value: dict) -> None:
        """Make `oauthAccount` say `value` (an oauthAccount already naming the same account is
        kept: Claude Code's own copy is the fresher one). LeftAlone when the file is left as it is."""
        if not os.path.lexists(self.path):   # before the lock, whose folder would be made
            raise LeftAlone(f"{self.path} does not exist; not created")
        left = _deadline_left()
        budget = BUDGET if left is None else max(0.0, min(BUDGET, left - 0.3))
        until = time.monotonic() + budget
        why = "it kept changing while claude-pool wrote it"
        for attempt in range(ATTEMPTS):
            wait = max(0.0, until - time.monotonic())
            try:
                with claude_lock.hold(self.lock_path, wait=min(wait, budget / 2)):
                    if self._replace(value):
                        return
                why = "it kept changing while claude-pool wrote it"
            except claude_lock.ClaudeLockUnavailable:
                raise LeftAlone(f"cannot take Claude Code's lock {self.lock_path} (its folder is not writable); "
                                f"{self.path} left as it is") from None
            except claude_lock.ClaudeLockTimeout:
                why = f"Claude Code kept its lock {self.lock_path.name}"
            if time.monotonic() >= until:
                break
            time.sleep(min(0.02 * (attempt + 1), max(0.0, until - time.monotonic())))
        raise LeftAlone(f"{self.path} left as it is: {why} (tried {attempt + 1} times; the next run tries again)")

    def _replace(self, value: dict) -> bool:
        """One read-modify-write under the lock; False when the file changed before the rename."""
        where = str(self.path)
        try:
            found = read_regular_stat(self.path)
        except OSError as exc:
            raise LeftAlone(f"{describe(exc, 'read', self.path)}; left as it is") from None
        if found is None:
            raise LeftAlone(f"{where} does not exist; not created")
        raw, st = found
        data, bom, newline = parse(raw, where)
        if same_identity(data.get("oauthAccount"), value):
            return True
        data["oauthAccount"] = value
        out = dump(data, bom, newline)
        target = os.path.realpath(self.path)
        directory = os.path.dirname(target) or "."
        try:
            check_respected(self.path)
        except WriteRefused as exc:
            raise LeftAlone(f"cannot write {exc.where()}: it {exc.strerror}; left as it is") from None
        except OSError as exc:
            raise LeftAlone(f"{describe(exc, 'write', self.path)}; left as it is") from None
        tmp = os.path.join(directory, f"{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}-{os.path.basename(target)}")
        mode = stat.S_IMODE(st.st_mode)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
            try:
                os.fchmod(fd, mode)
                write_all(fd, out)
                os.fsync(fd)
            finally:
                os.close(fd)
            # the compare: the file must still be exactly what was parsed (another writer's
            # rename changes the inode, an in-place write the bytes), right up to the rename
            again = read_regular_stat(self.path)
            if again is None or again[0] != raw or _signature(again[1]) != _signature(st) \
                    or _signature(os.stat(target)) != _signature(st):
                os.unlink(tmp)
                return False
            os.replace(tmp, target)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise LeftAlone(f"{describe(exc, 'write', self.path)}; left as it is") from None
        fsync_dir(directory)
        return True
