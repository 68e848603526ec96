"""Start moto's server and the fault proxy in their own processes, on loopback.

    with LocalEndpoint() as ep:
        ep.configure(delay_ms=25, tail_sigma=0.5, faults={"503": 0.1})
        os.environ.update(ep.environ())     # boto3 / aiobotocore now talk to the proxy

``LocalEndpoint(cpus={1})`` runs both processes on those CPUs only (CPU affinity), so a
client kept off them does not share a core with the endpoint; ``prompt=True`` runs the proxy
at real-time priority where the system allows it (see :meth:`LocalEndpoint.start`).
"""

from __future__ import annotations

import atexit
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class ProxyControl:
    """The fault proxy's controls, given its URL, over one kept-alive connection."""

    def __init__(self, proxy_url: str = "") -> None:
        self.proxy_url = proxy_url
        self._conn: http.client.HTTPConnection | None = None
        self._conn_lock = threading.Lock()

    def _control(self, action: str, payload: dict | None = None) -> Any:
        if not self.proxy_url:
            raise RuntimeError("this endpoint runs without the fault proxy")
        with self._conn_lock:
            return self._request(action, payload)

    def _request(self, action: str, payload: dict | None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        method = "GET" if data is None and action.startswith("stats") else "POST"
        for attempt in (1, 2):  # a kept-alive connection the proxy closed is opened again, once
            if self._conn is None:
                parts = urlsplit(self.proxy_url)
                self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                self._conn.request(method, f"/__proxy__/{action}", body=data,
                                   headers={"Content-Type": "application/json"} if data is not None else {})
                resp = self._conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                self.close_control()
                if attempt == 2:
                    raise
                continue
            if resp.status >= 400:
                raise urllib.error.HTTPError(f"{self.proxy_url}/__proxy__/{action}", resp.status,
                                             body.decode(errors="replace"), resp.headers, io.BytesIO(body))
            return json.loads(body)

    def close_control(self) -> None:
        """Close the control connection (the next control call opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def configure(self, *, delay_ms: float = 0.0, tail_sigma: float = 0.0, faults: dict | None = None,
                  stall_s: float = 30.0, seed: int | None = None, fault_after: int = 0,
                  throttle: dict | None = None, replay: bool = False) -> None:
        """Set the proxy's delay distribution, fault rates and throttling (and clear nothing else).

        ``throttle={"rate": R, "burst": B}`` answers requests beyond R per second per
        prefix with the service's own throttling error; ``replay=True`` answers a read
        upstream has answered before from its recorded answer (see lambda_fanout_dev.proxy).
        """
        self._control("config", {"delay_ms": delay_ms, "tail_sigma": tail_sigma, "faults": faults or {},
                                 "stall_s": stall_s, "seed": seed, "fault_after": fault_after,
                                 "throttle": throttle, "replay": replay})

    def stats(self, since: int = 0) -> dict:
        """What the proxy has served: request count, faults by kind, the endpoint's CPU seconds
        (``cpu_s``), and a log per request from request ``since`` + 1 on (each with the delay applied)."""
        return self._control(f"stats?since={int(since)}")

    def forget(self) -> None:
        """Drop every answer the proxy recorded (after writes sent straight to moto, past the proxy)."""
        self._control("forget", {})

    def reset_stats(self) -> None:
        self._control("reset", {})

    def freeze(self) -> int:
        """Freeze every connection open to the proxy now, as a SnapStart snapshot freezes them.

        Each stays open, silently, and its next request is answered with a reset (counted as
        ``frozen`` in :meth:`stats`); connections opened later are served. The next
        :meth:`configure` ends the freeze. Returns how many connections were frozen.
        """
        return self._control("freeze", {})["frozen"]


def _raise_priority(pid: int) -> str:
    """Run process ``pid`` (every thread of it) at real-time priority, else at nice -10, where allowed.

    The proxy times every answer it holds back; on a loaded machine a normal process waits
    for a time slice, and its answers go out milliseconds late (the tenth slowest in ten about
    6 ms late at a load of 8 on 2 CPUs, 0.6 ms at real-time priority). It uses a small share
    of one CPU, which the kernel's real-time throttling caps in any case.
    """
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(1))
        return "real-time"
    except (AttributeError, OSError):
        pass
    try:
        # (PRIO_PROCESS with a process id renices only its main thread: each thread by its id.)
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), -10)
        return "nice -10"
    except OSError:
        return "normal"


class LocalEndpoint(ProxyControl):
    """moto's server and the latency/fault proxy in front of it, both child processes."""

    def __init__(self, *, proxy: bool = True, startup_timeout_s: float = 60.0, cpus: set[int] | None = None,
                 prompt: bool = False) -> None:
        self.use_proxy = proxy
        self.cpus = cpus
        self.prompt = prompt
        self.priority = "normal"  # what start() got for the proxy: "real-time", "nice -10" or "normal"
        self.startup_timeout_s = startup_timeout_s
        self.moto: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.moto_url = ""
        super().__init__("")

    @property
    def url(self) -> str:
        """Where clients should send requests: the proxy, or moto itself without one."""
        return self.proxy_url or self.moto_url

    def start(self) -> "LocalEndpoint":
        port = free_port()
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=self._pin,
        )
        atexit.register(self.stop)
        self.moto_url = f"http://{LOOPBACK}:{port}"
        self._wait_http(self.moto_url + "/moto-api/", self.moto, "moto server")
        if self.use_proxy:
            self.proxy = subprocess.Popen(
                [sys.executable, "-m", "lambda_fanout_dev.proxy", "--upstream", self.moto_url,
                 "--upstream-pid", str(self.moto.pid)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                preexec_fn=self._pin,
            )
            line = self.proxy.stdout.readline() if self.proxy.stdout else ""
            if not line.startswith("READY "):
                self.stop()
                raise RuntimeError(f"the fault proxy did not start (printed {line!r})")
            self.proxy_url = f"http://{LOOPBACK}:{int(line.split()[1])}"
            if self.prompt:
                self.priority = _raise_priority(self.proxy.pid)
        return self

    def _pin(self) -> None:
        """In a child before it runs: keep it on ``cpus``, if given."""
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def _wait_http(self, url: str, proc: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} did not answer at {url} within {self.startup_timeout_s} s")

    def stop(self) -> None:
        self.close_control()
        for proc in (self.proxy, self.moto):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
        self.proxy = self.moto = None

    def __enter__(self) -> "LocalEndpoint":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """Environment for boto3 / aiobotocore to use this endpoint with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
