"""`--policy ours`: the project's real decision code, driven through the simulated world.

The one adapter between the simulator and claude-pool. Three steps per hook moment, mirroring
reconciler/engine.py's `run` (accounts_to_poll -> poll -> needs_wider_poll -> poll the rest -> decide -> apply):

    observe_from_sim(now, intent)  -> ObservedState   (usage polls go through world.poll)
    policy.decide(observed, intent) -> DesiredState   (the production function, unchanged)
    apply_to_sim(now, desired)                        (credential, pool state, recovery wake)

The hook moments run what reconciler/hooks.py runs, with the session's model (the engine's
`with_context` learns it from the hook payload or the transcript) and config.toml's threshold:
    SessionStart      reconciler/quicklook.py's light look: a live reading of the active account,
                      then quicklook.stays (the production function, on the pool's JSON) decides;
                      "change": reconcile --if-needed (the look's reading saved, so not --live)
    UserPromptSubmit  reconcile --if-needed
    StopFailure       reconcile --if-needed --live with the Refusal (the 429's message and model):
                      learn.py's take_refusal blocks the account that sent it until the reset the
                      message names (learn.refusal_block, the production function; in the
                      simulator no move races a request, so the sender is the account held)
    apiKeyHelper      next key round robin, then reconcile
    wake              reconcile (scheduled at the earliest reset + 30 s, one sleeper)
    pause             a trace's account pause (`"pauses"`): `claude-pool pause` at its start (the
                      pool's `paused` field set, then reconcile, as the command converges), ending
                      by itself at its `until` (decision.paused, as in the product)
"""

from __future__ import annotations

from datetime import datetime

from claude_pool.reconciler import policy, quicklook
from claude_pool.reconciler.intents import Intent, Reconcile, Refusal
from claude_pool.reconciler.learn import refusal_block
from claude_pool.reconciler.observe import unpolled
from claude_pool.schema.limits import families
from claude_pool.schema.config import PolicyConfig
from claude_pool.schema.pool import Account, ApiKey, Pause, Pool
from claude_pool.schema.state import AccountObs, DesiredState, ObservedState, SettingsObs, StoreObs
from claude_pool.schema.usage import parse_usage

from .anthropic import clock, hours_of
from .engine import Evidence, Session, World

HELPER_COMMAND = "/usr/local/bin/claude-pool helper"


class Ours:
    name = "ours"

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.sleeper: tuple[float, int] | None = None   # the one live wake sleeper (at, token)
        self.model: str | None = None                   # the model the last hook saw (helper, wake)

    def attach(self, world: World) -> None:
        self.world = world
        self.pool = Pool(
            mode="account", current=world.account_ids[0],
            accounts=[Account(id=a.id, email=f"{a.id}@example.com", blob="{}", priority=a.priority,
                              threshold=a.threshold) for a in world.trace.accounts],   # the trace's preferences
            api_keys=[ApiKey(id=f"key{i + 1}", key="sk-ant-sim") for i in range(world.api_keys)])
        # each pause is the command at its start: a run then (the recovery wake's queue carries it)
        self.pause_starts = {start for a in world.trace.accounts for start, _ in a.pauses}
        for start in sorted(self.pause_starts):
            world.schedule_wake(start)

    def _sync_pauses(self, now_h: float) -> None:
        """The pool's `paused` as the trace's pauses set it by `now_h` (the command at each start;
        a pause past its `until` ends by itself, as decision.paused reads it)."""
        specs = {a.id: a.pauses for a in self.world.trace.accounts}
        for acc in self.pool.accounts:
            started = [(s, e) for s, e in specs.get(acc.id, ()) if s <= now_h]
            if not started:
                continue
            start, end = started[-1]
            acc.paused = Pause(at=clock(start), until=clock(end) if end is not None else None, reason="trace")

    # -- hook moments
    def _reconcile(self, model: str | None, **kw: object) -> Reconcile:
        self.model = model
        kw.setdefault("threshold", self.config.threshold)   # engine.with_context: config.toml's threshold
        return Reconcile(model=model, overage=self.config.overage, **kw)  # type: ignore[arg-type]

    def session_start(self, now: float, session: Session) -> None:
        if self.quick_look(now, session.model):
            return
        self.run(now, self._reconcile(session.model, if_needed=True, threshold=self.config.threshold))

    def prompt(self, now: float, session: Session) -> None:
        self.run(now, self._reconcile(session.model, if_needed=True, threshold=self.config.threshold))

    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None:
        refusal = Refusal(message=evidence.message, model=session.model)
        self.run(now, self._reconcile(session.model, if_needed=True, live=True, threshold=self.config.threshold,
                                      refusal=refusal))

    def quick_look(self, now: float, model: str | None) -> bool:
        """reconciler/quicklook.py's verdict "stay" (True) or "change"; its reading is saved."""
        self._sync_pauses(now)
        pool, when = self.pool, clock(now)
        acc = pool.account(self.world.held)
        if pool.mode != "account" or acc is None or acc.id != pool.current:
            return False
        acc.usage, acc.usage_at = parse_usage(self.world.poll(acc.id, now)), when
        raw = pool.model_dump(mode="json")["accounts"]
        return quicklook.stays(raw, acc.id, acc.usage.model_dump(mode="json"), when, families(model),
                               self.config.threshold)

    def helper(self, now: float) -> None:
        if self.pool.api_keys:   # reconciler/helper.py next_key: one step of the cursor per call
            self.pool.current_key = self.pool.api_keys[self.pool.key_cursor % len(self.pool.api_keys)].id
            self.pool.key_cursor = (self.pool.key_cursor + 1) % len(self.pool.api_keys)
        self.run(now, self._reconcile(self.model))

    def wake(self, now: float) -> None:
        if self.sleeper is not None and self.sleeper[0] <= now:
            self.sleeper = None
        self.run(now, self._reconcile(self.model))

    # -- one run, as reconciler/engine.py does it
    def run(self, now: float, intent: Intent) -> DesiredState:
        when = clock(now)
        self._sync_pauses(now)
        ttl = self.config.usage_ttl_seconds
        observed = self.observe_from_sim(when, intent)
        if policy.needs_wider_poll(observed, intent):
            model = getattr(intent, "model", None)
            wider = policy.accounts_to_poll(self.pool, Reconcile(model=model), observed.store.account, when, ttl)
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
            for acc in pool.accounts:   # observe.load: forget_expired_blocks
                if acc.block is not None and (acc.block.until is None or acc.block.until <= when):
                    acc.block = None
            refusal = getattr(intent, "refusal", None)
            if refusal is not None:      # learn.take_refusal, on the account Claude Code holds
                acc = pool.account(held)
                if acc is not None:
                    block = refusal_block(refusal.message, acc, when, families(refusal.model))
                    if block is not None:
                        acc.block = block
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
