"""Test tasks that every strategy can run, ``processes`` included: the one module of them.

``processes`` pickles a task by name and runs it in another process, so a test task
there must be module-level (here, or a ``functools.partial`` of something here), and
what it records must reach the test from another process: :class:`Log` (a file
appended to) and :class:`Flag` (a file that exists once set) do, under every strategy.

A worker imports this module to unpickle its first task, often inside a deadline a test
times, so the module loads only what a worker running plain functions needs: asyncio
(for the async forms) and the event builders (for record positions) are imported by
the few functions that use them, when they first run.
"""

from __future__ import annotations

import array
import base64
import json
import os
import signal
import threading
import time

import lambda_fanout


# -- what a task records, readable from any process --------------------------------------------

class Log:
    """A list of ints that any process can append to (one line per entry, appended atomically)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            import tempfile

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
        if path is None:
            import tempfile

            path = tempfile.mktemp(prefix="fanout-flag-")
        self.path = path

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


# -- what the async forms and record handlers import when they first run ----------------------

def _position(record) -> int:
    """A generated record's position in its batch."""
    from lambda_fanout_dev.events import position_of

    return position_of(record)


async def _asleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def _forever() -> None:
    """Never completes (until cancelled)."""
    import asyncio

    await asyncio.Event().wait()


# -- the ledger's tests: map, contract, deadlines, edges, batches ---------------------------------

def identity(x):
    return x


def nested_map(strategy: str) -> list:
    """A task that runs a map of its own, under ``strategy``."""
    return lambda_fanout.map(negate, range(3), strategy=strategy)


async def aidentity(x):
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


class ExitFrom(SystemExit):
    """A SystemExit with code ``exit_code`` whose __init__ takes an argument it does not pass on: it cannot be unpickled."""

    exit_code: object = 7

    def __init__(self, where):
        super().__init__()
        self.code = self.exit_code
        self.where = where


class QuietExitFrom(ExitFrom):
    """An ExitFrom whose code is False: the exit status of success."""

    exit_code = False


class UnreadableExitFrom(ExitFrom):
    """An ExitFrom whose code raises as it is read."""

    @property
    def code(self):
        raise ValueError("no code")

    @code.setter
    def code(self, value):
        pass


class InterruptFrom(KeyboardInterrupt):
    """A KeyboardInterrupt whose __init__ takes an argument it does not pass on: it cannot be unpickled."""

    def __init__(self, where):
        super().__init__()
        self.where = where


def raise_from_at(error: type, at: int, i: int) -> int:
    """``i``, except that item ``at`` raises ``error("the task")``."""
    if i == at:
        raise error("the task")
    return i


def raise_local_cancel_at(at: int, i: int) -> int:
    """``i``, except that item ``at`` raises a CancelledError of a class defined here (it cannot be pickled)."""
    if i == at:
        import asyncio

        class Cancelled(asyncio.CancelledError):
            pass

        raise Cancelled("the task")
    return i


class InterruptsWhenPickled(Exception):
    """Pickling it raises KeyboardInterrupt, raised by a task or returned by one."""

    def __reduce__(self):
        raise KeyboardInterrupt("pickled")


class UnprintablyUnpicklable:
    """Pickling it raises an exception whose str() raises KeyboardInterrupt."""

    def __reduce__(self):
        raise NoStr()


class NoStr(Exception):
    def __str__(self):
        raise KeyboardInterrupt("str")


