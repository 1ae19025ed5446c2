"""`./dev sim`: run a trace through a policy, or compare every policy on the repo's traces.

    ./dev sim TRACE.json [--policy ours|seed] [--json] [--plot FILE]
    ./dev sim --compare [TRACE.json ...] [--json]     (default: benchmarks/traces/*.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import bound, engine, ours, seed, trace

POLICIES = {"ours": ours.Ours, "seed": seed.Seed}
TRACES = Path(__file__).resolve().parents[1] / "traces"


def run(tr: trace.Trace, policy: str, *, record: bool = False, lb: float | None = None) -> engine.Result:
    res = engine.simulate(tr, POLICIES[policy](), record=record)
    res.lower_bound_billed_units = bound.lower_bound(tr) if lb is None else lb
    return res


def table(rows: list[dict]) -> str:
    cols = ["trace", "policy", "billed_units", "billed_requests", "blocked_units", "blocked_requests", "switches",
            "usage_calls", "expired_units", "lower_bound_billed_units", "excess_over_lower_bound", "excess_vs_seed"]
    heads = ["trace", "policy", "billed u", "billed r", "blocked u", "blocked r", "switches", "usage calls",
             "expired u", "lower bound", "excess", "excess/seed"]
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    width = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = lambda vals: "  ".join(v.ljust(width[i]) if i < 2 else v.rjust(width[i]) for i, v in enumerate(vals))
    return "\n".join([line(heads), line(["-" * w for w in width]), *(line(c) for c in cells)])


def compare(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        tr = trace.load(path)
        lb = bound.lower_bound(tr)
        by = {p: run(tr, p, lb=lb).summary() for p in ("seed", "ours")}
        base = by["seed"]["excess_over_lower_bound"]
        for p, s in by.items():
            s["excess_vs_seed"] = (round(s["excess_over_lower_bound"] / base, 2) if base else
                                   ("=" if s["excess_over_lower_bound"] == base else "inf"))
            rows.append(s)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./dev sim", description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="*", type=Path)
    ap.add_argument("--policy", choices=sorted(POLICIES), default="ours")
    ap.add_argument("--json", action="store_true", help="one JSON object (a list with --compare)")
    ap.add_argument("--plot", metavar="FILE", help="a picture of the run (needs matplotlib)")
    ap.add_argument("--compare", action="store_true", help="seed and ours on each trace, the lower bound, the ratios")
    args = ap.parse_args(argv)
    try:
        if args.compare:
            rows = compare(args.traces or sorted(TRACES.glob("*.json")))
            print(json.dumps(rows) if args.json else table(rows))
            return 0
        if len(args.traces) != 1:
            ap.error("give one TRACE.json (or --compare)")
        tr = trace.load(args.traces[0])
        res = run(tr, args.policy, record=bool(args.plot))
    except trace.TraceError as exc:
        print(f"sim: {exc}", file=sys.stderr)
        return 2
    summary = res.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(table([summary]))
    if args.plot:
        try:
            from .plot import plot
        except ImportError:
            print("sim: --plot needs matplotlib, a development-only dependency: "
                  ".venv/bin/pip install matplotlib", file=sys.stderr)
            return 1
        plot(tr, res, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
