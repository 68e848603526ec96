"""Fakes of what Lambda hands a handler: the context, with its remaining time."""

from __future__ import annotations

import time


class FakeContext:
    """A Lambda context whose remaining time runs on the real monotonic clock."""

    def __init__(self, remaining_ms: float) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000.0
        self.function_name = "fanout-test"
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)
