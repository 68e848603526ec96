"""Emulate Lambda's CPU share: a CPU quota of memory/1769 vCPUs for a child process.

Lambda gives a function one full vCPU at 1,769 MB, proportionally less below and up
to six at 10,240 MB. A cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``)
reproduces that for the benchmark's client process; the endpoint and proxy stay
outside it. Where the machine does not allow it, :func:`cpu_quota` says why.

A quota limits how much CPU time the client gets, not where: on a machine of more
than one CPU, :func:`endpoint_cpus` keeps one CPU for the endpoint and
:func:`client_cpus` the others for the client, where they hold its quota.
"""

from __future__ import annotations

import math
import os
import time
import uuid

from lambda_fanout._procpool.cpus import MB_PER_VCPU
MAX_VCPUS = 6
#: A short enforcement period keeps throttling smooth for jobs of tens of milliseconds
#: (at 100 ms a 30 ms job runs either unthrottled or stalled for a whole period);
#: 20 ms still leaves the 128 MB share above the kernel's 1 ms minimum quota.
PERIOD_US = 20_000

V2_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
V1_ROOTS = ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")


def vcpus_for_memory(memory_mb: int) -> float:
    """Lambda's CPU share for a memory size, in vCPUs: memory/1769, and six at the 10,240 MB maximum."""
    if memory_mb >= 10240:
        return float(MAX_VCPUS)
    return min(memory_mb / MB_PER_VCPU, MAX_VCPUS)


def endpoint_cpus(available: set[int] | None = None) -> set[int] | None:
    """The CPU the endpoint runs on: the last one, where there are several (None: wherever it likes)."""
    available = set(os.sched_getaffinity(0) if available is None else available)
    return {max(available)} if len(available) > 1 else None


def client_cpus(cpus: float, endpoint: set[int] | None, available: set[int] | None = None) -> set[int] | None:
    """The CPUs a client under a quota of ``cpus`` runs on: those the endpoint does not use, when
    they hold the quota (None: every CPU, shared with the endpoint)."""
    available = set(os.sched_getaffinity(0) if available is None else available)
    rest = available - (endpoint or set())
    return rest if endpoint and len(rest) >= math.ceil(cpus) else None


class CpuQuota:
    """A cgroup limited to ``cpus`` CPUs. Call :meth:`enter` in the child (preexec_fn), then :meth:`close`."""

    def __init__(self, path: str, procs_file: str, cpus: float, kind: str) -> None:
        self.path = path
        self.procs_file = procs_file
        self.cpus = cpus
        self.kind = kind

    def enter(self) -> None:
        with open(self.procs_file, "w") as f:
            f.write(str(os.getpid()))

    def close(self, wait: float = 2.0) -> None:
        """Remove the cgroup: a process still in it (one the child left behind, or one still
        exiting) is moved to the parent cgroup first, out of the quota. A cgroup is never
        removed by the kernel on its own, so one left here would stay until reboot."""
        parent_procs = os.path.join(os.path.dirname(self.path), os.path.basename(self.procs_file))
        until = time.monotonic() + wait
        while True:
            try:
                with open(self.procs_file) as f:
                    leftovers = f.read().split()
                for pid in leftovers:
                    try:
                        _write(parent_procs, pid)
                    except OSError:
                        pass  # gone meanwhile
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return  # already removed
            except OSError:
                if time.monotonic() >= until:
                    return  # the kernel still holds it (an exiting process): nothing more to do here
                time.sleep(0.05)

    def describe(self) -> str:
        return f"{self.cpus:.3f} CPUs via cgroup {self.kind}"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def cpu_quota(cpus: float, *, v2_roots=V2_ROOTS, v1_roots=V1_ROOTS) -> tuple[CpuQuota | None, str]:
    """A cgroup limited to ``cpus`` CPUs, or (None, why not)."""
    if cpus <= 0:
        raise ValueError(f"cpus must be > 0 but got {cpus!r}")
    quota_us = max(1000, int(cpus * PERIOD_US))
    name = f"lambda-fanout-bench-{uuid.uuid4().hex[:8]}"
    reasons = []
    for root in v2_roots:
        controllers = os.path.join(root, "cgroup.controllers")
        if not os.path.exists(controllers):
            continue
        path = os.path.join(root, name)
        try:
            with open(controllers) as f:
                if "cpu" not in f.read().split():
                    reasons.append(f"{root}: no cpu controller")
                    continue
            os.mkdir(path)
            _write(os.path.join(path, "cpu.max"), f"{quota_us} {PERIOD_US}")
            return CpuQuota(path, os.path.join(path, "cgroup.procs"), cpus, "v2 cpu.max"), ""
        except OSError as exc:
            reasons.append(f"{root}: {exc.strerror or exc}")
            _rmdir(path)
    for root in v1_roots:
        if not os.path.exists(os.path.join(root, "cpu.cfs_quota_us")):
            continue
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
            _write(os.path.join(path, "cpu.cfs_period_us"), str(PERIOD_US))
            _write(os.path.join(path, "cpu.cfs_quota_us"), str(quota_us))
            return CpuQuota(path, os.path.join(path, "cgroup.procs"), cpus, "v1 cpu.cfs_quota_us"), ""
        except OSError as exc:
            reasons.append(f"{root}: {exc.strerror or exc}")
            _rmdir(path)
    if not reasons:
        reasons.append("no cgroup cpu controller is mounted")
    return None, "; ".join(reasons)


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
