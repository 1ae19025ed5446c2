"""`--policy ours`: the project's real decision code, driven through the simulated world.

The one adapter between the simulator and claude-pool. Three steps per hook moment, mirroring
reconciler/engine.py's `run` (observe -> needs_wider_poll -> observe again -> decide -> apply):

    observe_from_sim(now, intent)  -> ObservedState   (usage polls go through world.poll)
    policy.decide(observed, intent) -> DesiredState   (the production function, unchanged)
    apply_to_sim(now, desired)                        (credential, pool state, recovery wake)

The hook moments run the intents reconciler/hooks.py runs today:
    SessionStart      reconcile --if-needed --threshold 0.9
    UserPromptSubmit  reconcile --if-needed --threshold 0.9
    StopFailure       reconcile --live                 (the 429's evidence is not used today)
    apiKeyHelper      next key round robin, then reconcile
    wake              reconcile (scheduled at the earliest reset + 30 s, one sleeper)
When the production policy learns per-model windows and 429 evidence, only `_intent_for_*` and
`observe_from_sim` (what the session's model is, what the evidence says) need to follow.
"""

from __future__ import annotations

from datetime import datetime

from claude_pool.reconciler import policy
from claude_pool.reconciler.intents import Intent, Reconcile
from claude_pool.reconciler.observe import unpolled
from claude_pool.schema.config import DEFAULT_THRESHOLD, PolicyConfig
from claude_pool.schema.pool import Account, ApiKey, Pool
from claude_pool.schema.state import AccountObs, DesiredState, ObservedState, SettingsObs, StoreObs
from claude_pool.schema.usage import parse_usage

from .anthropic import clock, hours_of
from .engine import Evidence, Session, World

HELPER_COMMAND = "/usr/local/bin/claude-pool helper"
THRESHOLD = DEFAULT_THRESHOLD   # the hooks pass no --threshold: config.toml's, default this


class Ours:
    name = "ours"

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.sleeper: tuple[float, int] | None = None   # the one live wake sleeper (at, token)

    def attach(self, world: World) -> None:
        self.world = world
        self.pool = Pool(
            mode="account", current=world.account_ids[0],
            accounts=[Account(id=a, email=f"{a}@example.com", blob="{}") for a in world.account_ids],
            api_keys=[ApiKey(id=f"key{i + 1}", key="sk-ant-sim") for i in range(world.api_keys)])

    # -- hook moments
    def session_start(self, now: float, session: Session) -> None:
        self.run(now, Reconcile(if_needed=True, threshold=THRESHOLD))

    def prompt(self, now: float, session: Session) -> None:
        self.run(now, Reconcile(if_needed=True, threshold=THRESHOLD))

    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None:
        self.run(now, Reconcile(live=True))

    def helper(self, now: float) -> None:
        if self.pool.api_keys:   # reconciler/helper.py next_key: one step of the cursor per call
            self.pool.current_key = self.pool.api_keys[self.pool.key_cursor % len(self.pool.api_keys)].id
            self.pool.key_cursor = (self.pool.key_cursor + 1) % len(self.pool.api_keys)
        self.run(now, Reconcile())

    def wake(self, now: float) -> None:
        if self.sleeper is not None and self.sleeper[0] <= now:
            self.sleeper = None
        self.run(now, Reconcile())

    # -- one run, as reconciler/engine.py does it
    def run(self, now: float, intent: Intent) -> DesiredState:
        when = clock(now)
        ttl = self.config.usage_ttl_seconds
        observed = self.observe_from_sim(when, intent)
        if policy.needs_wider_poll(observed, intent):
            wider = policy.accounts_to_poll(self.pool, Reconcile(), observed.store.account, when, ttl)
            wider = [a for a in wider if observed.accounts[a].poll not in ("ok", "error", "dead")]
            observed = self.observe_from_sim(when, intent, poll_ids=wider, previous=observed)
        desired = policy.decide(observed, intent)
        self.apply_to_sim(now, desired)
        return desired

    def observe_from_sim(self, when: datetime, intent: Intent, *, poll_ids: list[str] | None = None,
                         previous: ObservedState | None = None) -> ObservedState:
        world, pool = self.world, self.pool
        if previous is None:
            held = world.held
            store = StoreObs(present=True, valid=True, fingerprint=f"fp-{held}", account=held)
            ours = pool.mode == "apikey"
            settings = SettingsObs(present=True, api_key_helper=HELPER_COMMAND if ours else None, ours=ours)
        else:
            store, settings = previous.store, previous.settings
        if poll_ids is None:
            poll_ids = policy.accounts_to_poll(pool, intent, store.account, when, self.config.usage_ttl_seconds)
        now_h = hours_of(when)
        accounts: dict[str, AccountObs] = {}
        for acc in pool.accounts:
            if acc.id in poll_ids:
                usage = parse_usage(world.poll(acc.id, now_h))
                acc.usage, acc.usage_at = usage, when
                accounts[acc.id] = AccountObs(id=acc.id, email=acc.email, usage=usage, usage_at=when, poll="ok")
            elif previous is not None and acc.id in previous.accounts:
                accounts[acc.id] = previous.accounts[acc.id]
            else:
                accounts[acc.id] = unpolled(acc, when, "")
        return ObservedState(now=when, pool=pool, pool_digest="sim", store=store, settings=settings,
                             accounts=accounts, helper_command=HELPER_COMMAND)

    def apply_to_sim(self, now: float, desired: DesiredState) -> None:
        world, pool = self.world, self.pool
        if desired.mode == "apikey":
            if world.api_keys:
                world.use_keys(now)
        else:
            world.use_account(desired.store_account or world.held, now)
        pool.mode, pool.current, pool.current_key = desired.mode, desired.current, desired.current_key
        # engine.after_apply: in API-key mode, one sleeper due at the wake time (providers/wake.py)
        if pool.mode == "apikey" and desired.wake_at is not None:
            at = hours_of(desired.wake_at)
            if self.sleeper is not None and self.sleeper[0] <= at + 1 / 3600:
                return
            if self.sleeper is not None:
                world.cancel_wake(self.sleeper[1])
            self.sleeper = (at, world.schedule_wake(at))
