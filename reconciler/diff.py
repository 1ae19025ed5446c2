"""Diff: a pure function from (observed, desired) to an ordered plan (docs/ARCHITECTURE.md §7 order).

Actions name accounts and keys by id and carry fingerprints, never a secret.
"""

from __future__ import annotations

from claude_pool import __version__
from claude_pool.schema.credentials import fingerprint, oauth_fingerprint
from claude_pool.schema.plan import (
    Action, AddKey, AdoptCredential, HelperValue, ImportAccount, Plan, RemoveAccount, RemoveKey, SavedHelper,
    Rename, SavePoolState, SetPreference, WriteCredential, WriteIdentity, WriteSettings,
)
from claude_pool.schema.state import DesiredState, ObservedState
from claude_pool.providers.claude_json import same_identity
from claude_pool.schema.timefmt import format_time


def describe_helper(value: str | None, ours: str) -> str:
    """A plan-safe name for an apiKeyHelper value (a foreign one may embed a key)."""
    if not value:
        return "(none)"
    if value == ours:
        return "claude-pool helper"
    return f"foreign helper {fingerprint(value)[:8]}"


def make_plan(observed: ObservedState, desired: DesiredState, trigger: str) -> Plan:
    pool = observed.pool
    store_fp = observed.store.fingerprint
    fps = {a.id: oauth_fingerprint(a.blob) for a in pool.accounts}
    membership: list[Action] = []
    for acc_id in desired.adopt:
        membership.append(AdoptCredential(change="update", target=acc_id,
                                 reason="Claude Code refreshed this login itself; the pool takes its copy",
                                 before=fps.get(acc_id, ""), after=store_fp))
        fps[acc_id] = store_fp
    for acc_id in desired.add_accounts:
        known = pool.account(acc_id)
        if known is None:
            membership.append(ImportAccount(change="create", target=acc_id,
                                            reason="the login Claude Code holds joins the pool", after=store_fp,
                                            email=observed.store.email, identity=observed.store.identity))
        else:   # `import --id NAME` for an existing NAME: its login is replaced
            membership.append(ImportAccount(change="update", target=acc_id,
                                            reason="the login Claude Code holds replaces this account's",
                                            before=fps.get(acc_id, ""), after=store_fp,
                                            email=observed.store.email, previous_email=known.email,
                                            identity=observed.store.identity))
        fps[acc_id] = store_fp
    for key_id in desired.add_keys:
        if pool.key(key_id) is None:
            membership.append(AddKey(change="create", target=key_id, reason="new API key"))
        else:
            membership.append(AddKey(change="update", target=key_id,
                                     reason="a new key under this name replaces the old one",
                                     before=fingerprint(pool.key(key_id).key)))  # type: ignore[union-attr]

    membership += _preferences(observed, desired)
    renamed = dict(desired.renames)
    for old, new in desired.renames:
        kind = "account" if pool.account(old) is not None else "key"
        membership.append(Rename(change="update", target=old, reason=desired.reason, before=old, after=new,
                                 kind=kind, new_id=new))
        if old in fps:
            fps[new] = fps.pop(old)

    settings: list[Action] = []
    current_helper = observed.settings.api_key_helper
    if desired.touch_settings and desired.api_key_helper != current_helper:
        if desired.mode == "apikey":
            value = HelperValue.OURS
        else:
            value = HelperValue.SAVED if desired.api_key_helper else HelperValue.REMOVE
        settings.append(WriteSettings(
            change="update" if current_helper else "create", target="settings.json",
            reason=desired.reason, value=value,
            before=describe_helper(current_helper, observed.helper_command),
            after=describe_helper(desired.api_key_helper, observed.helper_command)))

    credential: list[Action] = []
    if desired.store_account and fps.get(desired.store_account) != store_fp:
        credential.append(WriteCredential(
            change="update" if observed.store.present else "create",
            target=desired.store_account, reason=desired.reason, before=store_fp,
            after=fps.get(desired.store_account, "")))
    credential += _identity(observed, desired, moved=bool(credential))

    state: list[Action] = []
    # the pool's state as the renames leave it (they carry `current` and `current_key` along)
    before = (pool.mode, renamed.get(pool.current, pool.current), renamed.get(pool.current_key, pool.current_key),
              pool.saved_api_key_helper)
    after = (desired.mode, desired.current, desired.current_key, desired.saved_api_key_helper)
    if before != after:
        if desired.saved_api_key_helper == pool.saved_api_key_helper:
            saved = SavedHelper.KEEP
        elif desired.saved_api_key_helper:
            saved = SavedHelper.FROM_SETTINGS
        else:
            saved = SavedHelper.CLEAR
        state.append(SavePoolState(
            change="update", target="pool", reason=desired.reason,
            before=_state_label(*before[:3]), after=_state_label(*after[:3]),
            mode=desired.mode, current=desired.current, current_key=desired.current_key,
            saved_api_key_helper=saved))

    removals: list[Action] = [RemoveAccount(change="delete", target=a, reason=desired.reason,
                                            before=fps.get(a, "")) for a in desired.remove_accounts]
    removals += [RemoveKey(change="delete", target=k, reason=desired.reason) for k in desired.remove_keys]

    if pool.mode == "account" and desired.mode == "apikey":
        # Entering API-key mode: the pool says apikey before settings.json names the helper.
        ordered = membership + state + settings + credential + removals
    elif pool.mode == "account" and desired.mode == "account":
        # A move between accounts: the pool names the new account before Claude Code's store holds
        # it, so a pool that cannot be written means no move (and a store write that fails rolls
        # the pool back): the pool and `status` never say a while Claude Code is on b.
        ordered = membership + settings + state + credential + removals
    else:
        # Leaving (or staying): settings first, then the credential, then the pool's own state.
        ordered = membership + settings + credential + state + removals
    # built from trusted parts (each action validated when made): no validation of the whole, so a
    # run with nothing to change never builds the plan's models (schema/plan.py, defer_build)
    return Plan.model_construct(tool_version=__version__, created_at=observed.now.isoformat(timespec="seconds"),
                                trigger=trigger, observed_digest=observed.digest(), reason=desired.reason,
                                actions=ordered, notes=list(desired.notes))


