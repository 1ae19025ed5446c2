"""Apply: execute a plan's actions in order through the providers, one audit event each.

One handler per action type (`HANDLERS`, filled by `@handles`; tests/test_apply.py fails if an
action model has no handler or a handler no model). Secrets are resolved here, from the runtime
(the decrypted pool, the store's blob, a key being added); the plan itself only names ids.
Entering API-key mode, a failed settings write rolls the pool back (docs/ARCHITECTURE.md §7).

`plan` runs this very code through `recording(world, rt)`: the same handlers, the same checks, reads from
the real files, writes recorded instead of made (docs/ARCHITECTURE.md §1).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any, Callable, TypeVar

from claude_pool.providers import claude_lock
from claude_pool.providers.base import ProviderError, Recorder
from claude_pool.providers.settings import check_write as check_settings
from claude_pool.providers.world import World
from claude_pool.schema.credentials import normalized_blob, oauth_fingerprint, with_oauth_of
from claude_pool.schema.plan import (
    Action, AddKey, AdoptCredential, HelperValue, ImportAccount, Plan, RemoveAccount, RemoveKey, Rename, SavedHelper,
    SavePoolState, SetPreference, WriteCredential, WriteIdentity, WriteSettings,
)
from claude_pool.schema.pool import Account, ApiKey, Held, Pause, Usage
from claude_pool.providers.claude_json import LeftAlone

from .audit import Timer, log
from .errors import UserError
from .runtime import Runtime


class Applier:
    """What the handlers share during one apply: the world, the run and its pool, the rollback
    snapshot."""

    def __init__(self, world: World, rt: Runtime) -> None:
        self.world = world
        self.rt = rt
        self.pool = rt.pool
        self._snapshot: tuple | None = None

    def save(self) -> None:
        self.rt.save_pool(self.world.pool)

    def account(self, acc_id: str) -> Account:
        acc = self.pool.account(acc_id)
        if acc is None:
            raise ProviderError(f"account {acc_id} is no longer in the pool")
        return acc

    def store_blob(self) -> str:
        if not self.rt.store_raw:
            raise ProviderError("Claude Code's credential store is empty now")
        return self.rt.store_raw

    def settings_helper(self) -> str | None:
        """settings.json's apiKeyHelper now; a file that became unreadable stops the run."""
        view = self.world.settings.observe()
        if view.error:
            raise ProviderError(view.error)
        return view.api_key_helper

    def rollback(self) -> None:
        """Undo the last save_pool_state (entering API-key mode whose settings write failed)."""
        if self._snapshot is None:
            return
        p = self.pool
        (p.mode, p.current, p.current_key, p.saved_api_key_helper, p.switched_at,
         p.key_cursor, p.switches) = self._snapshot  # type: ignore
        self.save()


# How many changes of the held account the pool remembers, and for how long: enough to tell which
# account a refused request of a turn that started hours ago went out with.
MAX_SWITCHES = 20
SWITCH_MEMORY = timedelta(days=1)

A = TypeVar("A")
Handler = Callable[[Applier, Any], None]
#: action model -> its handler; exactly one each (tests/test_apply.py)
HANDLERS: dict[type, Handler] = {}


def handles(model: type[A]) -> Callable[[Callable[[Applier, A], None]], Callable[[Applier, A], None]]:
    def register(fn: Callable[[Applier, A], None]) -> Callable[[Applier, A], None]:
        if model in HANDLERS:
            raise TypeError(f"two handlers for {model.__name__}")
        HANDLERS[model] = fn
        return fn
    return register


@handles(AdoptCredential)
def adopt_credential(ap: Applier, a: AdoptCredential) -> None:
    acc = ap.account(a.target)
    acc.blob = normalized_blob(ap.store_blob())
    acc.needs_relogin, acc.relogin_reason = False, ""
    ap.save()


@handles(ImportAccount)
def import_account(ap: Applier, a: ImportAccount) -> None:
    blob = normalized_blob(ap.store_blob())
    acc = ap.pool.account(a.target)
    if acc is None:
        ap.pool.accounts.append(Account(id=a.target, email=a.email, blob=blob, oauth_account=a.identity))
    else:   # re-imported under its name: the login is replaced, the email too when known
        if a.email and a.email.lower() != acc.email.lower():
            acc.usage, acc.usage_at = Usage(), None       # readings of another account
            acc.oauth_account = None                      # and how Claude Code showed it
        acc.oauth_account = a.identity or acc.oauth_account
        acc.blob = blob
        acc.email = a.email or acc.email
        acc.needs_relogin, acc.relogin_reason = False, ""
    ap.save()


@handles(AddKey)
def add_key(ap: Applier, a: AddKey) -> None:
    secret = ap.rt.new_secrets.get(a.target)
    if not secret:
        raise ProviderError(f"no key value for {a.target}")
    existing = ap.pool.key(a.target)
    if existing is not None:
        existing.key = secret
    else:
        ap.pool.api_keys.append(ApiKey(id=a.target, key=secret))
    ap.save()


