"""Context variables: a task sees what its caller set, under every in-process strategy.

Powertools Logger's appended keys, OpenTelemetry spans and X-Ray segments travel in
context variables, so a strategy change must not lose them. Each item runs in a copy of
the caller's context (an asyncio worker coroutine in its own copy, as asyncio gives each
task), so what a task sets never reaches the caller. ``processes`` runs items in other
processes, where the caller's context does not exist (README).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging

import pytest

import lambda_fanout

IN_PROCESS = [s for s in lambda_fanout.STRATEGIES if s != "processes"]
#: Strategies whose items each run in a fresh copy (asyncio's workers each keep one copy).
PER_ITEM = [s for s in IN_PROCESS if s != "asyncio"]

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="unset")


def read(_):
    return tenant.get()


async def aread(_):
    await asyncio.sleep(0)
    return tenant.get()


READ = lambda_fanout.Task(read, aread)


def read_then_set(item):
    seen = tenant.get()
    tenant.set(f"item-{item}")
    return seen


async def aread_then_set(item):
    seen = tenant.get()
    tenant.set(f"item-{item}")
    await asyncio.sleep(0)
    return seen


READ_THEN_SET = lambda_fanout.Task(read_then_set, aread_then_set)


def _in_context(fn, *args, **kwargs):
    # A fresh context per test: what a test sets never reaches another test.
    return contextvars.copy_context().run(fn, *args, **kwargs)


@pytest.mark.parametrize("strategy", IN_PROCESS)
@pytest.mark.parametrize("deadline", [False, True], ids=["no-deadline", "deadline"])
def test_map_task_sees_the_callers_context_variable(strategy, deadline, fake_context):
    context = fake_context(60_000) if deadline else None

    def call():
        tenant.set("acme")
        return lambda_fanout.map(READ, range(40), strategy=strategy, max_workers=4, context=context)

    assert _in_context(call) == ["acme"] * 40


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_amap_task_sees_the_callers_context_variable(strategy):
    async def handler():
        tenant.set("acme")
        return await lambda_fanout.amap(READ, range(40), strategy=strategy, max_workers=4)

    assert _in_context(asyncio.run, handler()) == ["acme"] * 40


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_collect_mode_and_auto_keep_the_callers_context_variable(strategy):
    def call():
        tenant.set("acme")
        return lambda_fanout.map(READ, range(40), strategy=strategy, max_workers="auto", errors="collect")

    assert [o.value for o in _in_context(call)] == ["acme"] * 40


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_a_value_the_task_sets_never_reaches_the_caller(strategy):
    def call():
        tenant.set("acme")
        lambda_fanout.map(READ_THEN_SET, range(20), strategy=strategy, max_workers=4)
        return tenant.get()

    assert _in_context(call) == "acme"


@pytest.mark.parametrize("strategy", PER_ITEM)
def test_each_item_starts_from_the_callers_context_not_the_previous_items(strategy):
    def call():
        tenant.set("acme")
        return lambda_fanout.map(READ_THEN_SET, range(50), strategy=strategy, max_workers=2)

    assert _in_context(call) == ["acme"] * 50


worker_copy: contextvars.ContextVar[object] = contextvars.ContextVar("worker_copy", default=None)


def test_asyncio_workers_spawned_under_auto_each_start_from_the_callers_context():
    # Under auto the pool grows while the call runs: a worker spawned then starts from
    # its own copy of the caller's context, never from the running worker's copy (which
    # holds what that worker's items set). Each worker runs one item at a time, so two
    # items running at once never share a copy.
    running: dict[int, int] = {}
    shared = []

    def never(_):
        raise AssertionError("asyncio runs the coroutine form")

    async def mark_copy(item):
        assert tenant.get() == "acme"
        copy = worker_copy.get()
        if copy is None:
            copy = object()
            worker_copy.set(copy)
        running[id(copy)] = running.get(id(copy), 0) + 1
        if running[id(copy)] > 1:
            shared.append(item)
        await asyncio.sleep(0.002)
        running[id(copy)] -= 1
        return id(copy)

    def call():
        tenant.set("acme")
        return lambda_fanout.map(lambda_fanout.Task(never, mark_copy), range(2000), strategy="asyncio",
                                 max_workers="auto:64")

    copies = _in_context(call)
    assert len(set(copies)) > 1  # the pool spawned workers while it ran
    assert shared == []


@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_powertools_logger_keys_appended_by_the_caller_reach_the_task_log(strategy):
    from aws_lambda_powertools import Logger

    stream = io.StringIO()
    # One service per strategy: Powertools sets up a service's logger once per process.
    logger = Logger(service=f"orders-{strategy}", logger_handler=logging.StreamHandler(stream))

    def log(item):
        logger.info("record done", record=item)
        return item

    async def alog(item):
        return log(item)

    def call():
        logger.thread_safe_append_keys(tenant="acme")
        return lambda_fanout.map(lambda_fanout.Task(log, alog), range(10), strategy=strategy, max_workers=4)

    assert _in_context(call) == list(range(10))  # the keys were appended in that copy only
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line["record"] for line in lines) == list(range(10))
    assert {line.get("tenant") for line in lines} == {"acme"}
