"""A deterministic simulator of weeks of Claude Code work against a simulated Anthropic.

Development only: it is not in the wheel (pyproject lists the shipped packages). See
docs/SIMULATOR.md for the model, the metrics and the lower-bound argument.
"""