@handles(RemoveAccount)
def remove_account(ap: Applier, a: RemoveAccount) -> None:
    ap.account(a.target)
    ap.pool.accounts = [x for x in ap.pool.accounts if x.id != a.target]
    ap.save()


@handles(RemoveKey)
def remove_key(ap: Applier, a: RemoveKey) -> None:
    p = ap.pool
    if p.key(a.target) is None:
        raise ProviderError(f"API key {a.target} is no longer in the pool")
    # the rotation goes on where it was: the key that would have come next still does
    following = p.next_key_id(skip=a.target)
    p.api_keys = [x for x in p.api_keys if x.id != a.target]
    p.serve_next(following)
    if not p.api_keys:
        p.key_cursor = 0
    ap.save()


@handles(SetPreference)
def set_preference(ap: Applier, a: SetPreference) -> None:
    acc = ap.account(a.target)
    if a.field == "priority":
        acc.priority = a.priority
    elif a.field == "threshold":
        acc.threshold = a.threshold
    else:
        acc.paused = Pause(at=ap.world.clock(), until=a.until, reason=a.pause_reason) if a.paused else None
    ap.save()


@handles(Rename)
def rename(ap: Applier, a: Rename) -> None:
    p, new = ap.pool, a.new_id
    if p.account(new) is not None or p.key(new) is not None:
        raise ProviderError(f"the name {new} is taken in the pool now")
    if a.kind == "account":
        acc = ap.account(a.target)
        acc.id = new
        renamed = ap.rt.renamed
        first = next((o for o, n in renamed.items() if n == a.target), a.target)   # a -> b -> c: a -> c
        renamed[first] = new
        if p.current == a.target:
            p.current = new
        for h in p.switches:   # which account a refused request went out with (learn.senders)
            h.before, h.after = (new if x == a.target else x for x in (h.before, h.after))
    else:
        key = p.key(a.target)
        if key is None:
            raise ProviderError(f"API key {a.target} is no longer in the pool")
        key.id = new
        if p.current_key == a.target:
            p.current_key = new
    ap.save()


@handles(SavePoolState)
def save_pool_state(ap: Applier, a: SavePoolState) -> None:
    p = ap.pool
    if a.mode == "account" and a.current and a.current != p.current:
        ap.account(a.current)
    if a.mode == "apikey" and a.current_key and a.current_key != p.current_key and p.key(a.current_key) is None:
        raise ProviderError(f"API key {a.current_key} is no longer in the pool")
    saved = p.saved_api_key_helper
    if a.saved_api_key_helper is SavedHelper.CLEAR:
        saved = ""
    elif a.saved_api_key_helper is SavedHelper.FROM_SETTINGS:
        saved = ap.settings_helper() or ""
    ap._snapshot = (p.mode, p.current, p.current_key, p.saved_api_key_helper, p.switched_at, p.key_cursor,
                    list(p.switches))
    p.saved_api_key_helper = saved
    entering = p.mode != "apikey" and a.mode == "apikey"
    if a.mode == "apikey" and a.current_key and (entering or a.current_key != p.current_key):
        p.serve_next(a.current_key)  # the key announced is the key the helper serves next
    now = ap.world.clock()
    before = p.current if p.mode == "account" else ""
    after = a.current if a.mode == "account" else ""
    if before != after:   # what Claude Code's requests go out with changes (learn.senders reads it)
        p.switches = [*[h for h in p.switches if h.at is not None and now - h.at < SWITCH_MEMORY][-(MAX_SWITCHES - 1):],
                      Held(at=now, before=before, after=after)]
    p.mode = a.mode
    p.current = a.current
    p.current_key = a.current_key
    p.switched_at = now
    ap.save()


@handles(WriteSettings)
def write_settings(ap: Applier, a: WriteSettings) -> None:
    ap.settings_helper()   # a settings.json that stopped being a JSON object is never rewritten
    if a.value is HelperValue.OURS:
        ap.world.settings.write(ap.rt.helper)
    elif a.value is HelperValue.SAVED:
        ap.world.settings.write(ap.pool.saved_api_key_helper or None)
    else:
        ap.world.settings.write(None)


@handles(WriteCredential)
def write_credential(ap: Applier, a: WriteCredential) -> None:
    acc = ap.account(a.target)
    store = ap.world.store
    with store.hold():   # Claude Code's refresh lock (a recording store holds none: plan never blocks it)
        now = _store_unchanged(ap)
        store.write(with_oauth_of(now, acc.blob))
        ap.rt.store_raw = store.observe()


class Skipped(Exception):
    """An action left undone that must not fail the run (the account Claude Code shows is
    cosmetic; the credential is what matters): apply logs it, `result: "skipped"` with the
    reason, and goes on."""