class PicklesOnce:
    """Its first pickling works; any later one raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.pickled = 0

    def __reduce__(self):
        self.pickled += 1
        if self.pickled > 1:
            raise KeyboardInterrupt("pickled again")
        return PicklesOnce, ()


def pickles_once(_i) -> PicklesOnce:
    return PicklesOnce()


def raise_unsendable_at(at: int, i: int) -> int:
    """``i``, except that item ``at`` raises :class:`InterruptsWhenPickled`."""
    if i == at:
        raise InterruptsWhenPickled("the task")
    return i


def return_unsendable_at(at: int, i):
    """``i``, except that item ``at`` returns an :class:`InterruptsWhenPickled`."""
    return InterruptsWhenPickled("the value") if i == at else i


def lookup_empty(key):
    return {}[key]  # KeyError(key): the message is the payload


def sleep_then(delay_s: float, i):
    time.sleep(delay_s)
    return i


def fail_first_then_wait(started: Log, i, error: type[Exception] | None = None):
    """Item 0 raises ``error`` (Boom) at once; the others record themselves and take 0.2 s."""
    started.append(i)
    if i == 0:
        raise (error or Boom)("first item fails at once")
    time.sleep(0.2)
    return i


class SlowToSend(Exception):
    """Takes 0.5 s to pickle: raised in a worker process, it reaches the caller that much later."""

    def __reduce__(self):
        time.sleep(0.5)
        return type(self), self.args


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
            await _forever()
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
            await _forever()
        elif action.startswith("sleep"):
            await _asleep(int(action[5:]) / 1000)
        return i * 7


class Failing:
    """test_batch's record handler: fails the records whose position is in ``bad``."""
    def __init__(self, bad: set, log: Log | None, delay: float) -> None:
        self.bad = bad
        self.log = log
        self.delay = delay

    def check(self, record):
        position = _position(record)
        if self.log is not None:
            self.log.append(position)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        return position

    def sync_fn(self, record):
        time.sleep(self.delay)
        return self.check(record)

    async def async_fn(self, record):
        await _asleep(self.delay)
        return self.check(record)


class HoldAt:
    """test_batch's record handler: the record at ``position`` waits for ``release`` (at most ``seconds``)."""

    def __init__(self, position: int, release: Flag, seconds: float) -> None:
        self.position = position
        self.release = release
        self.seconds = seconds

    def sync_fn(self, record):
        position = _position(record)
        if position == self.position:
            self.release.wait(self.seconds)
        return position

    async def async_fn(self, record):
        position = _position(record)
        end = time.monotonic() + self.seconds
        while position == self.position and not self.release.is_set() and time.monotonic() < end:
            await _asleep(0.005)
        return position


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
        position = _position(record)
        self.log.append(2 * position)
        time.sleep(self.hold)
        self.leave(position)

    async def async_fn(self, record):
        position = _position(record)
        self.log.append(2 * position)
        await _asleep(self.hold)
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
        position = _position(record)
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
        position = _position(record)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        self.done.append(position)

    def __call__(self, record):
        time.sleep(self.delay)
        self.finish(record)

    async def aio(self, record):
        await _asleep(self.delay)
        self.finish(record)


class StartsAfter:
    """Logs 2p + 1 if record p started after ``raised`` was set, else 2p; record ``failing`` sets it and raises ``error``."""

    def __init__(self, log: Log, raised: Flag, failing: int, error: type[Exception] = RuntimeError) -> None:
        self.log = log
        self.raised = raised
        self.failing = failing
        self.error = error

    def start(self, record) -> int:
        position = _position(record)
        self.log.append(2 * position + int(self.raised.is_set()))
        return position

    def end(self, position: int) -> int:
        if position == self.failing:
            self.raised.set()
            raise self.error("fails")
        return position

    def __call__(self, record):
        position = self.start(record)
        time.sleep(0.005)
        return self.end(position)

    async def aio(self, record):
        position = self.start(record)
        await _asleep(0.005)
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


# -- worker-process behaviour: plain functions over ints ------------------------------------

def square(x):
    return x * x


def fail_on_odd(x):
    if x % 2:
        raise ValueError(f"odd item {x}")
    return x


def interrupt_on(x):
    if x == 3:
        raise KeyboardInterrupt("stop")
    return x


def exit_on(x):
    if x == 3:
        raise SystemExit(7)
    return x


def die(x):
    os._exit(3)


