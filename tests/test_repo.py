"""The repository explains itself: the design lives in docs/, the import layout needs no finder."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an sdist): walk the tree
        return [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT)
                if ".venv" not in d and ".git" not in d and ".cache" not in d for f in fs]
    return out.stdout.splitlines()


def test_no_reference_to_a_spec_outside_the_repository() -> None:
    offenders = []
    for rel in _tracked():
        path = os.path.join(ROOT, rel)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        if "SPEC \u00a7" in text or "SPEC" + ".md" in text:
            offenders.append(rel)
    assert offenders == []
    assert os.path.isfile(os.path.join(ROOT, "docs", "ARCHITECTURE.md"))


def test_packages_import_from_the_repository_root_without_an_installed_finder() -> None:
    # -S: no site-packages, so neither the editable finder nor an installed copy can help
    code = ("import sys; sys.path.insert(0, '.'); import claude_pool.providers.paths; "
            "import claude_pool.reconciler.cli as c; print(c.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.path.realpath(out.stdout.strip()) == os.path.join(ROOT, "reconciler", "cli.py")


def test_the_example_config_is_the_default_config() -> None:
    from claude_pool.schema.config import DEFAULT_CONFIG_TOML

    with open(os.path.join(ROOT, "examples", "config.toml"), encoding="utf-8") as fh:
        assert fh.read() == DEFAULT_CONFIG_TOML  # `claude-pool config init` writes the same file
