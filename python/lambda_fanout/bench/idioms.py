"""The raw idioms a user would write by hand, measured beside the strategies."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable


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
    """One aiobotocore client on a reused loop, asyncio.gather over every item."""

    def __init__(self, service: str, acall: Callable[[Any, Any], Any]) -> None:
        self.service = service
        self.acall = acall
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ctx = self.client = None

    def __call__(self, items: list, workers: int) -> list:
        if self.loop is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            self.loop = asyncio.new_event_loop()
            self.ctx = get_session().create_client(self.service, config=AioConfig(max_pool_connections=workers))
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
