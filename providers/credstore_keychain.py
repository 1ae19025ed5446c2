"""Claude Code's credential store on macOS: a Keychain generic password, through `security`.

Service `Claude Code-credentials` (with `-<8 hex>` when CLAUDE_CONFIG_DIR is set), account = the
login name. Reading uses `find-generic-password -w` (exit 44: no item). Writing never puts the
secret in a process's argv: the `add-generic-password -U ... -X <hex>` command is fed to
`security -i` on stdin, and the item is read back to prove the write happened.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import unicodedata
from pathlib import Path

from . import claude_lock, paths
from .base import ProviderError
from .crypto import username

SERVICE = "Claude Code-credentials"
NOT_FOUND = 44
TIMEOUT = 10


def service_name(config_dir: str | None = None) -> str:
    """The service name Claude Code uses: suffixed by the CLAUDE_CONFIG_DIR string as given."""
    value = os.environ.get("CLAUDE_CONFIG_DIR") if config_dir is None else config_dir
    if not value:
        return SERVICE
    digest = hashlib.sha256(unicodedata.normalize("NFC", value).encode("utf-8")).hexdigest()
    return f"{SERVICE}-{digest[:8]}"


def _quote(word: str) -> str:
    """Quote one word for `security -i` (its line parser honours double quotes and backslashes)."""
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


class KeychainCredentialStore:
    name = "credentials"

    def __init__(self, service: str | None = None, account: str | None = None, security: str = "security") -> None:
        self.service = service or service_name()
        self.account = account or username()
        self.security = security

    @property
    def lock_path(self) -> Path:
        return Path(paths.claude_dir()) / ".oauth_refresh.lock"

    def location(self) -> str:
        return f"macOS Keychain item {self.service!r} (account {self.account!r})"

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.security, *argv], input=stdin, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except FileNotFoundError:
            raise ProviderError("the `security` command was not found (needed for the macOS Keychain)") from None
        except subprocess.TimeoutExpired:
            raise ProviderError(f"`security` did not answer within {TIMEOUT}s (is the Keychain locked?)") from None
        except OSError as exc:
            raise ProviderError(f"cannot run `security`: {exc.strerror}") from None

    def observe(self) -> str | None:
        proc = self._run(["find-generic-password", "-a", self.account, "-s", self.service, "-w"])
        if proc.returncode == NOT_FOUND:
            return None
        if proc.returncode != 0:
            raise ProviderError(f"reading {self.location()} failed (security exit {proc.returncode})")
        value = proc.stdout
        return value[:-1] if value.endswith("\n") else value

    def write(self, value: str) -> None:
        command = " ".join(["add-generic-password", "-U", "-a", _quote(self.account), "-s", _quote(self.service),
                            "-X", value.encode("utf-8").hex()])
        try:
            with claude_lock.hold(self.lock_path):
                proc = self._run(["-i"], stdin=command + "\n")
                if proc.returncode != 0:
                    raise ProviderError(f"writing {self.location()} failed (security exit {proc.returncode})")
                if self.observe() != value:
                    raise ProviderError(f"writing {self.location()} did not take effect")
        except claude_lock.ClaudeLockTimeout as exc:
            raise ProviderError(str(exc)) from None
