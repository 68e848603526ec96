"""The zero-code handler: set a function's Handler to ``lambda_fanout.handler.handler``.

Environment:
    FANOUT_RECORD_HANDLER   ``module.function`` (or ``dir/module.function``) of the
                            per-record function, resolved from the task root the way
                            Lambda resolves handlers.
    FANOUT_STRATEGY, FANOUT_MAX_WORKERS, FANOUT_DEADLINE_MARGIN_MS, FANOUT_METRICS,
    FANOUT_FIFO_ON_FAILURE, FANOUT_RAISE_ON_ALL_FAILED, FANOUT_LOG_FAILURES (see the README's
    Configuration table).

Everything is resolved and checked once, at Lambda's init: the settings, into the
strategy kept for every warm invocation, and the record handler. A missing or wrong
setting fails the function at once, every bad one listed in one error with its
variable and value. Lambda names the function's Handler in ``_HANDLER``; when that is
this module's :func:`handler`, importing the module is the init. Imported any other
way (a handler of your own that calls this one, a test, the bench), importing it
resolves nothing: the first call does, or :func:`load` builds a handler from given
settings, once per configuration.
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

from . import _config, batch, strategies
from ._errors import ConfigError, kind
from ._task import has_async_form


def resolve_record_handler(spec: str | None = None, environ: Any = None) -> Callable[[Any], Any]:
    """Import the per-record function named by ``spec`` (default: FANOUT_RECORD_HANDLER in ``environ``).

    Raises:
        ConfigError: unset, malformed, a module that does not import, or a name that
            is missing or not callable.
    """
    var = _config.ENV_RECORD_HANDLER
    environ = os.environ if environ is None else environ
    if spec is None:
        spec = environ.get(var)
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
    task_root = environ.get("LAMBDA_TASK_ROOT")
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
            f"{shown}: {module_name}.{func_name} is {kind(fn)}, not a function. "
            "Point it at the per-record function."
        )
    return fn


def init(environ: Any = None) -> tuple[Callable[[Any], Any], Any]:
    """Resolve the record handler and the settings, and build the strategy kept for every invocation.

    Returns:
        (record handler, strategy).

    Raises:
        ConfigError: every bad setting at once, one line each: the record handler,
            FANOUT_STRATEGY, FANOUT_MAX_WORKERS, and the others; or a record handler
            without the form the strategy runs (a coroutine function needs asyncio, and
            asyncio needs a record handler with an async form).
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    record_handler = settings = None
    try:
        record_handler = resolve_record_handler(environ=environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        settings = _config.Settings.resolve(environ=environ, task=record_handler)
    except ConfigError as exc:
        problems.extend(exc.problems)
    spec = environ.get(_config.ENV_RECORD_HANDLER)
    strategy = None if settings is None else strategies.build(settings)
    if record_handler is not None and strategy is not None:
        problems.extend(form_problems(record_handler, strategy, spec))
    elif record_handler is not None:
        # Another setting is bad, but the strategy's name may be good: its check of the record
        # handler does not depend on the other settings, so its problem is listed with theirs.
        try:
            name = _config.resolve_strategy(environ=environ, task=record_handler)
        except ConfigError:
            name = None  # listed already
        if name is not None:
            stand_in = strategies.strategy_class(name)(_config.Settings.resolve(strategy=name, environ={}))
            problems.extend(form_problems(record_handler, stand_in, spec))
    if problems:
        raise ConfigError.of(problems)
    return record_handler, strategy


def form_problems(record_handler: Callable[[Any], Any], strategy: Any, spec: str | None) -> list[str]:
    """Why ``strategy`` cannot run ``record_handler`` (named ``spec``) for a batch: none, or one line.

    A coroutine function needs asyncio, asyncio needs a record handler with an async form,
    and processes need one that pickles by name.
    """
    if strategy.needs_async_form and not has_async_form(record_handler):
        # map() only warns here; a batch cannot afford it: a record that blocks the loop
        # cannot be cut at the deadline, and a timeout retries the whole batch.
        return [
            f"{_config.ENV_STRATEGY}=asyncio runs each record's coroutine form, but "
            f"{_config.ENV_RECORD_HANDLER}={spec!r} has none: its records would run one at a time on the "
            "event loop, and one that blocks could not be cut at the deadline (Lambda would time out and "
            "retry the whole batch). Give the record handler an async form (an async def, or "
            f"lambda_fanout.Task(process, aprocess)), or choose a thread strategy ({_config.ENV_STRATEGY}=threads)."
        ]
    try:
        strategy.adapt(record_handler)
    except ConfigError as exc:  # e.g. processes and a handler that cannot be pickled by name
        return [f"{_config.ENV_RECORD_HANDLER}={spec!r}: {exc}"]
    return []


def load(environ: Any = None) -> Callable[[Any, Any], Any]:
    """A zero-code handler resolved now from ``environ`` (default: the process's), as Lambda's init resolves it.

    Raises:
        ConfigError: as :func:`init`.
    """
    record_handler, strategy = init(environ)

    def handle(event: Any, context: Any) -> Any:
        return batch.run_batch(batch.detect(event), record_handler, context, strategy)

    return handle


#: The handler :func:`handler` runs, once resolved.
_loaded: Callable[[Any, Any], Any] | None = None


def handler(event: Any, context: Any) -> Any:
    """Lambda entry point: process the batch with FANOUT_RECORD_HANDLER (see process_batch)."""
    global _loaded
    if _loaded is None:  # not imported as the function's Handler: resolved at the first call
        _loaded = load()
    return _loaded(event, context)


if os.environ.get("_HANDLER", "").replace("/", ".") == f"{__name__}.handler":
    _loaded = load()  # Lambda's init: a bad setting fails the function here, before any event
