"""An in-memory world for in-process tests of the real engine (not shipped).

Every part follows its protocol in providers/world.py: the pool, Claude Code's store and
settings.json live in memory, the Anthropic API is a small fake that rotates refresh tokens the
way the real token endpoint does, the clock is set by the test, and the wake and the running
sessions are recorded. Every read and write of the outside is appended to one `journal`, so a
test can check what happened in which order (a rotated token saved before anything else).

    mem = Memory()
    alice = mem.api.add("alice@example.com", five_hour=100)
    mem.seed(accounts={"alice": alice}, current="alice")
    outcome = mem.run(Reconcile(live=True, model="opus"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
import types
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from claude_pool.providers.anthropic import InvalidGrant, Profile, TokenGrant, TransientError, Unauthorized
from claude_pool.providers.poolfile import PoolBusy
from claude_pool.providers.settings import SettingsView
from claude_pool.providers.world import World
from claude_pool.schema.config import Config
from claude_pool.schema.credentials import try_oauth
from claude_pool.schema.pool import Account, ApiKey, Pool, Usage
from claude_pool.schema.usage import parse_usage

START = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
HELPER = "/opt/claude-pool/bin/claude-pool helper"
_serial = itertools.count(1)


class Journal(list):
    """("pool.write", detail), ("api.refresh", email), ... in the order they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def add(self, what: str, detail: Any = "") -> None:
        with self.lock:
            self.append((what, detail))

    def kinds(self) -> list[str]:
        return [w for w, _ in self]


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)


class MemPool:
    """The pool file: kept as JSON, so the run's in-memory pool never aliases it."""

    name = "pool"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.text = Pool().model_dump_json()
        self.writes = 0
        self.wait = 5.0                    # how long a run waits for the pool lock
        self._lock = threading.Lock()

    def location(self) -> str:
        return "memory:pool"

    def observe(self) -> Pool:
        self.journal.add("pool.observe")
        return Pool.model_validate_json(self.text)

    def write(self, value: Pool, into: object = None, renamed: object = None) -> None:
        self.text = value.model_dump_json()
        self.writes += 1
        self.journal.add("pool.write", Pool.model_validate_json(self.text))

    #: a test sets a reason: the pool cannot take a write (providers/poolfile.py `Reservation`)
    unwritable = ""

    @contextlib.contextmanager
    def reserve(self) -> Iterator[object]:
        from claude_pool.providers.poolfile import PoolUnwritable

        if self.unwritable:
            raise PoolUnwritable(f"cannot save a refreshed login in memory: {self.unwritable}")
        self.journal.add("pool.reserve")
        yield types.SimpleNamespace(keep=False)

    def rescue(self, value: Pool, spot: object) -> None:
        self.journal.add("pool.rescue", Pool.model_validate_json(value.model_dump_json()))

    @property
    def pool(self) -> Pool:
        return Pool.model_validate_json(self.text)

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        timeout = self.wait if timeout is None else timeout
        if not self._lock.acquire(timeout=timeout):
            raise PoolBusy(f"another claude-pool run held the pool lock for {timeout:.0f}s; try again")
        try:
            yield
        finally:
            self._lock.release()


class MemStore:
    """Claude Code's credential store; its refresh lock is a re-entrant lock."""

    name = "credentials"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.raw: str | None = None
        self._lock = threading.RLock()

    def location(self) -> str:
        return "memory:credentials"

    def observe(self) -> str | None:
        return self.raw

    def write(self, value: str) -> None:
        self.raw = value
        self.journal.add("store.write", value)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            yield


class MemSettings:
    name = "settings.json"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.data: dict | None = None      # None: no settings.json
        self.broken = ""                   # a settings.json that is not a JSON object: this error

    def location(self) -> str:
        return "memory:settings.json"

    def observe(self) -> SettingsView:
        if self.broken:
            return SettingsView(present=True, error=self.broken)
        if self.data is None:
            return SettingsView(present=False)
        helper = self.data.get("apiKeyHelper")
        return SettingsView(present=True, api_key_helper=helper if isinstance(helper, str) else None)

    def write(self, value: str | None) -> None:
        self.journal.add("settings.write", value)
        data = dict(self.data or {})
        if value is None:
            data.pop("apiKeyHelper", None)
        else:
            data["apiKeyHelper"] = value
        self.data = data


