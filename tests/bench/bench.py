"""Hot-path benchmark (issue "Hot paths"). Run: ./dev bench   (not part of the test suite)

Builds a regular (non-editable) install in .cache/bench-venv, the way pipx/uv install it, a
sandboxed pool against the local fake Anthropic API, then measures every row as a ratio to
`python -c pass` with the same interpreter, in one run, alternating, and prints medians.
Exits 1 when a target is missed.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21, help="alternating runs per fast row (median taken)")
    ap.add_argument("--plan-runs", type=int, default=7, help="alternating runs of the plan rows")
    args = ap.parse_args()
    bindir = build_venv()
    py = str(bindir / "python")
    cp = str(bindir / "claude-pool")
    hook_payload = json.dumps({"session_id": "bench", "hook_event_name": "UserPromptSubmit", "prompt": "hi"}).encode()
    rows: list[tuple[str, float, float, str]] = []

    with FakeAnthropic() as fake:
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
        b = statistics.median(base)
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
        rss = max(peak_rss_mib([cp, "plan"], fifty.env) for _ in range(3))
        rows.append(("peak RSS of plan, 50 accounts (MiB)", rss, 80.0, "ru_maxrss"))
        for s in (small, single, one, fifty, start):
            s.cleanup()

    print(f"\nclaude-pool hot paths ({sys.platform}, Python {sys.version.split()[0]}; "
          f"python -c pass = {b * 1000:.1f} ms median)")
    print(f"{'path':52} {'measured':>9} {'target':>8}  ok")
    failed = 0
    for name, value, target, note in rows:
        ok = value <= target
        failed += not ok
        unit = "" if "MiB" in name else "x"
        print(f"{name:52} {value:8.2f}{unit or ' '} {'<= ' + format(target, 'g') + (unit or ''):>8}  "
              f"{'yes' if ok else 'NO'}   {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
