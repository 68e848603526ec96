"""The workloads compared: each runs under every strategy and beside the raw idioms."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from typing import Any, Callable

from .. import DEFAULT_MAX_WORKERS, STRATEGIES, Task
from .. import _config
from .. import map as fanout_map
from . import idioms
from .cost import ideal_seconds

ENV_OPTIONS = _config.ENV_BENCH_OPTIONS
TAIL_SIGMA = 0.5  # lognormal width of the proxy's latency tail around the median


@dataclasses.dataclass
class Options:
    """What to run; passed to the pytest-benchmark suite as JSON in FANOUT_BENCH_OPTIONS."""

    quick: bool = False
    items: int | None = None
    workers: tuple[int, ...] = (DEFAULT_MAX_WORKERS,)
    latency_ms: float | None = None
    workloads: tuple[str, ...] = ()
    memory_mb: int = 1024
    arch: str = "x86_64"
    memory_sweep: tuple[int, ...] = (128, 512, 1769, 3008)
    endpoint_url: str | None = None
    proxy_url: str | None = None
    bucket: str = "lambda-fanout-bench"
    table: str = "lambda-fanout-bench"
    rounds: int = 3
    cpus: float | None = None  # the CPU quota the suite runs under, for the report
    with_raw: bool = True  # measure the raw idioms too (the memory sweep measures strategies only)

    def n_items(self, workload: "Workload") -> int:
        if self.items is not None:
            return self.items
        return workload.quick_items if self.quick else workload.default_items

    def latency_s(self, workload: "Workload") -> float:
        ms = self.latency_ms if self.latency_ms is not None else workload.default_latency_ms
        return ms / 1000.0

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> "Options":
        raw = os.environ.get(ENV_OPTIONS)
        if not raw:
            return cls(quick=True, workers=(8,), rounds=1, memory_sweep=())
        data = json.loads(raw)
        for key in ("workers", "workloads", "memory_sweep"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclasses.dataclass
class Env:
    """Where the AWS workloads run: a bucket and table seeded with the items, and the proxy if any."""

    bucket: str
    table: str
    proxy: Any = None  # LocalEndpoint-like: .configure(delay_ms=..., tail_sigma=...)


class Workload:
    name = ""
    title = ""
    default_items = 500
    quick_items = 64
    default_latency_ms: float = 0.0
    latency_bound = False  # ideal = ceil(N/C) x L applies
    needs_aws = False
    #: raw idiom name -> how it is built (a callable(items, workers), with .close() when it holds resources)
    raws: tuple[str, ...] = ()
    #: the task is module-level (picklable), so the ``processes`` strategy runs it too
    in_processes = False

    def items(self, n: int) -> list:
        return list(range(n))

    def task(self, opts: Options, env: Env | None) -> Task:
        raise NotImplementedError

    def expected(self, items: list, opts: Options) -> Any:
        return None  # None: no check beyond running

    def configure(self, opts: Options, env: Env | None) -> None:
        """Set the proxy's latency for this workload (AWS workloads only)."""
        if self.needs_aws and env is not None and env.proxy is not None:
            env.proxy.configure(delay_ms=self.default_latency_ms if opts.latency_ms is None else opts.latency_ms,
                                tail_sigma=TAIL_SIGMA)

    def raw(self, name: str, opts: Options, env: Env | None):
        raise NotImplementedError

    def ideal_s(self, opts: Options, workers: int) -> float | None:
        if not self.latency_bound:
            return None
        return ideal_seconds(opts.n_items(self), workers, opts.latency_s(self))


class Latency(Workload):
    name = "latency"
    title = "latency-only I/O: each item waits L ms"
    default_latency_ms = 20.0
    quick_items = 100
    latency_bound = True
    raws = ("raw:submit+as_completed", "raw:executor.map", "raw:gather+semaphore")

    def task(self, opts, env):
        return sleep_task(opts.latency_s(self))

    def expected(self, items, opts):
        return items

    def raw(self, name, opts, env):
        task = self.task(opts, env)
        return _Generic(name, task)


