"""What a bench run measures, and every default it has, declared once.

The CLI, the in-Lambda runner and the test suite all build their :class:`Options`
through :meth:`Options.create`; the pytest-benchmark suite receives the CLI's as JSON
in ``FANOUT_BENCH_OPTIONS``. The workloads are named here, never imported: they
import this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from .._config import DEFAULT_BENCH_BUCKET, DEFAULT_BENCH_TABLE, DEFAULT_MAX_WORKERS
from .._config import ENV_BENCH_BUCKET as ENV_BUCKET  # the in-Lambda runner's (the CLI takes --bucket)
from .._config import ENV_BENCH_OPTIONS as ENV_OPTIONS
from .._config import ENV_BENCH_TABLE as ENV_TABLE

DEFAULT_BUCKET, DEFAULT_TABLE = DEFAULT_BENCH_BUCKET, DEFAULT_BENCH_TABLE
DEFAULT_MEMORY_MB = 1024
#: Lognormal width of the proxy's latency tail around each workload's median.
TAIL_SIGMA = 0.5
#: The memory sweep's other workload: cpu below, at and above one vCPU, where processes can
#: help (s3 runs at ``Options.memory_sweep``'s sizes).
CPU_SWEEP = (128, 1769, 3008)


@dataclasses.dataclass(frozen=True)
class Mode:
    """The defaults of a full or a quick run.

    Rounds: the suite runs its cases ``passes`` times in one process (a later pass finds
    them warm), every other pass in reverse case order, so
    each case's rounds are spread over the run and a slow drift of a shared machine
    shows up as spread within a case (which the statistics see) rather than as a
    difference between cases (which they could not). In each pass a case runs as many
    rounds as fit in ``case_budget_s`` (estimated from its warm-up), at least
    ``min_rounds`` and at most ``max_rounds``.
    """

    workers: tuple[int | str, ...]
    passes: int
    min_rounds: int
    max_rounds: int
    case_budget_s: float
    memory_sweep: tuple[int, ...]
    sweep_items: int
    sweep_passes: int
    #: workloads on which ``auto`` joins the default worker count (not when --workers is given)
    auto_on: tuple[str, ...] = ()


#: A fixed count measured beside the library's default, and the one the raw idioms and the
#: peers that take a count run at (they take no mode such as auto).
FIXED_WORKERS = 16
# The library's default first: the bench measures what a user gets unless told otherwise.
FULL = Mode(workers=(DEFAULT_MAX_WORKERS, FIXED_WORKERS), passes=2, min_rounds=1, max_rounds=12, case_budget_s=1.5,
            memory_sweep=(128, 512, 1769, 3008), sweep_items=32, sweep_passes=2,
            auto_on=("latency", "s3", "dynamodb", "throttled"))
# A quick run answers at one memory size: the sweep, the most of its time under the smallest
# sizes' CPU shares, is asked for by name (``memory_sweep=(128, 1769)``, the CLI's
# --memory-sweep) and then runs small.
QUICK = Mode(workers=(DEFAULT_MAX_WORKERS, FIXED_WORKERS), passes=2, min_rounds=2, max_rounds=20, case_budget_s=0.15,
             memory_sweep=(), sweep_items=16, sweep_passes=1, auto_on=("latency", "s3"))


@dataclasses.dataclass
class Options:
    """What to run. Build with :meth:`create`, which fills what is not given from the mode."""

    quick: bool = False
    items: int | None = None
    workers: tuple[int | str, ...] = FULL.workers
    latency_ms: float | None = None
    workloads: tuple[str, ...] = ()
    memory_mb: int = DEFAULT_MEMORY_MB
    arch: str = "x86_64"
    memory_sweep: tuple[int, ...] = ()
    endpoint_url: str | None = None
    proxy_url: str | None = None
    bucket: str = DEFAULT_BUCKET
    table: str = DEFAULT_TABLE
    rounds: int | None = None  # a fixed round count; None: as many as fit the mode's budget
    cpus: float | None = None  # the CPU quota the suite runs under, for the report
    with_others: bool = True  # measure raw idioms and peers too (the memory sweep measures strategies only)
    venv: str = "main"  # which environment's cases this process runs (see peers.VENVS)
    skip_file: str | None = None  # where the suite writes the cases it skipped, with the reason
    quota_procs: str | None = None  # the CPU quota's cgroup.procs: the suite enters it once set up
    passes: int | None = None  # suite passes; None: the mode's
    auto_on: tuple[str, ...] = ()  # workloads that also run at max_workers="auto"

    @classmethod
    def create(cls, *, quick: bool = False, workers: tuple | None = None, memory_sweep: tuple | None = None,
               **given) -> "Options":
        """Options with the mode's defaults for every value not given (None counts as not given)."""
        mode = QUICK if quick else FULL
        given = {k: v for k, v in given.items() if v is not None}
        given.setdefault("auto_on", () if workers else mode.auto_on)
        return cls(quick=quick, workers=tuple(workers or mode.workers),
                   memory_sweep=mode.memory_sweep if memory_sweep is None else tuple(memory_sweep), **given)

    @property
    def mode(self) -> Mode:
        return QUICK if self.quick else FULL

    def n_items(self, workload) -> int:
        if self.items is not None:
            return self.items
        return workload.quick_items if self.quick else workload.default_items

    def workers_for(self, workload) -> tuple:
        """The worker counts or modes ``workload`` runs at: the sweep, and ``auto`` where the mode adds it."""
        if workload.name in self.auto_on and "auto" not in self.workers:
            return self.workers + ("auto",)
        return self.workers

    def latency_s(self, workload) -> float:
        ms = self.latency_ms if self.latency_ms is not None else workload.default_latency_ms
        return ms / 1000.0

    @property
    def n_passes(self) -> int:
        return self.passes or self.mode.passes

    def rounds_for(self, estimate_s: float) -> int:
        """Timed rounds in one pass for a case whose one round is estimated at ``estimate_s``."""
        if self.rounds is not None:
            return self.rounds
        mode = self.mode
        return max(mode.min_rounds, min(mode.max_rounds, math.ceil(mode.case_budget_s / max(estimate_s, 1e-6))))

    def sweeps(self) -> list[tuple[int, tuple[str, ...]]]:
        """(memory size, workloads) of each point of the memory sweep, smallest first: s3 at
        ``memory_sweep``'s sizes and cpu at CPU_SWEEP's, each if ``workloads`` allows it;
        none without ``memory_sweep``."""
        if not self.memory_sweep:
            return []
        sizes = {w: m for w, m in (("s3", self.memory_sweep), ("cpu", CPU_SWEEP))
                 if not self.workloads or w in self.workloads}
        return [(memory, tuple(w for w, m in sizes.items() if memory in m))
                for memory in sorted({size for m in sizes.values() for size in m})]

    def sweep_run(self, memory_mb: int, *workloads: str) -> "Options":
        """These options for one point of the memory sweep: its workloads, strategies only."""
        return dataclasses.replace(
            self, memory_mb=memory_mb, workloads=workloads, workers=(self.workers[-1],),
            items=min(self.items or self.mode.sweep_items, self.mode.sweep_items), with_others=False, auto_on=(),
            passes=self.passes or self.mode.sweep_passes)

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> "Options | None":
        """The options the CLI passed in FANOUT_BENCH_OPTIONS; None when it passed none."""
        raw = os.environ.get(ENV_OPTIONS)
        if not raw:
            return None
        data = json.loads(raw)
        for key in ("workers", "workloads", "memory_sweep", "auto_on"):
            data[key] = tuple(data[key])
        return cls(**data)
