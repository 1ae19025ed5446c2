"""An import budget per command (issue 19), the way tests/test_hotpaths.py keeps one for the hot
paths: each command runs through the real entry point in a subprocess, which reports at its end
the top-level modules it loaded (a module put in place unexecuted, reconciler/deferred.py, does not
count until something uses it) and whether any TLS context loaded a CA bundle.

And the fast exit (`commands.leave`): a full command that leaves through os._exit, without the
interpreter's teardown, has written every file whole and its audit line before it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs `claude-pool ARGS` through its entry point and writes {"modules": [...], "ca_loaded": [...],
# "os_exit": bool} to PROBE_OUT, however the command ends: returning (os_exit false) or leaving
# through os._exit itself (true).
PROBE = r"""
import importlib.util, json, os, sys

CA = []

class WatchSsl:
    # when ssl is imported, record every CA bundle a context loads (certifi's, the system's)
    def find_spec(self, name, path=None, target=None):
        if name != "ssl":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("ssl")
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            for meth in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
                real = getattr(module.SSLContext, meth)
                def wrapped(self, *a, _real=real, _meth=meth, **k):
                    CA.append(_meth)
                    return _real(self, *a, **k)
                setattr(module.SSLContext, meth, wrapped)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, WatchSsl())

def loaded():
    names = set()
    for name, module in list(sys.modules.items()):
        hook = getattr(module, "__dict__", {}).get("__getattr__")
        if type(hook).__name__ == "_OnFirstUse":   # deferred, never used
            continue
        names.add(name)
    return sorted(names)

def dump(os_exit):
    full = loaded()
    with open(os.environ["PROBE_OUT"], "w") as fh:
        json.dump({"modules": sorted({n.split(".")[0] for n in full}), "full": full, "ca_loaded": CA,
                   "os_exit": os_exit}, fh)