class MemClaudeJson:
    """Claude Code's `.claude.json`: `data` is the whole object (None: no file), `broken` a file
    that is not a JSON object; `oauthAccount` is all a write changes."""

    name = ".claude.json"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.data: dict | None = None
        self.broken = False

    def location(self) -> str:
        return "memory:.claude.json"

    def observe(self) -> Any:
        from claude_pool.providers.claude_json import ClaudeJsonView

        if self.broken or self.data is None:
            return ClaudeJsonView(error="memory:.claude.json is not there or not a JSON object")
        shown = self.data.get("oauthAccount")
        return ClaudeJsonView(present=True, account=dict(shown) if isinstance(shown, dict) else None)

    def write(self, value: dict) -> None:
        from claude_pool.providers.claude_json import LeftAlone

        if self.broken or self.data is None:
            raise LeftAlone("memory:.claude.json is not there or not a JSON object; left as it is")
        self.data = {**self.data, "oauthAccount": dict(value)}
        self.journal.add("claude_json.write", value.get("emailAddress"))

    @property
    def email(self) -> str | None:
        return ((self.data or {}).get("oauthAccount") or {}).get("emailAddress")


class MemFeed:
    def __init__(self) -> None:
        self.data: dict | None = None

    def observe(self) -> dict | None:
        return self.data


@dataclasses.dataclass
class FakeAccount:
    email: str
    access: str
    refresh: str
    expires: datetime
    usage: dict
    refresh_alive: bool = True
    usage_error: Exception | None = None
    uuid: str = ""
    org_uuid: str = ""


