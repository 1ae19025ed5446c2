"""Claude Code's credential store on macOS: a Keychain generic password, through `security`.

Service `Claude Code-credentials` (with `-<8 hex>` when CLAUDE_CONFIG_DIR is set), account = the
login name. Reading uses `find-generic-password -w` (exit 44: no item); macOS 26 may print the
value hex-encoded, which is decoded when it decodes to a JSON object.

Writing: `add-generic-password -U ... -X <hex>`, read back afterwards to prove it happened.
`security -i` reads one command line into a 4096-byte buffer. A longer line is cut: the cut part is
executed (a truncated item) and the rest runs as another command, echoed on stderr. At exactly
4096 bytes with the newline, the newline runs as an empty second command and masks a failure's
exit status. So the command goes through stdin (keeping the secret out of every process's argv)
only when its line, newline included, is at most 4095 bytes; a larger item (Claude Code keeps its
MCP servers' OAuth logins in it too) goes through argv, as Claude Code itself does.
`security`'s own output is never put into an error or a log: on a cut line it echoes the secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import unicodedata
import contextlib
from pathlib import Path

from . import claude_lock, paths
from .base import ProviderError
from .crypto import username

SERVICE = "Claude Code-credentials"
NOT_FOUND = 44
TIMEOUT = 10
# `security -i` reads a line into a 4096-byte buffer: at most 4095 bytes, the newline included,
# arrive whole and alone.
STDIN_LINE_MAX = 4095
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


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


def decode_output(text: str) -> str:
    """The value `find-generic-password -w` printed: as is, or decoded when it is hex that decodes
    to a JSON object (macOS 26 may print the item hex-encoded)."""
    value = text[:-1] if text.endswith("\n") else text
    if _HEX.fullmatch(value):
        try:
            decoded = bytes.fromhex(value).decode("utf-8")
            if isinstance(json.loads(decoded), dict):
                return decoded
        except (ValueError, RecursionError):
            pass
    return value


def stdin_line(account: str, service: str, value: str) -> bytes:
    """The `security -i` command line (newline included) that writes `value`."""
    command = " ".join(["add-generic-password", "-U", "-a", _quote(account), "-s", _quote(service),
                        "-X", value.encode("utf-8").hex()])
    return (command + "\n").encode("utf-8")


class KeychainCredentialStore:
    name = "credentials"

    def __init__(self, service: str | None = None, account: str | None = None, security: str = "security") -> None:
        self.service = service or service_name()
        self.account = account or username()
        self.security = security

    @property
    def lock_path(self) -> Path:
        return Path(paths.claude_dir()) / ".oauth_refresh.lock"

    def hold(self) -> "contextlib.AbstractContextManager[None]":
        """Claude Code's refresh lock: held around a read-refresh-write of its login."""
        return claude_lock.hold(self.lock_path)

    def location(self) -> str:
        return f"macOS Keychain item {self.service!r} (account {self.account!r})"

    def _run(self, argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        # stdout/stderr are captured and only the exit status is looked at (besides a read's
        # stdout): on a cut `-i` line, stderr echoes a copy of the secret.
        try:
            return subprocess.run([self.security, *argv], input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=TIMEOUT, check=False)
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
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise ProviderError(f"{self.location()} does not hold text") from None
        return decode_output(text)

    def write(self, value: str) -> None:
        line = stdin_line(self.account, self.service, value)
        try:
            with claude_lock.hold(self.lock_path):
                if len(line) <= STDIN_LINE_MAX:
                    proc = self._run(["-i"], stdin=line)
                else:
                    # too long for `security -i`'s line: argv, as Claude Code does for large items
                    proc = self._run(["add-generic-password", "-U", "-a", self.account, "-s", self.service,
                                      "-X", value.encode("utf-8").hex()])
                if proc.returncode != 0:
                    raise ProviderError(f"writing {self.location()} failed (security exit {proc.returncode})")
                if self.observe() != value:
                    raise ProviderError(f"writing {self.location()} did not take effect")
        except claude_lock.ClaudeLockTimeout as exc:
            raise ProviderError(str(exc)) from None
