"""Powertools for AWS Lambda's batch processors, with the records run concurrently by lambda_fanout.

A Powertools user switches by changing one import::

    from lambda_fanout.powertools import BatchProcessor, EventType, process_partial_response

What belongs here: :class:`BatchProcessor`, :class:`AsyncBatchProcessor` and
:class:`SqsFifoPartialProcessor`, subclasses of Powertools' own with the same
constructor arguments, whose ``process()`` / ``async_process()`` (what every Powertools
entry point calls inside ``with processor(records, handler, context)``) run the records
through the ledger, deadline and strategy of :func:`lambda_fanout.process_batch`, then
hand each outcome, in record order, to Powertools' ``success_handler`` /
``failure_handler``, so ``success_messages``, ``fail_messages``, ``exceptions``,
``response()`` and ``BatchProcessingError`` are Powertools' own. Powertools' per-record
hooks (``_process_record``, ``_async_process_record``) are never called, so a subclass
overriding one is refused; ``_to_batch_type`` is used. Every other name of
``aws_lambda_powertools.utilities.batch`` (``EventType``, ``process_partial_response``,
the decorators...) is re-exported unchanged.

Powertools is imported when this module is, never by ``import lambda_fanout``, and the
layer does not carry it: the function brings its own (or Powertools' public layer).
"""

from __future__ import annotations

import asyncio
import os
import sys
from functools import partial

