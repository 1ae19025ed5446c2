"""`lower_bound_billed_units`: units no policy can serve from the subscriptions, not even one that
knows the future. LB = total units - U, where U is an upper bound on the units any assignment of
requests to accounts can get accepted. The argument (docs/SIMULATOR.md has it in full):

Fix any schedule (which request goes to which account; anything refused or sent to a key is
unserved). For one account a:

1. Overshoot. A request is accepted while a window is under 100 %, so a window can end above its
   limit by less than the last accepted request: units served in one window < limit - used at its
   start + the largest request that window could take.
2. Weekly windows (seven_day, and each scoped model) are fixed intervals: period k of account a
   serves < L7 - start_used + umax(k) units (0 when the start already reached L7); model m's
   units in it < Ls - start_used_m + umax_m(k).
3. Five-hour windows are dynamic, but each starts at a request time, they are disjoint and last
   5 h. Cut the trace at every idle gap of >= 5 h (no window holds requests on both sides of such
   a gap). In a piece P (one gap-block intersected with one weekly period of a), a window W holds
   at most min(L5 + umax(P), units of P's requests inside W) of P's units, so a serves at most
   the best total of that value over families of disjoint 5-h windows starting at request times
   of the block: a weighted interval scheduling problem, solved exactly by dynamic programming.

4. Both at once: the units of one scoped model in a piece (or of all unscoped models together)
   are a part of what the piece serves, so they too are at most the piece's value from (3).

"How many units can be served at most" is a max flow when the constraints form a laminar family
per account: requests with the same (gap-block, period of each account, model) merge into one
source node. Two networks: (a) 2 + 3 (week <- piece); (b) 2 + scoped windows + 4 (week <- model
<- model-in-piece, and week <- unscoped-models-in-piece). A piece's total and a model's weekly
total cross, so no one tree holds both; (4) is the part of (3) that fits under the scoped windows.
Every real schedule is a feasible flow of both networks, so both maxima bound what it serves, and
U = min(flow_a, flow_b, total units). Dropping a constraint only loosens a bound, never breaks
it. Tested against exhaustive search on tiny traces (tests/test_sim.py).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from .anthropic import FIVE_HOURS, SimAccount
from .trace import Trace

INF = float("inf")


class _Flow:
    """Dinic's max flow on a small graph with float capacities."""

    def __init__(self) -> None:
        self.graph: list[list[int]] = []
        self.to: list[int] = []
        self.cap: list[float] = []
        self.ids: dict[object, int] = {}

    def node(self, key: object) -> int:
        n = self.ids.get(key)
        if n is None:
            n = self.ids[key] = len(self.graph)
            self.graph.append([])
        return n

    def edge(self, u: object, v: object, cap: float) -> None:
        a, b = self.node(u), self.node(v)
        self.graph[a].append(len(self.to)); self.to.append(b); self.cap.append(cap)
        self.graph[b].append(len(self.to)); self.to.append(a); self.cap.append(0.0)

    def max_flow(self, s: object, t: object) -> float:
        src, dst = self.node(s), self.node(t)
        total = 0.0
        eps = 1e-9
        while True:
            level = [-1] * len(self.graph)
            level[src] = 0
            queue = [src]
            for u in queue:
                for e in self.graph[u]:
                    if self.cap[e] > eps and level[self.to[e]] < 0:
                        level[self.to[e]] = level[u] + 1
                        queue.append(self.to[e])
            if level[dst] < 0:
                return total
            it = [0] * len(self.graph)

            def push(u: int, f: float) -> float:
                if u == dst:
                    return f
                while it[u] < len(self.graph[u]):
                    e = self.graph[u][it[u]]
                    v = self.to[e]
                    if self.cap[e] > eps and level[v] == level[u] + 1:
                        got = push(v, min(f, self.cap[e]))
                        if got > eps:
                            self.cap[e] -= got
                            self.cap[e ^ 1] += got
                            return got
                    it[u] += 1
                return 0.0

            while (f := push(src, INF)) > eps:
                total += f


def _blocks(times: list[float]) -> list[int]:
    """The gap-block of each request: a new block starts after an idle gap of >= 5 h."""
    out, b = [], 0
    for i, t in enumerate(times):
        if i and t - times[i - 1] >= FIVE_HOURS:
            b += 1
        out.append(b)
    return out


