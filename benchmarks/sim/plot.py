"""`--plot FILE`: each account's windows over time, the active credential, billed stretches."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .anthropic import SimAccount  # noqa: E402
from .engine import Result  # noqa: E402
from .trace import Trace  # noqa: E402


def plot(tr: Trace, res: Result, path: str) -> None:
    """Replays the served log on fresh accounts to draw each window's utilization."""
    accs = {a.id: SimAccount(a) for a in tr.accounts}
    series: dict[str, dict[str, list]] = {a: {"t": [], "5h": [], "7d": []} for a in accs}
    billed_t, billed_u, blocked_t = [], [], []
    for (t, where, units), req in zip(res.served_log, tr.requests):
        if where in accs:
            accs[where].charge(t, units, req.model)
        elif where == "apikey":
            billed_t.append(t); billed_u.append(units)
        else:
            blocked_t.append(t)
        for aid, acc in accs.items():
            w = acc.windows(t)
            series[aid]["t"].append(t); series[aid]["5h"].append(w["five_hour"][0]); series[aid]["7d"].append(w["seven_day"][0])
    fig, axes = plt.subplots(len(accs) + 1, 1, figsize=(14, 2.2 * (len(accs) + 1)), sharex=True)
    for ax, (aid, s) in zip(axes, series.items()):
        ax.plot(s["t"], s["5h"], lw=0.6, drawstyle="steps-post", label="five_hour %")
        ax.plot(s["t"], s["7d"], lw=1.2, drawstyle="steps-post", label="seven_day %")
        ax.set_ylabel(aid); ax.set_ylim(0, 130); ax.axhline(100, color="k", lw=0.4)
        ax.legend(loc="upper right", fontsize=7)
    ax = axes[-1]
    names = [a.id for a in tr.accounts] + ["apikey"]
    xs, ys = [], []
    for i, (t, cred) in enumerate(res.timeline):
        end = res.timeline[i + 1][0] if i + 1 < len(res.timeline) else tr.duration_hours
        xs += [t, end]; ys += [names.index(cred)] * 2
    ax.plot(xs, ys, drawstyle="steps-post", lw=1)
    ax.scatter(billed_t, [len(names) - 1] * len(billed_t), s=4, color="red", label="billed")
    ax.scatter(blocked_t, [len(names) - 1.5] * len(blocked_t), s=4, color="black", label="blocked")
    ax.set_yticks(range(len(names)), names); ax.set_xlabel("hours"); ax.legend(loc="upper right", fontsize=7)
    fig.suptitle(f"{tr.name}: {res.policy}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
