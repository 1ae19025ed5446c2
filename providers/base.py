"""The one small protocol every resource provider follows.

A provider reads and parses its resource (`observe`), and writes exactly what it is told
(`write`). It never decides anything: deciding is the policy's job. Adding a resource kind (a
Linux Secret Service store, say) means one new module and one line in `REGISTRY` of its kind.
"""

from __future__ import annotations

import contextlib
from typing import Generic, Protocol, TypeVar, runtime_checkable

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
Obs = TypeVar("Obs")
Val = TypeVar("Val")


class ProviderError(Exception):
    """A provider could not read or write its resource. The message is one line, no secret."""


@runtime_checkable
class Provider(Protocol[T_co, T_contra]):
    #: short name used in logs and plans ("pool", "credentials", "settings.json")
    name: str

    def location(self) -> str:
        """Where the resource lives, for messages."""

    def observe(self) -> T_co:
        """Read and parse the resource. No side effects."""

    def write(self, value: T_contra) -> None:
        """Replace the resource's content with `value`, atomically."""


class Recorder(Generic[Obs, Val]):
    """Wraps a provider: observes the real resource, records writes instead of making them.

    `plan` runs the very same apply code through recorders (reconciler/apply.py `recording`), so
    a dry run cannot drift from the real thing (chezmoi's dry-run system, in our terms).
    `echo=True` (a provider whose `observe` returns what `write` takes): once written, `observe`
    answers the last recorded value, as the real resource would. A recorder exposes no lock of
    the inner provider's: a dry run never blocks another program. The recorded values stay in
    memory (they may hold secrets).
    """

    def __init__(self, inner: Provider[Obs, Val], *, echo: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.echo = echo
        self.writes: list[Val] = []

    def location(self) -> str:
        return self.inner.location()

    def hold(self) -> "contextlib.AbstractContextManager[None]":
        """No lock: a dry run never blocks another program."""
        return contextlib.nullcontext()

    def observe(self) -> Obs:
        if self.echo and self.writes:
            return self.writes[-1]  # type: ignore[return-value]
        return self.inner.observe()

    def write(self, value: Val, **_how: object) -> None:   # how the inner one would write it (`into`, ...)
        self.writes.append(value)
