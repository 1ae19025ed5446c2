"""No refresh we cannot keep (issue 17). The token endpoint invalidates the old refresh token the
moment it answers, so a rotated login that cannot be saved is a lost login. Before a refresh the
pool's folder must take the write (providers/poolfile.py `Reservation`); if it does not, nothing
is refreshed and the run fails in one line naming the folder. If the last rename fails anyway, the
reservation keeps the rotated login and the next run reads it back first."""

from __future__ import annotations

import json
import os
import time

import pytest

from test_ratelimits import ALICE, BOB
from test_world import mem  # noqa: F401 (fixture)


def _expired_pool(sandbox, fake) -> None:
    past = int((time.time() - 3600) * 1000)
    accounts = [sandbox.account_entry(e, expires_at_ms=past) for e in (ALICE, BOB)]
    sandbox.write_pool({"mode": "account", "current": "alice", "accounts": accounts, "api_keys": []})
    sandbox.write_creds(accounts[0]["blob"])


@pytest.mark.slow
def test_an_unwritable_pool_folder_refreshes_nothing_and_loses_nothing(nonroot_sandbox, fake) -> None:
    """As an ordinary user (conftest `nonroot_sandbox`: `nobody` under setpriv when run as root)."""
    sandbox = nonroot_sandbox
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    _expired_pool(sandbox, fake)
    # the lock file exists, as on any machine in use (`list --json` no longer takes the lock: light path)
    lock = sandbox.pool_dir / "pool.json.lock"
    lock.touch(mode=0o600)
    owner = sandbox.pool_dir.stat()
    os.chown(lock, owner.st_uid, owner.st_gid)
    os.chmod(sandbox.pool_dir, 0o500)
    try:
        for args in (("reconcile", "--live"), ("list",)):   # plan takes reconcile's very path
            proc = sandbox.run(*args)
            assert proc.returncode == 1, (args, proc.stderr)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert any(str(sandbox.pool_dir) in line and "no token was refreshed" in line for line in lines), proc.stderr
            assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        hook = sandbox.run("hook", "session-start", input=json.dumps({"session_id": "s", "source": "startup"}))
        assert hook.returncode in (0, 1) and hook.stdout == "", hook.stderr
        assert sum(fake.account(e).refreshes for e in (ALICE, BOB)) == 0, "a token was refreshed that could not be kept"
    finally:
        os.chmod(sandbox.pool_dir, 0o700)
    sandbox.ok("reconcile", "--live")
    sandbox.ok("list")
    assert sum(fake.account(e).invalid_grants for e in (ALICE, BOB)) == 0
    assert not [e for e in sandbox.audit() if e.get("event") == "needs_relogin"]
    assert all(not a.get("needs_relogin") for a in sandbox.pool()["accounts"])


