"""Test tasks that every strategy can run, ``processes`` included.

``processes`` pickles a task by name and runs it in another process, so a test task
there must be module-level (here, or a ``functools.partial`` of something here), and
what it records must reach the test from another process: :class:`Log` (a file
appended to) and :class:`Flag` (a file that exists once set) do, under every strategy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time

import batches
import lambda_fanout


class Log:
    """A list of ints that any process can append to (one line per entry, appended atomically)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(prefix="fanout-log-")
            os.close(fd)
        elif not os.path.exists(path):
            open(path, "a").close()
        self.path = path

    def clear(self) -> None:
        open(self.path, "w").close()

    def append(self, value: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)

    def entries(self) -> list:
        with open(self.path) as f:
            return [int(line) if line.lstrip("-").isdigit() else line for line in f.read().split()]

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self):
        return iter(self.entries())

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class TimedLog(Log):
    """A Log of (int, when): ``time.monotonic()`` is the system's clock, the same in every process."""

    def append(self, value: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"{value} {time.monotonic()!r}\n".encode())
        finally:
            os.close(fd)

    def entries(self) -> list:
        with open(self.path) as f:
            return [(int(i), float(at)) for i, at in (line.split() for line in f.read().splitlines())]


class Flag:
    """A threading.Event-like flag that any process can wait on."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or tempfile.mktemp(prefix="fanout-flag-")

    def set(self) -> None:
        open(self.path, "w").close()

    def clear(self) -> None:
        self.remove()

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.is_set():
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)
        return True

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def identity(x):
    return x


def negate(x):
    return -x


def add(n, x):
    return x + n


def times(n, x):
    return x * n


def raise_at(error: type, at: int, i: int) -> int:
    """``i``, except that item ``at`` raises ``error()``."""
    if i == at:
        raise error()
    return i


def lookup_empty(key):
    return {}[key]  # KeyError(key): the message is the payload


def sleep_then(delay_s: float, i):
    time.sleep(delay_s)
    return i


def fail_first_then_wait(started: Log, i):
    """Item 0 fails at once; the others record themselves and take 0.2 s."""
    started.append(i)
    if i == 0:
        raise Boom("first item fails at once")
    time.sleep(0.2)
    return i


def record_then_wait(started: Log, release: Flag, i):
    started.append(i)
    release.wait(5)
    return i


def record_then_fail_at(started: Log, at: int, i):
    """Records ``i``; item ``at`` raises Boom, the others take 1 ms."""
    started.append(i)
    if i == at:
        raise Boom(f"item {at}")
    time.sleep(0.001)
    return i


def boom(i):
    raise Boom("stop")


def sleep_then_record(done: Log, i):
    time.sleep(0.0005 if i % 3 else 0.002)
    done.append(i)
    return i


def is_frequent(record) -> bool:
    return record["frequency"] > 10


class Boom(Exception):
    pass


class Hang:
    """Items in ``hang_on`` block until ``release`` (sync form) or never complete (async form)."""

    def __init__(self, release: Flag, hang_on, value=identity) -> None:
        self.release = release
        self.hang_on = set(hang_on)
        self.value = value

    def __call__(self, i):
        if i in self.hang_on:
            self.release.wait(10)
        return self.value(i)

    async def aio(self, i):
        if i in self.hang_on:
            await asyncio.Event().wait()
        return self.value(i)

    def task(self) -> lambda_fanout.Task:
        return lambda_fanout.Task(self, self.aio)


def sum_of_asyncio_map(i):
    """A task that itself calls map with asyncio, as a threads-strategy task might."""
    return sum(lambda_fanout.map(adouble, range(3), strategy="asyncio"))


async def adouble(i):
    return 2 * i


class Program:
    """test_contract's drawn actions as a task (here, so a worker imports only this light module)."""

    def __init__(self, actions, started: Log, release: Flag, base_errors: dict, failure: type) -> None:
        self.actions = actions
        self.started = started
        self.release = release
        self.base_errors = base_errors
        self.failure = failure

    def begin(self, i):
        self.started.append(i)
        action = self.actions[i]
        if action in self.base_errors:
            raise self.base_errors[action]()
        if action == "raise":
            raise self.failure(i)
        return action

    def fn(self, i):
        action = self.begin(i)
        if action == "hang":
            self.release.wait(10)
        elif action.startswith("sleep"):
            time.sleep(int(action[5:]) / 1000)
        return i * 7

    async def afn(self, i):
        action = self.begin(i)
        if action == "hang":
            await asyncio.Event().wait()
        elif action.startswith("sleep"):
            await asyncio.sleep(int(action[5:]) / 1000)
        return i * 7


class Failing:
    """test_batch's record handler: fails the records whose position is in ``bad``."""
    def __init__(self, bad: set, log: Log | None, delay: float) -> None:
        self.bad = bad
        self.log = log
        self.delay = delay

    def check(self, record):
        position = batches.position_of(record)
        if self.log is not None:
            self.log.append(position)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        return position

    def sync_fn(self, record):
        time.sleep(self.delay)
        return self.check(record)

    async def async_fn(self, record):
        await asyncio.sleep(self.delay)
        return self.check(record)


