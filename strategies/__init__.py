"""Strategy selection: every strategy's name, where its class lives, and the one lookup.

Three homes, one each: the contract every strategy implements is
:class:`~lambda_fanout.strategies.base.Strategy` (``base.py``); each implementation is
a module of this package holding one subclass, with every rule of its own as an
attribute or method of that class (``needs_async_form``, ``default_workers``,
``auto_workers``, ``runs_in_processes``, ``adapt``...); and selection is here.

A new strategy goes here: write ``strategies/<module>.py`` with a subclass of
``Strategy`` (implement ``_drive``, override the rules that differ), then add one line
to :data:`CLASSES`: its name, module and class. That line is the only place the name is
written (the class's ``name`` is set from it). Nothing else names it: the settings layer
(``lambda_fanout._config``) validates ``FANOUT_STRATEGY`` against :data:`STRATEGIES`
and asks the class for its rules, and no shared module tests a strategy's name.

This module sits below the settings layer and imports none of the strategy modules:
a strategy's module loads on its first lookup, so only the one in use is imported
(tests/test_cold_start.py checks it).
"""

from __future__ import annotations

import importlib

from .. import _shadowing
from .._errors import ConfigError

#: name -> (module in this package, class name), in the order the README lists them.
CLASSES: dict[str, tuple[str, str]] = {
    "sequential": ("sequential", "SequentialStrategy"),
    "threads": ("threads", "ThreadsStrategy"),
    "threads-map": ("threads_map", "ThreadsMapStrategy"),
    "asyncio": ("aio", "AsyncioStrategy"),
    "processes": ("processes", "ProcessesStrategy"),
}
#: Every strategy's name (``lambda_fanout.STRATEGIES``).
STRATEGIES: tuple[str, ...] = tuple(CLASSES)


def strategy_class(name: str):
    """The class of the named strategy, its module imported on first use.

    Raises:
        ConfigError: an unknown name (settings are validated before they get here).
    """
    try:
        module, cls = CLASSES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))} but got {name!r}.") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def default_for(task, names: tuple[str, ...]) -> str:
    """The strategy an unset FANOUT_STRATEGY means for ``task``: the first of ``names`` whose
    class runs a form the task has (``has_form_for``), else the first of them.

    Only the classes tried are imported: a task the first one runs loads no other.
    """
    for name in names:
        if strategy_class(name).has_form_for(task):
            return name
    return names[0]  # no form fits (not a task at all): that strategy's own check reports it


def build(settings):
    """The strategy ``settings.strategy`` names, built with ``settings`` (``Settings.resolve()``'s)."""
    cls = strategy_class(settings.strategy)
    # A botocore bundled in the function's code: an error for the async form, a warning otherwise.
    _shadowing.check("async" if cls.needs_async_form else "sync")
    return cls(settings)
