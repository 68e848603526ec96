"""The worker process's side: its loop, from one request on its pipe to the reply.

What belongs here: everything that runs inside a worker process and nothing else.
A worker maps its memory and says it is ready, then serves one request at a time:
it installs the caller's environment and loads the task when they change, runs the
items (checking the call's stop byte and the deadline before each, counting it
begun, writing its result to the arena), and sends the end of the request. The
caller's end of the pipe is ``pool``; the layout of what crosses is ``wire``.
"""

from __future__ import annotations

import marshal
import os
import pickle
import time
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from . import environment_hooks
from .pickling import PROTOCOL, Unsendable, WorkerError, failure, text_of, unpack
from .wire import (
    _BAD_ITEMS, _BAD_TASK, _ELAPSED, _END, _FAILED, _FRAME, _HEAD, _MARSHALLED, _PICKLED, _REPLY_LIST, _STARTED,
    _WRITTEN, ARENA_SIZE, BOARD_SLOTS, READY, Fd, plain, spill,
)


_serving = False  # True in a worker process, from the start of serve()


def serving() -> bool:
    """Whether this process is a worker (a task running here cannot start workers of its own)."""
    return _serving


def serve(conn, board_fd: Fd, arena_fd: Fd) -> None:
    """A worker's life: load the task when it changes, run each request's items, reply.

    A request is ``((task or None, environment or None, call slot, deadline, stop on
    failure, one by one), items)``. Before each item the
    worker checks the call's board slot and the deadline (a monotonic time: the clock
    is the caller's), counts the item begun in its arena, runs it and writes the
    result there.
    """
    import signal

    global _serving
    _serving = True
    # Ctrl-C reaches the whole process group; the caller decides what it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A group of its own, which the processes a task starts join: a worker killed at the
    # deadline is killed with them (Worker.interrupt), so none of them runs on.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # the caller then kills the worker alone
    # A task that execs another program must not hand it our end of the pipe: the
    # caller sees the pipe close at once, as if the worker had exited.
    os.set_inheritable(conn.fileno(), False)
    worker = _Worker(conn, board_fd, arena_fd)
    try:
        conn.send_bytes(READY)
    except OSError:
        return  # discarded before it was ready
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the caller closed the pipe or exited
        worker.handle(request)


def _raw_environ() -> Any:
    # os.environ's own mapping of encoded names and values: comparing it is a plain dict
    # comparison, microseconds per request, where comparing os.environ decodes every entry.
    return getattr(os.environ, "_data", None) or dict(os.environ)