def sleep_s(x):
    time.sleep(x)
    return x


def pid(_):
    return os.getpid()


def unpicklable_result(_):
    return threading.Lock()


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(a)


def raise_needs_two(_):
    raise NeedsTwo("a", "b")


def parse(x):
    """CPU-bound: the bench's cpu workload in small."""
    doc = json.dumps([{"k": i, "v": str(i) * 8} for i in range(x)])
    return len(json.loads(doc))


LOCK = threading.Lock()


def grab(_):
    """True when LOCK can be taken: a worker must not inherit a lock held in the caller."""
    got = LOCK.acquire(timeout=2.0)
    if got:
        LOCK.release()
    return got


def blob(x):
    """x zero bytes (x < 0: the worker exits): results larger than a worker's arena."""
    if x < 0:
        os._exit(3)
    return bytes(x)


# -- tasks that write lines to files in TASK_LOG_DIR ------------------------------------------
# The worker runs in the caller's environment, so the test names the directory there; each
# line is appended with one ``os.write``.

def _log(name: str, line: str) -> None:
    fd = os.open(os.path.join(os.environ["TASK_LOG_DIR"], name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: str, name: str) -> list[str]:
    """The lines the tasks above wrote to ``name`` in ``directory`` (none: an empty list)."""
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _wait_for(path: str, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.002)
    return False


def cross_worker(item):
    """Item 4 fails once item 260 (another chunk, another worker) has begun; 260.. log their start.

    Item 260 logs its start before it lets item 4 fail, and is still running when item 4
    fails (it takes 50 ms; item 4 sees it begin within a few): so each line after "fail"
    is an item that began after the failure.
    """
    directory = os.environ["TASK_LOG_DIR"]
    if item == 4:
        _wait_for(os.path.join(directory, "b-started"))
        _log("events", "fail")
        raise RuntimeError("item 4 fails")
    if 260 <= item < 516:
        _log("events", f"start {item}")
        if item == 260:
            open(os.path.join(directory, "b-started"), "w").close()
            time.sleep(0.05)
        time.sleep(0.002)
    return item


def slow_log(item):
    """Logs its start, then sleeps 2 ms (for cancellation tests)."""
    if item >= 4:
        if item == 4:
            open(os.path.join(os.environ["TASK_LOG_DIR"], "running"), "w").close()
        _log("events", f"start {item}")
        time.sleep(0.002)
    return item


def record_n(record) -> int:
    return json.loads(record["body"])["n"]


def batch_hang(record):
    """SQS record handler: record 1 hangs, record 5 fails, the others log their n."""
    n = record_n(record)
    if n == 1:
        time.sleep(30)
    if n == 5:
        raise RuntimeError("record 5 fails")
    _log("events", f"done {n}")
    return n


# -- items and results that cross the pipe badly -----------------------------------------------

def getenv_task(_item):
    return os.environ.get("TASK_VAR")


def getenv_pair(_item):
    return os.environ.get("TASK_VAR"), os.environ.get("TASK_GONE")


def change_environment(_item):
    """Sets TASK_VAR and deletes TASK_GONE in whatever process runs it."""
    os.environ["TASK_VAR"] = "set by the task"
    os.environ.pop("TASK_GONE", None)
    return os.environ.get("TASK_VAR")


class Unloadable:
    """Pickles fine; raises ``error`` (ValueError) when unpickled (in whichever process loads it)."""

    def __init__(self, error: type[BaseException] = ValueError) -> None:
        self.error = error

    def __reduce__(self):
        return (_refuse_load, (self.error,))


def _refuse_load(error: type[BaseException]):
    raise error("this object refuses to be unpickled")


def unloadable_result(item, error: type[BaseException] = ValueError):
    return Unloadable(error) if item == 5 else item


def unloadable_on_3(i: int, error: type[BaseException] = RuntimeError):
    """Item 3 returns an Unloadable raising ``error``; item i >= 1000 returns i bytes; others i."""
    if i == 3:
        return Unloadable(error)
    if i >= 1000:
        return b"u" * i
    return i


class BadStrUnpicklable(Exception):
    """An exception that cannot be pickled (an unpicklable attribute) and whose str() raises."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def fail_deep(depth: int, i):
    """Raises ValueError from KeyError ``depth`` calls down."""
    if depth == 0:
        try:
            raise KeyError(i)
        except KeyError as exc:
            raise ValueError(f"wrapped {i}") from exc
    return fail_deep(depth - 1, i)


def fail_record_deep(delay_s: float, record):
    """A record handler: after ``delay_s``, raises ValueError from KeyError 30 calls down."""
    time.sleep(delay_s)
    fail_deep(30, record["messageId"])


async def afail_record_deep(delay_s: float, record):
    import asyncio

    await asyncio.sleep(delay_s)
    fail_deep(30, record["messageId"])


def deep_failing_records(delay_s: float) -> lambda_fanout.Task:
    """Both forms of :func:`fail_record_deep`, for every strategy."""
    from functools import partial

    return lambda_fanout.Task(partial(fail_record_deep, delay_s), partial(afail_record_deep, delay_s))


def raise_bad(item):
    if item == 1:
        raise BadStrUnpicklable()
    return item


def maybe_unpicklable(i: int):
    """Odd items return a lock (cannot be pickled), even ones an int; 4 returns an array."""
    if i == 4:
        return array.array("b", [1, 2, 3])
    return threading.Lock() if i % 2 else i


#: A record handler bound to a module-level name but not picklable by it (a lambda).
lambda_record = lambda record: record  # noqa: E731 - a lambda is the point


# -- workers that end mid-call ---------------------------------------------------------------------

def exit_at(item):
    """os._exit() in the worker for item 10 (a worker dying mid-chunk)."""
    if item == 10:
        os._exit(3)
    return item


def hang_at(item):
    if item == 4:
        time.sleep(30)
    return item


def kill_self_at_1(item):
    if item == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return item


def big_then_hang(i: int):
    """Item -1 hangs; item i >= 1000 returns i bytes; others return i."""
    if i == -1:
        time.sleep(30)
    if i >= 1000:
        return bytes([i % 251]) * i
    return i


def fail_on(i: int):
    """Item 0 fails; the others sleep 20 ms and return i."""
    if i == 0:
        raise ValueError("zero")
    time.sleep(0.02)
    return i


def logged_fail_on_zero(args):
    """(i, path): append i to path, then fail on 0 after 20 ms or sleep 20 ms."""
    i, path = args
    with open(path, "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.02)
    if i == 0:
        raise ValueError("zero")
    return i


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


# -- results of many types and sizes ----------------------------------------------------------------

def as_bytearray(n: int) -> bytearray:
    """A bytearray of n bytes, each the low byte of its index."""
    return bytearray(i % 256 for i in range(n))


def as_array(n: int) -> array.array:
    """An array of n doubles."""
    return array.array("d", range(n))


def sized(n: int) -> bytes:
    """n bytes."""
    return b"x" * n


def ndarray(n: int):
    """A numpy array of n float64 values (numpy is imported in the worker, when called)."""
    import numpy

    return numpy.arange(n, dtype="float64")


# -- failures auto classifies ------------------------------------------------------------------------

class ResponseRaises(Exception):
    """An exception whose ``response`` property itself raises (a lazy HTTP error wrapper)."""

    @property
    def response(self):
        raise RuntimeError("response not loaded")


class StatusRaises(Exception):
    @property
    def status_code(self):
        raise ValueError("no status yet")


def odd_failure(item):
    if item == 3:
        raise ResponseRaises("odd")
    if item == 5:
        raise StatusRaises("odd status")
    return item


def cyclic_failure(item):
    if item == 1:
        a, b = RuntimeError("a"), RuntimeError("b")
        a.__cause__, b.__cause__ = b, a
        raise a
    return item


def batch_odd(record):
    """SQS record handler: record 2 raises an exception whose .response property raises."""
    if record_n(record) == 2:
        raise ResponseRaises("odd")
    return record_n(record)


class SlowDown(Exception):
    """A botocore-shaped throttling error (no botocore needed)."""

    def __init__(self):
        super().__init__("SlowDown")
        self.response = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}


B_STARTED = threading.Event()


def shared_task(item):
    """Run A: item 0 is throttled, item 1 waits for run B to start; run B's item says it started."""
    run, n = item
    if run == "A" and n == 0:
        raise SlowDown()
    if run == "A" and n == 1:
        B_STARTED.wait(5)
    if run == "B":
        B_STARTED.set()
    return item


class Throttled(Exception):
    """An HTTP 503 of some client: a throttling signal by its status code."""

    status_code = 503


class Gauge:
    """The peak of concurrent calls seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1

    def wait_idle(self, seconds: float) -> None:
        """Wait (at most ``seconds``) until no call is inside: one the deadline left running ends."""
        until = time.monotonic() + seconds
        while self.now > 0 and time.monotonic() < until:
            time.sleep(0.01)


GAUGE = Gauge()


def rough(i: int) -> int:
    """Throttled on multiples of 7, failing on multiples of 11, hanging on 5, else 1 ms."""
    GAUGE.enter()
    try:
        if i == 5:
            time.sleep(3)
        if i % 7 == 0:
            raise Throttled("slow down")
        if i % 11 == 0:
            raise ValueError("bad")
        time.sleep(0.001)
        return i
    finally:
        GAUGE.leave()


def fast(i: int) -> int:
    GAUGE.enter()
    GAUGE.leave()
    return i * 2


# -- the core tests' task: a delay and a failure per index -------------------------------------

class TaskBoom(ValueError):
    """The failure make_task's tasks raise."""


class _Fake:
    """Sleeps ``delays[index]`` and fails for the indexes in ``failing``, in both forms."""

    def __init__(self, delays: list[float], failing: set[int]) -> None:
        self.delays = delays
        self.failing = failing

    def check(self, item):
        index, value = item
        if index in self.failing:
            raise TaskBoom(f"item {index} fails")
        return value * 2 + 1

    def delay(self, item) -> float:
        return self.delays[item[0] % len(self.delays)] if self.delays else 0.0

    def sync_fn(self, item):
        delay = self.delay(item)
        if delay:
            time.sleep(delay)
        return self.check(item)

    async def async_fn(self, item):
        await _asleep(self.delay(item))
        return self.check(item)


def make_task(delays: list[float], failing: set[int]) -> lambda_fanout.Task:
    """A Task over (index, value) items: sleeps delays[index], fails for indexes in ``failing``."""
    fake = _Fake(delays, failing)
    return lambda_fanout.Task(fake.sync_fn, fake.async_fn)


# -- record handlers the zero-code handler loads by name (FANOUT_RECORD_HANDLER=xproc.READ) --------

def _read(record):
    """The S3 read: the record body names the key; the bucket comes from FAULT_BUCKET."""
    from lambda_fanout import aws

    return aws.s3_get_object(os.environ["FAULT_BUCKET"]).sync_fn(json.loads(record["body"])["key"])


async def _aread(record):
    from lambda_fanout import aws

    return await aws.s3_get_object(os.environ["FAULT_BUCKET"]).async_fn(json.loads(record["body"])["key"])


READ = lambda_fanout.Task(_read, _aread, name="read")

# Files, named in the environment, so that worker processes (processes strategy, which
# run in the caller's environment) share them with the test.
#: Set to let a hung record handler finish (the tests set it on teardown).
RELEASE = Flag(os.environ.get("FAULT_RELEASE_FLAG"))
os.environ["FAULT_RELEASE_FLAG"] = RELEASE.path
HUNG_INDEX = 0
#: The record numbers a HANG handler started, in order.
STARTED = Log(os.environ.get("FAULT_STARTED_LOG"))
os.environ["FAULT_STARTED_LOG"] = STARTED.path


def _hangs(record) -> bool:
    return json.loads(record["body"])["n"] == HUNG_INDEX


def _hang_sync(record):
    STARTED.append(json.loads(record["body"])["n"])
    if _hangs(record):
        RELEASE.wait(30)
    return json.loads(record["body"])["n"]


async def _hang_async(record):
    STARTED.append(json.loads(record["body"])["n"])
    if _hangs(record):
        await _forever()  # cancelled at the deadline
    return json.loads(record["body"])["n"]


HANG = lambda_fanout.Task(_hang_sync, _hang_async, name="hang")


def exec_on_zero(x):
    """Item 0 replaces the worker with another program that runs for two minutes."""
    if x == 0:
        import sys

        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)"])
    return x


