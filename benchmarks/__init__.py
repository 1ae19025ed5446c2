"""Development-only tools (not part of the installed package): the pooling simulator."""