class _Worker:
    """One worker process's state: its pipe, the board, its arena, the task it loaded."""

    def __init__(self, conn: Any, board_fd: Fd, arena_fd: Fd) -> None:
        import mmap

        self.conn = conn
        self.board = mmap.mmap(board_fd.fd, BOARD_SLOTS)
        self.arena = mmap.mmap(arena_fd.fd, ARENA_SIZE)
        os.close(board_fd.fd)
        os.close(arena_fd.fd)
        self.words = memoryview(self.arena)[:_HEAD].cast("q")
        self.fn: Any = None
        self.task: bytes | None = None  # the pickled task `fn` was loaded from
        #: the caller's environment as last installed, and os.environ's raw mapping right
        #: after (None before the first): a task that changes os.environ does not pass the
        #: change on to the next request.
        self.env: dict | None = None
        self.installed: dict | None = None

    def handle(self, request: bytes) -> None:
        """Serve one request: prepare the task and environment, run the items, send the end."""
        try:
            (task, env, slot, until, stop_on_failure, each), items = pickle.loads(request)
        except BaseException as exc:  # an item's own code may raise anything: the items go one by one
            self._refuse(_BAD_ITEMS, exc)
            return
        try:
            self._prepare(task, env)
        except BaseException as exc:  # the task's module may raise anything as it loads
            self._refuse(_BAD_TASK, exc)
            return
        self._end(*self._run(items, slot, until, stop_on_failure, each))

    def _refuse(self, kind: int, exc: BaseException) -> None:
        self.conn.send_bytes(bytes((kind,)) + failure(exc)[1])

    def _prepare(self, task: bytes | None, env: dict | None) -> None:
        # The caller's environment at this call (a forkserver child starts with the
        # server's): AWS_* settings, the handler's own variables. What was built from
        # the old one goes: what registered a hook (cached AWS clients), and the task
        # (loaded afresh).
        if env is None and self.installed is not None and _raw_environ() != self.installed:
            env = self.env  # a task changed it: back to the caller's, as last sent
        if env is not None:
            self._install(env)
            task = task or self.task
        if task is not None:
            self.fn = None
            self.fn = pickle.loads(task)
            self.task = task

    def _install(self, env: dict) -> None:
        os.environ.clear()
        os.environ.update(env)
        self.env = env
        self.installed = dict(_raw_environ())
        for hook in environment_hooks():
            hook()

    def _run(self, items: list, slot: int, until: float | None, stop_on_failure: bool,
             each: bool) -> tuple[list, int, float]:
        # Runs the items in order: (the results the arena holds, the end of its frames,
        # seconds taken). Locals only on the per-item path.
        conn, board, arena, words, fn = self.conn, self.board, self.arena, self.words, self.fn
        dumps = pickle.dumps
        protocol = PROTOCOL
        now = time.monotonic
        mdumps = marshal.dumps
        put_header = _FRAME.pack_into
        header = _FRAME.size
        limit = ARENA_SIZE - header
        begun_word, written_word, marshalled = _STARTED, _WRITTEN, _MARSHALLED
        nothing = Unsendable  # a sentinel no task returns
        # A child the task forked that comes back here (it returned or raised instead of
        # ending with os._exit) is no worker: it ends at once, never answering for it.
        me, pid = os.getpid(), os.getpid
        started = time.perf_counter()
        begun = 0
        pos = _HEAD
        kept: list = []  # what the arena holds, sent again as one list at the end (see _REPLY_LIST)
        keep = kept.append
        for item in items:
            if board[slot] or (until is not None and now() >= until):
                break  # the call stopped (a failure, a cancel) or its deadline passed
            begun += 1
            words[begun_word] = begun
            value = nothing
            try:
                value = fn(unpack(item) if each else item)
                if pid() != me:
                    os._exit(0)
                if plain(value):
                    body, kind = mdumps(value), marshalled
                else:
                    body, kind = dumps(value, protocol), _PICKLED
                record = (True, value)
            except BaseException as exc:
                if pid() != me:
                    os._exit(1)
                # errors="raise": nothing starts after a failure; a BaseException propagates
                # in the caller. Either way no item of this call starts after it, in any
                # worker: the board is set first, before the report is built. (One raised
                # by pickling the task's value is that value's failure: the item fails.)
                halt = stop_on_failure or (value is nothing and not isinstance(exc, Exception))
                if halt and slot:
                    board[slot] = 1
                record, body = self._failed(exc, value)
                kind = _FAILED
            else:
                halt = False
            size = len(body)
            if pos + size <= limit:
                put_header(arena, pos, size, kind)
                pos += header
                arena[pos:pos + size] = body
                pos += size
                words[written_word] = pos
                keep(record)
            else:
                pos = spill(conn, arena, words, pos, begun - 1, _FRAME.pack(size, kind) + body)
                kept = [record] if pos > _HEAD else []
                keep = kept.append
            if halt:
                break
        return kept, pos, time.perf_counter() - started

    @staticmethod
    def _failed(exc: BaseException, value: Any) -> tuple[tuple, bytes]:
        # An item's failure as the caller gets it, and pickled.
        if value is not Unsendable:  # the task returned, its value did not pickle
            exc = WorkerError(
                f"the task returned a {type(value).__name__}, which cannot be pickled back from the "
                f"worker process ({text_of(exc)}); return plain data", exited=False)
        return failure(exc)

    def _end(self, kept: list, pos: int, elapsed: float) -> None:
        end = bytes((_END,)) + _ELAPSED.pack(elapsed)
        if pos - _HEAD <= _REPLY_LIST:
            try:
                end += pickle.dumps(kept, PROTOCOL)
            except BaseException:  # a result's own code, pickled again: anything
                pass  # the caller reads the arena's frames instead
        self.conn.send_bytes(end)
