"""The comparison as a library function, and as a Lambda handler for running it against real AWS."""

from __future__ import annotations

import os
import statistics
from typing import Any, Callable

from .. import _config
from .report import build_markdown
from .workloads import WORKLOADS, Env, Options, cases, measure, seed


def run(opts: Options, env: Env | None, *, section: str = "main",
        progress: Callable[[str], None] | None = None) -> list[dict]:
    """Measure every case of ``opts``: one row per (workload, implementation, workers).

    Each case runs once untimed (warm-up: client creation, connection set-up), then
    ``opts.rounds`` timed rounds; the row holds the median wall time and client CPU.
    """
    rows = []
    todo = cases(opts)
    for number, case in enumerate(todo, start=1):
        call, close, items = case.prepare(opts, env)
        try:
            call()
            walls, cpus = [], []
            for _ in range(opts.rounds):
                _, wall, cpu = measure(call)
                walls.append(wall)
                cpus.append(cpu)
        finally:
            close()
        rows.append(row(case, opts, section, len(items), statistics.median(walls), statistics.median(cpus)))
        if progress:
            progress(f"[{number}/{len(todo)}] {case.id}: {statistics.median(walls) * 1000:.1f} ms")
    return rows


def row(case, opts: Options, section: str, items: int, median_s: float, cpu_s: float) -> dict:
    """One measurement as the report reads it."""
    return {
        "workload": case.workload.name, "impl": case.impl, "workers": case.workers, "items": items,
        "median_s": median_s, "cpu_ms_per_item": cpu_s * 1000 / max(items, 1),
        "ideal_s": case.workload.ideal_s(opts, case.workers), "memory_mb": opts.memory_mb,
        "cpus": opts.cpus, "section": section,
    }


def lambda_handler(event: dict, context: Any) -> dict:
    """Run the comparison inside a deployed function, against real AWS.

    Event (all optional): ``workloads`` (list), ``items``, ``workers`` (list), ``rounds``,
    ``quick``, ``seed`` (write the objects and items first). The bucket and table come
    from ``FANOUT_BENCH_BUCKET`` / ``FANOUT_BENCH_TABLE``. Memory and architecture are
    the function's own, so CPU is Lambda's real share.

    Returns:
        {"report": Markdown, "rows": [...]}, the same tables ``./build.sh bench`` prints.
    """
    event = event or {}
    memory = int(getattr(context, "memory_limit_in_mb", 0) or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 1024))
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    opts = Options(
        quick=bool(event.get("quick", True)),
        items=event.get("items"),
        workers=tuple(event.get("workers", (_config.DEFAULT_MAX_WORKERS,))),
        workloads=tuple(event.get("workloads", ("latency", "s3", "dynamodb", "cpu", "frequency"))),
        rounds=int(event.get("rounds", 3)),
        memory_mb=memory, arch=arch, memory_sweep=(),
        bucket=os.environ.get(_config.ENV_BENCH_BUCKET, _config.DEFAULT_BENCH_BUCKET),
        table=os.environ.get(_config.ENV_BENCH_TABLE, _config.DEFAULT_BENCH_TABLE),
    )
    env = Env(opts.bucket, opts.table, proxy=None)
    if event.get("seed"):
        needed = max(opts.n_items(WORKLOADS[w]) for w in opts.workloads)
        seed(None, opts.bucket, opts.table, needed)
    rows = run(opts, env)
    notes = [f"Run inside AWS Lambda: {memory} MB, {arch}, real CPU share, real AWS latency."]
    return {"report": build_markdown(rows, memory_mb=memory, arch=arch, notes=notes), "rows": rows}
