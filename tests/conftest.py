"""Shared fixtures: one parametrised fixture runs each test under every strategy."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (hstrategies, fakes)

import lambda_fanout  # noqa: E402


@pytest.fixture(params=lambda_fanout.STRATEGIES)
def strategy_name(request) -> str:
    """Each strategy name in turn."""
    return request.param


@pytest.fixture(params=[s for s in lambda_fanout.STRATEGIES if s != "sequential"])
def concurrent_strategy(request) -> str:
    """Each strategy that runs items concurrently (not the sequential reference)."""
    return request.param


@pytest.fixture(autouse=True)
def _clean_fanout_env(monkeypatch):
    """No test sees FANOUT_* settings from the environment it was started in."""
    for name in list(os.environ):
        if name.startswith("FANOUT_") or name == "AWS_LAMBDA_FUNCTION_NAME":
            monkeypatch.delenv(name)


class FakeContext:
    """A Lambda context whose remaining time runs on the real monotonic clock."""

    def __init__(self, remaining_ms: float) -> None:
        self.deadline = time.monotonic() + remaining_ms / 1000.0
        self.function_name = "fanout-test"
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.fixture
def fake_context():
    """A factory for Lambda contexts with a given remaining time in ms."""
    return FakeContext
