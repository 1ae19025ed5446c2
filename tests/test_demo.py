"""The README's first command: `./dev demo` (`claude-pool demo`) shows plan -> apply -> fallback ->
recovery -> watch in a sandbox, on the installed command, touching nothing outside it."""

from __future__ import annotations

import os
import subprocess

import pytest

from claude_pool.reconciler.demo import DEMO_KEY
from conftest import _find_claude_pool


@pytest.mark.slow
def test_the_demo_runs_every_step_in_its_sandbox(tmp_path) -> None:
    home = tmp_path / "home"          # the demo must never touch the HOME it runs from
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "ANTHROPIC_", "XDG_"))}
    env.update(HOME=str(home), NO_COLOR="1")
    proc = subprocess.run([_find_claude_pool(), "demo"], env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out[-3000:]
    assert "Traceback" not in out + proc.stderr
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(steps) >= 10, steps
    # fallback to the key, then recovery to alice, each said in the demo's own words
    assert '"mode": "apikey", "name": "team-key"' in out
    assert "using API keys" in out and "leaving API keys" in out
    assert "usage API calls during that run: 0" in out
    assert "* alice" in out and "billed-key time today" in out, out[-2000:]   # the watch frame
    assert out.rstrip().endswith("your real ~/.claude was never touched.")
    assert list(home.iterdir()) == [], "the demo wrote into the HOME it was run from"
    assert DEMO_KEY not in out + proc.stderr and DEMO_KEY[:24] not in out, "the demo's API key was printed"
