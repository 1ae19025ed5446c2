"""Research yardsticks, not policies a product could run: they read every account's true windows
at every prompt for free (no usage calls counted) and switch at will. They show how much of a
trace's "excess over the lower bound" any policy could remove, and how much is the bound's."""

from __future__ import annotations

from .engine import Evidence, Session, World


class Oracle:
    """Earliest weekly reset first among the accounts that accept the request now; `pace=True`:
    most weekly headroom per hour left instead."""

    def __init__(self, pace: bool = False) -> None:
        self.pace = pace
        self.name = "oracle-pace" if pace else "oracle-edf"

    def attach(self, world: World) -> None:
        self.world = world

    def _pick(self, now: float, model: str) -> None:
        w = self.world
        best, key = None, None
        for aid in w.account_ids:
            acc = w.accounts[aid]
            if acc.refusal(now, model):
                continue
            end = acc.period_end(acc.k)
            limit = acc.spec.scoped.get(model)
            room = acc.spec.seven_day_limit - acc.u7
            if limit is not None:
                room = min(room, limit - acc.us[model])
            k = (-room / max(end - now, 1.0),) if self.pace else (end, -room)
            if key is None or k < key:
                best, key = aid, k
        if best is not None:
            w.use_account(best, now)
        elif w.api_keys:
            w.use_keys(now)

    def session_start(self, now: float, session: Session) -> None:
        pass

    def prompt(self, now: float, session: Session) -> None:
        self._pick(now, session.model)

    def stop_failure(self, now: float, session: Session, evidence: Evidence) -> None:
        pass

    def helper(self, now: float) -> None:
        pass

    def wake(self, now: float) -> None:
        pass