class EnterLeave:
    """Logs 2p as record p enters and 2p + 1 as it leaves, ``hold`` later; record ``fail_at`` then fails."""

    def __init__(self, log: Log, hold: float = 0.002, fail_at: int | None = None) -> None:
        self.log = log
        self.hold = hold
        self.fail_at = fail_at

    def leave(self, position: int) -> None:
        self.log.append(2 * position + 1)
        if position == self.fail_at:
            raise RuntimeError(f"record {position} fails")

    def sync_fn(self, record):
        position = batches.position_of(record)
        self.log.append(2 * position)
        time.sleep(self.hold)
        self.leave(position)

    async def async_fn(self, record):
        position = batches.position_of(record)
        self.log.append(2 * position)
        await asyncio.sleep(self.hold)
        self.leave(position)


def replay(log: Log) -> tuple[list[int], int]:
    """(records in the order they entered, most at once) from an EnterLeave log."""
    entered, now, peak = [], 0, 0
    for entry in log:
        position, left = divmod(entry, 2)
        if left:
            now -= 1
            continue
        entered.append(position)
        now += 1
        peak = max(peak, now)
    return entered, peak


def decode(record: dict):
    """What a record handler does first: read the payload the way its source encodes it."""
    if "body" in record:
        return json.loads(record["body"])
    if "kinesis" in record:
        return base64.b64decode(record["kinesis"]["data"], validate=True)
    if "dynamodb" in record:
        return record["dynamodb"]["NewImage"]
    return json.loads(base64.b64decode(record["value"], validate=True))


class Decoding:
    """test_powertools_compat's handler: decode each record, then fail the positions in ``bad``."""

    def __init__(self, bad: set, log) -> None:
        self.bad = bad
        self.log = log

    def __call__(self, record):
        position = batches.position_of(record)
        self.log.append(position)
        decode(record)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        return position

    async def aio(self, record):
        return self(record)


class Succeeding:
    """Fails the positions in ``bad``; logs each other one once it succeeded."""

    def __init__(self, done: Log, bad: set, delay: float) -> None:
        self.done = done
        self.bad = bad
        self.delay = delay

    def finish(self, record) -> None:
        position = batches.position_of(record)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        self.done.append(position)

    def __call__(self, record):
        time.sleep(self.delay)
        self.finish(record)

    async def aio(self, record):
        await asyncio.sleep(self.delay)
        self.finish(record)


class StartsAfter:
    """Logs 2p + 1 if record p started after ``raised`` was set, else 2p; record ``failing`` sets it and fails."""

    def __init__(self, log: Log, raised: Flag, failing: int) -> None:
        self.log = log
        self.raised = raised
        self.failing = failing

    def start(self, record) -> int:
        position = batches.position_of(record)
        self.log.append(2 * position + int(self.raised.is_set()))
        return position

    def end(self, position: int) -> int:
        if position == self.failing:
            self.raised.set()
            raise RuntimeError("fails")
        return position

    def __call__(self, record):
        position = self.start(record)
        time.sleep(0.005)
        return self.end(position)

    async def aio(self, record):
        position = self.start(record)
        await asyncio.sleep(0.005)
        return self.end(position)


def record_then_wait_for(started: Log, release: Flag, seconds: float, i):
    started.append(i)
    release.wait(seconds)
    return i


def fail_at_zero(i):
    """Item 0 fails at once; the others take 10 ms."""
    if i == 0:
        raise Boom()
    time.sleep(0.01)
    return i


def nan_at_two(i):
    return float("nan") if i == 2 else i


class LookupTimeout(lambda_fanout.DeadlineExceeded):
    """A task's own timeout, which happens to subclass DeadlineExceeded."""


def lookup_times_out(email):
    raise LookupTimeout(f"lookup of {email} timed out")


class SettleAtMargin:
    """Item 0 waits for ``release``; item 1 returns 5 ms before the margin (``deadline`` - 0.5 s)."""

    def __init__(self, release: Flag, deadline: float) -> None:
        self.release = release
        self.deadline = deadline

    def __call__(self, i):
        if i == 0:
            self.release.wait(2)
        if i == 1:
            time.sleep(max(self.deadline - 0.5 - 0.005 - time.monotonic(), 0))  # settles just at the margin
        return i



def s3_read(bucket_key):
    """An S3 GetObject from the user's own code, as a record handler writes it."""
    from lambda_fanout import aws

    bucket, key = bucket_key
    return aws.clients("s3").sync.get_object(Bucket=bucket, Key=key)["Body"].read()


async def as3_read(bucket_key):
    from lambda_fanout import aws

    bucket, key = bucket_key
    response = await aws.clients("s3").aio.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read()


S3_READ = lambda_fanout.Task(s3_read, as3_read)


def parse_json(text):
    return json.loads(text)  # a library raises: the user's frame is this line