class S3Get(Workload):
    name = "s3"
    title = "S3 get_object through boto3 / aiobotocore"
    default_latency_ms = 25.0
    latency_bound = True
    needs_aws = True
    raws = ("raw:boto3+ThreadPoolExecutor", "raw:aiobotocore+gather")

    def items(self, n):
        return s3_keys(n)

    def task(self, opts, env):
        from .. import aws

        return aws.s3_get_object(env.bucket)

    def expected(self, items, opts):
        return [s3_body(k) for k in items]

    def raw(self, name, opts, env):
        bucket = env.bucket
        if name == "raw:boto3+ThreadPoolExecutor":
            return idioms.Boto3Threads("s3", lambda c, k: c.get_object(Bucket=bucket, Key=k)["Body"].read())

        async def get(c, k):
            resp = await c.get_object(Bucket=bucket, Key=k)
            async with resp["Body"] as stream:
                return await stream.read()

        return idioms.AiobotocoreGather("s3", get)


class DynamoGet(Workload):
    name = "dynamodb"
    title = "DynamoDB get_item through boto3 / aiobotocore"
    default_latency_ms = 8.0
    latency_bound = True
    needs_aws = True
    raws = ("raw:boto3+ThreadPoolExecutor", "raw:aiobotocore+gather")

    def items(self, n):
        return [{"pk": {"S": k}} for k in ddb_keys(n)]

    def task(self, opts, env):
        from .. import aws

        return aws.dynamodb_get_item(env.table)

    def expected(self, items, opts):
        return [ddb_item(key["pk"]["S"]) for key in items]

    def raw(self, name, opts, env):
        table = env.table
        if name == "raw:boto3+ThreadPoolExecutor":
            return idioms.Boto3Threads("dynamodb", lambda c, key: c.get_item(TableName=table, Key=key).get("Item"))

        async def get(c, key):
            return (await c.get_item(TableName=table, Key=key)).get("Item")

        return idioms.AiobotocoreGather("dynamodb", get)


class CpuBound(Workload):
    name = "cpu"
    title = "CPU-bound items: parse and re-serialise a JSON document"
    default_items = 300
    quick_items = 60
    raws = ("raw:list-comprehension",)
    _doc = json.dumps({"records": [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "score": i / 7}
                                   for i in range(120)]})

    def items(self, n):
        return [self._doc] * n

    in_processes = True

    def task(self, opts, env):
        return Task(parse_json, aparse_json, name="json")

    def expected(self, items, opts):
        size = len(json.dumps(json.loads(self._doc), sort_keys=True))
        return [size] * len(items)

    def raw(self, name, opts, env):
        return _Generic(name, self.task(opts, env))


class Frequency(Workload):
    name = "frequency"
    title = "count items whose frequency is above 10"
    default_items = 20_000
    quick_items = 2_000
    raws = ("raw:submit+as_completed",)

    def items(self, n):
        return [{"id": i, "frequency": (i * 7919) % 41} for i in range(n)]

    in_processes = True

    def task(self, opts, env):
        return Task(frequent, afrequent, name="frequent")

    def expected(self, items, opts):
        return [item["frequency"] > 10 for item in items]

    def raw(self, name, opts, env):
        return _Generic(name, self.task(opts, env))


# Module level, so that worker processes can import them by name.
def parse_json(doc: str) -> int:
    """The cpu workload's item: parse a JSON document and serialise it again."""
    return len(json.dumps(json.loads(doc), sort_keys=True))


async def aparse_json(doc: str) -> int:
    return parse_json(doc)


def frequent(item: dict) -> bool:
    """The frequency workload's item."""
    return item["frequency"] > 10


async def afrequent(item: dict) -> bool:
    return frequent(item)


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


