"""Exceptions raised by lambda_fanout."""

from __future__ import annotations


class ConfigError(ValueError):
    """A strategy name, worker count or other setting is not valid.

    Raised for a bad argument or a bad ``FANOUT_*`` environment variable; the
    message names the setting, repeats the bad value and lists what is valid.
    """


class DeadlineExceeded(TimeoutError):
    """An item was not run (or did not finish) before the Lambda deadline margin."""


class TaskError(Exception):
    """A task failed on one item while ``errors="raise"``.

    Attributes:
        index: position of the failing item in the input.
        item: the failing item.

    The original exception is chained as ``__cause__``. The message names the
    index and the exception type only, never the item, so that a record's
    payload does not reach the logs.
    """

    def __init__(self, index: int, item: object, cause: BaseException) -> None:
        super().__init__(
            f"task failed on item #{index}: {type(cause).__name__}: {cause}"
        )
        self.index = index
        self.item = item

    def __reduce__(self):
        return (_rebuild_task_error, (self.args, self.index, self.item))


def _rebuild_task_error(args, index, item):
    err = TaskError.__new__(TaskError)
    Exception.__init__(err, *args)
    err.index = index
    err.item = item
    return err
