#!/bin/sh
# A Claude Code statusLine built on `claude-pool status` (no network, a few ms).
# settings.json:  "statusLine": {"type": "command", "command": "/path/to/statusline.sh"}
# Prefer `claude-pool statusline` (it also feeds Claude Code's free rate-limit data back into
# the pool); this script shows how to build your own line from the JSON.
cat >/dev/null   # Claude Code sends its JSON on stdin; this script does not need it
status=$(claude-pool status 2>/dev/null) || { echo "pool: ?"; exit 0; }
mode=$(printf '%s' "$status" | sed -n 's/.*"mode": *"\([^"]*\)".*/\1/p')
name=$(printf '%s' "$status" | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p')
left=$(printf '%s' "$status" | sed -n 's/.*"reset_in_seconds": *\([0-9]*\).*/\1/p')
bypassed=$(printf '%s' "$status" | sed -n 's/.*"bypassed_by": *"\([^"]*\)".*/\1/p')
if [ -n "$bypassed" ]; then   # this session sends a credential of its environment, not the pool's
  printf '\033[33mpool: bypassed by %s\033[0m\n' "$bypassed"
elif [ "$mode" = "apikey" ]; then
  if [ -n "$left" ]; then
    printf '\033[33mpool: API key %s · accounts back in %dh%02dm\033[0m\n' "$name" $((left / 3600)) $((left % 3600 / 60))
  else
    printf '\033[33mpool: API key %s\033[0m\n' "$name"
  fi
elif [ "$mode" = "empty" ]; then
  printf 'pool: empty\n'
else
  printf 'pool: %s\n' "$name"
fi