class _Generic:
    """A raw idiom over a Task's sync or async form."""

    def __init__(self, name: str, task: Task) -> None:
        self.name = name
        self.task = task
        self.gather = idioms.GatherSemaphore() if name == "raw:gather+semaphore" else None

    def __call__(self, items, workers):
        if self.gather is not None:
            return self.gather(self.task.async_fn, items, workers)
        fn = {"raw:submit+as_completed": idioms.submit_as_completed, "raw:executor.map": idioms.executor_map,
              "raw:list-comprehension": idioms.list_comprehension}[self.name]
        return fn(self.task.sync_fn, items, workers)

    def close(self):
        if self.gather is not None:
            self.gather.close()


WORKLOADS: dict[str, Workload] = {w.name: w for w in (Latency(), S3Get(), DynamoGet(), CpuBound(), Frequency())}


def s3_keys(n: int) -> list[str]:
    return [f"bench/{i:06d}" for i in range(n)]


def s3_body(key: str) -> bytes:
    return (key.encode() + b"|") * 16


def ddb_keys(n: int) -> list[str]:
    return [f"item-{i:06d}" for i in range(n)]


def ddb_item(key: str) -> dict:
    return {"pk": {"S": key}, "payload": {"S": key * 4}}


def seed(moto_url: str | None, bucket: str, table: str, n: int) -> None:
    """Create the bucket and table (if missing) and write n objects and n items."""
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    # A local endpoint takes any credentials; real AWS uses the usual chain.
    kwargs = ({"endpoint_url": moto_url, "region_name": "us-east-1", "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"} if moto_url else {})
    s3 = boto3.session.Session().client("s3", **kwargs)
    ddb = boto3.session.Session().client("dynamodb", **kwargs)
    # head/describe rather than list: they need only the bucket's and table's own permissions.
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)
    try:
        ddb.describe_table(TableName=table)
    except ddb.exceptions.ResourceNotFoundException:
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        ddb.get_waiter("table_exists").wait(TableName=table)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=s3_body(k)), s3_keys(n)))
        list(ex.map(lambda k: ddb.put_item(TableName=table, Item=ddb_item(k)), ddb_keys(n)))


# -- cases: one (workload, implementation, workers) measurement each -----------------------

@dataclasses.dataclass
class Case:
    workload: Workload
    impl: str
    workers: int

    @property
    def id(self) -> str:
        return f"{self.workload.name}-{self.impl}-{self.workers}w"

    def prepare(self, opts: Options, env: Env | None) -> tuple[Callable[[], Any], Callable[[], None], list]:
        """(run once, close, items): the call to time, what to release after, and its input."""
        self.workload.configure(opts, env)
        items = self.workload.items(opts.n_items(self.workload))
        if self.impl in STRATEGIES:
            task = self.workload.task(opts, env)
            impl, workers = self.impl, self.workers
            return (lambda: fanout_map(task, items, strategy=impl, max_workers=workers)), (lambda: None), items
        raw = self.workload.raw(self.impl, opts, env)
        return (lambda: raw(items, self.workers)), getattr(raw, "close", lambda: None), items


def cases(opts: Options) -> list[Case]:
    names = opts.workloads or tuple(WORKLOADS)
    with_raw = opts.with_raw
    out = []
    for name in names:
        w = WORKLOADS[name]
        impls = [s for s in STRATEGIES if s != "processes"] + (list(w.raws) if with_raw else [])
        for workers in opts.workers:
            for impl in impls:
                if impl in ("sequential", "raw:list-comprehension") and workers != opts.workers[0]:
                    continue  # one worker count is enough for the sequential references
                out.append(Case(w, impl, workers))
        if w.in_processes:
            # One process per vCPU of the CPU share the suite runs under, whatever --workers says.
            from .._procpool import vcpus

            out.append(Case(w, "processes", vcpus(opts.memory_mb)))
    return out


def measure(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run once: (result, wall seconds, client CPU seconds of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0, time.process_time() - c0
