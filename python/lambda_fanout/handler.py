"""The zero-code handler: set a function's Handler to ``lambda_fanout.handler.handler``.

Environment:
    FANOUT_RECORD_HANDLER   ``module.function`` (or ``dir/module.function``) of the
                            per-record function, resolved from the task root the way
                            Lambda resolves handlers.
    FANOUT_STRATEGY, FANOUT_MAX_WORKERS, FANOUT_DEADLINE_MARGIN_MS, FANOUT_METRICS.

Everything is resolved and checked when Lambda imports this module (init), so a
missing or wrong setting fails the function at once, with the variable and its value
in the message.
"""

from __future__ import annotations

import importlib
import os
import sys
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from . import _config, _metrics, get_strategy
from ._errors import ConfigError
from ._task import has_async_form


def resolve_record_handler(spec: str | None = None) -> Callable[[Any], Any]:
    """Import the per-record function named by ``spec`` (default: FANOUT_RECORD_HANDLER).

    Raises:
        ConfigError: unset, malformed, a module that does not import, or a name that
            is missing or not callable.
    """
    var = _config.ENV_RECORD_HANDLER
    if spec is None:
        spec = os.environ.get(var)
    shown = f"{var}={spec!r}"
    if not spec:
        raise ConfigError(
            f"{var} is {'set to an empty value ' + repr(spec) if spec == '' else 'not set'}; "
            "set it to the per-record function as "
            "module.function (e.g. app.process_record, or dir/app.process_record), the way a "
            "Lambda Handler is written."
        )
    module_path, _, func_name = spec.strip().rpartition(".")
    if not module_path or not func_name or spec != spec.strip() or " " in spec:
        raise ConfigError(
            f"{shown} is not of the form module.function (e.g. app.process_record); "
            "set it the way a Lambda Handler is written."
        )
    module_name = module_path.replace("/", ".")
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{shown}: module {module_name!r} could not be imported ({type(exc).__name__}: {exc}). "
            "Check the module is in the function's code (the task root) and imports cleanly."
        ) from exc
    try:
        fn = getattr(module, func_name)
    except AttributeError:
        raise ConfigError(
            f"{shown}: module {module_name!r} has no attribute {func_name!r}. "
            "Check the function name."
        ) from None
    if not callable(fn):
        raise ConfigError(
            f"{shown}: {module_name}.{func_name} is a {type(fn).__name__}, not a function. "
            "Point it at the per-record function."
        )
    return fn


def _check_settings(record_handler: Callable[[Any], Any]) -> None:
    # FANOUT_STRATEGY, FANOUT_MAX_WORKERS, FANOUT_DEADLINE_MARGIN_MS, and whether the
    # record handler has the form the strategy runs (a coroutine function needs asyncio).
    strategy = get_strategy()
    if strategy.form == "async" and not has_async_form(record_handler):
        # map() only warns here; a batch cannot afford it: a record that blocks the loop
        # cannot be cut at the deadline, and a timeout retries the whole batch.
        raise ConfigError(
            f"{_config.ENV_STRATEGY}=asyncio runs each record's coroutine form, but "
            f"{_config.ENV_RECORD_HANDLER}={os.environ.get(_config.ENV_RECORD_HANDLER)!r} has none: its records "
            "would run one at a time on the event loop, and one that blocks could not be cut at the "
            "deadline (Lambda would time out and retry the whole batch). Give the record handler an async "
            "form (an async def, or lambda_fanout.Task(process, aprocess)), or choose a thread strategy "
            f"({_config.ENV_STRATEGY}=threads)."
        )
    strategy._form(record_handler)
    _metrics.enabled()
    _metrics.namespace()


RECORD_HANDLER = resolve_record_handler()
_check_settings(RECORD_HANDLER)


def handler(event: Any, context: Any) -> Any:
    """Lambda entry point: process the batch with FANOUT_RECORD_HANDLER (see process_batch)."""
    from .batch import process_batch

    return process_batch(event, RECORD_HANDLER, context)