def start_sleep_and_hang(path):
    """Starts a ``sleep`` that would outlive the call, writes its pid to ``path``, then hangs."""
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    with open(path, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)


def fork_and_carry_on(x):
    """Item "fork" forks a child that returns (or, for "fork-exit", raises SystemExit) as the
    task would, instead of ending with os._exit; the parent waits for it and returns "parent"."""
    if x in ("fork", "fork-exit"):
        child = os.fork()
        if child == 0:
            if x == "fork-exit":
                raise SystemExit(0)
            return "child"
        os.waitpid(child, 0)
        return "parent"
    return x


def mark_start(item):
    """Writes a file named after item["i"] into item["dir"] as it starts, then sleeps item["s"] seconds."""
    with open(os.path.join(item["dir"], str(item["i"])), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(item["s"])
    return item["i"]


def fork_and_hang_on_5(x):
    """Item 5 forks a child that holds the worker's pipes for a second, then hangs until killed."""
    if x == 5:
        if os.fork() == 0:
            time.sleep(1)
            os._exit(0)
        time.sleep(600)
    return x


def fork_then_die_on_2(x):
    """Item 2 forks a child that holds the worker's pipes for 20 s, then the worker dies at once."""
    if x == 2:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        os._exit(1)
    return x


def end_forkserver_on_0(x):
    """Item 0 kills the forkserver that started the workers (its parent) and returns; the others
    run on for 0.5 s on workers that outlive it."""
    if x == 0:
        os.kill(os.getppid(), signal.SIGKILL)
        return "ended"
    time.sleep(0.5)
    return x


class PowertoolsHandler:
    """test_powertools' record handler, called as Powertools calls one: ``handler(record=<data class>)``.

    Logs 2p as record p enters and 2p + 1 as it leaves, ``hold`` seconds later (see
    :func:`replay`); then fails the positions in ``bad``.
    """

    def __init__(self, bad: set, log: Log, hold: float = 0.0) -> None:
        self.bad = bad
        self.log = log
        self.hold = hold

    def enter(self, record) -> int:
        position = _position(record.raw_event)
        self.log.append(2 * position)
        return position

    def leave(self, position: int) -> int:
        self.log.append(2 * position + 1)
        if position in self.bad:
            raise RuntimeError(f"record {position} fails")
        return position

    def __call__(self, record):
        position = self.enter(record)
        time.sleep(self.hold)
        return self.leave(position)


class AsyncPowertoolsHandler(PowertoolsHandler):
    """:class:`PowertoolsHandler` as an ``async def`` handler, for AsyncBatchProcessor."""

    async def __call__(self, record):
        position = self.enter(record)
        await _asleep(self.hold)
        return self.leave(position)


class ContextHandler:
    """A Powertools record handler that takes ``lambda_context``: logs the context's function name."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def __call__(self, record, lambda_context):
        self.log.append(lambda_context.function_name)
        return _position(record.raw_event)
