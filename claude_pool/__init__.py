"""claude-pool: keep Claude Code on the credential with the most rate-limit headroom."""

__version__ = "0.2.0"
