"""The hot paths (`status`, `helper`, `hook prompt-submit`, `statusline`) must not import the
heavy stack. Each runs in a real subprocess of the installed package that reports, at exit, which
modules were loaded; the test fails if any heavy one is among them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "httpx", "structlog", "filelock", "tomli_w", "argparse", "asyncio", "pathlib",
         "subprocess", "concurrent", "ssl")
# The helper needs AES-GCM and HKDF; it and the statusline write files through pathlib.
ALLOWED = {"helper": ("cryptography", "pathlib"), "statusline": ("pathlib",)}

# Runs the claude-pool entry point, then prints the loaded top-level modules (to fd 3's file).
PROBE = r"""
import atexit, json, os, sys
out = os.environ["PROBE_OUT"]
def dump():
    with open(out, "w") as fh:
        json.dump(sorted({m.split(".")[0] for m in sys.modules}), fh)
atexit.register(dump)
leave = os._exit   # a full command leaves through os._exit (commands.leave): dump first
os._exit = lambda code: (dump(), leave(code))
sys.argv = ["claude-pool"] + sys.argv[1:]
from claude_pool.reconciler.cli import main
code = main()
dump()
os._exit(code)
"""


def baseline(env: dict[str, str]) -> set[str]:
    """What the interpreter loads by itself here (an editable install's finder loads pathlib)."""
    code = "import sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout)) - {"json"}


def loaded_modules(tmp_path: Path, env: dict[str, str], *args: str, stdin: str = "") -> tuple[list[str], int]:
    out = tmp_path / f"modules-{'-'.join(args)}.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=dict(env, PROBE_OUT=str(out)),
                          input=stdin, capture_output=True, text=True, timeout=30)
    return json.loads(out.read_text()), proc.returncode


@pytest.fixture()
def apikey_home(tmp_path: Path) -> dict[str, str]:
    """A pool in API-key mode, written through the full stack (so status.json exists)."""
    from claude_pool.providers.poolfile import PoolFile
    from claude_pool.schema.pool import ApiKey, Pool

    home = tmp_path / "home"
    pool = Pool(mode="apikey", current_key="k1",
                api_keys=[ApiKey(id="k1", key="sk-ant-api03-" + "a" * 40), ApiKey(id="k2", key="sk-ant-api03-" + "b" * 40)])
    PoolFile(home / ".config" / "claude-pool" / "pool.json").write(pool)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE", "ANTHROPIC", "XDG_"))}
    env.update(HOME=str(home), CLAUDE_POOL_HELPER_NO_RECONCILE="1", CLAUDE_POOL_WAKE="0",
               # the detached reconcile of prompt-submit must not reach anything real
               CLAUDE_POOL_API_BASE_URL="http://127.0.0.1:9", CLAUDE_POOL_OAUTH_TOKEN_URL="http://127.0.0.1:9/t")
    return env


@pytest.mark.parametrize("args,stdin", [
    (("status",), ""),
    (("helper",), ""),
    (("hook", "prompt-submit"), '{"hook_event_name": "UserPromptSubmit", "prompt": "hi"}'),
    (("statusline",), '{"rate_limits": {"five_hour": {"used_percentage": 5, "resets_at": 1900000000}}}'),
])
def test_hot_path_imports_nothing_heavy(tmp_path: Path, apikey_home: dict[str, str], args: tuple[str, ...],
                                        stdin: str) -> None:
    modules, code = loaded_modules(tmp_path, apikey_home, *args, stdin=stdin)
    assert code == 0
    allowed = set(ALLOWED.get(args[0], ())) | baseline(apikey_home)
    heavy = sorted(m for m in modules if (m in HEAVY or m == "cryptography") and m not in allowed)
    assert heavy == [], f"`claude-pool {' '.join(args)}` imported {heavy}"
    assert "claude_pool" in modules  # the probe really ran our code


def test_probe_catches_a_heavy_import(tmp_path: Path, apikey_home: dict[str, str]) -> None:
    """The same probe on a full command sees the heavy stack: the check above can fail."""
    modules, code = loaded_modules(tmp_path, apikey_home, "switch", "k2")
    assert code == 0
    assert {"pydantic", "argparse"} <= set(modules)


def test_session_start_with_nothing_to_change_imports_nothing_heavy(tmp_path: Path, sandbox, fake) -> None:
    """The live look at session start (account mode, the active account under the threshold)
    runs on the standard library and cryptography; the full engine is not loaded."""
    fake.add_account("alice@example.com", five_hour=10)
    fake.add_account("bob@example.com", five_hour=30)
    sandbox.seed("alice@example.com", "bob@example.com")
    calls = fake.account("alice@example.com").usage_calls
    payload = json.dumps({"hook_event_name": "SessionStart", "source": "startup", "model": "claude-opus-4-8"})
    modules, code = loaded_modules(tmp_path, sandbox.env, "hook", "session-start", stdin=payload)
    assert code == 0
    assert fake.account("alice@example.com").usage_calls == calls + 1   # it did look, live
    allowed = {"cryptography", "pathlib", "ssl"} | baseline(sandbox.env)
    heavy = sorted(m for m in modules if m in HEAVY and m not in allowed)
    assert heavy == [], f"`claude-pool hook session-start` imported {heavy}"
    # and when a change is needed, the full engine does load (the probe can tell)
    fake.set_usage("alice@example.com", five_hour=100)
    modules, code = loaded_modules(tmp_path, sandbox.env, "hook", "session-start", stdin=payload)
    assert code == 0 and "pydantic" in modules
    assert sandbox.pool()["current"] == "bob"
