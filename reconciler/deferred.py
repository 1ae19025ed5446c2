"""Modules put in sys.modules unexecuted, run at their first use (stdlib only).

A library we depend on sometimes imports, at its own import, a module that a run of ours never
uses: structlog's stdlib-logging bridge and asyncio (reconciler/audit.py), pydantic's plugin loader's
`importlib.metadata` (below). `defer` puts such a module in sys.modules as a real module object
whose code has not run yet; the first name anyone asks of it runs the code into that same object,
so whoever does use it gets it whole, and a run that never does saves its import.

Not importlib.util.LazyLoader: its module runs at the first attribute anyone reads, the import
system's own `__spec__`/`__path__` reads included, so `import asyncio` would run asyncio at once
(tests/test_import_budget.py checks each deferral holds, and that a deferred module works).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable


class _OnFirstUse:
    """The `__getattr__` (PEP 562) of a module put in sys.modules unexecuted: the first name
    asked of it runs the module's code into that same module object, then answers (a module
    whose code fails is taken out of sys.modules, as a failed import is)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.lock = threading.RLock()

    def run(self) -> None:
        namespace = self.module.__dict__
        with self.lock:
            if namespace.get("__getattr__") is self:
                del namespace["__getattr__"]
                try:
                    self.module.__spec__.loader.exec_module(self.module)
                except BaseException:
                    if sys.modules.get(self.module.__name__) is self.module:
                        del sys.modules[self.module.__name__]
                    raise

    def __call__(self, name: str) -> Any:
        self.run()
        namespace = self.module.__dict__
        if name in namespace:
            return namespace[name]
        if callable(namespace.get("__getattr__")):   # the module's own
            return namespace["__getattr__"](name)
        raise AttributeError(f"module {self.module.__name__!r} has no attribute {name!r}")


def is_deferred(module: Any) -> bool:
    """Is this module still waiting for its first use (its code not run)?"""
    return isinstance(getattr(module, "__dict__", {}).get("__getattr__"), _OnFirstUse)


def defer(names: tuple[str, ...], *, calls: dict[str, tuple[str, ...]] | None = None) -> None:
    """Put each module of `names` that is not imported yet in sys.modules, unexecuted.

    `calls`: module -> names of its functions that an importer binds at its own import
    (`from M import f`) but calls only later, if ever: each gets a stand-in that runs the module
    at its first call and calls the real function, so binding it does not run the module."""
    import importlib.machinery
    import importlib.util

    for name in names:
        if name in sys.modules:
            continue
        parent = name.rpartition(".")[0]
        try:
            # a top-level name is found, not imported (`structlog` is not imported yet here)
            spec = importlib.util.find_spec(parent or name)
            if parent:
                where = spec.submodule_search_locations if spec is not None else None
                spec = importlib.machinery.PathFinder.find_spec(name, list(where)) if where else None
        except (ImportError, ValueError):
            continue
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            continue
        module = importlib.util.module_from_spec(spec)
        hook = _OnFirstUse(module)
        module.__getattr__ = hook  # type: ignore[attr-defined]
        for fn in (calls or {}).get(name, ()):
            setattr(module, fn, _stand_in(hook, fn))
        sys.modules[name] = module
        if parent in sys.modules:   # as the import system does: `importlib.metadata` is importlib's
            setattr(sys.modules[parent], name.rpartition(".")[2], module)


def _stand_in(hook: _OnFirstUse, fn: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        hook.run()   # the module's code replaces this stand-in with the real function
        return getattr(hook.module, fn)(*args, **kwargs)

    call.__name__ = call.__qualname__ = fn
    return call


# pydantic's plugin loader (`pydantic/plugin/_loader.py`) binds `importlib.metadata.entry_points` at
# its import, the first time a model is built, and calls it only when plugins are not disabled; the
# engine disables them (reconciler/commands.py NO_PLUGINS). importlib.metadata brings zipfile, csv,
# email, bz2, lzma and importlib.resources: about 25 ms and 2 MiB of every engine run, for nothing.
PYDANTIC_PLUGIN_SCAN = ("importlib.metadata",)
PYDANTIC_PLUGIN_CALLS = {"importlib.metadata": ("entry_points",)}


def defer_pydantic_plugin_scan() -> None:
    """Before pydantic is imported: its plugin scan's `importlib.metadata`, run only if used."""
    if "pydantic" not in sys.modules:
        defer(PYDANTIC_PLUGIN_SCAN, calls=PYDANTIC_PLUGIN_CALLS)
