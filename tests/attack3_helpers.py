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