class FakeApi:
    """Anthropic's usage, profile and token endpoints, in memory. A refresh rotates both tokens
    (the old refresh token stops working at once); an expired or unknown access token is refused."""

    def __init__(self, clock: Clock, journal: Journal, expires_in: int = 3600) -> None:
        self.clock = clock
        self.journal = journal
        self.expires_in = expires_in
        self.accounts: dict[str, FakeAccount] = {}
        self.lock = threading.Lock()

    # -- set-up
    def add(self, email: str, five_hour: float = 0, seven_day: float = 0, *,
            resets_in: timedelta = timedelta(hours=2), expired: bool = False) -> str:
        """An account; returns the credential blob its login leaves in Claude Code's store."""
        n = next(_serial)
        acc = FakeAccount(email=email, access=f"sk-ant-oat01-{n:04d}-access-{'x' * 24}",
                          refresh=f"sk-ant-ort01-{n:04d}-refresh-{'y' * 24}",
                          expires=self.clock() + (timedelta(minutes=-1) if expired else timedelta(seconds=self.expires_in)),
                          usage={}, uuid=f"00000000-0000-4000-8000-{n:012d}", org_uuid=f"00000000-0000-4000-9000-{n:012d}")
        self.accounts[email] = acc
        self.set_usage(email, five_hour, seven_day, resets_in=resets_in)
        return self.blob(email)

    def set_usage(self, email: str, five_hour: float, seven_day: float = 0, *,
                  resets_in: timedelta = timedelta(hours=2)) -> None:
        resets = (self.clock() + resets_in).isoformat()
        week = (self.clock() + timedelta(days=5)).isoformat()
        self.accounts[email].usage = {"five_hour": {"utilization": five_hour, "resets_at": resets},
                                      "seven_day": {"utilization": seven_day, "resets_at": week}}

    def blob(self, email: str) -> str:
        acc = self.accounts[email]
        return json.dumps({"claudeAiOauth": {
            "accessToken": acc.access, "refreshToken": acc.refresh, "expiresAt": int(acc.expires.timestamp() * 1000),
            "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}})

    def revoke(self, email: str) -> None:
        """The refresh token is dead (the user logged out elsewhere)."""
        self.accounts[email].refresh_alive = False

    # -- the Api protocol
    def _by_access(self, token: str, what: str) -> FakeAccount:
        for acc in self.accounts.values():
            if acc.access == token:
                if acc.expires <= self.clock():
                    raise Unauthorized(f"{what}: HTTP 401")
                return acc
        raise Unauthorized(f"{what}: HTTP 401")

    def usage(self, access_token: str) -> Usage:
        with self.lock:
            acc = self._by_access(access_token, "usage")
            self.journal.add("api.usage", acc.email)
            if acc.usage_error is not None:
                raise acc.usage_error
            return parse_usage(acc.usage)

    def profile(self, access_token: str) -> Profile:
        with self.lock:
            acc = self._by_access(access_token, "profile")
            self.journal.add("api.profile", acc.email)
            return Profile(email=acc.email, oauth_account=self.identity(acc.email))

    def profile_email(self, access_token: str) -> str:
        return self.profile(access_token).email

    def identity(self, email: str) -> dict:
        """The oauthAccount Claude Code would keep for this account."""
        acc = self.accounts[email]
        return {"accountUuid": acc.uuid, "emailAddress": acc.email, "organizationUuid": acc.org_uuid,
                "displayName": acc.email.split("@")[0], "billingType": "stripe_subscription"}

    def refresh(self, refresh_token: str) -> TokenGrant:
        with self.lock:
            acc = next((a for a in self.accounts.values() if a.refresh == refresh_token), None)
            if acc is None or not acc.refresh_alive:
                self.journal.add("api.refresh", acc.email if acc else "?")
                raise InvalidGrant("token refresh: invalid_grant (the refresh token is no longer valid)")
            n = next(_serial)
            acc.access = f"sk-ant-oat01-{n:04d}-access-{'x' * 24}"
            acc.refresh = f"sk-ant-ort01-{n:04d}-refresh-{'y' * 24}"
            acc.expires = self.clock() + timedelta(seconds=self.expires_in)
            self.journal.add("api.refresh", acc.email)
            return TokenGrant(access_token=acc.access, refresh_token=acc.refresh, expires_in=self.expires_in,
                              scope="user:inference user:profile")

    def close(self) -> None:
        pass


class MemWake:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.at: list[float] = []

    def schedule(self, at: float) -> str:
        self.at.append(at)
        self.journal.add("wake.schedule", at)
        return "scheduled"


class MemSessions:
    def __init__(self) -> None:
        self.pids: list[int] = []

    def running(self) -> list[int]:
        return list(self.pids)

    #: a test sets {"dir", "at"}: the folder Claude Code's last session start used
    folder: dict | None = None

    def last_folder(self) -> dict | None:
        return self.folder


class MemTemps:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def sweep(self) -> int:
        self.journal.add("temps.sweep")
        return 0


class Memory:
    """All the in-memory parts, and the World made of them."""

    def __init__(self, now: datetime = START) -> None:
        self.journal = Journal()
        self.clock = Clock(now)
        self.pool = MemPool(self.journal)
        self.store = MemStore(self.journal)
        self.settings = MemSettings(self.journal)
        self.feed = MemFeed()
        self.api = FakeApi(self.clock, self.journal)
        self.wake = MemWake(self.journal)
        self.sessions = MemSessions()
        self.temps = MemTemps(self.journal)
        self.claude_json = MemClaudeJson(self.journal)

    @property
    def world(self) -> World:
        return World(pool=self.pool, store=self.store, settings=self.settings, feed=self.feed, api=self.api,
                     clock=self.clock, wake=self.wake, sessions=self.sessions, temps=self.temps,
                     claude_json=self.claude_json)

    def seed(self, accounts: dict[str, str], *, current: str = "", keys: dict[str, str] | None = None,
             mode: str = "account", held: str | None = None, identities: bool = False, **fields: Any) -> None:
        """The pool (id -> blob), and Claude Code's store holding `held`'s blob (default: current's).
        `identities`: the pool knows how Claude Code shows each account (as after an import)."""
        emails = {aid: self._email_of(blob) for aid, blob in accounts.items()}
        pool = Pool(mode=mode, current=current,  # type: ignore[arg-type]
                    accounts=[Account(id=aid, email=emails[aid], blob=blob,
                                      oauth_account=self.api.identity(emails[aid]) if identities else None)
                              for aid, blob in accounts.items()],
                    api_keys=[ApiKey(id=k, key=v) for k, v in (keys or {}).items()], **fields)
        self.pool.text = pool.model_dump_json()
        held = current if held is None else held
        if held:
            self.store.raw = accounts[held]
        self.journal.clear()

    def _email_of(self, blob: str) -> str:
        oauth = try_oauth(blob)
        return next((a.email for a in self.api.accounts.values() if oauth and a.refresh == oauth.refreshToken), "")

    def runtime(self, trigger: str = "test", config: Config | None = None) -> Any:
        from claude_pool.reconciler.runtime import Runtime

        return Runtime(config=config or Config(), trigger=trigger, helper=HELPER)

    def run(self, intent: Any, *, execute: bool = True, network: bool = True, trigger: str = "test") -> Any:
        """One run of the real engine against this world."""
        from claude_pool.reconciler import engine

        return engine.run(self.world, self.runtime(trigger), intent, execute=execute, network=network)

    def held_email(self) -> str:
        return self._email_of(self.store.raw or "")


def memory_world(**parts: Any) -> World:
    """A World of in-memory parts, some replaced by the caller's (a file provider, say)."""
    return dataclasses.replace(Memory().world, **parts)


__all__ = ["Memory", "memory_world", "FakeApi", "Clock", "HELPER", "START", "TransientError"]