def test_a_rename_that_fails_after_the_refresh_keeps_the_login_for_the_next_run(sandbox, fake, monkeypatch) -> None:
    fake.add_account(ALICE, five_hour=10)
    fake.add_account(BOB, five_hour=20)
    _expired_pool(sandbox, fake)
    real_replace = os.replace

    def failing_replace(src, dst, *a, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(dst) == str(sandbox.pool_path) and ".claude-pool-pending-" in os.fspath(src):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", failing_replace)
    proc = sandbox.run("reconcile", "--live", subprocess=False)
    assert proc.returncode == 1 and "read back by the next run" in proc.stderr, proc.stderr
    assert sum(fake.account(e).refreshes for e in (ALICE, BOB)) >= 1
    monkeypatch.setattr(os, "replace", real_replace)
    # alice's login, held by Claude Code, went to its store too
    assert sandbox.creds()["claudeAiOauth"]["accessToken"] == fake.account(ALICE).access_token
    sandbox.ok("reconcile", "--live")
    assert sum(fake.account(e).invalid_grants for e in (ALICE, BOB)) == 0, "a rotated login was lost"
    for email, aid in ((ALICE, "alice"), (BOB, "bob")):
        assert sandbox.pool_oauth(aid)["refreshToken"] == fake.account(email).refresh_token
    assert not [p for p in os.listdir(sandbox.pool_dir) if p.startswith(".claude-pool-pending-")]


def test_the_memory_world_does_not_refresh_when_the_pool_cannot_be_written(mem) -> None:
    from claude_pool.reconciler.errors import UserError
    from claude_pool.reconciler.intents import Reconcile
    from claude_pool.providers.poolfile import PoolUnwritable

    acct = mem.api.add(ALICE, five_hour=10, expired=True)
    mem.seed({"alice": acct}, current="alice")
    mem.pool.unwritable = "read-only file system"
    with pytest.raises((PoolUnwritable, UserError), match="no token was refreshed|read-only"):
        mem.run(Reconcile(live=True))
    assert not [e for e in mem.journal.kinds() if e == "api.refresh"]


@pytest.mark.slow
def test_the_helper_serves_a_key_when_the_pool_cannot_be_written(nonroot_sandbox, fake) -> None:
    """Rotation is best effort: Claude Code gets its key, exit 0, and the audit log says why."""
    sandbox = nonroot_sandbox
    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    keys = {"k1": "sk-ant-api03-helper-fault-k1-0123456789abcdef", "k2": "sk-ant-api03-helper-fault-k2-0123456789ab"}
    sandbox.seed(ALICE, mode="apikey", keys=keys, current_key="k1")
    env = {"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"}
    first = sandbox.run("helper", env=env)                    # the lock file exists from now on
    assert first.returncode == 0 and first.stdout.strip() in keys.values(), first.stderr
    for lock in (True, False):                                # the lock file there, or not creatable
        if not lock:
            (sandbox.pool_dir / "pool.json.lock").unlink()
        os.chmod(sandbox.pool_dir, 0o500)
        try:
            proc = sandbox.run("helper", env=env)
        finally:
            os.chmod(sandbox.pool_dir, 0o700)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() in keys.values() and proc.stdout.count("\n") == 1
        assert "could not be saved" in proc.stderr or "could not be taken" in proc.stderr, proc.stderr
        assert not any(k in proc.stderr for k in keys.values())
    events = [e for e in sandbox.audit() if e.get("event") == "helper"]
    assert events and events[-1]["result"] == "failed", events


def test_every_reader_takes_a_rescued_refresh_first_and_the_next_save_puts_it_in_place(sandbox, fake) -> None:
    """A rescue (a reservation whose rename failed) is newer than the pool: the helper, a light
    writer, reads it (not the older pool) and its save puts the rotated login in place."""
    from claude_pool.providers import crypto

    fake.add_account(ALICE, five_hour=100, five_hour_resets_at=time.time() + 3600)
    keys = {"k1": "sk-ant-api03-rescue-k1-0123456789abcdef", "k2": "sk-ant-api03-rescue-k2-0123456789abcdef"}
    pool = sandbox.seed(ALICE, mode="apikey", keys=keys, current_key="k1")
    rotated = dict(pool, accounts=[dict(pool["accounts"][0], blob=json.dumps({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-rescued-access-0123456789", "refreshToken": "sk-ant-ort01-rescued-refresh-0123456789",
        "expiresAt": int((time.time() + 3600) * 1000), "scopes": ["user:inference"]}}))])
    rescue = sandbox.pool_dir / ".claude-pool-pending-1-abcd1234-pool.json"
    rescue.write_bytes(crypto.encrypt(json.dumps(rotated).encode(), sandbox.key))
    os.utime(rescue, (time.time() + 5, time.time() + 5))
    served = sandbox.ok("helper", env={"CLAUDE_POOL_HELPER_NO_RECONCILE": "1"}).stdout.strip()
    assert served in keys.values()
    assert sandbox.pool_oauth("alice")["refreshToken"] == "sk-ant-ort01-rescued-refresh-0123456789"
    assert not rescue.exists(), "the save that put it in place removes the rescue"


def test_a_reservation_being_made_survives_another_threads_save(tmp_path, monkeypatch) -> None:
    """Two refreshes of one run, one per thread: the first one's save removes the pending files
    it does not know to keep, while the second's reservation is still being filled. Found by the
    random-kill test (a run that was not killed failed with ENOENT on its own reservation)."""
    from claude_pool.providers import crypto, poolcodec
    from claude_pool.providers.poolfile import PoolFile
    from claude_pool.schema.pool import Pool

    pool_file = PoolFile(tmp_path / "pool.json", key=crypto.derive_key("m", "u"))
    pool_file.write(Pool())
    real_write_all = poolcodec.write_all
    with pool_file.reserve() as first:
        def fill_then_save(fd, data):  # the second reservation is half made when the first commits
            real_write_all(fd, data)
            if fd != first.fd:
                monkeypatch.setattr(poolcodec, "write_all", real_write_all)
                pool_file.write(Pool(current="x"), into=first)

        monkeypatch.setattr(poolcodec, "write_all", fill_then_save)
        with pool_file.reserve() as second:
            assert first.fd is None, "the first reservation was committed meanwhile"
            assert second.path.exists(), "the first save removed the second reservation"
            pool_file.write(Pool(current="y"), into=second)
    assert pool_file.observe().current == "y"
