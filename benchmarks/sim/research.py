"""Robustness check: every trace type of benchmarks/traces/generate.py, over several generator
seeds, each policy against the seed's rules. A rule tuned on the five stored traces must hold here.

    .venv/bin/python -m benchmarks.sim.research [--seeds 9] [--oracle]

Per trace type: the excess over the lower bound summed over the seeds, as a ratio to the seed
policy's, and on how many traces the policy loses a bar: L = billed + blocked above the seed's,
B = more blocked requests, S = switches above max(1.25x, +1 per week) on single-model traces.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.traces import generate
from claude_pool.schema.config import PolicyConfig

from . import bound, engine, ours, oracle, seed, trace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sim.research")
    ap.add_argument("--seeds", type=int, default=9, help="the stored trace plus this many - 1 more seeds")
    ap.add_argument("--oracle", action="store_true", help="add the clairvoyant yardstick (not a policy)")
    args = ap.parse_args(argv)
    # ours at the default threshold, and at 0.90 / 0.99 (what one session at a time could afford)
    makers = {"ours": ours.Ours, "ours@0.90": lambda: ours.Ours(PolicyConfig(threshold=0.90)),
              "ours@0.99": lambda: ours.Ours(PolicyConfig(threshold=0.99))}
    if args.oracle:
        makers["oracle-pace"] = lambda: oracle.Oracle(pace=True)
    print(f"{'trace':12} {'policy':12} {'excess/seed':>11} {'L':>3} {'B':>3} {'S':>3}")
    for name, make in generate.TRACES.items():
        traces = [trace.from_dict(make())] + [trace.from_dict(make(s)) for s in range(10, 10 + args.seeds - 1)]
        lbs = [bound.lower_bound(t) for t in traces]
        base = [engine.simulate(t, seed.Seed()).summary() for t in traces]
        ex_seed = sum(s["billed_units"] + s["blocked_units"] - lb for s, lb in zip(base, lbs))
        for pname, mk in makers.items():
            ex = lose = blk = sw = 0
            for t, lb, s in zip(traces, lbs, base):
                c = engine.simulate(t, mk()).summary()
                bs, bc = s["billed_units"] + s["blocked_units"], c["billed_units"] + c["blocked_units"]
                ex += bc - lb
                lose += bc > bs
                blk += c["blocked_requests"] > s["blocked_requests"]
                if len({r.model for r in t.requests}) == 1:
                    sw += c["switches"] > max(1.25 * s["switches"], s["switches"] + t.duration_hours / 168)
            ratio = f"{ex / ex_seed:.2f}" if ex_seed else ("=" if ex == 0 else "inf")
            print(f"{name:12} {pname:12} {ratio:>11} {lose:>3} {blk:>3} {sw:>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