leave = os._exit
os._exit = lambda code: (dump(True), leave(code))
sys.argv = ["claude-pool"] + sys.argv[1:]
from claude_pool.reconciler.cli import main
code = main()
dump(False)
sys.stdout.flush()
leave(code)
"""

# Never loaded by any command: structlog's stdlib bridge brings asyncio (audit._DEFERRED), and the
# pool lock is the fcntl/msvcrt flock of providers/hotlock.py; nor run (full module names):
# pydantic's plugin scan's importlib.metadata (deferred.PYDANTIC_PLUGIN_SCAN).
NEVER = {"asyncio", "filelock"}
NEVER_RUN = {"importlib.metadata"}
ENGINE = {"pydantic", "pydantic_core", "httpx", "httpcore", "h11", "structlog"}
# command -> what it may not load, beyond NEVER. `version`, `--help` and `list --json` are the light
# paths of reconciler/cli.py (issue 19's first part).
BUDGET = {
    ("version",): ENGINE | {"argparse", "cryptography", "ssl", "certifi"},
    ("--help",): ENGINE | {"cryptography", "ssl", "certifi"},
    ("list", "--json"): ENGINE | {"argparse", "ssl", "certifi"},
    # no network in these runs: httpx is imported only when a call is made
    ("switch", "bob"): {"httpx", "httpcore", "h11", "ssl", "certifi"},
    # the full engine polls the http:// fake: httpx, but no CA bundle (checked below)
    ("plan",): set(),
}


def probe(tmp_path: Path, env: dict[str, str], *args: str) -> dict:
    out = tmp_path / f"probe-{'-'.join(a.strip('-') for a in args)}.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=dict(env, PROBE_OUT=str(out)),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"claude-pool {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())


@pytest.fixture()
def steady(sandbox, fake):  # type: ignore[no-untyped-def]
    """Two accounts, alice active, nothing to change; status.json and the pool as a run left them."""
    fake.add_account("alice@example.com", five_hour=10, seven_day=20)
    fake.add_account("bob@example.com", five_hour=30, seven_day=20)
    sandbox.seed("alice@example.com", "bob@example.com")
    sandbox.ok("apply", subprocess=True)
    return sandbox


@pytest.mark.parametrize("args", list(BUDGET), ids=[" ".join(a) for a in BUDGET])
def test_import_budget(tmp_path: Path, steady, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    got = probe(tmp_path, steady.env, *args)
    modules = set(got["modules"])
    assert "claude_pool" in modules   # the probe really ran our code
    over = sorted(modules & (NEVER | BUDGET[args]) | set(got["full"]) & NEVER_RUN)
    assert over == [], f"`claude-pool {' '.join(args)}` imported {over}"
    assert got["ca_loaded"] == [], f"`claude-pool {' '.join(args)}` loaded a CA bundle for http:// only"


def test_plan_does_use_the_engine(tmp_path: Path, steady, fake) -> None:  # type: ignore[no-untyped-def]
    """The probe sees what the budget forbids elsewhere (so the rows above can fail): `plan` loads
    pydantic, httpx and structlog, and does poll the fake."""
    before = fake.account("bob@example.com").usage_calls
    got = probe(tmp_path, steady.env, "plan")
    assert {"pydantic", "httpx", "structlog"} <= set(got["modules"])
    assert fake.account("bob@example.com").usage_calls == before + 1


def test_https_endpoint_gets_a_real_tls_context() -> None:
    """The CA bundle is skipped only when no endpoint is https: an https endpoint gets httpx's
    verifying context, with CA certificates loaded."""
    from claude_pool.providers.anthropic import AnthropicApi, ApiUrls

    for urls, has_ca in ((ApiUrls("http://127.0.0.1:9", "http://127.0.0.1:9/t"), False),
                         (ApiUrls("http://127.0.0.1:9", "https://example.invalid/t"), True),
                         (ApiUrls("https://example.invalid", "https://example.invalid/t"), True)):
        api = AnthropicApi(urls)
        try:
            ctx = api.client._transport._pool._ssl_context   # httpx's transport, httpcore's pool
            assert ctx.verify_mode.name == "CERT_REQUIRED" and ctx.check_hostname
            assert (ctx.cert_store_stats()["x509_ca"] > 0) is has_ca, urls
        finally:
            api.close()


def test_deferred_plugin_scan_works_when_used() -> None:
    """pydantic imported after the engine's deferral (commands.engine_environment) binds the
    stand-in `entry_points`; with plugins enabled (the user's PYDANTIC_DISABLE_PLUGINS unset) the scan
    really runs through it, and importlib.metadata is whole for anyone who asks it something."""
    code = ("import os, sys\n"
            "from claude_pool.reconciler import commands, deferred\n"
            "os.environ['PYDANTIC_DISABLE_PLUGINS'] = 'none-of-these'\n"
            "commands.engine_environment()\n"
            "assert deferred.is_deferred(sys.modules['importlib.metadata'])\n"
            "from pydantic import BaseModel\n"
            "class M(BaseModel):\n"
            "    a: int\n"
            "assert M(a=1).a == 1\n"
            "assert not deferred.is_deferred(sys.modules['importlib.metadata'])   # the scan ran it\n"
            "import importlib.metadata\n"
            "assert importlib.metadata.version('pydantic')\n"
            "assert importlib.metadata.entry_points.__module__ == 'importlib.metadata'\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_structlog_bridge_loads_when_used() -> None:
    """A deferred module (audit._DEFERRED) is whole at its first use, in a fresh process."""
    code = ("import sys\n"
            "from claude_pool.reconciler import audit\n"
            "audit._structlog()\n"
            "assert 'asyncio.base_events' not in sys.modules\n"
            "import structlog, asyncio\n"
            "assert structlog.stdlib.BoundLogger.__name__ == 'BoundLogger'\n"
            "async def f():\n"
            "    return 42\n"
            "assert asyncio.run(f()) == 42\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---- the fast exit ----------------------------------------------------------------------------

KEY = "sk-ant-api03-FASTEXIT-" + "k" * 40


def buffered(env: dict[str, str]) -> dict[str, str]:
    """The environment with stdout buffered as a pipe normally is (what must be flushed is)."""
    return {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}


def test_fast_exit_leaves_every_file_whole(tmp_path: Path, steady) -> None:  # type: ignore[no-untyped-def]
    """`key add` then `switch`, each through the entry point in a process of its own: each left
    through os._exit (commands.leave), and what it wrote is all there when it ended:
    its stdout, the pool (the key, the switch), status.json, settings.json and each audit line."""
    out = tmp_path / "probe.json"
    env = dict(buffered(steady.env), PROBE_OUT=str(out))
    audit_before = len(steady.audit())
    add = subprocess.run([sys.executable, "-c", PROBE, "key", "add", "--id", "k1"], input=KEY, env=env,
                         capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    assert json.loads(out.read_text())["os_exit"] is True   # it did leave through os._exit
    assert add.stdout.startswith("Added API key k1 (") and add.stdout.endswith(".\n")
    assert KEY not in add.stdout + add.stderr
    assert [k["id"] for k in steady.pool()["api_keys"]] == ["k1"]

    switch = subprocess.run([sys.executable, "-c", PROBE, "switch", "k1"], env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert switch.returncode == 0, switch.stderr
    assert json.loads(out.read_text())["os_exit"] is True
    assert switch.stdout == "Claude Code now uses API key k1.\n"
    pool = steady.pool()
    assert (pool["mode"], pool["current_key"]) == ("apikey", "k1")
    assert json.loads(steady.status_path.read_text())["name"] == "k1"
    assert "helper" in json.loads(steady.settings_path.read_text())["apiKeyHelper"]
    text = steady.audit_path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    events = [json.loads(line) for line in text.splitlines()[audit_before:]]   # every line whole JSON
    runs = [e for e in events if e.get("event") == "run"]
    assert [e["trigger"] for e in runs] == ["key add", "switch"]
    assert KEY not in text


def test_fast_exit_of_the_installed_command(steady) -> None:  # type: ignore[no-untyped-def]
    """The installed console script itself: a plan of several kilobytes reaches a pipe whole, and
    the run's audit line is there."""
    audit_before = len(steady.audit())
    proc = subprocess.run([steady.exe, "plan", "--json"], env=buffered(steady.env), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert "actions" in plan
    events = steady.audit()[audit_before:]
    assert [e["trigger"] for e in events if e.get("event") == "run"] == ["plan"]


def test_no_fast_exit_inside_another_program(tmp_path: Path, steady) -> None:  # type: ignore[no-untyped-def]
    """A command run inside another program (its stdout redirected, as a hook does) returns to it."""
    code = ("import contextlib, io, sys\n"
            "from claude_pool.reconciler import commands\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = commands.main(['switch', 'bob'])\n"
            "print('returned', rc, 'Claude Code now uses account bob.' in buf.getvalue())\n")
    proc = subprocess.run([sys.executable, "-c", code], env=steady.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "returned 0 True", proc.stderr
    assert os.path.exists(steady.pool_path)


def test_fast_exit_of_a_hook_that_ran_the_engine(tmp_path: Path, steady, fake) -> None:  # type: ignore[no-untyped-def]
    """A hook that ran the full engine in its own process (the stop-failure hook's `reconcile
    --live`) leaves as the commands do, once its stdout is back in place: nothing on stdout, exit 0,
    the move complete (pool, Claude Code's login) and the run's audit line there."""
    fake.account("alice@example.com").five_hour = 100.0
    out = tmp_path / "probe.json"
    audit_before = len(steady.audit())
    payload = json.dumps({"session_id": "s1", "hook_event_name": "StopFailure", "error": "authentication_failed"})
    proc = subprocess.run([sys.executable, "-c", PROBE, "hook", "stop-failure"], input=payload,
                          env=dict(buffered(steady.env), PROBE_OUT=str(out)), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text())["os_exit"] is True
    assert steady.pool()["current"] == "bob"
    assert steady.creds()["claudeAiOauth"]["accessToken"] == fake.account("bob@example.com").access_token
    runs = [e for e in steady.audit()[audit_before:] if e.get("event") == "run"]
    assert [e["trigger"] for e in runs] == ["hook:stop-failure"]
