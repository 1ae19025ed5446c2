"""One import path (issue 16): schema/, providers/ and reconciler/ are loaded only as
claude_pool.schema, claude_pool.providers and claude_pool.reconciler (the symlinks in claude_pool/,
or the wheel's package-dir mapping). Imported as plain `reconciler` (from the repository root),
each module would be a second copy with registries of its own (apply's handlers, the credential
stores' REGISTRY): each package's __init__ refuses that name in one clear line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("schema", "providers", "reconciler")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` from the repository root, the way a script or a REPL there would run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("module", ["reconciler.apply", "schema.pool", "providers.world", "reconciler",
                                    "providers.credstore"])
def test_a_bare_import_from_the_repository_root_fails_clearly(module: str) -> None:
    package = module.split(".")[0]
    proc = _python(f"import {module}")
    assert proc.returncode != 0, f"`import {module}` loaded a second copy of claude_pool.{package}"
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"import it as claude_pool.{package}" in last, proc.stderr


def test_the_claude_pool_names_import_from_the_repository_root() -> None:
    proc = _python("import claude_pool.reconciler.apply, claude_pool.schema.pool, claude_pool.providers.world, "
                   "claude_pool.providers.credstore as c; print(c.__name__)")
    assert (proc.returncode, proc.stdout.strip()) == (0, "claude_pool.providers.credstore"), proc.stderr


def bare_modules() -> list[str]:
    return sorted(name for name in sys.modules
                  if name in PACKAGES or name.startswith(tuple(p + "." for p in PACKAGES)))


def test_the_cli_in_process_loads_only_the_claude_pool_names(sandbox, fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_account("alice@example.com", five_hour=20)
    fake.add_account("bob@example.com", five_hour=100)
    sandbox.seed("alice@example.com", "bob@example.com", current="alice")
    for args in (("list",), ("plan",), ("list", "--json"), ("status",), ("switch", "bob"), ("reconcile",),
                 ("config", "show")):
        sandbox.ok(*args, subprocess=False)
    sandbox.ok("key", "add", "--id", "k1", input="sk-ant-api03-import-path-test-0123456789abcdef\n",
               subprocess=False)
    sandbox.ok("hook", "prompt-submit", input="{}", subprocess=False)
    assert "claude_pool.reconciler.apply" in sys.modules and "claude_pool.providers.credstore" in sys.modules
    assert bare_modules() == [], "a second copy of a claude_pool package was loaded under a bare name"
