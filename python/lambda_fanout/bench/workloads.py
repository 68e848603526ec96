"""The workloads compared: what each item does, what a correct answer is, which idioms and peers sit beside it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, NamedTuple

from .. import ENV_MAX_WORKERS, ENV_RECORD_HANDLER, ENV_STRATEGY, Task, aws
from .. import handler as zero_code
from .. import map as fanout_map
from . import idioms, records, seeding
from .cost import ideal_seconds
from .options import TAIL_SIGMA, Options


class Check(NamedTuple):
    """Whether a result was right, and what the report says about it."""

    ok: bool
    text: str
    failed: int = 0  # items reported failed (and counted, not lost), where a workload allows that


class Env(NamedTuple):
    """Where the AWS workloads run: a bucket and table seeded with the items, and the proxy if any."""

    bucket: str
    table: str
    proxy: Any = None  # ProxyControl-like: .configure(delay_ms=..., tail_sigma=...)


class Workload:
    """One workload. Subclasses set the class attributes and the item/task methods."""

    name = ""
    title = ""
    default_items = 300  # a full run: 19 waves of 16 workers; within the full run's 12 minutes
    quick_items = 48
    default_latency_ms: float = 0.0
    latency_bound = False  # ideal = ceil(N/C) x L applies
    needs_aws = False
    #: names in idioms.RAW and peers.PEERS measured beside the strategies
    raws: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    #: the AWS service whose calls go through lambda_fanout.aws helpers, so client profiles apply
    profiled: str | None = None
    #: why concurrency may not pay here, for the report
    why_no_gain = "each item does too little waiting for overlap to pay for the hand-off"
    #: the task is module-level (picklable), so the ``processes`` strategy runs it too
    in_processes = False
    #: runs only behind the embedded endpoint's proxy (which it configures)
    needs_proxy = False
    #: part of a quick run unless workloads are named
    in_quick = True
    #: ``map``'s errors mode for the strategies: "collect" where items may fail by design
    errors = "raise"

    def items(self, n: int) -> list:
        return list(range(n))

    def task(self, env: Env | None, profile: str | None = None) -> Task:
        """The work per item; ``profile``: a lambda_fanout.aws client profile (profiled workloads)."""
        raise NotImplementedError

    def expected(self, items: list) -> Any:
        raise NotImplementedError

    def check(self, result: Any, items: list) -> Check:
        """Compare a result with the expected one."""
        return Check(True, "ok") if result == self.expected(items) else Check(False, "WRONG results")

    def client_calls(self, env: Env) -> dict[str, tuple[str, Any]]:
        """The workload's AWS call per client form, for the raw client idioms and peers."""
        return {}

    def setup(self, opts: Options, env: Env | None) -> None:
        """Set the proxy's latency for this workload (AWS workloads only)."""
        if self.needs_aws and env is not None and env.proxy is not None:
            env.proxy.configure(delay_ms=opts.latency_s(self) * 1000, tail_sigma=TAIL_SIGMA, replay=True)

    def strategy_runner(self, env: Env | None, strategy: str, workers: Any,
                        profile: str | None = None) -> idioms.Runner:
        """How a strategy runs this workload: ``lambda_fanout.map`` over the task."""
        task = self.task(env, profile)
        return idioms.Runner(lambda items: fanout_map(task, items, strategy=strategy, max_workers=workers,
                                                      errors=self.errors), lambda: None)

    def concurrency(self, workers: Any) -> int | None:
        """How many items can be in flight at ``workers``; None when not a number."""
        return workers if isinstance(workers, int) else None

    def floor_s(self, opts: Options) -> float:
        """The least a round can take whatever the client does, beside its delays and CPU (0: none)."""
        return 0.0

    def ideal_s(self, opts: Options, workers: Any) -> float | None:
        concurrency = self.concurrency(workers)
        if not self.latency_bound or concurrency is None:
            return None
        return ideal_seconds(opts.n_items(self), concurrency, opts.latency_s(self))


def _profiled(service: str, profile: str | None) -> dict:
    """The helper-task arguments for a client profile: its own client pair, or nothing for the default."""
    return {"clients": aws.clients(service, profile=profile)} if profile else {}


class Latency(Workload):
    name = "latency"
    title = "latency-only I/O: each item waits L ms"
    default_latency_ms = 20.0
    latency_bound = True
    raws = ("raw:submit+as_completed", "raw:executor.map", "raw:gather+semaphore")
    delay_s = default_latency_ms / 1000  # set from the options by setup()

    def task(self, env, profile=None):
        return sleep_task(self.delay_s)

    def setup(self, opts, env):
        self.delay_s = opts.latency_s(self)

    def expected(self, items):
        return items


