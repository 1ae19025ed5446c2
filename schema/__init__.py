"""The pydantic models. Loaded under one name only, `claude_pool.schema` (the symlink
claude_pool/schema, or the wheel's mapping): imported a second time as plain `schema`, its modules
would be separate copies, their classes not the ones the rest of claude-pool checks against
(docs/ARCHITECTURE.md §2)."""

if __name__ != "claude_pool.schema":
    raise ImportError(f"claude-pool's schema package was imported as {__name__!r}: import it as "
                      "claude_pool.schema (one copy of its modules and their classes)")
