"""Login deadlines (docs/ARCHITECTURE.md §3.2): the one place that knows them. Standard library only.

A login ends on a fixed day: the token endpoint states it at login as `refresh_token_expires_in`
(seconds) and Claude Code stores it as `claudeAiOauth.refreshTokenExpiresAt` (epoch ms) beside
`expiresAt`. No refresh extends it; past it the next refresh gets `invalid_grant`. Older logins
carry no such field: their deadline is unknown (None), never "now".

- `after_refresh` is THE rule for a refreshed blob (schema/credentials.py `refreshed_blob` calls
  it; any other refresh path must call it too): a known deadline is kept exactly as it was, even
  when the server sends a new `refresh_token_expires_in`; a blob without one gains it from the
  response (now + seconds, in ms).
- `status_fields` puts every account's known deadline into `status.json` (no secret: id, email,
  epoch seconds), which the statusline badge (reconciler/statusline.py) and the session-start
  notice (`session_notice`, called by reconciler/hooks.py: a `systemMessage` the user sees and
  the model never does) read without decrypting the pool.
- `expired_text` is the wording of a login past its deadline (`list`, and the re-login reason
  reconciler/harvest.py saves when such a refresh is refused).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

FIELD = "refreshTokenExpiresAt"             # in the blob's claudeAiOauth, epoch ms
RESPONSE_FIELD = "refresh_token_expires_in"   # in the token endpoint's answer, seconds
SOON_SECONDS = 3 * 86400                      # Claude Code warns its own session in the last 3 days
MARKER_PREFIX = "login-notice."               # + the local date: the session-start notice was shown
# A plausible epoch in ms lies past 2001-09-09 (1e12) and before the year 9892 (2.5e14, datetime
# ends at 9999): a value in seconds, or garbage, is "unknown", never a deadline in 1970.
_MS_RANGE = (1e12, 2.5e14)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def deadline_ms(oauth: object) -> int | None:
    """The login deadline (epoch ms) in a blob's `claudeAiOauth` object; None: unknown."""
    if not isinstance(oauth, dict):
        return None
    ms = _number(oauth.get(FIELD))
    return int(ms) if ms is not None and _MS_RANGE[0] <= ms < _MS_RANGE[1] else None


def blob_deadline_ms(raw: str | None) -> int | None:
    """The login deadline (epoch ms) of a credential blob (JSON text); None: unknown or unreadable."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None
    return deadline_ms(data.get("claudeAiOauth") if isinstance(data, dict) else None)


def lifetime_seconds(value: object) -> int | None:
    """`refresh_token_expires_in` as whole seconds; None for anything that is not a positive number."""
    seconds = _number(value)
    return int(seconds) if seconds is not None and 0 < seconds < 1e11 else None


def after_refresh(before: dict, after: dict, refresh_token_expires_in: object, now_ms: int) -> None:
    """The rule of every token refresh, applied to the refreshed `claudeAiOauth` (`after`, made
    from `before`): a known deadline is never dropped nor extended; a login without one gains it
    from the answer's `refresh_token_expires_in` when the server sent one."""
    if deadline_ms(before) is not None:
        after[FIELD] = before[FIELD]                  # verbatim, whatever the server says now
        return
    seconds = lifetime_seconds(refresh_token_expires_in)
    if seconds is not None:
        after[FIELD] = int(now_ms) + seconds * 1000
    elif FIELD in before:
        after[FIELD] = before[FIELD]                  # unreadable: kept as it came, still "unknown"