class S3Get(Workload):
    name = "s3"
    title = "S3 get_object through boto3 / aiobotocore"
    default_latency_ms = 25.0
    latency_bound = True
    needs_aws = True
    raws = ("raw:boto3+ThreadPoolExecutor", "raw:aiobotocore+gather")
    peers = ("peer:aioboto3+gather",)
    profiled = "s3"

    def items(self, n):
        return seeding.s3_keys(n)

    def task(self, env, profile=None):
        return aws.s3_get_object(env.bucket, **_profiled("s3", profile))

    def expected(self, items):
        return [seeding.s3_body(k) for k in items]

    def client_calls(self, env):
        bucket = env.bucket

        async def get(c, k):
            resp = await c.get_object(Bucket=bucket, Key=k)
            async with resp["Body"] as stream:
                return await stream.read()

        return {"boto3": ("s3", lambda c, k: c.get_object(Bucket=bucket, Key=k)["Body"].read()),
                "aiobotocore": ("s3", get)}


#: The throttled workload's token bucket: requests per second per prefix, and its depth.
#: 64 workers at the s3 workload's 25 ms would ask for about 2,500 per second.
THROTTLE_RATE = 150.0
THROTTLE_BURST = 10.0


class Throttled(S3Get):
    """S3 GETs against a service that throttles, as S3 does per prefix (5,500 GET/s, scaled down).

    The proxy's token bucket answers requests beyond its rate with S3's 503 SlowDown,
    which botocore retries (standard mode, 3 attempts); an item that still fails comes
    back as a throttling error (``errors="collect"``), so the check counts it rather
    than the run failing. Each row reports the 503s the proxy sent per round.
    """

    name = "throttled"
    title = (f"S3 get_object against a throttling endpoint: {THROTTLE_RATE:g} requests/s per prefix "
             f"(burst {THROTTLE_BURST:g}), the excess answered 503 SlowDown")
    default_items = 200  # the bucket's rate, not the client, sets a round: at least 1.3 s at 150 per second
    raws = ()
    peers = ()
    profiled = False
    latency_bound = False
    needs_proxy = True
    in_quick = False
    why_no_gain = "the service admits a fixed number of requests per second, whatever the concurrency"
    errors = "collect"  # an item throttled past botocore's retries is counted, not the round's end

    def setup(self, opts, env):
        if env is None or env.proxy is None:
            raise RuntimeError("the throttled workload needs the embedded endpoint's proxy; "
                               "run it without --endpoint-url, or leave it out with --workload")
        env.proxy.configure(delay_ms=opts.latency_s(self) * 1000, tail_sigma=TAIL_SIGMA,
                            throttle={"rate": THROTTLE_RATE, "burst": THROTTLE_BURST}, replay=True)
        time.sleep(THROTTLE_BURST / THROTTLE_RATE)  # each case starts with a full bucket

    def check(self, result, items):
        from .._limiter import is_throttle

        expected = self.expected(items)
        if [o.index for o in result] != list(range(len(items))):
            return Check(False, "WRONG: items missing or out of order")
        wrong = [o for o in result if (o.value != expected[o.index] if o.ok else not is_throttle(o.error))]
        if wrong:
            return Check(False, f"WRONG: {len(wrong)} results neither right nor throttled")
        failed = sum(not o.ok for o in result)
        return Check(True, f"ok: {len(items) - failed} read, {failed} throttled after botocore's retries", failed)

    def ideal_s(self, opts, workers):
        return self.floor_s(opts)

    def floor_s(self, opts):
        # The bucket's rate bounds every implementation alike: the items past its depth at its rate.
        return max(0.0, opts.n_items(self) - THROTTLE_BURST) / THROTTLE_RATE + opts.latency_s(self)


class DynamoGet(Workload):
    name = "dynamodb"
    title = "DynamoDB get_item through boto3 / aiobotocore"
    default_latency_ms = 8.0
    latency_bound = True
    needs_aws = True
    raws = ("raw:boto3+ThreadPoolExecutor", "raw:aiobotocore+gather")
    profiled = "dynamodb"

    def items(self, n):
        return [{"pk": {"S": k}} for k in seeding.ddb_keys(n)]

    def task(self, env, profile=None):
        return aws.dynamodb_get_item(env.table, **_profiled("dynamodb", profile))

    def expected(self, items):
        return [seeding.ddb_item(key["pk"]["S"]) for key in items]

    def client_calls(self, env):
        table = env.table

        async def get(c, key):
            return (await c.get_item(TableName=table, Key=key)).get("Item")

        return {"boto3": ("dynamodb", lambda c, key: c.get_item(TableName=table, Key=key).get("Item")),
                "aiobotocore": ("dynamodb", get)}


def _reserialise(doc: str) -> int:
    return len(json.dumps(json.loads(doc), sort_keys=True))


async def _areserialise(doc: str) -> int:
    return _reserialise(doc)


