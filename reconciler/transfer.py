"""Move the pool to another machine: `claude-pool export FILE [--move]` and `import-pool FILE`.

The pool file opens only on the machine and for the user that wrote it (its key comes from the
machine id, docs/ARCHITECTURE.md §3.1), so a move goes through a file encrypted with a passphrase
the user types, never the machine key:

    header  = b"CPEXPORT" | version (1 byte) | log2 N, r, p (1 + 4 + 4 bytes, big-endian) |
              salt (16 bytes) | nonce (12 bytes)
    key     = scrypt(passphrase UTF-8, salt, N, r, p) -> 32 bytes
    file    = header | AES-256-GCM(key, nonce, plaintext, associated data = header)

The header is the associated data, so a changed parameter, salt or nonce fails like a changed
ciphertext byte. The plaintext is JSON (`EXPORT_FORMAT`, `version` 1): `created_at`,
`tool_version`, `accounts` (each the pool's account as stored: id, email, blob, readings and the
fields only we keep) and `api_keys` ({id, key}). Written 0600, atomically.

`export --move` marks the exported accounts here as moved away: `needs_relogin` with the reason
"moved to another machine ...", which every step already honours (never polled, refreshed or
chosen; `import` of a fresh login or `import-pool` clears it), because a refresh token used on two
machines rotates under one of them.

`import-pool` merges by id (a new id is added; the same id and email keeps the newer token; another
email is replaced only when the user says so), writes the pool with this machine's key under the
pool lock, records each change in the audit log, then lets a reconcile on the cached readings
converge the pool, as `key add` does (issue 16). Nothing is written before the file decrypted and
parsed: a wrong passphrase, a truncated, tampered or foreign file changes nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from .errors import UserError

MAGIC = b"CPEXPORT"
VERSION = 1
EXPORT_FORMAT = "claude-pool-export"
SALT_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
_PARAMS = struct.Struct(">BBII")       # version, log2 N, r, p
HEADER_LEN = len(MAGIC) + _PARAMS.size + SALT_LEN + NONCE_LEN
# scrypt cost: N = 2**17, r = 8, p = 1 (128 MiB, ~0.4 s): a passphrase guess costs as much
LOG2_N, R, P = 17, 8, 1
# what a file may ask of us (a tampered header must not make us allocate gigabytes)
_MAX_LOG2_N, _MAX_R, _MAX_P = 20, 16, 4
MIN_PASSPHRASE = 8
MOVED = "moved to another machine"


class ExportError(UserError):
    """The file is not an export we can open: one line, nothing changed."""


# ---- the file ------------------------------------------------------------------------------

def _kdf(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=2 ** log2_n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal(payload: dict[str, Any], passphrase: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    header = MAGIC + _PARAMS.pack(VERSION, LOG2_N, R, P) + salt + nonce
    key = _kdf(passphrase, salt, LOG2_N, R, P)
    plaintext = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return header + AESGCM(key).encrypt(nonce, plaintext, header)


def check_header(data: bytes, name: str) -> None:
    """The checks that need no passphrase (so a file that is not an export is refused before the
    prompt)."""
    if not data.startswith(MAGIC):
        raise ExportError(f"{name} is not a claude-pool export")
    if len(data) < HEADER_LEN + TAG_LEN:
        raise ExportError(f"{name} is truncated (not a whole claude-pool export); nothing was imported")
    version, log2_n, r, p = _PARAMS.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise ExportError(f"{name} is a claude-pool export of format {version}, which this claude-pool cannot "
                          f"read (it reads format {VERSION}); update claude-pool")
    if not (10 <= log2_n <= _MAX_LOG2_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise ExportError(f"{name} is damaged (its key-derivation parameters are not ones claude-pool writes); "
                          "nothing was imported")


def unseal(data: bytes, passphrase: str, name: str) -> dict[str, Any]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    check_header(data, name)
    _, log2_n, r, p = _PARAMS.unpack_from(data, len(MAGIC))
    at = len(MAGIC) + _PARAMS.size
    salt, nonce = data[at:at + SALT_LEN], data[at + SALT_LEN:HEADER_LEN]
    key = _kdf(passphrase, salt, log2_n, r, p)
    try:
        plaintext = AESGCM(key).decrypt(nonce, data[HEADER_LEN:], data[:HEADER_LEN])
    except InvalidTag:
        raise ExportError(f"cannot open {name}: wrong passphrase, or the file was altered or truncated; "
                          "nothing was imported") from None
    try:
        payload = json.loads(plaintext)
    except (UnicodeDecodeError, ValueError):
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{name} decrypted but holds no claude-pool export; nothing was imported")
    if payload.get("version") != VERSION:
        raise ExportError(f"{name} holds an export of format {payload.get('version')!r}, which this claude-pool "
                          "cannot read; update claude-pool")
    return payload


def payload_of(accounts: list[Any], keys: list[Any], now: datetime) -> dict[str, Any]:
    from claude_pool import __version__

    out = []
    for acc in accounts:
        entry = acc.model_dump(mode="json")
        if acc.needs_relogin and acc.relogin_reason.startswith(MOVED):
            entry["needs_relogin"], entry["relogin_reason"] = False, ""   # the mark stays on this machine
        out.append(entry)
    return {"format": EXPORT_FORMAT, "version": VERSION, "tool_version": __version__,
            "created_at": now.isoformat(timespec="seconds"), "accounts": out,
            "api_keys": [{"id": k.id, "key": k.key} for k in keys]}


def parse_payload(payload: dict[str, Any], name: str) -> tuple[list[Any], list[Any]]:
    """The accounts and keys of a decrypted export, validated as the pool validates its own."""
    from pydantic import ValidationError

    from claude_pool.schema.pool import Account, ApiKey

    from .intents import check_id

    try:
        accounts = [Account.model_validate(a) for a in payload.get("accounts") or []]
        keys = [ApiKey.model_validate(k) for k in payload.get("api_keys") or []]
    except (ValidationError, TypeError, AttributeError):
        raise ExportError(f"{name} holds an account or key claude-pool cannot read; nothing was imported") from None
    ids = [a.id for a in accounts] + [k.id for k in keys]
    try:
        for one in ids:
            check_id(one)
    except UserError:
        raise ExportError(f"{name} holds a name claude-pool does not allow; nothing was imported") from None
    if len(set(ids)) != len(ids):
        raise ExportError(f"{name} names one account or key twice; nothing was imported")
    return accounts, keys


# ---- the passphrase ------------------------------------------------------------------------

def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def read_passphrase(*, confirm: bool) -> str:
    """At a hidden prompt on a terminal (twice when `confirm`), else the first line of stdin (for
    scripts). Never an argument: argv is visible to every user of the machine."""
    if _stdin_is_tty():
        first = getpass.getpass("Passphrase for the export file (hidden): ")
        if confirm and getpass.getpass("The same passphrase again: ") != first:
            raise UserError("the two passphrases differ; nothing was written")
    else:
        if sys.stdin is None:
            raise UserError("no passphrase: stdin is closed (type it at a terminal, or give it on stdin)")
        try:
            first = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:
            raise UserError("the passphrase on stdin is not text (not UTF-8)") from None
    if not first:
        raise UserError("the passphrase is empty (type it at the prompt, or give it as the first line of stdin)")
    if confirm and len(first) < MIN_PASSPHRASE:
        raise UserError(f"the passphrase is too short (at least {MIN_PASSPHRASE} characters); nothing was written")
    return first


def _read_file(path: str) -> bytes:
    from claude_pool.providers.fsutil import read_regular

    try:
        data = read_regular(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data is None:
        raise UserError(f"no such file: {path}")
    return data


# ---- export --------------------------------------------------------------------------------

def export(path: str, *, move: bool, out: Callable[[str], None]) -> int:
    from claude_pool.providers.fsutil import atomic_write

    from . import observe
    from .audit import REDACTOR, log
    from .commands import _moved, _runtime
    from .intents import Reconcile
    from .runtime import lock_wait

    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise UserError(f"{path} is a folder; name the export file")
    passphrase = read_passphrase(confirm=True)
    world, rt = _runtime("export")
    try:
        with world.pool.hold(**lock_wait()):
            observe.load(world, rt)
            if not rt.pool.accounts and not rt.pool.api_keys:
                raise UserError("the pool is empty: nothing to export")
            # Claude Code may have refreshed the login it holds itself: export that, the newer copy
            store = observe.observe_store(world, rt, identify=True)
            accounts = [a.model_copy(update={"blob": observe.working_blob(rt, a, store)}) for a in rt.pool.accounts]
            REDACTOR.add(passphrase)
            now = world.clock()
            data = seal(payload_of(accounts, rt.pool.api_keys, now), passphrase)
            try:
                atomic_write(target, data, mode=0o600)
                os.chmod(target, 0o600)   # an existing file replaced keeps no wider mode
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}; nothing was exported") from None
            log().info("export", action="export", target=os.path.basename(target), result="ok",
                       accounts=[a.id for a in accounts], keys=[k.id for k in rt.pool.api_keys], move=move)
            marked: list[str] = []
            if move:
                when = now.strftime("%Y-%m-%d")
                for acc in rt.pool.accounts:
                    if acc.needs_relogin and acc.relogin_reason.startswith(MOVED):
                        continue
                    acc.needs_relogin = True
                    acc.relogin_reason = (f"{MOVED} on {when} (`claude-pool export --move`); to use it here "
                                          "again: /login in Claude Code, then `claude-pool import`, or "
                                          "`claude-pool import-pool` a newer export")
                    marked.append(acc.id)
                if marked:
                    rt.save_pool(world.pool)
                    for aid in marked:
                        log().info("apply", action="mark_moved", target=aid, reason=MOVED, result="ok")
    finally:
        world.api.close()
    out(f"Exported {len(accounts)} account{'s' if len(accounts) != 1 else ''} and {len(rt.pool.api_keys)} "
        f"API key{'s' if len(rt.pool.api_keys) != 1 else ''} to {path} (encrypted with your passphrase).")
    for acc in accounts:
        out(f"  account {acc.id}" + (f" ({acc.email})" if acc.email else ""))
    for key in rt.pool.api_keys:
        out(f"  API key {key.id}")
    if move:
        out(f"Marked {len(marked)} account{'s' if len(marked) != 1 else ''} here as {MOVED}: never refreshed or "
            "chosen on this machine again (`claude-pool import` after /login clears it).")
        from . import engine

        world2, rt2 = _runtime("export")
        outcome = engine.run(world2, rt2, Reconcile(), execute=True, network=False)
        for line in _moved(outcome):
            out(line)
    else:
        out("These logins now live on two machines: use them on one only (a refresh token used on both "
            "rotates under one of them), or export with --move.")
    return 0


# ---- import-pool ---------------------------------------------------------------------------

@dataclass
class Merge:
    """What the merge did, item by item (ids and emails only)."""

    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False


def _expires(blob: str) -> int:
    from claude_pool.schema.credentials import try_oauth

    oauth = try_oauth(blob)
    return (oauth.expiresAt or 0) if oauth is not None else 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ms else "unknown"


def _is_moved(acc: Any) -> bool:
    return bool(acc.needs_relogin and acc.relogin_reason.startswith(MOVED))


def _label(acc: Any) -> str:
    return f"{acc.id} ({acc.email})" if acc.email else acc.id


def conflicts(pool: Any, accounts: list[Any], keys: list[Any]) -> list[tuple[str, str]]:
    """(kind, id) of the items whose import would replace something else: an account whose id
    names another email here, a key whose id holds another value here."""
    found: list[tuple[str, str]] = []
    for acc in accounts:
        mine = pool.account(acc.id)
        if mine is not None and (mine.email or "").lower() != (acc.email or "").lower():
            found.append(("account", acc.id))
    for key in keys:
        mine = pool.key(key.id)
        if mine is not None and mine.key != key.key and not any(k.key == key.key for k in pool.api_keys):
            found.append(("key", key.id))
    return found


def merge(pool: Any, accounts: list[Any], keys: list[Any], replace: set[tuple[str, str]],
          asked: set[tuple[str, str]]) -> Merge:
    """Merge the file's accounts and keys into `pool` (in place). `replace`: the conflicting
    items the user agreed to replace; `asked`: the ones that were put to the user (a refusal of
    one of them says so, the others say `--replace` does it)."""
    from claude_pool.schema.credentials import fingerprint, oauth_fingerprint

    m = Merge()

    def note(action: str, target: str, line: str, **kw: Any) -> None:
        m.lines.append(line)
        m.events.append({"action": action, "target": target, **kw})

    for acc in accounts:
        taken_by_key = pool.key(acc.id) is not None
        mine = pool.account(acc.id)
        if mine is None and acc.email:
            mine = next((a for a in pool.accounts if a.email and a.email.lower() == acc.email.lower()), None)
        if mine is None:
            if taken_by_key:
                note("import_account", acc.id, f"skipped account {_label(acc)}: an API key here is named "
                     f"{acc.id} (`claude-pool rm {acc.id}` or rename it, then import again)", result="skipped")
                continue
            pool.accounts.append(acc)
            m.changed = True
            note("import_account", acc.id, f"added account {_label(acc)}", result="ok", change="create",
                 after=oauth_fingerprint(acc.blob))
            continue
        same_email = (mine.email or "").lower() == (acc.email or "").lower()
        where = "" if mine.id == acc.id else f" (already here as {mine.id})"
        if not same_email:
            if ("account", acc.id) not in replace:
                why = ("you said no" if ("account", acc.id) in asked
                       else "run again with --replace to replace it")
                note("import_account", acc.id, f"skipped account {acc.id}: it is {mine.email or 'an account with no email'} "
                     f"here and {acc.email or 'has no email'} in the file ({why})", result="skipped")
                continue
            _take(pool, mine, acc)
            m.changed = True
            how = "you said yes" if ("account", acc.id) in asked else "--replace"
            note("import_account", acc.id, f"replaced account {acc.id}: {mine.email or '(no email)'} -> "
                 f"{acc.email or '(no email)'} ({how})", result="ok", change="update",
                 before=oauth_fingerprint(mine.blob), after=oauth_fingerprint(acc.blob))
            continue
        if oauth_fingerprint(mine.blob) == oauth_fingerprint(acc.blob):
            if _is_moved(mine):
                mine.needs_relogin, mine.relogin_reason = False, ""
                m.changed = True
                note("import_account", mine.id, f"account {_label(mine)}{where}: same login; no longer marked "
                     f"as {MOVED}", result="ok", change="update")
            else:
                note("import_account", mine.id, f"unchanged account {_label(mine)}{where}: the same login",
                     result="unchanged")
            continue
        theirs, ours = _expires(acc.blob), _expires(mine.blob)
        newer = theirs > ours or (theirs == ours and acc.usage_at is not None
                                  and (mine.usage_at is None or acc.usage_at > mine.usage_at))
        if newer:
            before = oauth_fingerprint(mine.blob)
            _take(pool, mine, acc)
            m.changed = True
            note("import_account", mine.id, f"updated account {_label(mine)}{where}: kept the file's token, the "
                 f"newer (expires {_when(theirs)}; this pool's {_when(ours)})", result="ok", change="update",
                 before=before, after=oauth_fingerprint(acc.blob))
        else:
            note("import_account", mine.id, f"kept account {_label(mine)}{where}: this pool's token is the newer "
                 f"(expires {_when(ours)}; the file's {_when(theirs)})", result="unchanged")
    for key in keys:
        mine = pool.key(key.id)
        dup = next((k for k in pool.api_keys if k.key == key.key), None)
        if dup is not None:
            line = (f"unchanged API key {key.id}" if dup.id == key.id
                    else f"skipped API key {key.id}: the same key is here as {dup.id}")
            note("add_key", key.id, line, result="unchanged" if dup.id == key.id else "skipped")
            continue
        if pool.account(key.id) is not None:
            note("add_key", key.id, f"skipped API key {key.id}: an account here is named {key.id}", result="skipped")
            continue
        if mine is None:
            pool.api_keys.append(key)
            m.changed = True
            note("add_key", key.id, f"added API key {key.id}", result="ok", change="create")
            continue
        if ("key", key.id) not in replace:
            why = "you said no" if ("key", key.id) in asked else "run again with --replace to replace it"
            note("add_key", key.id, f"skipped API key {key.id}: another key has this name here ({why})",
                 result="skipped")
            continue
        before = fingerprint(mine.key)
        mine.key = key.key
        m.changed = True
        how = "you said yes" if ("key", key.id) in asked else "--replace"
        note("add_key", key.id, f"replaced API key {key.id} ({how})", result="ok", change="update", before=before)
    return m


def _take(pool: Any, mine: Any, theirs: Any) -> None:
    """The file's account in place of ours, under our id (its mark, readings and preferences too)."""
    i = pool.accounts.index(mine)
    pool.accounts[i] = theirs.model_copy(update={"id": mine.id})


