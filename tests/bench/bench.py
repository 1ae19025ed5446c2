"""Benchmark of the hot paths (issue "Hot paths") and of every other command (issue 19).
Run: ./dev bench [--only hot|commands] [--against CMD]   (not part of the test suite)

Builds a regular (non-editable) install in .cache/bench-venv, the way pipx/uv install it, a
sandboxed pool against the local fake Anthropic API, then measures every row as a ratio to
`python -c pass` with the same interpreter, in one run, alternating, and prints medians.
Exits 1 when a target is missed.

--against CMD runs the same sandboxes (HOME, the fake API's URLs in CLAUDE_POOL_API_BASE_URL and
CLAUDE_POOL_OAUTH_TOKEN_URL) through another installed command, alternating with ours, and prints
both as ratios: each row uses the first of its verbs (COMMAND_ROWS) that the other command runs
with exit 0 on that pool, and is left out for it when none does (the Go seed's `auto` stands for
`reconcile --live`). It is compared, never judged: only our rows have targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from claude_pool.demoapi import FakeAnthropic  # noqa: E402

VENV = REPO / ".cache" / "bench-venv"


def build_venv() -> Path:
    stamp = VENV / ".built-from"
    source_mtime = max(p.stat().st_mtime for d in ("claude_pool", "schema", "providers", "reconciler")
                       for p in (REPO / d).rglob("*.py"))
    if not (stamp.exists() and float(stamp.read_text() or 0) >= source_mtime):
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--force-reinstall", "--no-deps", str(REPO)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        str(REPO)], check=True)
        stamp.write_text(str(source_mtime))
    return VENV / "bin"


class Sandbox:
    def __init__(self, fake: FakeAnthropic, bindir: Path, name: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"cp-bench-{name}-"))
        self.fake = fake
        self.bin = bindir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE", "ANTHROPIC", "XDG_"))}
        self.env.update(HOME=str(self.home), CLAUDE_POOL_API_BASE_URL=fake.base_url,
                        CLAUDE_POOL_OAUTH_TOKEN_URL=fake.token_url, CLAUDE_POOL_WAKE="0")
        (self.home / ".claude").mkdir()

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "claude-pool"), *args], env=self.env, input=stdin, text=True,
                              capture_output=True, check=check, timeout=120)

    def add_accounts(self, emails: list[str]) -> None:
        for email in emails:
            (self.home / ".claude" / ".credentials.json").write_text(json.dumps(self.fake.credential_blob(email)))
            self.cli("import")

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def timed(argv: list[str], env: dict, stdin: bytes = b"") -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def wait_quiet(home: Path, limit: float = 10.0) -> None:
    """Wait for detached claude-pool children of a sandbox to finish (Linux /proc scan)."""
    deadline = time.monotonic() + limit
    proc = Path("/proc")
    while time.monotonic() < deadline:
        busy = False
        for entry in proc.iterdir() if proc.exists() else []:
            if not entry.name.isdigit():
                continue
            try:
                if b"claude_pool" in (entry / "cmdline").read_bytes() and \
                        str(home).encode() in (entry / "environ").read_bytes():
                    busy = True
                    break
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.02)


def peak_rss_mib(argv: list[str], env: dict) -> float:
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024.0  # Linux reports KiB


# The other commands (issue 19): row, our argv, the target (ratio to python -c pass), and the argvs
# another tool (--against) may have for the same job, tried in order (the first that exits 0 is used).
COMMAND_ROWS = [
    ("version", ["version"], 2.0, [["version"], ["--version"]]),
    ("list --json (no network)", ["list", "--json"], 5.0, [["list", "--json"]]),
    ("plan, 5 accounts, 0 ms API", ["plan"], 15.0, [["plan"]]),
    ("reconcile --live, 5 accounts, 0 ms API", ["reconcile", "--live"], 15.0, [["reconcile", "--live"], ["auto"]]),
    ("apply, 5 accounts, 0 ms API", ["apply"], 15.0, [["apply"]]),
    ("list (live), 5 accounts, 0 ms API", ["list"], 15.0, [["list"]]),
]


# The engine's floor: what any engine run pays before doing anything of its own, with the runtime
# dependencies the design keeps (SPEC: pydantic models, httpx for HTTP, structlog events, the pool's
# AES-GCM): each imported as the engine imports it (its deferrals in place), one model built and
# validated, one http:// client made (which imports httpcore), then the same fast exit. A target
# below this row cannot be met while an engine run loads these four.
FLOOR = ("import os, ssl\n"
         "from claude_pool.reconciler import audit, commands\n"
         "commands.engine_environment()\n"
         "from pydantic import BaseModel\n"
         "class M(BaseModel):\n"
         "    a: int = 0\n"
         "M.model_validate({'a': 1})\n"
         "import httpx\n"
         "httpx.Client(verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)).close()\n"
         "audit._structlog()\n"
         "import cryptography.hazmat.primitives.ciphers.aead\n"
         "os._exit(0)\n")


def command_rows(fake: FakeAnthropic, bindir: Path, py: str, cp: str, runs: int,
                 rows: list, side: list, other: str | None) -> float:
    """`version`, `list --json`, `plan`, `reconcile --live`, `apply`, `list` on a pool of 5
    accounts (account mode, nothing to change, the usage API answering at once), and the peak RSS
    of `plan` on 50; with `other`, the same pool through that command, alternating with ours."""
    fake.usage_delay = 0.0
    five = Sandbox(fake, bindir, "five")
    emails = [f"five{i}@bench.test" for i in range(5)]
    for i, e in enumerate(emails):
        fake.add_account(e, five_hour=10.0 + 5 * i, seven_day=20.0)
    five.add_accounts(emails)
    five.cli("apply")
    theirs: dict[str, list[str] | None] = {}
    if other:
        for name, _ours, _target, candidates in COMMAND_ROWS:
            theirs[name] = next((argv for argv in candidates
                                 if subprocess.run([other, *argv], env=five.env, stdin=subprocess.DEVNULL,
                                                   capture_output=True, timeout=120).returncode == 0), None)
    base: list[float] = []
    floor: list[float] = []
    ours: dict[str, list[float]] = {name: [] for name, *_ in COMMAND_ROWS}
    them: dict[str, list[float]] = {name: [] for name, *_ in COMMAND_ROWS}
    for _ in range(max(5, runs // 2)):
        floor.append(timed([py, "-c", FLOOR], five.env))
        for name, argv, _target, _candidates in COMMAND_ROWS:
            base.append(timed([py, "-c", "pass"], five.env))
            ours[name].append(timed([cp, *argv], five.env))
            if theirs.get(name):
                them[name].append(timed([other, *theirs[name]], five.env))  # type: ignore[list-item]
    b = statistics.median(base)
    rows.append(("floor: pydantic, httpx, structlog, cryptography", statistics.median(floor) / b, None,
                 "imported as an engine run does, nothing else (not a command)"))
    for name, argv, target, _candidates in COMMAND_ROWS:
        mine = statistics.median(ours[name])
        rows.append((f"claude-pool {name}", mine / b, target, f"median {mine * 1000:.0f} ms"))
        if other:
            got = them[name]
            side.append((name, mine / b, statistics.median(got) / b if got else None,
                         " ".join(theirs[name] or [])))
    five.cleanup()

    fifty = Sandbox(fake, bindir, "rss50")
    many = [f"rss{i:02d}@bench.test" for i in range(50)]
    for i, e in enumerate(many):
        fake.add_account(e, five_hour=float(i % 90))
    fifty.add_accounts(many)
    rss = max(peak_rss_mib([cp, "plan"], fifty.env) for _ in range(3))
    rows.append(("peak RSS floor: those four libraries (MiB)", max(peak_rss_mib([py, "-c", FLOOR], fifty.env)
                                                                for _ in range(3)), None, "ru_maxrss"))
    rows.append(("peak RSS of plan, 50 accounts, 0 ms API (MiB)", rss, 40.0, "ru_maxrss"))
    if other and theirs.get("plan, 5 accounts, 0 ms API"):
        argv = theirs["plan, 5 accounts, 0 ms API"] or []
        side.append(("peak RSS of plan, 50 accounts (MiB)", rss,
                     max(peak_rss_mib([other, *argv], fifty.env) for _ in range(3)), " ".join(argv)))
    fifty.cleanup()
    return b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21, help="alternating runs per fast row (median taken)")
    ap.add_argument("--plan-runs", type=int, default=7, help="alternating runs of the plan rows")
    ap.add_argument("--only", choices=("hot", "commands"), help="only the hot paths, or only the other commands")
    ap.add_argument("--against", metavar="CMD",
                    help="also run the same pools through another installed command (the Go seed, claude-swap): "
                         "the same verbs where it has them, side by side, as ratios in one run")
    ap.add_argument("--bin", metavar="DIR", type=Path,
                    help="measure the claude-pool of this bin folder (default: a fresh regular install)")
    args = ap.parse_args()
    bindir = args.bin.resolve() if args.bin else build_venv()
    py = str(bindir / "python")
    cp = str(bindir / "claude-pool")
    other = None
    if args.against:
        other = shutil.which(args.against)
        if other is None:
            ap.error(f"--against: no command {args.against!r} on PATH")
    hook_payload = json.dumps({"session_id": "bench", "hook_event_name": "UserPromptSubmit", "prompt": "hi"}).encode()
    rows: list[tuple[str, float, float | None, str]] = []
    side: list[tuple[str, float, float | None, str]] = []   # --against: (row, ours, theirs, their argv)
    b = 0.0

    with FakeAnthropic() as fake:
        if args.only != "hot":
            b = command_rows(fake, bindir, py, cp, args.runs, rows, side, other)
        if args.only == "commands":
            return report(rows, b, side, args.against)
        # API-key mode pool with 2 accounts and 3 keys: status, helper, prompt-submit
        small = Sandbox(fake, bindir, "small")
        emails = [f"user{i}@bench.test" for i in range(2)]
        for e in emails:
            fake.add_account(e, five_hour=100, five_hour_resets_at=time.time() + 3600)
        small.add_accounts(emails)
        for i in range(3):
            small.cli("key", "add", "--id", f"k{i}", stdin=f"sk-ant-api03-bench{i:02d}" + "x" * 60)
        small.cli("apply")
        assert json.loads(small.cli("status").stdout)["mode"] == "apikey"
        helper_env = dict(small.env, CLAUDE_POOL_HELPER_NO_RECONCILE="1")

        base: list[float] = []
        status: list[float] = []
        helper: list[float] = []
        hook: list[float] = []
        for _ in range(args.runs):
            base.append(timed([py, "-c", "pass"], small.env))
            status.append(timed([cp, "status"], small.env))
            base.append(timed([py, "-c", "pass"], small.env))
            helper.append(timed([cp, "helper"], helper_env))
            base.append(timed([py, "-c", "pass"], small.env))
            hook.append(timed([cp, "hook", "prompt-submit"], small.env, hook_payload))
            wait_quiet(small.home)  # let the detached reconcile finish before the next timing
        # one key: `status` right after each `helper` call must stay on its fast path
        single = Sandbox(fake, bindir, "single")
        fake.add_account("single@bench.test", five_hour=100, five_hour_resets_at=time.time() + 3600)
        single.add_accounts(["single@bench.test"])
        single.cli("key", "add", "--id", "only", stdin="sk-ant-api03-benchonly" + "x" * 60)
        single.cli("apply")
        got = json.loads(single.cli("status").stdout)
        assert (got["mode"], got["name"]) == ("apikey", "only")
        single_helper_env = dict(single.env, CLAUDE_POOL_HELPER_NO_RECONCILE="1")
        after_helper: list[float] = []
        for _ in range(args.runs):
            timed([cp, "helper"], single_helper_env)
            base.append(timed([py, "-c", "pass"], single.env))
            after_helper.append(timed([cp, "status"], single.env))
        # hook session-start with nothing to change: account mode, the active account at 10%,
        # one live usage call to the loopback fake (no latency)
        start = Sandbox(fake, bindir, "start")
        fake.add_account("start@bench.test", five_hour=10)
        start.add_accounts(["start@bench.test"])
        start_payload = json.dumps({"session_id": "bench", "hook_event_name": "SessionStart", "source": "startup",
                                    "model": "claude-opus-4-8"}).encode()
        before = fake.account("start@bench.test").usage_calls
        session: list[float] = []
        for _ in range(args.runs):
            base.append(timed([py, "-c", "pass"], start.env))
            session.append(timed([cp, "hook", "session-start"], start.env, start_payload))
        assert fake.account("start@bench.test").usage_calls == before + args.runs, "session-start did not look live"
        b = statistics.median(base + ([b] if b else []))
        rows.append(("claude-pool hook session-start (nothing to change)", statistics.median(session) / b, 6.0,
                     f"one live usage call; median {statistics.median(session) * 1000:.0f} ms"))
        rows.append(("claude-pool status", statistics.median(status) / b, 2.0, "ratio to python -c pass"))
        rows.append(("claude-pool status right after a helper call, one key", statistics.median(after_helper) / b,
                     2.0, "status.json still names the pool file"))
        rows.append(("claude-pool hook prompt-submit", statistics.median(hook) / b, 2.5, "returns; detached work goes on"))
        rows.append(("claude-pool helper (API-key mode)", statistics.median(helper) / b, 5.0, "decrypt, rotate, re-encrypt under the lock"))

        # plan: 50 accounts vs 1, the usage API answering in 200 ms
        fake.usage_delay = 0.2
        one = Sandbox(fake, bindir, "one")
        fifty = Sandbox(fake, bindir, "fifty")
        fake.add_account("solo@bench.test", five_hour=10)
        one.add_accounts(["solo@bench.test"])
        many = [f"many{i:02d}@bench.test" for i in range(50)]
        for i, e in enumerate(many):
            fake.add_account(e, five_hour=float(i % 90))
        fake.usage_delay = 0.0
        fifty.add_accounts(many)
        fake.usage_delay = 0.2
        t1: list[float] = []
        t50: list[float] = []
        for _ in range(args.plan_runs):
            t1.append(timed([cp, "plan"], one.env))
            t50.append(timed([cp, "plan"], fifty.env))
        rows.append(("claude-pool plan, 50 accounts vs 1 (usage 200 ms)", statistics.median(t50) / statistics.median(t1),
                     1.3, f"medians {statistics.median(t50)*1000:.0f} ms vs {statistics.median(t1)*1000:.0f} ms"))
        for s in (small, single, one, fifty, start):
            s.cleanup()
    return report(rows, b, side, args.against)


def report(rows: list[tuple[str, float, float | None, str]], b: float, side: list[tuple[str, float, float | None, str]],
           against: str | None) -> int:
    print(f"\nclaude-pool ({sys.platform}, Python {sys.version.split()[0]}; "
          f"python -c pass = {b * 1000:.1f} ms median)")
    print(f"{'path':52} {'measured':>9} {'target':>8}  ok")
    failed = 0
    for name, value, target, note in rows:
        unit = "" if "MiB" in name else "x"
        if target is None:   # a reference row (the floor): measured, not judged
            print(f"{name:52} {value:8.2f}{unit or ' '} {'-':>8}   -    {note}")
            continue
        ok = value <= target
        failed += not ok
        print(f"{name:52} {value:8.2f}{unit or ' '} {'<= ' + format(target, 'g') + (unit or ''):>8}  "
              f"{'yes' if ok else 'NO'}   {note}")
    if against:
        print(f"\nside by side with {against} (same pool, same fake API, alternating runs; ratios to python -c pass)")
        them_name = os.path.basename(against)[:14]
        print(f"{'row':52} {'claude-pool':>11} {them_name:>14}  their command")
        for name, ours, theirs, argv in side:
            unit = "" if "MiB" in name else "x"
            them = "-" if theirs is None else f"{theirs:.2f}{unit}"
            print(f"{name:52} {ours:10.2f}{unit or ' '} {them:>14}  {argv or '(no such verb)'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