@handles(WriteIdentity)
def write_identity(ap: Applier, a: WriteIdentity) -> None:
    acc = ap.account(a.target)   # a plan naming an account gone from the pool fails alike in plan
    if not acc.oauth_account:
        raise Skipped(f"how Claude Code shows {a.target} is not known")
    try:
        ap.world.claude_json.write(dict(acc.oauth_account))
    except LeftAlone as exc:
        raise Skipped(str(exc)) from None
    except (ProviderError, claude_lock.ClaudeLockTimeout, OSError) as exc:
        raise Skipped(str(exc) if not isinstance(exc, OSError) else (exc.strerror or type(exc).__name__)) from None


def _store_unchanged(ap: Applier) -> str:
    """Claude Code's login as it is now, which must be the one this run observed."""
    now = ap.world.store.observe()
    if oauth_fingerprint(now) != oauth_fingerprint(ap.rt.store_raw):
        raise ProviderError("Claude Code's login changed during this run (it refreshed or someone ran "
                            "/login); nothing was overwritten, run again")
    return now


def precheck(ap: Applier, a: Any) -> None:
    """The checks of a credential write that a pool save made before it must not wait for (a move
    between accounts saves the pool first): the account is there, Claude Code's login has not moved."""
    if isinstance(a, WriteCredential):
        ap.account(a.target)
        _store_unchanged(ap)
    if isinstance(a, WriteSettings) and a.value is HelperValue.OURS:   # entering API-key mode: a
        check_settings(ap.world.settings, ap.rt.helper)                # settings.json left read-only


def recording(world: World, rt: Runtime) -> tuple[World, Runtime]:
    """The same run through a recording world: the pool is an in-memory copy the handlers mutate,
    and every provider apply writes to reads the real resource but records its writes instead of
    making them."""
    dry_world = dataclasses.replace(
        world, pool=Recorder(world.pool, echo=True), store=Recorder(world.store, echo=True),  # type: ignore[arg-type]
        settings=Recorder(world.settings), claude_json=Recorder(world.claude_json))  # type: ignore[arg-type]
    dry_rt = dataclasses.replace(rt, pool=rt.pool.model_copy(deep=True), new_secrets=dict(rt.new_secrets),
                                 save_lock=threading.Lock(), renamed=dict(rt.renamed))
    return dry_world, dry_rt


def apply_plan(world: World, rt: Runtime, plan: Plan, *, dry_run: bool = False) -> list[Action]:
    """Run the plan's actions in order. `dry_run`: a recording world (`recording`), and nothing
    is logged per action (nothing happened); a failing check raises the same UserError."""
    applier = Applier(world, rt)
    done: list[Action] = []
    for i, action in enumerate(plan.actions):
        timer = Timer()
        try:
            handler = HANDLERS[type(action)]
        except KeyError:   # tests/test_apply.py makes this unreachable
            raise UserError(f"no handler for plan action {action.type!r}") from None
        nxt = plan.actions[i + 1] if i + 1 < len(plan.actions) else None
        try:
            if isinstance(action, SavePoolState) and isinstance(nxt, (WriteCredential, WriteSettings)):
                try:
                    precheck(applier, nxt)
                except (ProviderError, OSError):
                    action = nxt   # the credential write is what cannot be done: say so, save nothing
                    raise
            handler(applier, action)
        except Skipped as exc:
            if not dry_run:
                log().warning("apply", action=action.type, target=action.target, reason=action.reason,
                              before=action.before, after=action.after, result="skipped", error=str(exc),
                              duration_ms=timer.ms())
            done.append(action)
            continue
        except (ProviderError, claude_lock.ClaudeLockTimeout, OSError) as exc:
            message = str(exc) if not isinstance(exc, OSError) else (exc.strerror or type(exc).__name__)
            if not dry_run:
                log().error("apply", action=action.type, target=action.target, reason=action.reason,
                            before=action.before, after=action.after, result="failed", error=message,
                            duration_ms=timer.ms())   # audit only: the UserError below is the one line on stderr
            rolled = ""
            if isinstance(action, (WriteSettings, WriteCredential)) and done and isinstance(done[-1], SavePoolState):
                applier.rollback()
                rolled = "; the pool was rolled back"
                if not dry_run:
                    log().warning("rollback", action="save_pool_state", target="pool", result="ok",
                                  reason=f"the {'settings' if isinstance(action, WriteSettings) else 'credential'} "
                                         "write failed")
            raise UserError(f"{action.done()} failed: {message}{rolled}") from None
        if not dry_run:
            # a move between accounts: the pool is saved first, and the credential write that
            # follows says it for both (if that write fails, the pool is rolled back: one line)
            quiet = isinstance(action, SavePoolState) and isinstance(nxt, WriteCredential) \
                or isinstance(action, WriteIdentity)   # cosmetic: the audit log has it
            log().info("apply", action=action.type, target=action.target, reason=action.reason,
                       before=action.before, after=action.after, result="ok", duration_ms=timer.ms(),
                       **({} if quiet else {"say": action.done()}))
        done.append(action)
    return done
