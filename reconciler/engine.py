"""One run: lock, look, decide, diff, and (when asked) apply. Every command goes through here.

The engine is the only caller of the steps, each once and in order (docs/ARCHITECTURE.md §1):
sweep temp files, load, learn what the pool can tell by itself, observe the store and settings,
ask the policy which accounts to poll, harvest their tokens and read their usage, decide (a
second, wider poll when the policy asks for one), diff, apply, and what follows an apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from claude_pool.providers.anthropic import EndpointError, TransientError, Unauthorized
from claude_pool.providers.poolfile import PoolBusy
from claude_pool.providers.world import World
from claude_pool.schema.plan import Action, Plan
from claude_pool.schema.pool import Usage
from claude_pool.schema.state import AccountObs, DesiredState, ObservedState, StoreObs

from . import learn, observe, policy
from .apply import apply_plan, recording
from .audit import Timer, log
from .diff import make_plan
from .errors import StalePlan, UserError
from .harvest import due, harvest
from .intents import Intent, Reconcile
from .runtime import Runtime, lock_wait


@dataclass
class Outcome:
    plan: Plan
    observed: ObservedState
    desired: DesiredState
    applied: list[Action] = field(default_factory=list)
    #: execute=False: the one line apply would fail with (the dry run's check), else ""
    error: str = ""


def after_apply(world: World, rt: Runtime, outcome: Outcome) -> None:
    """Tell the user who is affected, and schedule the recovery wake in API-key mode."""
    kinds = {a.type for a in outcome.applied}
    if kinds & {"write_credential", "write_settings"}:
        n = len(world.sessions.running())
        if n:
            log().info("sessions", action="notify", target="sessions", result="ok", count=n,
                       say=f"{n} running Claude Code session{'s' if n != 1 else ''} "
                           f"pick{'s' if n == 1 else ''} up the new credential at the next request")
    wake_at = outcome.desired.wake_at
    if rt.pool.mode == "apikey" and wake_at is not None:
        try:
            result = world.wake.schedule(wake_at.timestamp())
        except OSError as exc:
            log().warning("wake", action="schedule", target="wake", result="failed", error=exc.strerror or "")
            return
        if result is not None:
            log().info("wake", action="schedule", target="wake", result=result, after=wake_at.isoformat(),
                       reason="a reconcile at the earliest known reset + 30 s")


def with_context(rt: Runtime, intent: Intent) -> Intent:
    """A reconcile learns the model in use (unless told), the configured threshold (unless told)
    and overage order; `key add` and `rm` the same for the reconcile that follows them."""
    from .intents import AddKey, Prefer, Remove, Rename
    from .model import detect

    if isinstance(intent, (AddKey, Remove, Prefer, Rename)):
        # the reconcile that follows the command in the same run (on cached readings)
        return replace(intent, then=Reconcile(threshold=rt.config.policy.threshold, model=detect(),
                                              overage=rt.config.policy.overage))
    if not isinstance(intent, Reconcile):
        return intent
    model = intent.model if intent.model is not None else detect()
    threshold = intent.threshold if intent.threshold is not None else rt.config.policy.threshold
    return replace(intent, model=model, overage=rt.config.policy.overage, threshold=threshold)


REFUSED_TWICE = "usage: the access token was refused even after a refresh"


def poll(world: World, rt: Runtime, ids: list[str], store: StoreObs,
         now: datetime) -> tuple[dict[str, AccountObs], StoreObs]:
    """Poll these accounts: harvest the tokens that expired, read the usage, and harvest then read
    again the ones whose token the usage API refused. Readings go into the pool."""
    if not ids:
        return {}, store
    raw_before = rt.store_raw
    accounts = [a for a in rt.pool.accounts if a.id in ids]
    expired = [a.id for a in accounts if due(rt, a, store, now)]
    failed = harvest(world, rt, expired, store, "access token expired")
    results: dict[str, Usage | Exception] = dict(observe.read_usage(
        world, rt, [a.id for a in accounts if a.id not in failed], store))
    learn.note_usage_calls(rt, results, now)    # counted per hour; a 429 backs that account off
    refused = [aid for aid, r in results.items() if isinstance(r, Unauthorized) and aid not in expired]
    if refused:
        again = harvest(world, rt, refused, store, "access token refused by the usage API")
        results.update(again)
        retried = observe.read_usage(world, rt, [aid for aid in refused if aid not in again], store)
        learn.note_usage_calls(rt, retried, now)
        results.update(retried)
    results = {aid: TransientError(REFUSED_TWICE) if isinstance(r, Unauthorized) else r
               for aid, r in {**results, **failed}.items()}
    learn.take_readings(rt, {aid: r for aid, r in results.items() if isinstance(r, Usage)}, now)
    if rt.store_raw != raw_before:
        # a refresh of the login Claude Code holds rewrote the store: observe what it holds now
        store = observe.observe_store(world, rt, identify=False).model_copy(update={"email": store.email})
    by_id = {a.id: a for a in accounts}
    return {aid: observe.account_obs(by_id[aid], r, now) for aid, r in results.items()}, store


def look(world: World, rt: Runtime, intent: Intent, *, network: bool) -> ObservedState:
    """Everything before the decision, in order."""
    world.temps.sweep()                         # temp files a killed writer left behind
    now = world.clock()
    observe.load(world, rt)
    learn.forget_expired_blocks(rt, now)
    learn.take_feed(rt, world.feed.observe())
    settings = observe.observe_settings(world, rt)
    if settings.error:
        raise UserError(settings.error)
    store = observe.observe_store(world, rt, identify=network)
    learn.notice_relogin(rt, store)
    learn.take_identity(rt, store)
    refusal = getattr(intent, "refusal", None)
    if refusal is not None:
        learn.take_refusal(rt, refusal, store.account or rt.pool.current, now)
    ttl = rt.config.policy.usage_ttl_seconds
    ids = policy.accounts_to_poll(rt.pool, intent, store.account, now, ttl) if network else []
    polled, store = poll(world, rt, ids, store, now)
    observed = observe.observed_state(rt, now, store, settings, polled)
    if network and policy.needs_wider_poll(observed, intent):
        wider = policy.accounts_to_poll(rt.pool, Reconcile(model=getattr(intent, "model", None)),
                                        store.account, now, ttl)
        more, store = poll(world, rt, [a for a in wider if observed.accounts[a].poll not in ("ok", "error", "dead")],
                           store, now)
        observed = observe.observed_state(rt, now, store, settings, {**polled, **more})
    return observed


def run(world: World, rt: Runtime, intent: Intent, *, execute: bool, saved: Plan | None = None,
        network: bool = True) -> Outcome:
    timer = Timer()
    intent = with_context(rt, intent)
    try:
        with world.pool.hold(**lock_wait()):
            return _locked(world, rt, intent, timer, execute=execute, saved=saved, network=network)
    except PoolBusy as exc:
        raise UserError(str(exc)) from None
    except EndpointError as exc:
        raise UserError(f"endpoint: {exc}") from None
    finally:
        world.api.close()


def _locked(world: World, rt: Runtime, intent: Intent, timer: Timer, *, execute: bool, saved: Plan | None,
            network: bool) -> Outcome:
    observed = look(world, rt, intent, network=network)
    desired = policy.decide(observed, intent)
    plan = make_plan(observed, desired, rt.trigger)
    if saved is not None:
        if saved.observed_digest != plan.observed_digest:
            raise StalePlan("the saved plan is stale: the pool, Claude Code's login or settings.json changed "
                            "since it was made; run `claude-pool plan` again")
        plan = saved
    outcome = Outcome(plan=plan, observed=observed, desired=desired)
    if execute:
        outcome.applied = apply_plan(world, rt, plan)
        if rt.usage_dirty and not outcome.applied:
            rt.save_pool(world.pool)  # keep the fresh usage readings for the next run
        after_apply(world, rt, outcome)
    else:
        # dry run: the very same apply code through a recording world (docs/ARCHITECTURE.md §1)
        try:
            apply_plan(*recording(world, rt), plan, dry_run=True)
        except UserError as exc:
            outcome.error = str(exc)
    extra = {"result": "would fail", "error": outcome.error} if outcome.error else {"result": "ok"}
    log().info("run", action="plan" if not execute else "apply", target="pool", reason=plan.reason,
               changes=len(plan.actions), notes=plan.notes, duration_ms=timer.ms(),
               model=getattr(intent, "model", None) or "", **extra)
    return outcome
