"""A server that trickles (issue 17): it answers a byte at a time, so httpx's per-read timeout
never fires. Every call has a total deadline (providers/anthropic.py `LazyApi._bounded`, the
light path's `bounded_usage_call`), so each command returns, the pool lock is free again, and
the session-start hook keeps its 3 s."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from test_ratelimits import ALICE, BOB

pytestmark = pytest.mark.slow


class Trickle:
    """127.0.0.1: reads a request, sends a status line and headers, then one byte every 0.3 s."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(2)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
            for _ in range(300):                     # at most 90 s, then it stops by itself
                if self.stop.wait(0.3):
                    break
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def trickle():
    server = Trickle()
    try:
        yield server
    finally:
        server.close()


def test_a_trickling_server_holds_nothing_past_the_deadlines(sandbox, fake, trickle) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    past = int((time.time() - 3600) * 1000)
    accounts = [sandbox.account_entry(ALICE), sandbox.account_entry(BOB, expires_at_ms=past)]
    sandbox.write_pool({"mode": "account", "current": "alice", "accounts": accounts, "api_keys": []})
    sandbox.write_creds(accounts[0]["blob"])
    env = {"CLAUDE_POOL_API_BASE_URL": trickle.url, "CLAUDE_POOL_OAUTH_TOKEN_URL": trickle.url + "/v1/oauth/token"}
    sandbox.write_config("[http]\ntimeout_seconds = 1.0\n")   # the default 5 s, shortened to keep the suite fast
    took = {}
    for args in (("list",), ("reconcile", "--live")):   # plan takes the very path reconcile takes
        start = time.monotonic()
        proc = sandbox.run(*args, env=env, subprocess=True, timeout=40)
        took[args[0] + (" --live" if len(args) > 1 else "")] = time.monotonic() - start
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 1), proc.stderr
    start = time.monotonic()
    hook = sandbox.run("hook", "session-start", input=json.dumps({"session_id": "s", "source": "startup"}),
                       env=env, subprocess=True, timeout=40)
    took["session-start"] = time.monotonic() - start
    assert hook.returncode in (0, 1) and hook.stdout == "", hook.stderr
    assert trickle.accepted >= 2, "the commands never reached the trickling server"
    # the bounds: two calls' budgets for a command (a refresh, then a usage read; with the default
    # 5 s that is the 12 s), 3 s of the hook's own time (margins: a loaded machine starts
    # Python slowly; without the deadline each would take the server's 90 s)
    assert max(took[k] for k in took if k != "session-start") < 10, took
    assert took["session-start"] < 6, took
    # the pool lock is free: a run against the good server goes through at once
    sandbox.ok("reconcile", "--live")
    assert sandbox.pool()["current"] == "alice"
    print("took", {k: round(v, 1) for k, v in took.items()})


def test_a_refresh_answered_after_its_deadline_is_not_lost(sandbox, fake) -> None:
    """The server rotated, then answered late: the run has given up (its deadline), but the
    answer, when it comes while the process lives, is kept beside the pool and the next run
    takes it: no invalid_grant."""
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    past = int((time.time() - 3600) * 1000)
    accounts = [sandbox.account_entry(ALICE), sandbox.account_entry(BOB, expires_at_ms=past)]
    sandbox.write_pool({"mode": "account", "current": "alice", "accounts": accounts, "api_keys": []})
    sandbox.write_creds(accounts[0]["blob"])
    sandbox.write_config("[http]\ntimeout_seconds = 1.0\n")
    fake.token_delay = 1.5          # answers 0.5 s after the 1 s deadline; the run's usage reads outlast it
    proc = sandbox.run("list", subprocess=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert fake.account(BOB).refreshes == 1
    deadline = time.monotonic() + 5

    def rescued() -> bool:
        return any(p.name.startswith(".claude-pool-pending-") and p.read_bytes()[:4] == b"CPL1"
                   for p in sandbox.pool_dir.iterdir())

    while time.monotonic() < deadline and not rescued():
        time.sleep(0.05)              # the late answer lands in this (test) process's thread
    assert rescued(), "the late answer was not kept beside the pool"
    fake.token_delay = 0.0
    sandbox.ok("reconcile", "--live")
    assert fake.account(BOB).invalid_grants == 0, "the rotated login was lost"
    assert sandbox.pool_oauth("bob")["refreshToken"] == fake.account(BOB).refresh_token
