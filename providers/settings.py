"""Claude Code's settings.json: only `apiKeyHelper` is ours to change.

Every other key is kept in order, a symlink stays a symlink (its target is replaced), the file's
permissions are kept, and a file that is not a JSON object is never rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import paths
from .base import ProviderError
from .fsutil import atomic_write


class SettingsError(ProviderError):
    pass


class SettingsView(BaseModel):
    present: bool
    api_key_helper: str | None = None
    error: str = ""


class SettingsFile:
    name = "settings.json"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(paths.settings_file())

    def location(self) -> str:
        return str(self.path)

    def _load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {self.path}: {type(exc).__name__}") from None
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
        return SettingsView(present=True, api_key_helper=helper if isinstance(helper, str) else None)

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
            atomic_write(self.path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=mode)
        except OSError as exc:
            raise SettingsError(f"cannot write {self.path}: {exc.strerror or type(exc).__name__}") from None