from aws_lambda_powertools.shared.constants import LAMBDA_TASK_ROOT_ENV
from aws_lambda_powertools.utilities import batch as _powertools
from aws_lambda_powertools.utilities.batch import (
    BasePartialBatchProcessor,
    BasePartialProcessor,
    BatchTypeModels,
    EventType,
    ExceptionInfo,
    FailureResponse,
    SuccessResponse,
    async_batch_processor,
    async_process_partial_response,
    batch_processor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from ._config import ENV_STRATEGY, Settings
from ._errors import ConfigError, SkippedAfterFailure, is_own_report
from ._task import Task, _name_of
from .batch import arun_records, run_records, shape_of_records
from .strategies import build

# Annotations only (postponed by `from __future__ import annotations`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._task import Outcome
    from .strategies.base import Strategy

__all__ = [
    "BatchProcessor", "AsyncBatchProcessor", "SqsFifoPartialProcessor",
    "EventType", "process_partial_response", "async_process_partial_response", "batch_processor",
    "async_batch_processor", "BasePartialProcessor", "BasePartialBatchProcessor", "BatchTypeModels",
    "ExceptionInfo", "FailureResponse", "SuccessResponse", "BatchProcessingError",
]

#: Powertools' event type -> the source name lambda_fanout's batch layer knows it by.
_SOURCES = {
    EventType.SQS: "sqs",
    EventType.KinesisDataStreams: "kinesis",
    EventType.DynamoDBStreams: "dynamodb",
    EventType.Kafka: "kafka",
}


class _RecordCall:
    """One record through the user's record handler, called as Powertools calls it.

    The record becomes what the processor's ``_to_batch_type`` makes of it (its data
    class, or the user's Pydantic ``model``), then the handler is called with the keyword
    ``record`` (and ``lambda_context`` when its signature has that parameter). Under
    ``processes`` this object is pickled to the workers: the handler, the model and the
    Lambda context must pickle (and the processor, when it overrides ``_to_batch_type``).
    """

    __slots__ = ("handler", "to_batch_type", "lambda_context")

    def __init__(self, handler: Callable[..., Any], to_batch_type: Callable[[dict], Any], lambda_context: Any) -> None:
        self.handler = handler
        #: the record -> what the handler receives
        self.to_batch_type = to_batch_type
        #: the context to pass, or None when the handler does not take one
        self.lambda_context = lambda_context

    def __repr__(self) -> str:
        # Messages about the task (a handler that does not pickle...) name the user's handler.
        return _name_of(self.handler)

    def __call__(self, record: dict) -> Any:
        data = self.to_batch_type(record)
        if self.lambda_context is not None:
            return self.handler(record=data, lambda_context=self.lambda_context)
        return self.handler(record=data)

    async def aio(self, record: dict) -> Any:
        data = self.to_batch_type(record)
        if self.lambda_context is not None:
            return await self.handler(record=data, lambda_context=self.lambda_context)
        return await self.handler(record=data)


class _BatchType:
    """Powertools' own ``_to_batch_type`` for one processor: the record parsed into the
    ``model``, else its data class. Only these two travel to ``processes`` workers, not the processor."""

    __slots__ = ("data_class", "model")

    def __init__(self, data_class: type, model: Any) -> None:
        self.data_class = data_class
        self.model = model

    def __call__(self, record: dict) -> Any:
        return self.model.model_validate(record) if self.model is not None else self.data_class(record)


#: Powertools' per-record hooks, which these processors never call (they run the handler themselves).
_RECORD_HOOKS = ("_process_record", "_async_process_record")


class _Concurrent:
    """What the three processors share: the records run by lambda_fanout, then Powertools' bookkeeping.

    A subclass says which form of the record handler runs (:meth:`_task`), which
    settings apply (:meth:`_settings`), and how a record it never started is reported
    (:meth:`_exception_info`).
    """

    #: True: the batch is an SQS FIFO batch whatever its queue's ARN (the processor says so).
    _fifo = False
    #: The Lambda context of the current call when it has a deadline to read, else None.
    _deadline_context: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # An override of a hook this module never calls would be silently dropped: refuse it.
        super().__init_subclass__(**kwargs)
        for hook in _RECORD_HOOKS:
            if hook in vars(cls):
                raise TypeError(
                    f"{cls.__qualname__} overrides {hook}, which lambda_fanout.powertools does not call: "
                    f"its processors run the record handler concurrently themselves, not one record at a "
                    f"time through {hook}. Put the per-record work in the record handler (or a function "
                    "wrapping it), or override success_handler / failure_handler, which are called once "
                    "per record, in record order; to keep the override, subclass "
                    "aws_lambda_powertools.utilities.batch's processor instead."
                )

    def __call__(self, records: list[dict], handler: Callable, lambda_context: Any = None):
        super().__call__(records, handler, lambda_context)
        # Powertools hands any lambda_context to the handler and never reads its time (its
        # tests pass {}, users' tests a MagicMock()); only a context whose remaining time is
        # a number, as a real one's is, sets the deadline.
        remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
        has_deadline = callable(remaining) and type(remaining()) in (int, float)
        self._deadline_context = lambda_context if has_deadline else None
        return self

    def _task(self, call: _RecordCall) -> Task:
        """The task the strategy runs: the record handler's sync form."""
        return Task(call, name=_name_of(self.handler))

    def _settings(self, task: Task) -> Settings:
        """The settings of this call, resolved now (``FANOUT_*``) for ``task``: without
        FANOUT_STRATEGY, the strategy that runs its form (asyncio for an async-only task)."""
        return Settings.resolve(task=task)

    def _run(self) -> list[tuple]:
        """Run every record concurrently, then report each outcome in record order; Powertools' list of entries."""
        records = list(self.records)
        if not records:
            return []
        shape = shape_of_records(_SOURCES[self.event_type], records, fifo=self._fifo)
        context = self.lambda_context if self._handler_accepts_lambda_context else None
        task = self._task(_RecordCall(self.handler, self._batch_type(), context))
        outcomes, _ = self._outcomes(shape, task, build(self._settings(task)))
        return [self._report(outcome) for outcome in outcomes]

    def _batch_type(self) -> Callable[[dict], Any]:
        """What the handler receives for a record: this processor's ``_to_batch_type``, overridden or Powertools'."""
        if type(self)._to_batch_type is BasePartialBatchProcessor._to_batch_type:
            return _BatchType(self._DATA_CLASS_MAPPING[self.event_type], self.model)
        return partial(self._to_batch_type, event_type=self.event_type, model=self.model)

    def _outcomes(self, shape: Any, task: Task, strategy: Strategy) -> tuple[list, list]:
        """The records run by ``strategy``'s ledger: their Outcomes in record order, and the failures."""
        return run_records(shape, task, self._deadline_context, strategy)

    def _report(self, outcome: Outcome) -> tuple:
        record = outcome.item
        if outcome.error is None:
            try:
                return self.success_handler(record=record, result=outcome.value)
            except Exception as error:  # Powertools' success_handler runs inside the record's try: its error fails the record
                return self.failure_handler(record=self._failed_record(record, error), exception=sys.exc_info())
        error = outcome.error
        return self.failure_handler(record=self._failed_record(record, error), exception=self._exception_info(error))

    def _failed_record(self, record: dict, error: BaseException) -> Any:
        """A failed record as Powertools reports it: parsed into the model, else its data class (a poison pill).

        As in Powertools, an error naming the processor's model (Pydantic's ValidationError,
        raised by the parsing or by the handler) makes the record a poison pill.
        """
        rejected_by = getattr(error, "model", None) or getattr(error, "title", None)
        if rejected_by in (self.model, getattr(self.model, "__name__", None)):
            return self._to_batch_type(record=record, event_type=self.event_type)
        try:
            return self._to_batch_type(record=record, event_type=self.event_type, model=self.model)
        except Exception:
            return self._to_batch_type(record=record, event_type=self.event_type)

    def _exception_info(self, error: BaseException) -> ExceptionInfo:
        return (type(error), error, error.__traceback__)


class BatchProcessor(_Concurrent, _powertools.BatchProcessor):
    """Powertools' ``BatchProcessor``, its records run concurrently under ``FANOUT_STRATEGY``.

    Records of one SQS FIFO message group (a queue whose ARN ends in ``.fifo``), one
    Kinesis partition key, one DynamoDB item key or one Kafka partition run in order,
    one at a time, as :func:`lambda_fanout.process_batch` runs them.
    """

    def process(self) -> list[tuple]:
        return self._run()


class AsyncBatchProcessor(_Concurrent, _powertools.AsyncBatchProcessor):
    """Powertools' ``AsyncBatchProcessor``: the ``async def`` record handler awaited under ``asyncio``.

    Without ``FANOUT_STRATEGY`` the records run under the ``asyncio`` strategy; a strategy
    named there must be able to await the handler. The records run on the event loop
    Powertools' ``async_process`` uses (in Lambda, the thread's own loop, where the
    function's init may have made its clients). Inside a running loop the call is refused
    with RuntimeError, as every blocking call of lambda_fanout is (Powertools' raises too).
    """

    def async_process(self) -> list[tuple]:
        return self._run()

    def _task(self, call: _RecordCall) -> Task:
        return Task(None, call.aio, name=_name_of(self.handler))

    def _outcomes(self, shape: Any, task: Task, strategy: Strategy) -> tuple[list, list]:
        if not strategy.needs_async_form:
            raise ConfigError(
                f"AsyncBatchProcessor awaits its record handler {task.name!r} (it runs only an async form "
                f"of it), but {ENV_STRATEGY}={strategy.name!r} cannot await it. Unset {ENV_STRATEGY} (or "
                "set it to asyncio). A plain `def` record handler goes with BatchProcessor and "
                "process_partial_response, which run it under any strategy. Nothing was run."
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            running = False
        else:
            running = True
        if not running:
            # Outside the except block: a record's exception must not carry this lookup's
            # RuntimeError as its context, into every failure's log line.
            return _run_as_powertools(arun_records(shape, task, self._deadline_context, strategy))
        return super()._outcomes(shape, task, strategy)


def _run_as_powertools(coro: Any) -> Any:
    """``coro`` run to its end on the loop Powertools' ``async_process`` runs its records on.

    In Lambda (``LAMBDA_TASK_ROOT`` set) the thread's event loop, kept across warm
    invocations (one is made when there is none); elsewhere a new one, by ``asyncio.run``.
    """
    if os.getenv(LAMBDA_TASK_ROOT_ENV):
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(loop.create_task(coro))
    return asyncio.run(coro)


class SqsFifoPartialProcessor(BatchProcessor, _powertools.SqsFifoPartialProcessor):
    """Powertools' ``SqsFifoPartialProcessor``: message groups run concurrently, each in order.

    ``skip_group_on_error=True``: after a record fails, the later records of its message
    group are not started and are reported failed; the other groups go on.
    ``skip_group_on_error=False`` (Powertools' default): once the first failure is
    recorded no record starts, and every record not started is reported failed.
    The batch is FIFO whatever its queue's ARN: the processor says so.
    """

    _fifo = True

    def _settings(self, task: Task) -> Settings:
        return Settings.resolve(fifo_on_failure="group" if self._skip_group_on_error else "batch", task=task)

    def _exception_info(self, error: BaseException) -> ExceptionInfo:
        # A record the ledger did not start after a failure is Powertools' circuit breaker.
        if isinstance(error, SkippedAfterFailure) and is_own_report(error):
            return self.group_circuit_breaker_exc if self._skip_group_on_error else self.circuit_breaker_exc
        return super()._exception_info(error)
