"""One run: lock, observe, decide, diff, and (when asked) apply. Every command goes through here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from claude_pool.providers import wake
from claude_pool.providers.sessions import running_sessions

from claude_pool.providers.poolfile import PoolBusy, lock_or_busy
from claude_pool.schema.plan import Action, Plan
from claude_pool.schema.state import DesiredState, ObservedState

from . import policy
from .apply import apply_plan, recording
from .audit import Timer, log
from .diff import make_plan
from .errors import StalePlan, UserError
from .intents import Intent, Reconcile
from .observe import observe
from .runtime import Runtime


@dataclass
class Outcome:
    plan: Plan
    observed: ObservedState
    desired: DesiredState
    applied: list[Action] = field(default_factory=list)
    #: execute=False: the one line apply would fail with (the dry run's check), else ""
    error: str = ""


def after_apply(rt: Runtime, outcome: Outcome) -> None:
    """Tell the user who is affected, and schedule the recovery wake in API-key mode."""
    kinds = {a.type for a in outcome.applied}
    if kinds & {"write_credential", "write_settings"}:
        n = len(running_sessions())
        if n:
            log().info("sessions", action="notify", target="sessions", result="ok", count=n,
                       say=f"{n} running Claude Code session{'s' if n != 1 else ''} "
                           f"pick{'s' if n == 1 else ''} up the new credential at the next request")
    wake_at = outcome.desired.wake_at
    if rt.pool.mode == "apikey" and wake_at is not None and os.environ.get("CLAUDE_POOL_WAKE", "1") != "0":
        try:
            result = wake.schedule(wake_at.timestamp())
        except OSError as exc:
            log().warning("wake", action="schedule", target="wake", result="failed", error=exc.strerror or "")
            return
        log().info("wake", action="schedule", target="wake", result=result, after=wake_at.isoformat(),
                   reason="a reconcile at the earliest known reset + 30 s")


def with_context(rt: Runtime, intent: Intent) -> Intent:
    """A reconcile learns the model in use (unless told) and the configured overage order."""
    if not isinstance(intent, Reconcile):
        return intent
    from .model import detect

    model = intent.model if intent.model is not None else detect()
    return replace(intent, model=model, overage=rt.config.policy.overage)


def run(rt: Runtime, intent: Intent, *, execute: bool, saved: Plan | None = None,
        network: bool = True) -> Outcome:
    timer = Timer()
    intent = with_context(rt, intent)
    try:
        lock = lock_or_busy(rt.pool_file)
    except PoolBusy as exc:
        raise UserError(str(exc)) from None
    try:
        observed = observe(rt, intent, network=network)
        if observed.settings.error:
            raise UserError(observed.settings.error)
        if network and policy.needs_wider_poll(observed, intent):
            wider = policy.accounts_to_poll(rt.pool, Reconcile(model=getattr(intent, "model", None)),
                                            observed.store.account, observed.now,
                                            rt.config.policy.usage_ttl_seconds)
            wider = [a for a in wider if observed.accounts[a].poll not in ("ok", "error", "dead")]
            observed = observe(rt, intent, poll_ids=wider, previous=observed)
        desired = policy.decide(observed, intent)
        plan = make_plan(observed, desired, rt.trigger)
        if saved is not None:
            if saved.observed_digest != plan.observed_digest:
                raise StalePlan("the saved plan is stale: the pool, Claude Code's login or settings.json changed "
                                "since it was made; run `claude-pool plan` again")
            plan = saved
        outcome = Outcome(plan=plan, observed=observed, desired=desired)
        if execute:
            outcome.applied = apply_plan(rt, plan)
            if rt.usage_dirty and not outcome.applied:
                rt.save_pool()  # keep the fresh usage readings for the next run
            after_apply(rt, outcome)
        else:
            # dry run: the very same apply code through a recording world (docs/ARCHITECTURE.md §1)
            try:
                apply_plan(recording(rt), plan, dry_run=True)
            except UserError as exc:
                outcome.error = str(exc)
        extra = {"result": "would fail", "error": outcome.error} if outcome.error else {"result": "ok"}
        log().info("run", action="plan" if not execute else "apply", target="pool", reason=plan.reason,
                   changes=len(plan.actions), notes=plan.notes, duration_ms=timer.ms(),
                   model=getattr(intent, "model", None) or "", **extra)
        return outcome
    finally:
        lock.release()
        rt.close()
