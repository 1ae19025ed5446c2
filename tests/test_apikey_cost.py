"""API-key mode costs more than money: with an apiKeyHelper set, Claude Code turns off Remote
Control, /schedule and claude.ai connectors (its changelog, 2.1.139). The statusline on keys and
the move to keys say so (issue 18, item 7)."""

from __future__ import annotations

import time

from claude_pool.reconciler.statusline import badge
from claude_pool.schema.plan import API_KEY_MODE_COST, HelperValue, WriteSettings
from test_ratelimits import ALICE


def test_the_badge_on_keys_says_what_is_off() -> None:
    on_keys = badge({"mode": "apikey", "name": "team", "resets_at_epoch": time.time() + 600}, time.time(), False)
    assert "Remote Control" in on_keys and "/schedule" in on_keys, on_keys
    assert "Remote Control" not in badge({"mode": "account", "name": "alice"}, time.time(), False)


def test_the_move_to_keys_says_what_is_off(sandbox, fake) -> None:
    assert "Remote Control" in WriteSettings(change="create", target="settings.json", reason="r",
                                             value=HelperValue.OURS, before="none", after="ours").done()
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    sandbox.seed(ALICE, keys={"k1": "sk-ant-api03-cost-test-key-0123456789abcdef"})
    proc = sandbox.ok("reconcile", "--live")
    assert API_KEY_MODE_COST in proc.stderr, proc.stderr
    assert sandbox.pool()["mode"] == "apikey"
