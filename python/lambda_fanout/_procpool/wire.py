"""The wire format between the caller and a worker: the pipe's replies and the shared memory.

What belongs here: the layout of the board (one stop byte per call) and of each
worker's arena (the count of items begun, then one frame per finished item), the
kinds of reply a worker sends down its pipe, and writing and reading frames. Both
sides import it; neither side's logic lives here (the worker's loop is ``worker``,
the caller's end is ``pool``).
"""

from __future__ import annotations

import marshal
import os
import pickle
import struct
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from .pickling import WorkerError, text_of

#: A worker's first message: it has started and mapped its memory.
READY = b"ready"

# Two small memory-mapped files, neither from /dev/shm (Lambda has none): a board of
# one byte per call, set to stop every worker of that call before its next item (the
# first failure under errors="raise", a cancelled amap), and per worker an arena where
# it writes each finished item's result as it finishes, with how many items it has
# begun. Results land there without a system call per item, and outlive the worker:
# a worker that dies or is killed mid-request leaves the results it had finished.

BOARD_SLOTS = 4096
ARENA_SIZE = 1 << 20
# Arena words (int64): items begun in this request, end of the frames written, and the
# request position of the arena's first frame (earlier frames went down the pipe).
_STARTED, _WRITTEN, _FIRST = 0, 1, 2
_HEAD = 32  # frames start here
# A frame: the body's length and kind, then the body: a value marshalled (plain data,
# about half the cost of pickling it), a value pickled, or a failure pickled.
_FRAME = struct.Struct("<IB")
_MARSHALLED, _PICKLED, _FAILED = 0, 1, 2
#: Up to this many bytes of results, the end-of-request reply repeats the arena's
#: results as one pickled list: the caller loads it in one call (about a tenth of the
#: time of loading each frame), reading the frames only if it fails to load.
_REPLY_LIST = 1 << 16
_ELAPSED = struct.Struct("<d")

# Replies, by first byte: frames spilled from a full arena, the end of a request, the
# task (or environment) not loadable, the items not loadable (sent again one by one).
_FRAMES, _END, _BAD_TASK, _BAD_ITEMS = b"F"[0], b"E"[0], b"T"[0], b"I"[0]


def shared_memory(size: int) -> tuple[int, Any]:
    """(fd, writable shared mapping) of a new zeroed file of ``size`` bytes, in memory where possible."""
    import mmap

    try:
        fd = os.memfd_create("lambda-fanout", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (not Linux, an old kernel): an unlinked temporary file
        import tempfile

        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


class Fd:
    """A file descriptor given to a worker process as it starts (duplicated into it)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return _inherit_fd, (reduction.DupFd(self.fd),)


def _inherit_fd(dup: Any) -> Fd:
    return Fd(dup.detach())


# The types marshal writes back as themselves. It also takes any buffer (a numpy array,
# array.array, bytearray, a bytes subclass) and reads it back as plain bytes, so a value
# is marshalled only when it and, one level down, its elements are exactly these types;
# anything else is pickled, which keeps the type.
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


def plain(value: Any) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is list or kind is tuple:
        return all(type(v) in _SCALARS for v in value)
    if kind is dict:
        return all(type(k) in _SCALARS and type(v) in _SCALARS for k, v in value.items())
    return False


def spill(conn, arena, words, pos: int, position: int, frame: bytes) -> int:
    # The arena is full: what it holds goes down the pipe (the caller reads it before
    # the end of the request), then it starts over. A frame larger than the arena goes
    # down the pipe itself. The written mark drops before the first position moves: a
    # worker killed between the two leaves an empty arena, never frames misnumbered.
    if pos > _HEAD:
        conn.send_bytes(bytes((_FRAMES,)) + arena[_HEAD:pos])
        words[_WRITTEN] = pos = _HEAD
        words[_FIRST] = position
    end = pos + len(frame)
    if end > ARENA_SIZE:
        conn.send_bytes(bytes((_FRAMES,)) + frame)
        words[_FIRST] = position + 1
        return pos
    arena[pos:end] = frame
    words[_WRITTEN] = end
    return end


def read_frames(data: bytes, start: int, first: int, results: list) -> None:
    """Append to ``results`` the frames of ``data`` from ``start`` on, numbered from ``first``."""
    view = memoryview(data)
    unpack = _FRAME.unpack_from
    pos, end = start, len(data)
    while pos < end:
        size, kind = unpack(view, pos)
        pos += _FRAME.size + size
        if first == len(results):  # frames already read from a spill are skipped
            body = view[pos - size:pos]
            try:
                results.append((True, marshal.loads(body)) if kind == _MARSHALLED else
                               (kind == _PICKLED, pickle.loads(body)))
            except BaseException as exc:  # the result's own code may raise anything: it fails alone
                results.append((False, WorkerError(
                    f"the task's result could not be unpickled in the caller ({text_of(exc)}); return plain data",
                    exited=False)))
        first += 1
