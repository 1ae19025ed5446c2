"""`claude-pool demo`: the whole job in a sandbox, with no real account.

A temporary HOME, the local fake Anthropic API, two subscription accounts and one API key. It runs
the real `claude-pool` commands and narrates: plan, apply, an exhaustion, the fallback to the key,
and the recovery. Nothing outside the temporary directory is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claude_pool.demoapi import FakeAnthropic

DEMO_KEY = "sk-ant-api03-demo-" + "0" * 24 + "DEMO"


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "claude-pool"
    if script.exists():
        return [str(script)]
    found = shutil.which("claude-pool")
    return [found] if found else [sys.executable, "-m", "claude_pool"]


class Demo:
    def __init__(self, home: Path, fake: FakeAnthropic) -> None:
        self.home = home
        self.fake = fake
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLAUDE_", "ANTHROPIC_", "XDG_"))}
        self.env.update(HOME=str(home), CLAUDE_POOL_API_BASE_URL=fake.base_url,
                        CLAUDE_POOL_OAUTH_TOKEN_URL=fake.token_url, NO_COLOR="1",
                        # no recovery sleeper may outlive the sandbox
                        CLAUDE_POOL_WAKE="0")
        self.claude = home / ".claude"

    def say(self, text: str) -> None:
        print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)

    def run(self, *args: str, stdin: str | None = None) -> int:
        shown = " ".join(args)
        print(f"$ claude-pool {shown}", flush=True)
        proc = subprocess.run(_cli() + list(args), env=self.env, input=stdin, text=True, capture_output=True,
                              timeout=60)
        for line in (proc.stdout + proc.stderr).splitlines():
            print(f"  {line}")
        return proc.returncode

    def login(self, email: str) -> None:
        """What `/login` in Claude Code leaves behind: its credential file."""
        self.claude.mkdir(parents=True, exist_ok=True)
        path = self.claude / ".credentials.json"
        path.write_text(json.dumps(self.fake.credential_blob(email)))
        path.chmod(0o600)

    def show_settings(self) -> None:
        path = self.claude / "settings.json"
        text = path.read_text() if path.exists() else "(no settings.json)"
        print("  settings.json: " + " ".join(text.split()))


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="claude-pool-demo-") as tmp, FakeAnthropic() as fake:
        home = Path(tmp)
        d = Demo(home, fake)
        print(f"claude-pool demo: a sandboxed HOME at {home}, a fake Anthropic API at {fake.base_url}")
        fake.add_account("alice@example.com", five_hour=35, seven_day=20)
        fake.add_account("bob@example.com", five_hour=55, seven_day=64)
        d.claude.mkdir(parents=True)
        (d.claude / "settings.json").write_text(json.dumps({"model": "opus", "apiKeyHelper": "~/bin/my-own-helper"},
                                                           indent=2))

        d.say("1. Import two subscription accounts (each after a /login in Claude Code)")
        d.login("alice@example.com")
        d.run("import")
        d.login("bob@example.com")
        d.run("import")
        d.say("2. Register an API key: the billed last resort (read from stdin, shown masked)")
        d.run("key", "add", "--id", "team-key", stdin=DEMO_KEY + "\n")
        d.run("list")

        d.say("3. plan: what reconcile would change, and why. bob is active, but his 5-hour window is past half\n"
              "   and alice has far more of her week left to use before it resets (use it or lose it)")
        d.run("plan")
        d.say("4. apply: Claude Code's login becomes alice's; plan again is empty")
        d.run("apply")
        d.run("plan", "--detailed-exitcode")

        d.say("5. alice hits her 5-hour limit: the next run moves Claude Code to bob")
        soon = time.time() + 8  # long enough for steps 5-7 on a busy machine, short enough to wait for
        fake.set_usage("alice@example.com", five_hour=100, five_hour_resets_at=soon)
        d.run("apply")

        d.say("6. bob is exhausted too: fall back to the API key (your own apiKeyHelper is saved)")
        fake.set_usage("bob@example.com", seven_day=100, seven_day_resets_at=soon + 3600)
        d.run("plan")
        d.run("apply")
        d.show_settings()
        d.run("status")

        d.say("7. While every cached reading proves exhaustion, runs skip the network entirely")
        before = fake.count("/api/oauth/usage")
        d.run("reconcile")
        print(f"  usage API calls during that run: {fake.count('/api/oauth/usage') - before}")

        d.say("8. alice's window resets: the next run leaves API keys (billed time) at once")
        time.sleep(max(0.0, soon - time.time()) + 0.5)
        fake.set_usage("alice@example.com", five_hour=0, five_hour_resets_at=time.time() + 5 * 3600)
        d.run("reconcile")
        d.run("status")
        d.show_settings()
        d.run("plan")

        d.say("9. Day to day: the pool at a glance (`watch` redraws it live; --once prints one frame)")
        d.run("watch", "--once")

        d.say("Every change above is in the audit log (JSON lines, no secrets)")
        log = home / ".local" / "state" / "claude-pool" / "audit.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        print(f"  {log}: {len(lines)} events; the last switch:")
        for line in lines:
            event = json.loads(line)
            if event.get("action") == "write_credential":
                last = event
        if lines:
            shown = {k: last.get(k) for k in ("time", "trigger", "action", "target", "reason", "before", "after",
                                              "result")}
            print("  " + json.dumps(shown))
        print("\nDone. The sandbox is removed; your real ~/.claude was never touched.")
    return 0
