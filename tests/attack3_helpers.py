"""Importable tasks for tests/test_attack_round3.py (the processes strategy pickles tasks by name)."""

from __future__ import annotations

import array


def as_bytearray(n: int) -> bytearray:
    """A bytearray of n bytes, each the low byte of its index."""
    return bytearray(i % 256 for i in range(n))


def as_array(n: int) -> array.array:
    """An array of n doubles."""
    return array.array("d", range(n))


class Tagged(bytes):
    """A bytes subclass: plain data that pickles by name."""


def as_tagged(n: int) -> Tagged:
    return Tagged(b"t" * n)


def sized(n: int) -> bytes:
    """n bytes."""
    return b"x" * n


def big_then_hang(i: int):
    """Item -1 hangs; item i >= 1000 returns i bytes; others return i."""
    import time

    if i == -1:
        time.sleep(30)
    if i >= 1000:
        return bytes([i % 251]) * i
    return i


def maybe_unpicklable(i: int):
    """Odd items return a lock (cannot be pickled), even ones an int; 4 returns an array."""
    import threading

    if i == 4:
        return array.array("b", [1, 2, 3])
    return threading.Lock() if i % 2 else i


def fail_on(i: int):
    """Item 0 fails; the others sleep 20 ms and return i."""
    import time

    if i == 0:
        raise ValueError("zero")
    time.sleep(0.02)
    return i


class Throttled(Exception):
    """An HTTP 503 of some client: a throttling signal by its status code."""

    status_code = 503


class Gauge:
    """The peak of concurrent calls seen."""

    def __init__(self) -> None:
        import threading

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


GAUGE = Gauge()


def rough(i: int) -> int:
    """Throttled on multiples of 7, failing on multiples of 11, hanging on 5, else 1 ms."""
    import time

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


def pid_after(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def ndarray(n: int):
    """A numpy array of n float64 values (numpy is imported in the worker, when called)."""
    import numpy

    return numpy.arange(n, dtype="float64")


def logged_fail_on_zero(args):
    """(i, path): append i to path, then fail on 0 after 20 ms or sleep 20 ms."""
    import time

    i, path = args
    with open(path, "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.02)
    if i == 0:
        raise ValueError("zero")
    return i


def explode():
    raise RuntimeError("cannot be rebuilt here")


class Unloadable:
    """Pickles anywhere, unpickles nowhere."""

    def __reduce__(self):
        return explode, ()


def unloadable_on_3(i: int):
    """Item 3 returns an Unloadable; item i >= 1000 returns i bytes; others i."""
    if i == 3:
        return Unloadable()
    if i >= 1000:
        return b"u" * i
    return i
