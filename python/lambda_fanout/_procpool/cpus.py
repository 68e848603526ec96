"""How many CPUs this function can really use: the cgroup quota, the affinity mask, Lambda's memory share.

What belongs here: reading the CPU quota and turning a function's memory size into
a count of workers (or the CPU one process's Python can use), and Lambda's ratio of
memory to vCPUs (``MB_PER_VCPU``), which the bench's CPU quota uses too. Nothing here starts a process.
"""

from __future__ import annotations

import os

#: Lambda's CPU share: one vCPU per 1,769 MB of memory.
MB_PER_VCPU = 1769


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_paths() -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(path: str):
    # The effective quota is the smallest one on the way up to the root.
    parts = path.strip("/").split("/") if path.strip("/") else []
    for depth in range(len(parts), -1, -1):
        yield "/".join(parts[:depth])


def cgroup_cpus(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max``, v1 cfs quota); None if unlimited."""
    v2, v1 = _cgroup_paths()
    limits = []
    if v2 is not None:
        for base in (root, os.path.join(root, "unified")):
            for rel in _ancestors(v2):
                text = _read(os.path.join(base, rel, "cpu.max"))
                if text and not text.startswith("max"):
                    quota, period = text.split()[:2]
                    limits.append(int(quota) / int(period))
    if v1 is not None:
        for base in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct")):
            for rel in _ancestors(v1):
                quota = _read(os.path.join(base, rel, "cpu.cfs_quota_us"))
                period = _read(os.path.join(base, rel, "cpu.cfs_period_us"))
                if quota and period and int(quota) > 0:
                    limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def cpu_share(memory_mb: int | None) -> float:
    """The share of one vCPU that Lambda gives ``memory_mb`` (1.0 from 1,769 MB up, and when unknown)."""
    return min(1.0, memory_mb / MB_PER_VCPU) if memory_mb else 1.0


def vcpus(memory_mb: int | None = None, *, cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this function can really use, as a whole number of workers (at least 1).

    The cgroup CPU quota where one is set (a fraction rounds up: 1.7 CPUs keeps two
    workers busy), else the CPUs this process may run on (``os.sched_getaffinity``).
    Inside Lambda the affinity mask shows the host's CPUs, not the function's share,
    so ``memory_mb`` (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) caps it at memory / 1,769 rounded up.

    Args:
        memory_mb: the function's memory size, or None outside Lambda.
        cgroup_root: where the cgroup filesystems are mounted.
    """
    import math

    quota = cgroup_cpus(cgroup_root)
    count = math.ceil(quota) if quota is not None else len(os.sched_getaffinity(0))
    if memory_mb:
        count = min(count, math.ceil(memory_mb / MB_PER_VCPU))
    return max(1, count)


def python_cpus(memory_mb: int | None = None, *, cgroup_root: str = "/sys/fs/cgroup") -> float:
    """The CPU one process's Python code can use, in CPUs: at most one (the GIL), less
    under a cgroup quota or Lambda's memory share below 1,769 MB.

    Args:
        memory_mb: the function's memory size, or None outside Lambda.
        cgroup_root: where the cgroup filesystems are mounted.
    """
    quota = cgroup_cpus(cgroup_root)
    share = min(1.0, quota) if quota is not None else 1.0
    return min(share, cpu_share(memory_mb))
