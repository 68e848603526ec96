"""The comparison as a library function, and as a Lambda handler for running it against real AWS.

This module and what it imports are the whole of ``lambda_fanout.bench``; the command
line, CPU quota, charts and saved runs are dev tools (``lambda_fanout_dev``), never in
the layer.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .cases import cases, loop_timer, measure_case
from .peers import VENVS
from .options import DEFAULT_MEMORY_MB, ENV_BUCKET, ENV_TABLE, Options
from .report import build_markdown
from .seeding import seed
from .workloads import WORKLOADS, Env


def run(opts: Options, env: Env | None, *, section: str = "main",
        progress: Callable[[str], None] | None = None) -> list[dict]:
    """Measure every case of ``opts``: one row per (workload, implementation, workers).

    The same harness as the pytest-benchmark suite (cases.measure_case), timed with a
    plain loop. Cases that cannot run here (a peer not installed) come back as rows
    with ``skipped`` set to the reason.
    """
    rows = []
    todo = [case for venv in VENVS for case in cases(opts, venv)]  # one process here: peers of every venv
    for number, case in enumerate(todo, start=1):
        why_not = case.unavailable()
        if why_not:
            rows.append({"workload": case.workload.name, "impl": case.impl, "kind": case.kind,
                         "section": section, "skipped": why_not})
            continue
        measured = measure_case(case, opts, env, loop_timer, section=section)
        rows.append({**measured.info, "data": measured.timed})
        if progress:
            progress(f"[{number}/{len(todo)}] {case.id}: {measured.info['rounds']} rounds")
    return rows


def lambda_handler(event: dict, context: Any) -> dict:
    """Run the comparison inside a deployed function, against real AWS.

    Event (all optional): ``workloads`` (list), ``items``, ``workers`` (list), ``rounds``,
    ``quick`` (default true), ``seed`` (write the objects and items first). The bucket
    and table come from ``FANOUT_BENCH_BUCKET`` / ``FANOUT_BENCH_TABLE``. Memory and
    architecture are the function's own, so CPU is Lambda's real share.

    Returns:
        {"report": Markdown, "rows": [...]}, the same tables ``./build.sh bench`` prints.
    """
    event = event or {}
    memory = int(getattr(context, "memory_limit_in_mb", 0)
                 or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", DEFAULT_MEMORY_MB))
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    opts = Options.create(
        quick=bool(event.get("quick", True)), items=event.get("items"),
        workers=tuple(event["workers"]) if event.get("workers") else None,
        # Real AWS: no proxy, so no workload that needs one unless asked for by name.
        workloads=tuple(event.get("workloads") or (n for n, w in WORKLOADS.items() if not w.needs_proxy)),
        rounds=event.get("rounds"),
        memory_mb=memory, arch=arch, memory_sweep=(),
        bucket=os.environ.get(ENV_BUCKET), table=os.environ.get(ENV_TABLE),
    )
    if event.get("seed"):
        names = opts.workloads
        seed(None, opts.bucket, opts.table, max(opts.n_items(WORKLOADS[w]) for w in names))
    rows = run(opts, Env(opts.bucket, opts.table, proxy=None))
    notes = [f"Run inside AWS Lambda: {memory} MB, {arch}, real CPU share, real AWS latency."]
    return {"report": build_markdown(rows, memory_mb=memory, arch=arch, notes=notes), "rows": rows}
