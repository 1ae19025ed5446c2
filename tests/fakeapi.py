"""The fake Anthropic API the tests run against: the demo's fake (claude_pool/demoapi.py) plus what
only the tests need.

* ``POST /v1/messages``               - Messages API (JSON or SSE stream), with the unified
  rate-limit headers and per-model 429s the usage API does not show
* ``POST /v1/messages/count_tokens``  - token counting
* ``POST /_fake/control``             - loopback-only control channel for out-of-process tests
  (add accounts, change usage, inspect state)
* plain API keys (``x-api-key``) on the Messages API

The real Claude Code binary talks to it in the end-to-end tests. Run ``python tests/fakeapi.py
[--port N]`` to serve in the foreground; the first stdout line is the base URL.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from claude_pool import demoapi
from claude_pool.demoapi import OAUTH_BETA, PROFILE_PATH, TOKEN_PATH, USAGE_MODES, USAGE_PATH, _error

__all__ = ["FakeAccount", "FakeAnthropic", "main", "OAUTH_BETA", "PROFILE_PATH", "TOKEN_PATH", "USAGE_MODES",
           "USAGE_PATH"]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
CONTROL_PATH = "/_fake/control"
DEFAULT_MODEL = "claude-sonnet-4-5"
RATE_LIMIT_MESSAGE = "This request would exceed your account's rate limit. Please try again later."


def _key_id(key: str) -> str:
    """Short, non-secret label for an API key (used in replies and state)."""
    return "key-" + key[-4:]


@dataclass
class FakeAccount(demoapi.FakeAccount):
    """An account that also answers on the Messages API."""

    # 429s the usage API does not show, by the request's model: {"opus": {"claim": "five_hour",
    # "reset": epoch}, "*": {"claim": None}} ("*": any model; claim None: a server-side 429 with
    # no unified headers).
    refuse: dict = field(default_factory=dict)
    messages: int = 0
    # Seconds every /v1/messages answer on this account waits before it goes out (a 429 too): a
    # request in flight while the pool moves.
    messages_delay: float = 0.0
    # A long turn: answer with a tool call (Bash `echo ...`, when the request offers Bash) until
    # the turn has had this many tool rounds, then the final text.
    tool_turns: int = 0
    # Each request this account answers (not a 429) raises its five_hour by this many points
    # (capped at 100): a turn that crosses a limit while it runs.
    messages_step: float = 0.0

    def summary(self) -> dict:
        return {**super().summary(), "refuse": {k: dict(v) for k, v in self.refuse.items()},
                "messages": self.messages, "messages_delay": self.messages_delay,
                "tool_turns": self.tool_turns, "messages_step": self.messages_step}


@dataclass
class _ApiKey:
    """A registered plain API key."""

    key: str = field(repr=False)
    exhausted: bool = False
    messages: int = 0


def _refusal_for(acct: FakeAccount, model: str) -> tuple[str | None, float] | None:
    """(representative claim or None for a server-side 429, reset epoch) when this account
    refuses a request of `model` beyond what its five_hour/seven_day say; else None."""
    words = set("".join(c if c.isalnum() else " " for c in model.lower()).split())
    now = time.time()
    for name, rule in acct.refuse.items():
        if name == "*" or name.lower() in words:
            rule = rule if isinstance(rule, dict) else {}
            reset = rule.get("reset")
            return rule.get("claim"), float(reset) if isinstance(reset, (int, float)) else now + 3600
    for w in acct.scoped or []:
        if isinstance(w.get("pct"), (int, float)) and w["pct"] >= 100 and str(w.get("name", "")).lower() in words:
            reset = w.get("resets_at")
            claim = "seven_day_" + str(w["name"]).lower()
            return claim, float(reset) if isinstance(reset, (int, float)) else now + 86400
    return None


# A harmless tool call: `echo` (allow it in the session's permissions: "Bash(echo:*)").
_HARMLESS_TOOLS = (("Bash", {"command": "echo fake tool round", "description": "Print a line"}),)


def _tool_rounds(messages: Any) -> int:
    """How many tool rounds (an assistant tool_use answered by the user's tool_result) end the
    conversation: the current turn's so far."""
    def has(message: Any, kind: str) -> bool:
        content = message.get("content") if isinstance(message, dict) else None
        return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == kind for b in content)

    rounds, i = 0, len(messages) - 1 if isinstance(messages, list) else -1
    while i >= 1 and has(messages[i], "tool_result") and has(messages[i - 1], "tool_use"):
        rounds, i = rounds + 1, i - 2
    return rounds


