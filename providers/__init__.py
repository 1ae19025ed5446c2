"""Everything that touches the outside. Loaded under one name only, `claude_pool.providers` (the
symlink claude_pool/providers, or the wheel's mapping): imported a second time as plain
`providers`, its modules would be separate copies, each with registries of its own (the credential
stores' REGISTRY) (docs/ARCHITECTURE.md §2)."""

if __name__ != "claude_pool.providers":
    raise ImportError(f"claude-pool's providers package was imported as {__name__!r}: import it as "
                      "claude_pool.providers (one copy of its modules and their registries)")