def _identity(observed: ObservedState, desired: DesiredState, *, moved: bool) -> list[Action]:
    """`write_identity` right after the credential: Claude Code should show the account whose
    login it holds. Only in account mode, only for an account whose identity the pool knows (or
    the import brings), and only into a `.claude.json` that is there and a JSON object; on API
    keys it keeps showing the last account."""
    target = desired.store_account if desired.mode == "account" else ""
    store = observed.store
    if not target or not store.shown_file:
        return []
    known = observed.pool.account(target)
    wanted = known.oauth_account if known is not None else None
    if target in desired.add_accounts:   # an import: the identity its handler stores
        same_person = known is not None and (not store.email or store.email.lower() == known.email.lower())
        wanted = store.identity or (wanted if same_person else None)
    if not wanted or same_identity(store.shown, wanted):
        return []
    def email(account: dict | None) -> str:
        value = (account or {}).get("emailAddress")
        return value if isinstance(value, str) and value else "(none)"
    return [WriteIdentity(change="update" if store.shown else "create", target=target,
                          reason=desired.reason if moved else f"Claude Code holds {target}'s login but shows "
                          f"{email(store.shown)}", before=email(store.shown), after=email(wanted))]


def pref_label(field: str, value: object) -> str:
    """A preference in words, for the plan and the command's line (no secret: ours)."""
    if field == "priority":
        return f"priority {value}" if value is not None else "default priority"
    if field == "threshold":
        return f"threshold {float(value) * 100:.4g}%" if value is not None else "default threshold"  # type: ignore[arg-type]
    if not value:
        return "not paused"
    until = value.get("until") if isinstance(value, dict) else getattr(value, "until", None)
    return f"paused until {format_time(until)}" if until is not None else "paused"


def current_prefs(acc: object) -> dict[str, object]:
    """An account's preferences in the shape of DesiredState.prefs (a pause past its end is none)."""
    pause = getattr(acc, "paused", None)
    return {"priority": getattr(acc, "priority", None), "threshold": getattr(acc, "threshold", None),
            "paused": {"until": pause.until, "reason": pause.reason} if pause is not None else None}


def _preferences(observed: ObservedState, desired: DesiredState) -> list[Action]:
    out: list[Action] = []
    for acc_id, wanted in desired.prefs.items():
        acc = observed.pool.account(acc_id)
        have = current_prefs(acc) if acc is not None else {}
        for field in ("priority", "threshold", "paused"):
            if field not in wanted or (acc is not None and have.get(field) == wanted[field]):
                continue
            value = wanted[field]
            pause = value if field == "paused" and isinstance(value, dict) else None
            out.append(SetPreference(
                change="update", target=acc_id, reason=desired.reason, field=field,  # type: ignore[arg-type]
                before=pref_label(field, have.get(field)), after=pref_label(field, value),
                priority=value if field == "priority" else None,  # type: ignore[arg-type]
                threshold=value if field == "threshold" else None,  # type: ignore[arg-type]
                paused=pause is not None, until=pause["until"] if pause else None,
                pause_reason=pause.get("reason", "") if pause else ""))
    return out


def _state_label(mode: str, current: str, key: str) -> str:
    if mode == "apikey":
        return f"apikey:{key or '-'}"
    return f"account:{current or '-'}"
