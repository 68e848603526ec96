"""Run a function with the layer attached the way Lambda runs it, without Docker.

    with LocalFunction("app.handler", task_root="fn", opt=unpacked_layer, python="3.12",
                       runtime=runtime_dir("3.12"), env=endpoint.environ()) as fn:
        result = fn.invoke({"Records": [...]})      # an Invocation, with .logs

The function runs under the real runtime interface client (``python -m awslambdaric``)
against a local Runtime API (:mod:`.runtime_api`), with Lambda's environment variables
and ``sys.path`` order: the task root, the layer's ``/opt/python/lib/python3.X/site-packages``
and ``/opt/python``, then the runtime's own packages (:func:`runtime_dir`: the runtime
client and a boto3 older than the layer's, as Lambda's runtime carries its own). The
interpreter starts with ``-S``, so nothing of the machine's site-packages is visible.

Where the machine allows a private mount namespace (``unshare -m``, as root), the layer is
mounted read-only at ``/opt`` and the task root read-only in place, as in Lambda; elsewhere
the layer runs from its unpacked folder, writable, and :attr:`LocalFunction.notes` says so.
A memory size can bring Lambda's CPU share as a cgroup CPU quota (:mod:`.quota`). With
``snapstart=True`` the init takes the runtime's snap-start path and the process becomes the
snapshot, restored into environments of their own (:mod:`.snapstart`).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ROOT
from . import snapstart as _snapstart
from .quota import cpu_quota, vcpus_for_memory
from .runtime_api import Invocation, RuntimeApi

RUNTIME_REQUIREMENTS = ROOT / "requirements" / "lambda-runtime.txt"
CACHE = ROOT / "build"
#: Lambda's limit on a function's init phase.
INIT_TIMEOUT_S = 10.0

MOUNT_SCRIPT = ('mount --bind "$1" /opt && mount -o remount,bind,ro /opt && '
                'mount --bind "$2" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"')


@functools.cache
def build_layer_module():
    """layer/build_layer.py, loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_layer", ROOT / "layer" / "build_layer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_arch() -> str:
    """This machine's architecture in Lambda's words (x86_64 or arm64)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def runtime_dir(python: str) -> Path:
    """The runtime's own packages for Python ``python`` (its /var/runtime), installed once.

    From requirements/lambda-runtime.txt (pinned, hash-checked): awslambdaric and an older
    boto3. Cached under build/ by the requirements' digest.

    Raises:
        RuntimeError: pip could not install them (pip's message included).
    """
    digest = hashlib.sha256(RUNTIME_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    machine = "aarch64" if local_arch() == "arm64" else "x86_64"

    def install(tmp: Path) -> None:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--require-hashes", "-r", str(RUNTIME_REQUIREMENTS), "--target", str(tmp), "--only-binary=:all:",
               "--implementation", "cp", "--python-version", python,
               "--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_17_{machine}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            noise = "is ignored: it is neither a file nor a directory"
            err = "\n".join(line for line in proc.stderr.splitlines() if noise not in line)
            raise RuntimeError(f"pip could not install Lambda's runtime packages for Python {python}:\n{err}")

    return _cached(CACHE / "lambda-runtime" / f"py{python}-{local_arch()}-{digest}", digest, install)


def unpack_layer(zip_path: str | Path) -> Path:
    """The layer zip unpacked into an /opt-like folder under build/, once per zip content."""
    import zipfile

    digest = hashlib.sha256(Path(zip_path).read_bytes()).hexdigest()[:16]

    def unpack(tmp: Path) -> None:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)

    return _cached(CACHE / "opt" / digest, digest, unpack)


def _cached(target: Path, digest: str, fill: Callable[[Path], None]) -> Path:
    """``target``, filled once by ``fill(folder)``; another process filling it at the same time waits for it.

    The folder is filled under a temporary name and renamed when complete, so a reader
    never sees it half made; a file lock beside it keeps two processes (test workers, a
    ``./build.sh invoke`` beside the tests) from filling or replacing it at once.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            fill(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / ".complete").write_text(digest)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target


@functools.cache
def private_mounts() -> str:
    """'' when a private mount namespace with a read-only /opt can be made here, else why not."""
    if not os.path.isdir("/opt"):
        return "this machine has no /opt to mount the layer over"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "the unshare tool (util-linux) is not installed"
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -m is not allowed here ({probe.stderr.strip() or 'needs root'})"
    return ""


class LocalFunction:
    """One Lambda execution environment: a function process under awslambdaric, and its Runtime API.

    Args:
        handler: the function's Handler (``module.function``).
        task_root: the function's code folder (Lambda's /var/task).
        opt: the unpacked layer (Lambda's /opt).
        python: the runtime's Python version ("3.12"); its interpreter must be on this machine.
        runtime: the runtime's own packages (:func:`runtime_dir`).
        env: the function's environment variables (added to Lambda's own).
        memory_mb: the memory size, shown to the function and used for the CPU quota.
        timeout_s: the function's timeout; each event's deadline header comes from it.
        read_only: mount /opt and the task root read-only where the machine allows it.
        cpu_quota: run under the bench's cgroup CPU quota for ``memory_mb``.
        snapstart: take the runtime's snap-start path: the init ends at the snapshot
            (:meth:`wait_ready`), and :meth:`restore` makes each restored environment.

    Raises:
        RuntimeError: no interpreter for ``python`` on this machine.
    """

    def __init__(self, handler: str, *, task_root: str | Path, opt: str | Path, python: str, runtime: str | Path,
                 env: dict[str, str] | None = None, memory_mb: int = 1024, timeout_s: float = 30.0,
                 read_only: bool = True, cpu_quota: bool = False, function_name: str = "local-function",
                 snapstart: bool = False) -> None:
        self.handler = handler
        self.task_root = str(Path(task_root).resolve())
        self.opt_dir = str(Path(opt).resolve())
        self.python = python
        self.interpreter = build_layer_module().find_interpreter(python)
        if self.interpreter is None:
            raise RuntimeError(f"no python{python} on this machine to run the function with")
        self.runtime = str(runtime)
        self.env = dict(env or {})
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.function_name = function_name
        self.snapstart = snapstart
        self.notes: list[str] = []
        why = private_mounts() if read_only else "not asked for"
        self.read_only = read_only and not why
        self.opt = "/opt" if self.read_only else self.opt_dir
        if read_only and why:
            self.notes.append(f"/opt is NOT read-only: {why}; the layer runs from {self.opt_dir}")
        self._want_quota = cpu_quota
        self._quota = None
        self.api: RuntimeApi | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._partial = b""
        self._eof = False
        self._reader: threading.Thread | None = None

    # -- environment --------------------------------------------------------------------

    def sys_path(self) -> list[str]:
        """The function's import path, in Lambda's order."""
        return [self.task_root, f"{self.opt}/python/lib/python{self.python}/site-packages", f"{self.opt}/python",
                self.runtime]

    def environ(self, api_address: str) -> dict[str, str]:
        """The process environment: Lambda's reserved variables, then the function's own."""
        region = self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or "us-east-1"
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": os.pathsep.join(self.sys_path()),
            "LAMBDA_TASK_ROOT": self.task_root,
            "LAMBDA_RUNTIME_DIR": self.runtime,
            "_HANDLER": self.handler,
            "AWS_LAMBDA_RUNTIME_API": api_address,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{self.python}",
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
        env.update(self.env)
        return _snapstart.environ(env) if self.snapstart else env

    def command(self) -> list[str]:
        if self.snapstart:
            run = _snapstart.command(self.interpreter, self.handler, "-S")
        else:
            run = [self.interpreter, "-S", "-m", "awslambdaric", self.handler]
        if not self.read_only:
            return run
        return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", MOUNT_SCRIPT, "sh",
                self.opt_dir, self.task_root, *run]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "LocalFunction":
        """Start the Runtime API and the function process (its init runs now)."""
        self.api = RuntimeApi(function_name=self.function_name).start()
        preexec = None
        if self._want_quota:
            self._quota, why = cpu_quota(vcpus_for_memory(self.memory_mb))
            if self._quota is None:
                self.notes.append(f"CPU NOT limited to the {self.memory_mb} MB share: {why}")
            else:
                preexec = self._quota.enter
                self.notes.append(f"CPU limited to {self._quota.describe()} ({self.memory_mb} MB)")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=self.task_root, env=self.environ(self.api.address),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="function-logs", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        # Reads whatever the function writes as it writes it, so its pipe never fills.
        import select

        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        while not self._eof:
            select.select([fd], [], [], 0.1)
            with self._lock:
                self._pull(fd)

    def _pull(self, fd: int) -> None:
        while not self._eof:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            self._eof = not chunk
            self._partial += chunk
            *complete, self._partial = self._partial.split(b"\n")
            if self._eof and self._partial:
                complete.append(self._partial)
            self.lines += [line.decode("utf-8", "replace") for line in complete]

    def _drain(self) -> None:
        # The function writes its logs before it answers, so once it has answered they
        # are all in the pipe: take them now rather than wait for the reader thread.
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            with self._lock:
                self._pull(self.proc.stdout.fileno())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = INIT_TIMEOUT_S) -> bool:
        """Wait for the function's init to end: True once it asks for an event (snap-start: once
        the snapshot is taken); False on an init error (:attr:`init_error`), an exit or the
        time running out."""
        assert self.api is not None
        ok = self.api.wait_ready(timeout_s, self.alive)
        self._drain()
        return ok

    @property
    def init_error(self) -> dict | None:
        """What the function posted to /runtime/init/error, if it did."""
        return self.api.init_error if self.api else None

    @property
    def init_ms(self) -> float | None:
        """From the process start to its first request for an event (snap-start: to the snapshot,
        the before-snapshot hooks included): Lambda's Init Duration."""
        end = None if self.api is None else self.api.snapshot_at or self.api.ready_at
        return None if end is None else (end - self.started_at) * 1000.0

    def invoke(self, event: Any, restored: _snapstart.Restored | None = None) -> Invocation:
        """Send one event and wait for the answer; the Invocation gains ``.logs`` (its log lines).

        Args:
            event: the event.
            restored: the restored environment to send it to (snap-start), else this one.
        """
        assert self.api is not None
        first = len(self.lines)
        if restored is None:
            inv = self.api.invoke(event, self.timeout_s, alive=self.alive)
        else:
            inv = restored.invoke(event, self.timeout_s)
        self._drain()
        inv.logs = self.lines[first:]  # type: ignore[attr-defined]
        return inv

    def restore(self) -> _snapstart.Restored:
        """A new environment restored from the snapshot (snap-start; after ``self.api.resume()``).

        Its logs go to :attr:`lines` with the snapshot's.
        """
        assert self.api is not None and self.snapstart
        return _snapstart.restore(self.api, function_name=self.function_name)

    def stop(self) -> None:
        """End the function process (as Lambda ends an environment) and the Runtime API."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            if self._reader is not None:
                self._reader.join(5)
            with self._lock:
                self.proc.stdout.close()
        if self.api is not None:
            self.api.stop()
        if self._quota is not None:
            self._quota.close()
            self._quota = None

    def __enter__(self) -> "LocalFunction":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the process holds ------------------------------------------------------------

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the function is parked on its next-event request, so what it holds
        is not caught mid-request (the runtime client polls from a thread of its own)."""
        assert self.api is not None
        return self.api.wait_parked(timeout_s)

    def _status(self, field: str) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def threads(self) -> int:
        """The function process's thread count."""
        return self._status("Threads")

    def open_fds(self) -> int:
        """The function process's open file descriptors."""
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def max_memory_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), in MB: Lambda's Max Memory Used."""
        return self._status("VmHWM") / 1024.0
