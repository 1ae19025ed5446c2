"""Apply: execute a plan's actions in order through the providers, one audit event each.

Secrets are resolved here, from the runtime (the decrypted pool, the store's blob, a key being
added); the plan itself only names ids. Entering API-key mode, a failed settings write rolls the
pool back (docs/ARCHITECTURE.md §7).
"""

from __future__ import annotations

import contextlib
from claude_pool.providers import claude_lock
from claude_pool.providers.base import ProviderError
from claude_pool.schema.credentials import normalized_blob, oauth_fingerprint, with_oauth_of
from claude_pool.schema.plan import Action, Plan
from claude_pool.schema.pool import Account, ApiKey, Usage

from .audit import Timer, log
from .errors import UserError
from .runtime import Runtime


class Applier:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pool = rt.pool
        self._snapshot: tuple | None = None

    def _save(self) -> None:
        self.rt.save_pool()

    def adopt_credential(self, a: Action) -> None:
        acc = self._account(a.target)
        if not self.rt.store_raw:
            raise ProviderError("Claude Code's credential store is empty now")
        acc.blob = normalized_blob(self.rt.store_raw)
        acc.needs_relogin, acc.relogin_reason = False, ""
        self._save()

    def import_account(self, a: Action) -> None:
        if not self.rt.store_raw:
            raise ProviderError("Claude Code's credential store is empty now")
        email = a.detail.get("email", "")
        acc = self.pool.account(a.target)
        if acc is None:
            self.pool.accounts.append(Account(id=a.target, email=email, blob=normalized_blob(self.rt.store_raw)))
        else:   # re-imported under its name: the login is replaced, the email too when known
            if email and email.lower() != acc.email.lower():
                acc.usage, acc.usage_at = Usage(), None       # readings of another account
            acc.blob = normalized_blob(self.rt.store_raw)
            acc.email = email or acc.email
            acc.needs_relogin, acc.relogin_reason = False, ""
        self._save()

    def add_key(self, a: Action) -> None:
        secret = self.rt.new_secrets.get(a.target)
        if not secret:
            raise ProviderError(f"no key value for {a.target}")
        existing = self.pool.key(a.target)
        if existing is not None:
            existing.key = secret
        else:
            self.pool.api_keys.append(ApiKey(id=a.target, key=secret))
        self._save()

    def remove_account(self, a: Action) -> None:
        self.pool.accounts = [x for x in self.pool.accounts if x.id != a.target]
        self._save()

    def remove_key(self, a: Action) -> None:
        # the rotation goes on where it was: the key that would have come next still does
        following = self.pool.next_key_id(skip=a.target)
        self.pool.api_keys = [x for x in self.pool.api_keys if x.id != a.target]
        self.pool.serve_next(following)
        if not self.pool.api_keys:
            self.pool.key_cursor = 0
        self._save()

    def save_pool_state(self, a: Action) -> None:
        p = self.pool
        self._snapshot = (p.mode, p.current, p.current_key, p.saved_api_key_helper, p.switched_at, p.key_cursor)
        saved = a.detail.get("saved_api_key_helper", "keep")
        if saved == "clear":
            p.saved_api_key_helper = ""
        elif saved == "from_settings":
            p.saved_api_key_helper = self.rt.settings.observe().api_key_helper or ""
        entering = p.mode != "apikey" and a.detail["mode"] == "apikey"
        new_key = a.detail.get("current_key", p.current_key)
        if a.detail["mode"] == "apikey" and new_key and (entering or new_key != p.current_key):
            p.serve_next(new_key)  # the key announced is the key the helper serves next
        p.mode = a.detail["mode"]  # type: ignore[assignment]
        p.current = a.detail.get("current", p.current)
        p.current_key = new_key
        p.switched_at = self.rt.clock()
        self._save()

    def write_settings(self, a: Action) -> None:
        value = a.detail.get("value")
        if value == "ours":
            self.rt.settings.write(self.rt.helper)
        elif value == "saved":
            self.rt.settings.write(self.pool.saved_api_key_helper or None)
        else:
            self.rt.settings.write(None)

    def write_credential(self, a: Action) -> None:
        acc = self._account(a.target)
        store = self.rt.store
        lock_path = getattr(store, "lock_path", None)
        with claude_lock.hold(lock_path) if lock_path else contextlib.nullcontext():
            now = store.observe()
            if oauth_fingerprint(now) != oauth_fingerprint(self.rt.store_raw):
                raise ProviderError("Claude Code's login changed during this run (it refreshed or someone ran "
                                    "/login); nothing was overwritten, run again")
            store.write(with_oauth_of(now, acc.blob))
            self.rt.store_raw = store.observe()

    def _account(self, acc_id: str) -> Account:
        acc = self.pool.account(acc_id)
        if acc is None:
            raise ProviderError(f"account {acc_id} is no longer in the pool")
        return acc

    def rollback(self) -> None:
        """Undo the last save_pool_state (entering API-key mode whose settings write failed)."""
        if self._snapshot is None:
            return
        p = self.pool
        (p.mode, p.current, p.current_key, p.saved_api_key_helper, p.switched_at,
         p.key_cursor) = self._snapshot  # type: ignore
        self._save()


def human(a: Action) -> str:
    words = {
        "adopt_credential": f"took Claude Code's refreshed login into {a.target}",
        "import_account": f"{'updated' if a.change == 'update' else 'imported'} {a.target}",
        "add_key": f"{'replaced' if a.change == 'update' else 'added'} API key {a.target}",
        "remove_account": f"removed account {a.target}",
        "remove_key": f"removed API key {a.target}",
        "save_pool_state": f"pool: {a.before} -> {a.after}",
        "write_settings": f"settings.json apiKeyHelper: {a.before} -> {a.after}",
        "write_credential": f"Claude Code's login -> {a.target}",
    }
    return words[a.type]


def apply_plan(rt: Runtime, plan: Plan) -> list[Action]:
    applier = Applier(rt)
    done: list[Action] = []
    for action in plan.actions:
        timer = Timer()
        handler = getattr(applier, action.type)
        try:
            handler(action)
        except (ProviderError, claude_lock.ClaudeLockTimeout, OSError) as exc:
            message = str(exc) if not isinstance(exc, OSError) else (exc.strerror or type(exc).__name__)
            log().error("apply", action=action.type, target=action.target, reason=action.reason,
                        before=action.before, after=action.after, result="failed", error=message,
                        duration_ms=timer.ms())   # audit only: the UserError below is the one line on stderr
            rolled = ""
            if action.type == "write_settings" and done and done[-1].type == "save_pool_state":
                applier.rollback()
                rolled = "; the pool was rolled back"
                log().warning("rollback", action="save_pool_state", target="pool", result="ok",
                              reason="the settings write failed")
            raise UserError(f"{human(action)} failed: {message}{rolled}") from None
        log().info("apply", action=action.type, target=action.target, reason=action.reason,
                   before=action.before, after=action.after, result="ok", duration_ms=timer.ms(),
                   say=human(action))
        done.append(action)
    return done