def _tool_call(body: Any, turns: int) -> tuple[str, dict] | None:
    """(tool name, input) when this request should be answered with a tool call: the account's
    `tool_turns` rounds are not done yet and the request offers a harmless tool."""
    if turns <= 0 or not isinstance(body, dict) or _tool_rounds(body.get("messages")) >= turns:
        return None
    offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    return next(((name, dict(args)) for name, args in _HARMLESS_TOOLS if name in offered), None)


class FakeAnthropic(demoapi.FakeAnthropic):
    """The demo's fake plus the Messages API, API keys and the control channel."""

    account_class = FakeAccount
    settable = demoapi.FakeAnthropic.settable | {"refuse", "messages_delay", "tool_turns", "messages_step"}

    def __init__(self, **kw: Any) -> None:
        self._api_keys: dict[str, _ApiKey] = {}
        super().__init__(**kw)

    def add_api_key(self, key: str, *, exhausted: bool = False) -> None:
        """Register (or update) a plain API key usable on /v1/messages."""
        with self.lock:
            entry = self._api_keys.get(key)
            if entry is None:
                self._api_keys[key] = _ApiKey(key=key, exhausted=exhausted)
            else:
                entry.exhausted = exhausted

    def messages_requests(self) -> list[dict]:
        """Logged POST /v1/messages requests (copies)."""
        with self.lock:
            return [dict(r) for r in self.requests if r["method"] == "POST" and r["path"] == MESSAGES_PATH]

    def reset_log(self) -> None:
        """Clear the request log and all counters."""
        super().reset_log()
        with self.lock:
            for acct in self._accounts.values():
                acct.messages = 0  # type: ignore[attr-defined]
            for key in self._api_keys.values():
                key.messages = 0

    def state(self) -> dict:
        """JSON summary used by the control endpoint's ``state`` op."""
        with self.lock:
            counts: dict[str, int] = {}
            for r in self.requests:
                counts[r["path"]] = counts.get(r["path"], 0) + 1
            known = self._known_credentials_locked()
            messages = []
            for r in self.requests:
                if r["method"] == "POST" and r["path"] == MESSAGES_PATH:
                    item = {k: v for k, v in r.items() if k != "body"}
                    tok = item.get("token")
                    if tok and tok not in known:
                        item["token"] = "<unknown " + tok[-4:] + ">"
                    messages.append(item)
            return {
                "base_url": self.base_url,
                "accounts": [a.summary() for a in self._accounts.values()],
                "api_keys": [
                    {"id": _key_id(k.key), "exhausted": k.exhausted, "messages": k.messages}
                    for k in self._api_keys.values()
                ],
                "invalid_grants": self.invalid_grants,
                "counts": counts,
                "messages": messages,
            }

    def _known_credentials_locked(self) -> set[str]:
        known = set(self._api_keys)
        for a in self._accounts.values():
            known.add(a.access_token)
            known.update(a.previous_access_tokens)
        return known

    def _control(self, cmd: Any) -> tuple[int, Any]:
        """Execute one control command; returns (status, JSON body)."""
        if not isinstance(cmd, dict):
            return 400, {"error": "body must be a JSON object"}
        op = cmd.get("op")
        for name in {"add_account": ("email",), "credential_blob": ("email",), "set_usage": ("email",),
                     "revoke": ("email",), "expire_access_token": ("email",), "add_api_key": ("key",)}.get(op, ()):
            if not isinstance(cmd.get(name), str) or not cmd[name]:
                return 400, {"error": f"{op} needs a string {name!r}"}
        try:
            if op == "add_account":
                kw = {k: cmd[k] for k in ("five_hour", "seven_day", "usage_mode", "five_hour_resets_at",
                                          "seven_day_resets_at", "revoked", "scoped", "extra_usage",
                                          "refuse", "login_deadline", "messages_delay", "tool_turns",
                                          "messages_step", *demoapi.USAGE_SETTABLE) if k in cmd}
                self.add_account(cmd["email"], **kw)
                return 200, self.credential_blob(cmd["email"], expires_at_ms=cmd.get("expires_at_ms"))
            if op == "credential_blob":
                return 200, self.credential_blob(cmd["email"], expires_at_ms=cmd.get("expires_at_ms"))
            if op == "set_usage":
                kw = {k: v for k, v in cmd.items() if k not in ("op", "email")}
                return 200, self.set_usage(cmd["email"], **kw).summary()
            if op == "add_api_key":
                self.add_api_key(cmd["key"], exhausted=bool(cmd.get("exhausted", False)))
                return 200, {"ok": True}
            if op == "revoke":
                self.revoke(cmd["email"])
                return 200, {"ok": True}
            if op == "expire_access_token":
                self.expire_access_token(cmd["email"])
                return 200, {"ok": True}
            if op == "reset_log":
                self.reset_log()
                return 200, {"ok": True}
            if op == "state":
                return 200, self.state()
        except KeyError as exc:
            return 404, {"error": f"not found: {exc.args[0]!s}"}
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        return 400, {"error": f"unknown op {op!r}"}



