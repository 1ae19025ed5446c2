"""The pool file's encryption, byte-compatible with the Go claude-pool 0.3 (docs/ARCHITECTURE.md §3.1).

`CPL1` + 12-byte nonce + AES-256-GCM(ciphertext || tag), no associated data; the key is
HKDF-SHA256(machine_id + "\\0" + username, salt, info) so the file opens only on this machine
for this user.
"""

from __future__ import annotations

import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CPL1"
NONCE_LEN = 12
SALT = b"claude-pool/store-salt/v1"
INFO = b"claude-pool-store-v1"
NO_MACHINE_ID = "claude-pool/no-machine-id"


class DecryptError(Exception):
    """The pool could not be decrypted with this machine's and user's key."""


def _linux_machine_id() -> str | None:
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(candidate, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError:
            continue
        if value:
            return value
    return None


def parse_ioreg_uuid(text: str) -> str | None:
    """Pick `IOPlatformUUID` out of `ioreg -rd1 -c IOPlatformExpertDevice` output."""
    for line in text.splitlines():
        if "IOPlatformUUID" in line:
            parts = line.split("=", 1)
            if len(parts) == 2:
                value = parts[1].strip().strip('"').strip()
                if value:
                    return value
    return None


def machine_id(platform: str | None = None) -> str:
    platform = platform or sys.platform
    value: str | None = None
    try:
        if platform.startswith("linux"):
            value = _linux_machine_id()
        elif platform == "darwin":
            import subprocess

            out = subprocess.run(
                ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout
            value = parse_ioreg_uuid(out)
        elif platform == "win32":
            value = _windows_machine_guid()
        else:
            value = _linux_machine_id()
    except Exception:  # OSError, subprocess.TimeoutExpired...: fall back to the constant, as the Go tool does
        value = None
    return value or NO_MACHINE_ID


def _windows_machine_guid(winreg: object = None) -> str | None:
    """HKLM\\SOFTWARE\\Microsoft\\Cryptography MachineGuid (the 64-bit view), as the Go tool reads it."""
    if winreg is None:
        try:
            import winreg  # type: ignore[import-not-found, no-redef]
        except ImportError:
            return None
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography", 0,
                             winreg.KEY_READ | getattr(winreg, "KEY_WOW64_64KEY", 0))
        value, _ = winreg.QueryValueEx(key, "MachineGuid")
        return str(value).strip() or None
    except OSError:
        return None


def username() -> str:
    """The OS account name (as Go's `user.Current()`), else `$USER`, else `user`."""
    name = ""
    try:
        import pwd

        name = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        name = os.environ.get("USERNAME", "")  # Windows
    return name or os.environ.get("USER") or "user"


def derive_key(machine: str | None = None, user: str | None = None) -> bytes:
    ikm = f"{machine if machine is not None else machine_id()}\x00{user if user is not None else username()}"
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=INFO).derive(ikm.encode("utf-8"))


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def decrypt(data: bytes, key: bytes) -> bytes:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + NONCE_LEN + 16:
        raise DecryptError("not a claude-pool encrypted file")
    nonce = data[len(MAGIC):len(MAGIC) + NONCE_LEN]
    try:
        return AESGCM(key).decrypt(nonce, data[len(MAGIC) + NONCE_LEN:], None)
    except Exception as exc:  # cryptography raises InvalidTag
        raise DecryptError("authentication failed") from exc
