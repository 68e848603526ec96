"""The raw idioms a user would write by hand, measured beside the strategies."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, NamedTuple


def list_comprehension(fn: Callable, items: list, workers: int) -> list:
    return [fn(x) for x in items]


def submit_as_completed(fn: Callable, items: list, workers: int) -> list:
    """ThreadPoolExecutor: submit everything, collect with as_completed, place by index."""
    with ThreadPoolExecutor(workers) as ex:
        futures = {ex.submit(fn, x): i for i, x in enumerate(items)}
        out: list[Any] = [None] * len(futures)
        for f in as_completed(futures):
            out[futures[f]] = f.result()
    return out


def executor_map(fn: Callable, items: list, workers: int) -> list:
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


class GatherSemaphore:
    """asyncio.gather over a semaphore, on one reused loop (the fair comparison)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, afn: Callable, items: list, workers: int) -> list:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()

        async def main():
            sem = asyncio.Semaphore(workers)

            async def one(x):
                async with sem:
                    return await afn(x)

            return await asyncio.gather(*(one(x) for x in items))

        return self.loop.run_until_complete(main())

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
            self.loop = None


class Boto3Threads:
    """One boto3 client (pool sized to the workers), a ThreadPoolExecutor, executor.map."""

    def __init__(self, service: str, call: Callable[[Any, Any], Any]) -> None:
        self.service = service
        self.call = call
        self.client = None

    def __call__(self, items: list, workers: int) -> list:
        if self.client is None:
            import boto3
            from botocore.config import Config

            self.client = boto3.session.Session().client(self.service, config=Config(max_pool_connections=workers))
        client = self.client
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(lambda x: self.call(client, x), items))

    def close(self) -> None:
        self.client = None


class AiobotocoreGather:
    """One aiobotocore client on a reused loop, asyncio.gather over every item.

    ``session``: what makes the client (``session.create_client`` for aiobotocore's
    own session, ``session.client`` for aioboto3's); None for aiobotocore's.
    """

    def __init__(self, service: str, acall: Callable[[Any, Any], Any], session: Any = None) -> None:
        self.service = service
        self.acall = acall
        self.session = session
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ctx = self.client = None

    def __call__(self, items: list, workers: int) -> list:
        if self.loop is None:
            from aiobotocore.config import AioConfig

            self.loop = asyncio.new_event_loop()
            config = AioConfig(max_pool_connections=workers)
            if self.session is None:
                from aiobotocore.session import get_session

                self.ctx = get_session().create_client(self.service, config=config)
            else:
                self.ctx = self.session.client(self.service, config=config)
            self.client = self.loop.run_until_complete(self.ctx.__aenter__())
        client = self.client

        async def main():
            return await asyncio.gather(*(self.acall(client, x) for x in items))

        return self.loop.run_until_complete(main())

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.ctx.__aexit__(None, None, None))
            self.loop.close()
            self.loop = None
            self.ctx = self.client = None


class Idiom(NamedTuple):
    """A raw idiom: ``form`` says what it runs, ``make`` builds the runner.

    form: "sync" (``make()(task.sync_fn, items, workers)``), "async" (the same with
    ``task.async_fn``), "boto3" or "aiobotocore" (``make(service, call)(items, workers)``
    with the workload's own client call).
    """

    form: str
    make: Callable[..., Any]
    concurrent: bool = True


#: Every raw idiom, by the name the report shows. Workloads pick theirs by name.
RAW: dict[str, Idiom] = {
    "raw:list-comprehension": Idiom("sync", lambda: list_comprehension, concurrent=False),
    "raw:submit+as_completed": Idiom("sync", lambda: submit_as_completed),
    "raw:executor.map": Idiom("sync", lambda: executor_map),
    "raw:gather+semaphore": Idiom("async", GatherSemaphore),
    "raw:boto3+ThreadPoolExecutor": Idiom("boto3", Boto3Threads),
    "raw:aiobotocore+gather": Idiom("aiobotocore", AiobotocoreGather),
}


class Runner(NamedTuple):
    """A built implementation: ``run(items)`` (its worker count bound), then ``close()``."""

    run: Callable[[list], Any]
    close: Callable[[], None]


def build(name: str, task: Any, client_calls: dict[str, tuple[str, Callable]], workers: Any) -> Runner:
    """The raw idiom ``name`` over a workload's task (both forms) or its client calls by form.

    Raises:
        KeyError: an unknown idiom, or a client form the workload does not provide.
    """
    idiom = RAW[name]
    if idiom.form in ("sync", "async"):
        made = idiom.make()
        fn = task.sync_fn if idiom.form == "sync" else task.async_fn
        return Runner(lambda items: made(fn, items, workers), getattr(made, "close", lambda: None))
    made = idiom.make(*client_calls[idiom.form])
    return Runner(lambda items: made(items, workers), made.close)
