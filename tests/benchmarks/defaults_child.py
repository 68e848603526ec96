"""The measurements behind test_defaults_bench.py, run in a child process under Lambda's CPU share.

Argument: one JSON object, ``{"rounds": R, "sizes": {case: items}, "bucket": B, "proxy_url": U,
"configs": [...]}``. Prints one JSON line: per case, per configuration, the wall time of
each round (and for ``throttled`` the 503s the proxy sent), after checking every result.

A configuration is ``untuned`` (no strategy, no worker count: what a function gets with
no ``FANOUT_*`` setting), a fixed worker count, or an ``auto`` spelling, each also as
``<config>+warm`` (timed on the call after a first one); the SQS case with an async
handler also has Powertools' ``AsyncBatchProcessor``. Rounds interleave every
configuration of a case, in an order rotated each round, so a drift of the shared
machine lands on all of them alike. Before every timed call the limiter forgets what it
learned (a cold execution environment), unless the configuration says ``+warm``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import lambda_fanout
from lambda_fanout import _limiter, aws
from lambda_fanout.bench import seeding
from lambda_fanout.bench.workloads import THROTTLE_BURST, THROTTLE_RATE, WORKLOADS

#: Each SQS record's handler waits this long, as a call to a service would.
RECORD_IO_S = 0.010
POWERTOOLS = "powertools AsyncBatchProcessor"


def record(record):
    time.sleep(RECORD_IO_S)


async def arecord(record):
    await asyncio.sleep(RECORD_IO_S)


def settings_of(config: str) -> dict:
    """The map / process_batch arguments a configuration stands for (none: untuned)."""
    base = config.removesuffix("+warm")
    if base == "untuned":
        return {}
    return {"max_workers": int(base) if base.isdigit() else base}


class Case:
    """One workload: ``call(config)`` runs it once and returns what ``check`` verifies."""

    strategy = "threads"  # what a fixed count or auto runs under (untuned picks its own)
    proxy: dict | None = None

    def __init__(self, n: int, env: dict) -> None:
        self.n = n
        self.env = env

    def call(self, config: str):
        raise NotImplementedError

    def check(self, result) -> int:
        """Raises on a wrong result; returns the items reported failed."""
        raise NotImplementedError


class SqsSync(Case):
    def __init__(self, n, env):
        super().__init__(n, env)
        self.event = {"Records": seeding.sqs_records(n)}

    def handler(self):
        return record

    def call(self, config):
        args = settings_of(config)
        if args:
            args["strategy"] = self.strategy
        return lambda_fanout.process_batch(self.event, self.handler(), None, **args)

    def check(self, result):
        assert result == {"batchItemFailures": []}, result
        return 0


class SqsAsync(SqsSync):
    strategy = "asyncio"

    def handler(self):
        return arecord

    def call(self, config):
        if config == POWERTOOLS:
            from aws_lambda_powertools.utilities.batch import (
                AsyncBatchProcessor, EventType, async_process_partial_response)

            return async_process_partial_response(self.event, arecord, AsyncBatchProcessor(EventType.SQS), None)
        return super().call(config)


class Mapped(Case):
    """A bench workload through ``lambda_fanout.map`` (its task has both forms)."""

    def __init__(self, name, n, env):
        super().__init__(n, env)
        self.workload = WORKLOADS[name]
        self.items = self.workload.items(n)
        self.task = self.workload.task(env)
        self.expected = self.workload.expected(self.items)

    def call(self, config):
        args = settings_of(config)
        if args:
            args["strategy"] = self.strategy
        return lambda_fanout.map(self.task, self.items, errors=self.workload.errors, **args)

    def check(self, result):
        assert list(result) == self.expected
        return 0


class Throttled(Mapped):
    proxy = {"delay_ms": WORKLOADS["throttled"].default_latency_ms, "tail_sigma": 0.5,
             "throttle": {"rate": THROTTLE_RATE, "burst": THROTTLE_BURST}}

    def check(self, result):
        assert [o.index for o in result] == list(range(self.n))
        for o in result:
            assert o.value == self.expected[o.index] if o.ok else _limiter.is_throttle(o.error), o.error
        return sum(not o.ok for o in result)


def main(spec: dict) -> dict:
    from types import SimpleNamespace

    from lambda_fanout_dev.endpoint import ProxyControl

    proxy = ProxyControl(spec["proxy_url"]) if spec.get("proxy_url") else None
    env = SimpleNamespace(bucket=spec["bucket"], table=spec["bucket"], proxy=proxy)
    sizes = spec["sizes"]
    kinds = {"sqs-sync": SqsSync, "sqs-async": SqsAsync, "latency": Mapped, "cpu": Mapped, "frequency": Mapped,
             "throttled": Throttled}
    cases = {name: kind(sizes[name], env) if kind in (SqsSync, SqsAsync) else kind(name, sizes[name], env)
             for name, kind in kinds.items() if name in sizes and (kind is not Throttled or proxy is not None)}
    out: dict = {}
    for name, case in cases.items():
        configs = list(spec["configs"]) + ([POWERTOOLS] if isinstance(case, SqsAsync) else [])
        if proxy is not None:
            proxy.configure(**(case.proxy or {}))
        walls: dict = {c: [] for c in configs}
        throttled: dict = {c: [] for c in configs}
        failed: dict = {c: [] for c in configs}
        case.check(case.call("16"))  # imports, clients and the loop are up before anything is timed
        for r in range(spec["rounds"]):
            shift = r % len(configs)
            for config in configs[shift:] + configs[:shift]:
                _limiter.forget()
                if config.endswith("+warm"):
                    case.call(config)
                if case.proxy:
                    time.sleep(THROTTLE_BURST / THROTTLE_RATE)  # each call starts with a full bucket
                    proxy.reset_stats()
                t0 = time.perf_counter()
                result = case.call(config)
                walls[config].append(time.perf_counter() - t0)
                failed[config].append(case.check(result))
                if case.proxy:
                    throttled[config].append(proxy.stats()["throttled"])
        out[name] = {"n": case.n, "walls": walls}
        if case.proxy:
            out[name]["throttled_503"] = throttled
            out[name]["failed"] = failed
            proxy.configure()
    aws.reset_clients()
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