def date_text(epoch: float) -> str:
    """`2026-12-24` (UTC)."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def expired_text(epoch: float, who: str) -> str:
    """What an account whose login is past its deadline says (`list`, its re-login reason)."""
    return f"login expired on {date_text(epoch)}: /login as {who}, then claude-pool import"


def status_fields(accounts: object) -> dict[str, object]:
    """For status.json, from the pool's accounts: `logins_end` [[id, email, epoch s], ...], earliest
    first, for every account whose deadline is known, and `login_ends_epoch`, the earliest. Empty
    when no deadline is known (older logins)."""
    ends = []
    for acc in accounts or ():  # type: ignore[attr-defined]
        ms = blob_deadline_ms(getattr(acc, "blob", None))
        if ms is not None:
            ends.append([str(getattr(acc, "id", "")), str(getattr(acc, "email", "") or ""), ms / 1000])
    if not ends:
        return {}
    ends.sort(key=lambda e: (e[2], e[0]))
    return {"login_ends_epoch": ends[0][2], "logins_end": ends}


def due(status: dict | None, now: float, within: float = SOON_SECONDS) -> list[tuple[str, str, float]]:
    """(id, email, epoch s) of the accounts whose login ends within `within` seconds or has ended,
    earliest first, from a status.json summary (anything malformed is skipped)."""
    entries = status.get("logins_end") if isinstance(status, dict) else None
    found = []
    for entry in entries if isinstance(entries, list) else ():
        if not (isinstance(entry, list) and len(entry) == 3):
            continue
        aid, email, at = entry
        at = _number(at)
        if isinstance(aid, str) and isinstance(email, str) and at is not None and at - now <= within:
            found.append((aid, email, at))
    return sorted(found, key=lambda e: e[2])


def ends_text(at: float, now: float) -> str:
    """`login ends in 1d23h` or `login expired`."""
    from .status import duration

    return f"login ends in {duration(at - now)}" if at > now else "login expired"


def notice_line(entries: list[tuple[str, str, float]], now: float) -> str:
    """One line naming the accounts to /login again."""
    parts = []
    for aid, email, at in entries:
        who = f"{aid} ({email})" if email and email != aid else aid
        parts.append(f"{who} {ends_text(at, now)}" if at > now else f"{who} login expired on {date_text(at)}")
    return (f"claude-pool: {'; '.join(parts)}. In Claude Code: /login as that account, then "
            "/claude-pool:import (or `claude-pool import`).")


NOTICE_ENV = "CLAUDE_POOL_NOTICE"  # the plugin wrapper's own notice, told in the same message


def system_message(text: str) -> str:
    """The one JSON object a hook prints on stdout for the user: Claude Code shows `systemMessage`
    in its UI ("SessionStart:startup says: ...") and never hands it to the model."""
    return json.dumps({"systemMessage": text}) + "\n"


AUTH_ENV_PREFIX = "auth-env-notice."           # + the local date: the outranking-credential notice was shown


def session_notice(now: float | None = None, stream: object = None) -> bool:
    """At session start: at most once a (local) day, one line naming the accounts whose login ends
    within 3 days or has ended, after the plugin wrapper's notice ($CLAUDE_POOL_NOTICE) when it
    passed one; and, at most once a day too, a line naming a credential in Claude Code's
    environment that outranks the pool's (providers/authenv.py: the hook's environment is Claude
    Code's, settings.json `env` included; names only, never a value). Written as ONE
    `{"systemMessage": ...}` JSON object on stdout (shown to the user, never to the model; nothing
    else may go there). Reads status.json only (no decryption, no network); never raises. True when
    the message was written."""
    texts = []
    try:
        wrapper = " ".join(os.environ.pop(NOTICE_ENV, "").split())  # one line; not passed on to children
        if wrapper:
            texts.append(wrapper)
        from claude_pool.providers import authenv, paths, sidecars

        now = time.time() if now is None else now
        entries = due(sidecars.read_status(), now)  # type: ignore[arg-type]
        if entries and _first_today(paths.state_dir(), now):
            texts.append(notice_line(entries, now))
        outranking = authenv.overrides(os.environ)
        bypass = authenv.explain(outranking, "in Claude Code's environment (your shell or settings.json `env`)") \
            if outranking else _foreign_helper(sidecars.read_status())
        if bypass and _first_today(paths.state_dir(), now, AUTH_ENV_PREFIX):
            texts.append(f"claude-pool: {bypass}.")
    except Exception:  # noqa: BLE001 - a notice must never cost the user a session start
        pass
    if not texts:
        return False
    try:
        out = stream or sys.stdout  # the hook passes its real stdout (it points sys.stdout at stderr)
        out.write(system_message(" ".join(texts)))  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]
        return True
    except Exception:  # noqa: BLE001
        return False


def _foreign_helper(status: object) -> str:
    """On accounts, settings.json's apiKeyHelper when it is not ours (providers/authenv.py
    FOREIGN_HELPER), else ''; settings.json is small, and read only when the pool is on accounts."""
    from claude_pool.providers import authenv, fsutil, paths

    if not isinstance(status, dict) or status.get("mode") != "account":
        return ""
    try:
        settings = json.loads(fsutil.read_text(paths.settings_file()))
    except (OSError, ValueError, RecursionError):
        return ""
    helper = settings.get("apiKeyHelper") if isinstance(settings, dict) else None
    if not isinstance(helper, str) or not helper.strip() or paths.is_our_helper(helper):
        return ""
    return authenv.FOREIGN_HELPER


def _first_today(state_dir: str, now: float, prefix: str = MARKER_PREFIX) -> bool:
    """Claims today's notice: creates `<prefix><date>` (`login-notice.<date>`) in the state dir
    (O_EXCL, so of several sessions starting at once one wins) and removes the markers of earlier days."""
    today = prefix + time.strftime("%Y-%m-%d", time.localtime(now))
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    try:
        fd = os.open(os.path.join(state_dir, today), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    for name in os.listdir(state_dir):
        if name.startswith(prefix) and name != today:
            try:
                os.unlink(os.path.join(state_dir, name))
            except OSError:
                pass
    return True