class CpuBound(Workload):
    name = "cpu"
    title = "CPU-bound items: parse and re-serialise a JSON document"
    default_items = 300
    quick_items = 60
    raws = ("raw:list-comprehension",)
    in_processes = True
    why_no_gain = ("the work is CPU-bound and holds the GIL, so threads take turns on one core and asyncio "
                   "runs items one after another")
    _doc = json.dumps({"records": [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "score": i / 7}
                                   for i in range(120)]})

    def items(self, n):
        return [self._doc] * n

    def task(self, env, profile=None):
        return Task(_reserialise, _areserialise, name="json")

    def expected(self, items):
        return [_reserialise(self._doc)] * len(items)


def _frequent(item: dict) -> bool:
    return item["frequency"] > 10


async def _afrequent(item: dict) -> bool:
    return _frequent(item)


class Frequency(Workload):
    name = "frequency"
    title = "count items whose frequency is above 10"
    default_items = 20_000
    quick_items = 2_000
    raws = ("raw:submit+as_completed",)
    in_processes = True

    def items(self, n):
        return [{"id": i, "frequency": (i * 7919) % 41} for i in range(n)]

    def task(self, env, profile=None):
        return Task(_frequent, _afrequent, name="frequent")

    def expected(self, items):
        return [_frequent(item) for item in items]


class Batch(Workload):
    """An SQS batch through the zero-code handler; each record handler does one S3 GET.

    Every 97th record names a missing object, so a correct reply lists exactly those
    (and, FIFO, the later records of their groups) in batchItemFailures.
    """

    name = "batch"
    title = "SQS batch through the zero-code handler (lambda_fanout.handler.handler), an S3 GET per record"
    default_items = 500
    quick_items = 50
    default_latency_ms = 10.0
    latency_bound = True
    needs_aws = True
    groups: int | None = None
    peers = ("peer:powertools BatchProcessor", "peer:powertools AsyncBatchProcessor")

    def items(self, n):
        return seeding.sqs_records(n, self.groups)

    def setup(self, opts, env):
        super().setup(opts, env)
        records.use_bucket(env.bucket)

    def check(self, result, items):
        expected = seeding.expected_failures(items, self.groups)
        got = [f["itemIdentifier"] for f in result.get("batchItemFailures", [])]
        missing, extra = expected - set(got), set(got) - expected
        if not missing and not extra and len(got) == len(set(got)):
            return Check(True, f"exact: {len(got)} of {len(items)} reported")
        return Check(False, f"WRONG: {len(missing)} failures missing, {len(extra)} reported in error, "
                            f"{len(got) - len(set(got))} twice")

    def strategy_runner(self, env, strategy, workers, profile=None):
        environ = {k: v for k, v in os.environ.items() if k != ENV_MAX_WORKERS}
        environ.update({ENV_RECORD_HANDLER: f"{records.__name__}.read", ENV_STRATEGY: strategy})
        if workers is not None:
            environ[ENV_MAX_WORKERS] = str(workers)
        # Each configuration is a fresh Lambda init, resolved from these settings.
        handle = zero_code.load(environ)
        return idioms.Runner(lambda items: handle({"Records": items}, None), lambda: None)

    def concurrency(self, workers):
        limit = super().concurrency(workers)
        return min(limit, self.groups) if limit is not None and self.groups else limit


class BatchFifo(Batch):
    name = "batch-fifo"
    title = "SQS FIFO batch, 10 message groups, through the zero-code handler, an S3 GET per record"
    groups = 10
    peers = ("peer:powertools SqsFifoPartialProcessor", "peer:powertools AsyncBatchProcessor (FIFO)")


class _Sleep:
    # A class at module level, so that the processes strategy can pickle the task.
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def __call__(self, x):
        time.sleep(self.delay_s)
        return x

    async def wait(self, x):
        await asyncio.sleep(self.delay_s)
        return x


def sleep_task(delay_s: float) -> Task:
    """A Task that waits ``delay_s`` (time.sleep / asyncio.sleep) and returns its item."""
    sleep = _Sleep(delay_s)
    return Task(sleep, sleep.wait, name=f"sleep {delay_s * 1000:g} ms")


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Latency(), S3Get(), Throttled(), DynamoGet(), CpuBound(), Frequency(), Batch(), BatchFifo())}


def selected(opts: Options) -> tuple[str, ...]:
    """The workloads a run measures: those named, else every one that fits it (a quick run
    leaves out the slow ones; a run against another endpoint, those that need the proxy)."""
    if opts.workloads:
        return tuple(dict.fromkeys(opts.workloads))  # each once, in the order given
    proxy = bool(opts.proxy_url) or not opts.endpoint_url
    return tuple(name for name, w in WORKLOADS.items()
                 if (w.in_quick or not opts.quick) and (proxy or not w.needs_proxy))
