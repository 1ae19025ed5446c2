"""Claude Code's settings.json: only `apiKeyHelper` is ours to change.

Every other key is kept in order, a symlink stays a symlink (its target is replaced), the file's
permissions are kept, and a file that is not a JSON object is never rewritten. A file the user
made read-only, or one that is not theirs (a dotfiles manager's link into a store), is not
replaced either: the error says which `"apiKeyHelper": ...` line to add by hand instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import paths
from .base import ProviderError
from .fsutil import WriteRefused, atomic_write, check_respected, describe, read_regular


class SettingsError(ProviderError):
    pass


class SettingsView(BaseModel):
    present: bool
    api_key_helper: str | None = None
    error: str = ""
    #: credentials its `env` object sets that outrank the pool's (providers/authenv.py): names only
    env_overrides: list[str] = []


class SettingsFile:
    name = "settings.json"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(paths.settings_file())

    def location(self) -> str:
        return str(self.path)

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = read_regular(self.path)   # a FIFO in its place: one line, never a hang
        except OSError as exc:
            raise SettingsError(describe(exc, "read", self.path)) from None
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SettingsError(f"{self.path} is not UTF-8 text; fix it by hand, claude-pool will not rewrite it") \
                from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"{self.path} is not valid JSON (line {exc.lineno}); fix it by hand, claude-pool will not rewrite it"
            ) from None
        except RecursionError:  # nested too deep for the parser
            raise SettingsError(f"{self.path} is not valid JSON; fix it by hand, claude-pool will not rewrite it") \
                from None
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path} is not a JSON object; fix it by hand, claude-pool will not rewrite it")
        return data

    def observe(self) -> SettingsView:
        try:
            data = self._load()
        except SettingsError as exc:
            return SettingsView(present=True, error=str(exc))
        if data is None:
            return SettingsView(present=False)
        helper = data.get("apiKeyHelper")
        from .authenv import overrides

        return SettingsView(present=True, api_key_helper=helper if isinstance(helper, str) else None,
                            env_overrides=overrides(data.get("env")))

    def write(self, value: str | None) -> None:
        """Set `apiKeyHelper` to `value`, or remove the key when `value` is None."""
        data = self._load()
        if data is None:
            if value is None:
                return
            data = {}
        if value is None:
            data.pop("apiKeyHelper", None)
        else:
            data["apiKeyHelper"] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            mode = None if self.path.exists() else 0o644
            atomic_write(self.path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=mode,
                         respect=True)
        except WriteRefused as exc:
            raise SettingsError(refused(exc, value)) from None
        except OSError as exc:
            raise SettingsError(describe(exc, "write", self.path)) from None

    def check_write(self, value: str | None) -> None:
        """The SettingsError a write of `value` would fail with because the user made the file
        read-only, not theirs, or its folder unwritable: asked before a pool save that only makes
        sense if this write follows (entering API-key mode), so a refusal changes nothing."""
        try:
            check_respected(self.path)
        except WriteRefused as exc:
            raise SettingsError(refused(exc, value)) from None
        except OSError:
            pass   # anything else: the write itself says what


def check_write(settings: object, value: str | None) -> None:
    """`SettingsFile.check_write` for the world's settings provider (a recording one's inner file;
    another kind, in memory, has nothing to check)."""
    inner = getattr(settings, "inner", settings)
    if isinstance(inner, SettingsFile):
        inner.check_write(value)


def refused(exc: WriteRefused, value: str | None) -> str:
    return f"cannot write {exc.where()}: it {exc.strerror}, so claude-pool left it as it is; {by_hand(value)}"


def by_hand(value: str | None) -> str:
    """What to do when settings.json cannot be written for the user: the exact line."""
    where = "by hand (or to the dotfiles source it comes from), then run claude-pool again"
    if value is None:
        return f'remove its "apiKeyHelper" line {where.replace("to the", "from the")}'
    if "claude-pool" in value and value.rstrip().endswith("helper"):
        return f"add {json.dumps({'apiKeyHelper': value}, ensure_ascii=False)[1:-1]} to it {where}"
    # the user's own helper being put back: it may hold a secret, so it is not printed
    return f'set its "apiKeyHelper" back to the command you had before claude-pool {where}'
