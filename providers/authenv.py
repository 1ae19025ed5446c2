"""Credentials in Claude Code's environment that outrank what claude-pool gives it.

Claude Code picks its credential in this order (checked on Claude Code 2.1.197, docs/CLAUDE-CODE-FACTS.md):
ANTHROPIC_AUTH_TOKEN, ANTHROPIC_API_KEY, settings.json `apiKeyHelper`, CLAUDE_CODE_OAUTH_TOKEN, then
the stored login. claude-pool only writes the last two of its own (the helper, the stored login),
so a variable above them, set in the user's shell or in settings.json's `env` object (Claude Code
puts those into its own environment, and its hooks see them there), quietly takes the pool out
of the loop: the session keeps sending that credential whatever the pool decides.

ANTHROPIC_API_KEY is sent by `claude -p` always, and by an interactive session once the user
approved it at Claude Code's prompt. Only variable names are ever shown, never a value.
Standard library only: the session-start hook asks it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: variable -> what it does to the pool (a phrase after "Claude Code ...")
OUTRANKING: dict[str, str] = {
    "ANTHROPIC_AUTH_TOKEN": "sends it instead of any login or API key claude-pool gives it",
    "ANTHROPIC_API_KEY": ("sends it instead of any login or API key claude-pool gives it (`claude -p` always, "
                          "a session once you approved it), billed to that key"),
    "CLAUDE_CODE_OAUTH_TOKEN": ("uses that login instead of the one claude-pool switches (the pool's API keys, "
                                "when it falls back to them, still reach it)"),
    "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR": ("uses the login read from that descriptor instead of the one "
                                                "claude-pool switches"),
}


#: an apiKeyHelper of the user's own while the pool is on accounts (policy.bypass_notes, the session start)
FOREIGN_HELPER = ("settings.json has an apiKeyHelper that is not claude-pool's: Claude Code sends the key it prints "
                  "instead of the logins claude-pool switches (claude-pool keeps it, and puts it back whenever it "
                  "leaves API keys); remove it from settings.json to let claude-pool choose")

#: these outrank only the stored login: the pool's apiKeyHelper (API-key mode) still wins over them
LOGIN_ONLY = ("CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR")


def overrides(env: Mapping[str, object] | None) -> list[str]:
    """The names of OUTRANKING set to a non-empty string in `env` (an environment, or
    settings.json's `env` object), in Claude Code's order."""
    if not isinstance(env, Mapping):
        return []
    return [name for name in OUTRANKING if isinstance(env.get(name), str) and str(env.get(name)).strip()]


def explain(names: list[str], where: str) -> str:
    """One line for these variables, set `where` ("in settings.json `env`", ...): names only."""
    if not names:
        return ""
    first = names[0]   # the one Claude Code takes
    also = f" (also set: {', '.join(names[1:])})" if len(names) > 1 else ""
    return (f"{first} is set {where}: Claude Code {OUTRANKING[first]}; unset it to let claude-pool choose{also}")


def in_effect(env: Mapping[str, str]) -> str:
    """In an interactive session's environment (the statusline's): the variable the session sends
    instead of the pool's credential, or "". ANTHROPIC_API_KEY counts only once the user approved
    it at Claude Code's prompt (`.claude.json` `customApiKeyResponses.approved` holds its last 20
    characters); that file is read only when the variable is set."""
    names = overrides(env)
    if not names:
        return ""
    first = names[0]
    if first != "ANTHROPIC_API_KEY":
        return first
    import json

    from .claude_json import claude_json_path
    from .fsutil import read_regular

    try:
        data = json.loads(read_regular(claude_json_path(), 64 * 1024 * 1024) or b"{}")
        approved = data.get("customApiKeyResponses", {}).get("approved", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return ""   # not known: say nothing rather than something wrong
    key = str(env.get(first, "")).strip()
    if isinstance(approved, list) and key[-20:] in approved:
        return first
    rest = [n for n in names[1:] if n != "ANTHROPIC_API_KEY"]
    return rest[0] if rest else ""

