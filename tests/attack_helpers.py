"""Module-level tasks for tests/test_attack_round2.py (``processes`` pickles tasks by name).

Each task talks to the test through files in the directory named by ATTACK_DIR (the
worker runs in the caller's environment), appended with one ``os.write`` per line.
"""

from __future__ import annotations

import os
import time


def _log(name: str, line: str) -> None:
    fd = os.open(os.path.join(os.environ["ATTACK_DIR"], name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: str, name: str) -> list[str]:
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


def identity(item):
    return item


def getenv_task(_item):
    return os.environ.get("ATTACK_VAR")


class Unloadable:
    """Pickles fine; raises when unpickled (in whichever process loads it)."""

    def __reduce__(self):
        return (_refuse_load, ("no",))


def _refuse_load(_arg):
    raise ValueError("this object refuses to be unpickled")


def unloadable_result(item):
    return Unloadable() if item == 5 else item


def exit_at(item):
    """os._exit() in the worker for item 10 (a worker dying mid-chunk)."""
    if item == 10:
        os._exit(3)
    return item


def cross_worker(item):
    """Item 4 fails once item 260 (another chunk, another worker) has begun; 260.. log their start.

    Item 260 logs its start before it lets item 4 fail, and is still running when item 4
    fails (it takes 50 ms; item 4 sees it begin within a few): so each line after "fail"
    is an item that began after the failure.
    """
    directory = os.environ["ATTACK_DIR"]
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
            open(os.path.join(os.environ["ATTACK_DIR"], "running"), "w").close()
        _log("events", f"start {item}")
        time.sleep(0.002)
    return item


def hang_at(item):
    if item == 4:
        time.sleep(30)
    return item


class BadStrUnpicklable(Exception):
    """An exception that cannot be pickled (an unpicklable attribute) and whose str() raises."""

    def __init__(self):
        super().__init__()
        self.lock = __import__("threading").Lock()

    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def raise_bad(item):
    if item == 1:
        raise BadStrUnpicklable()
    return item


def interrupt_at(item):
    if item == 2:
        raise KeyboardInterrupt("from the worker")
    return item


def sysexit_at(item):
    if item == 2:
        raise SystemExit(7)
    return item


def pid_task(_item):
    time.sleep(0.01)
    return os.getpid()


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


def record_n(record) -> int:
    import json

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


def batch_odd(record):
    """SQS record handler: record 2 raises an exception whose .response property raises."""
    if record_n(record) == 2:
        raise ResponseRaises("odd")
    return record_n(record)



#: A record handler bound to a module-level name but not picklable by it (a lambda).
lambda_record = lambda record: record  # noqa: E731 - the attack needs a lambda


def kill_self_at_1(item):
    if item == 1:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return item


class SlowDown(Exception):
    """A botocore-shaped throttling error (no botocore needed)."""

    def __init__(self):
        super().__init__("SlowDown")
        self.response = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}


B_STARTED = __import__("threading").Event()


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