def _five_hour_cap(block_times: list[float], piece: list[tuple[float, float]], cap: float) -> float:
    """The most units disjoint 5-h windows can hold of a piece's requests, each window starting at a
    request time of the block and holding at most `cap`: a weighted interval scheduling, exact by
    dynamic programming over the possible starts (sorted)."""
    times = [t for t, _ in piece]
    prefix = [0.0]
    for _, u in piece:
        prefix.append(prefix[-1] + u)
    lo = bisect.bisect_right(block_times, times[0] - FIVE_HOURS)
    hi = bisect.bisect_right(block_times, times[-1])
    starts = sorted(set(block_times[lo:hi]))
    best = [0.0] * (len(starts) + 1)     # best[i]: using only the first i starts
    for i, s in enumerate(starts):
        held = prefix[bisect.bisect_left(times, s + FIVE_HOURS)] - prefix[bisect.bisect_left(times, s)]
        j = bisect.bisect_right(starts, s - FIVE_HOURS, hi=i)   # starts whose window ends by s
        best[i + 1] = max(best[i], min(cap, held) + best[j])
    return best[-1]


def max_servable(trace: Trace) -> float:
    reqs = trace.requests
    if not reqs:
        return 0.0
    times = [r.t for r in reqs]
    blocks = _blocks(times)
    accs = [SimAccount(a) for a in trace.accounts]
    # classes: (block, period per account, model) -> units
    classes: dict[tuple, float] = defaultdict(float)
    periods_of = [[acc.period(t) for t in times] for acc in accs]
    for i, r in enumerate(reqs):
        classes[(blocks[i], tuple(p[i] for p in periods_of), r.model)] += r.units

    block_times: dict[int, list[float]] = defaultdict(list)
    for i, t in enumerate(times):
        block_times[blocks[i]].append(t)

    flows = [_Flow(), _Flow()]   # 0: weekly + five-hour pieces; 1: weekly + scoped + model-in-piece
    for ai, acc in enumerate(accs):
        spec = acc.spec
        umax_k: dict[int, float] = defaultdict(float)
        umax_km: dict[tuple, float] = defaultdict(float)
        umax_p: dict[tuple, float] = defaultdict(float)
        piece_reqs: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        for i, r in enumerate(reqs):
            k = periods_of[ai][i]
            umax_k[k] = max(umax_k[k], r.units)
            umax_km[(k, r.model)] = max(umax_km[(k, r.model)], r.units)
            umax_p[(blocks[i], k)] = max(umax_p[(blocks[i], k)], r.units)
            piece_reqs[(blocks[i], k)].append((r.t, r.units))
        for k, um in umax_k.items():
            start = spec.seven_day_used_at_start if k == acc.k0 else 0.0
            cap = 0.0 if start >= spec.seven_day_limit else spec.seven_day_limit - start + um
            for f in flows:
                f.edge(("week", ai, k), "sink", cap)
        piece_cap = {}
        for (b, k), pts in piece_reqs.items():
            cap = piece_cap[(b, k)] = _five_hour_cap(block_times[b], pts, spec.five_hour_limit + umax_p[(b, k)])
            flows[0].edge(("piece", ai, b, k), ("week", ai, k), cap)
        for (k, m), um in umax_km.items():
            limit = spec.scoped.get(m)
            if limit is None:
                continue      # unscoped models: one node per piece, straight under the week
            start = spec.scoped_used_at_start.get(m, 0.0) if k == acc.k0 else 0.0
            cap = 0.0 if start >= limit else limit - start + um
            flows[1].edge(("model", ai, k, m), ("week", ai, k), cap)
        # Flow 1's leaves: a scoped model's units in a piece, and the unscoped models' units in a
        # piece, each at most the piece's five-hour capacity (a part of what the piece serves).
        for (b, k), cap in piece_cap.items():
            for m in sorted({m if m in spec.scoped else "" for (kk, m) in umax_km if kk == k}):
                m = m or None
                up = ("week", ai, k) if m is None else ("model", ai, k, m)
                flows[1].edge(("pm", ai, b, k, m), up, cap)
    for ci, ((b, ks, m), units) in enumerate(sorted(classes.items(), key=lambda kv: repr(kv[0]))):
        for f in flows:
            f.edge("source", ("class", ci), units)
        for ai in range(len(accs)):
            flows[0].edge(("class", ci), ("piece", ai, b, ks[ai]), INF)
            scoped = m in accs[ai].spec.scoped
            flows[1].edge(("class", ci), ("pm", ai, b, ks[ai], m if scoped else None), INF)
    total = trace.total_units
    return min(total, *(f.max_flow("source", "sink") for f in flows))


def lower_bound(trace: Trace) -> float:
    return max(0.0, trace.total_units - max_servable(trace))
