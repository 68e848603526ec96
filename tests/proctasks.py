"""Tasks for the worker-process tests: module level, so workers can import them by name."""

from __future__ import annotations

import os
import threading
import time


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
    import json

    doc = json.dumps([{"k": i, "v": str(i) * 8} for i in range(x)])
    return len(json.loads(doc))


def identity(x):
    return x


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


def change_environment(x):
    """Sets one variable and deletes another in the worker; returns the worker's pid."""
    os.environ["FANOUT_TEST_SET_BY_TASK"] = f"item {x}"
    os.environ.pop("FANOUT_TEST_CALLERS", None)
    return os.getpid()


def read_environment(_):
    return os.getpid(), os.environ.get("FANOUT_TEST_SET_BY_TASK"), os.environ.get("FANOUT_TEST_CALLERS")


def exec_on_zero(x):
    """Item 0 replaces the worker with another program that runs for two minutes."""
    if x == 0:
        import sys

        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)"])
    return x