class _Handler(demoapi.Handler):
    """The demo's routes plus the Messages API and the control channel."""

    routes = {**demoapi.Handler.routes, MESSAGES_PATH: ("POST",), COUNT_TOKENS_PATH: ("POST",)}

    def _unlogged(self, method: str, path: str, body: Any) -> bool:
        if path != CONTROL_PATH:
            return False
        self._handle_control(method, body)
        return True

    def _route(self, path: str, kind: str | None, token: str | None, body: Any) -> None:
        if path == MESSAGES_PATH:
            self._handle_messages(kind, token, body)
        elif path == COUNT_TOKENS_PATH:
            self._send(200, {"input_tokens": 10})
        else:
            super()._route(path, kind, token, body)

    def _handle_messages(self, kind: str | None, token: str | None, body: Any) -> None:
        fake = self.server.fake
        with fake.lock:
            acct = fake._account_by_access_locked(token)
            delay = acct.messages_delay if acct is not None else 0.0
        if delay > 0:
            fake._stopping.wait(delay)
        if self._rec is not None:
            self._rec["answered"] = time.time()   # when the answer was decided (after the delay)
        with fake.lock:
            acct = fake._account_by_access_locked(token)
            key = fake._api_keys.get(token) if token and acct is None else None
            if acct is not None:
                acct.messages += 1
                label, exhausted = acct.email, acct.exhausted()
                five, seven = acct.five_hour, acct.seven_day
                five_reset, seven_reset = acct.five_hour_resets_at, acct.seven_day_resets_at
                requested = str(body.get("model") or DEFAULT_MODEL) if isinstance(body, dict) else DEFAULT_MODEL
                refusal = _refusal_for(acct, requested)
                tool = _tool_call(body, acct.tool_turns)
                if refusal is None and not exhausted and acct.messages_step:
                    acct.five_hour = min(100.0, acct.five_hour + acct.messages_step)
            elif key is not None:
                key.messages += 1
                label, exhausted = _key_id(key.key), key.exhausted
                tool = None
        if acct is None and key is None:
            message = "Invalid bearer token" if kind == "bearer" else "invalid x-api-key"
            self._send(401, _error("authentication_error", message))
            return

        headers: dict[str, str] = {}
        if acct is not None:
            now = time.time()
            r5 = int(five_reset if five_reset is not None else now + 5 * 3600)
            r7 = int(seven_reset if seven_reset is not None else now + 7 * 86400)
            headers.update({
                "anthropic-ratelimit-unified-status": "rejected" if exhausted else "allowed",
                "anthropic-ratelimit-unified-5h-status": "rejected" if five >= 100 else "allowed",
                "anthropic-ratelimit-unified-5h-utilization": f"{five / 100:.4f}",
                "anthropic-ratelimit-unified-5h-reset": str(r5),
                "anthropic-ratelimit-unified-7d-status": "rejected" if seven >= 100 else "allowed",
                "anthropic-ratelimit-unified-7d-utilization": f"{seven / 100:.4f}",
                "anthropic-ratelimit-unified-7d-reset": str(r7),
                "anthropic-ratelimit-unified-representative-claim": "seven_day" if seven >= five else "five_hour",
                "anthropic-ratelimit-unified-reset": str(r7 if seven >= five else r5),
            })
        if acct is not None and refusal is not None:
            claim, reset = refusal
            if claim is None:   # a server-side limit: no unified headers at all
                self._send(429, _error("rate_limit_error", "Rate limited. Please try again later."),
                           headers={"retry-after": "60"})
                return
            headers.update({"anthropic-ratelimit-unified-status": "rejected",
                            "anthropic-ratelimit-unified-representative-claim": claim,
                            "anthropic-ratelimit-unified-reset": str(int(reset)), "retry-after": "60"})
            if claim == "five_hour":
                headers["anthropic-ratelimit-unified-5h-status"] = "rejected"
                headers["anthropic-ratelimit-unified-5h-reset"] = str(int(reset))
            elif claim == "seven_day":
                headers["anthropic-ratelimit-unified-7d-status"] = "rejected"
                headers["anthropic-ratelimit-unified-7d-reset"] = str(int(reset))
            self._send(429, _error("rate_limit_error", RATE_LIMIT_MESSAGE), headers=headers)
            return
        if exhausted:
            headers["anthropic-ratelimit-unified-status"] = "rejected"
            headers["retry-after"] = "60"
            self._send(429, _error("rate_limit_error", RATE_LIMIT_MESSAGE), headers=headers)
            return
        if not isinstance(body, dict):
            self._send(400, _error("invalid_request_error", "Request body must be a JSON object"))
            return

        model = body.get("model") or DEFAULT_MODEL
        text = f"ok from fake ({label})"
        input_tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
        output_tokens = max(1, len(text) // 4)
        msg_id = "msg_fake" + secrets.token_hex(12)
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

        stop_reason = "end_turn"
        content: list[dict] = [{"type": "text", "text": text}]
        if tool is not None:
            stop_reason = "tool_use"
            content = [{"type": "tool_use", "id": "toolu_fake" + secrets.token_hex(8), "name": tool[0],
                        "input": tool[1]}]

        if body.get("stream"):
            if tool is None:
                blocks = [
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text}}),
                ]
            else:
                blocks = [
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {**content[0], "input": {}}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(tool[1])}}),
                ]
            events = [
                ("message_start", {"type": "message_start", "message": {
                    "id": msg_id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1}}}),
                *blocks,
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                   "usage": {"output_tokens": output_tokens}}),
                ("message_stop", {"type": "message_stop"}),
            ]
            payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
            headers["Cache-Control"] = "no-cache"
            self._send(200, payload, content_type="text/event-stream; charset=utf-8", headers=headers)
            return

        self._send(200, {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }, headers=headers)

    def _handle_control(self, method: str, body: Any) -> None:
        host = self.client_address[0] if self.client_address else ""
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            self._send(403, {"error": "control endpoint is loopback-only"})
            return
        if method != "POST":
            self._send(405, {"error": "use POST"})
            return
        status, reply = self.server.fake._control(body)
        self._send(status, reply)



FakeAnthropic.handler_class = _Handler


def main(argv: list[str] | None = None) -> int:
    """Run the fake server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="python tests/fakeapi.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--usage-delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    fake = FakeAnthropic(host=args.host, port=args.port, usage_delay=args.usage_delay).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(fake.base_url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