def _ask(question: str) -> bool:
    try:
        sys.stderr.write(question)
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return answer.strip().lower() in ("y", "yes")


def import_pool(path: str, *, replace: bool, out: Callable[[str], None]) -> int:
    from . import engine
    from .audit import REDACTOR, log
    from .commands import _moved, _runtime
    from .intents import Reconcile
    from .runtime import lock_wait

    data = _read_file(path)
    check_header(data, path)             # not an export: refused before the prompt
    passphrase = read_passphrase(confirm=False)
    REDACTOR.add(passphrase)
    accounts, keys = parse_payload(unseal(data, passphrase, path), path)
    from claude_pool.schema.credentials import blob_secrets

    for acc in accounts:
        REDACTOR.add(*blob_secrets(acc.blob))
    REDACTOR.add(*[k.key for k in keys])
    world, rt = _runtime("import-pool")
    from claude_pool.providers.base import ProviderError

    try:
        before = world.pool.observe()
    except ProviderError as exc:
        raise UserError(str(exc)) from None
    REDACTOR.add(*before.secrets())
    # ask before taking the lock (the hooks must not wait behind a question)
    agreed: set[tuple[str, str]] = set()
    asked: set[tuple[str, str]] = set()
    pending = conflicts(before, accounts, keys)
    if replace:
        agreed = set(pending)
    elif pending and _stdin_is_tty():
        for kind, item in pending:
            asked.add((kind, item))
            if kind == "account":
                here, there = before.account(item), next(a for a in accounts if a.id == item)
                q = (f"Account {item} is {here.email or '(no email)'} here and {there.email or '(no email)'} in the "
                     f"file. Replace it? [y/N] ")  # type: ignore[union-attr]
            else:
                q = f"API key {item} holds another key here. Replace it with the file's? [y/N] "
            if _ask(q):
                agreed.add((kind, item))
    try:
        with world.pool.hold(**lock_wait()):
            try:
                pool = world.pool.observe()
            except ProviderError as exc:
                raise UserError(str(exc)) from None
            result = merge(pool, accounts, keys, agreed, asked)
            if result.changed:
                rt.pool = pool
                rt.save_pool(world.pool)
            for ev in result.events:
                log().info("apply", reason=f"import-pool {os.path.basename(path)}", **ev)
    finally:
        world.api.close()
    for line in result.lines:
        out(line[0].upper() + line[1:] + ".")
    if not result.lines:
        out(f"{path} holds no account and no API key.")
    if result.changed:
        world2, rt2 = _runtime("import-pool")
        outcome = engine.run(world2, rt2, Reconcile(), execute=True, network=False)
        for line in _moved(outcome):
            out(line)
    return 0
