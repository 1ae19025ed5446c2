"""The reconciler and the CLI. Loaded under one name only, `claude_pool.reconciler` (the symlink
claude_pool/reconciler, or the wheel's mapping): imported a second time as plain `reconciler`, its
modules would be separate copies, each with registries of its own (docs/ARCHITECTURE.md §2)."""

if __name__ != "claude_pool.reconciler":
    raise ImportError(f"claude-pool's reconciler package was imported as {__name__!r}: import it as "
                      "claude_pool.reconciler (one copy of its modules and their registries)")
