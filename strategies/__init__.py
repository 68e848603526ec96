"""The strategy registry: a tuple of names, a name-to-module mapping, one lookup (and a builder).

Strategy modules load on first lookup, so only the one in use is imported.
"""

from __future__ import annotations

import importlib

from .. import _config

STRATEGIES: tuple[str, ...] = ("sequential", "threads", "threads-map", "asyncio", "processes")

#: name -> (module in this package, class name)
_CLASSES: dict[str, tuple[str, str]] = {
    "sequential": ("sequential", "SequentialStrategy"),
    "threads": ("threads", "ThreadsStrategy"),
    "threads-map": ("threads_map", "ThreadsMapStrategy"),
    "asyncio": ("aio", "AsyncioStrategy"),
    "processes": ("processes", "ProcessesStrategy"),
}


def strategy_class(name: str):
    """The class of the named strategy.

    Raises:
        ConfigError: an unknown name, repeating it and listing the valid ones.
    """
    name = _config.resolve_choice(
        name, argument="strategy", env=None, default=_config.DEFAULT_STRATEGY, choices=STRATEGIES
    )
    from .. import _shadowing

    # A botocore bundled in the function's code: an error for asyncio, a warning otherwise.
    _shadowing.check("async" if name == "asyncio" else "sync")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def build(settings: _config.Settings):
    """The strategy ``settings.strategy`` names, built with ``settings``."""
    return strategy_class(settings.strategy)(settings)
