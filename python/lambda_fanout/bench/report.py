"""The comparison report: tables per workload, Lambda cost, recommendations and a chart."""

from __future__ import annotations

import os
from typing import Any, Iterable

from .. import STRATEGIES
from .cost import PRICES_READ_ON, cost_per_million
from .workloads import WORKLOADS

#: Below this speed-up over sequential, concurrency is not worth recommending.
WORTHWHILE = 1.15


def rows_from_pytest_benchmark(data: dict, section: str) -> list[dict]:
    """Rows from a pytest-benchmark JSON document written by the workload suite."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "workload" not in info:
            continue
        rows.append({**info, "median_s": bench["stats"]["median"], "section": section})
    return rows


def _by(rows: Iterable[dict], **match: Any) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _sequential(rows: list[dict]) -> dict | None:
    seq = [r for r in rows if r["impl"] == "sequential"]
    return seq[0] if seq else None


def workload_table(rows: list[dict], memory_mb: int, arch: str) -> list[list[str]]:
    """Table rows for one workload: implementation, workers, wall, speed-up, wall/ideal, CPU, cost."""
    seq = _sequential(rows)
    out = []
    for r in sorted(rows, key=lambda r: r["median_s"]):
        speedup = f"{seq['median_s'] / r['median_s']:.2f}x" if seq else "n/a"
        ideal = r.get("ideal_s")
        ratio = f"{r['median_s'] / ideal:.2f}" if ideal and r["impl"] != "sequential" and not r["impl"].startswith("raw:list") else "-"
        out.append([
            r["impl"], str(r["workers"] if r["impl"] not in ("sequential", "raw:list-comprehension") else 1),
            f"{r['median_s'] * 1000:.1f}", speedup, ratio, f"{r['cpu_ms_per_item']:.3f}",
            f"${cost_per_million(r['median_s'] * 1000, memory_mb, arch):,.2f}",
        ])
    return out


HEADER = ["implementation", "workers", "median wall (ms)", "speed-up vs sequential", "wall / ideal",
          "client CPU ms / item", "$ per 1M invocations"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def recommend(workload: str, rows: list[dict], memory_mb: int, arch: str) -> str:
    """One recommendation in plain words for a workload's rows."""
    strategies = [r for r in rows if r["impl"] in STRATEGIES]
    seq = _sequential(strategies)
    if not strategies or seq is None:
        return "Not enough measurements to recommend a strategy."
    best = min(strategies, key=lambda r: r["median_s"])
    gain = seq["median_s"] / best["median_s"]
    if best["impl"] == "sequential" or gain < WORTHWHILE:
        why = ("the work is CPU-bound and holds the GIL, so threads take turns on one core and asyncio "
               "runs items one after another" if workload == "cpu" else
               "each item does too little waiting for overlap to pay for the hand-off")
        concurrent = [r for r in strategies if r["impl"] != "sequential"]
        if not concurrent:
            return f"Keep `sequential` (FANOUT_STRATEGY=sequential): {why}."
        top = min(concurrent, key=lambda r: r["median_s"])
        return (f"Keep `sequential` (FANOUT_STRATEGY=sequential): the best concurrent strategy, "
                f"`{top['impl']}`, runs at {seq['median_s'] / top['median_s']:.2f}x sequential here: {why}.")
    cost_seq = cost_per_million(seq["median_s"] * 1000, memory_mb, arch)
    cost_best = cost_per_million(best["median_s"] * 1000, memory_mb, arch)
    text = (f"Use `{best['impl']}` (FANOUT_STRATEGY={best['impl']}, FANOUT_MAX_WORKERS={best['workers']}): "
            f"{gain:.1f}x faster than sequential and {100 * (1 - cost_best / cost_seq):.0f}% cheaper per invocation.")
    threads = [r for r in strategies if r["impl"] == "threads" and r is not best]
    if best["impl"] == "asyncio" and threads:
        t = min(threads, key=lambda r: r["median_s"])
        gap = t["median_s"] / best["median_s"] - 1
        if gap < 0.10:
            text += (f" `threads` is within {100 * gap:.0f}% of it with no async code (client CPU per item: "
                     f"threads {t['cpu_ms_per_item']:.3f} ms, asyncio {best['cpu_ms_per_item']:.3f} ms).")
    return text


def sweep_table(rows: list[dict], arch: str) -> tuple[list[str], list[list[str]]]:
    header = ["memory (MB)", "CPU (vCPUs)", "strategy", "median wall (ms)", "speed-up vs sequential",
              "client CPU ms / item", "$ per 1M invocations"]
    out = []
    for memory in sorted({r["memory_mb"] for r in rows}):
        at = _by(rows, memory_mb=memory)
        seq = _sequential(at)
        for r in sorted(at, key=lambda r: r["median_s"]):
            cpus = r.get("cpus")
            out.append([str(memory), f"{cpus:.3f}" if cpus else "not emulated", r["impl"],
                        f"{r['median_s'] * 1000:.1f}",
                        f"{seq['median_s'] / r['median_s']:.2f}x" if seq else "n/a",
                        f"{r['cpu_ms_per_item']:.3f}", f"${cost_per_million(r['median_s'] * 1000, memory, arch):,.2f}"])
    return header, out


def build_markdown(rows: list[dict], *, memory_mb: int, arch: str, notes: list[str]) -> str:
    """The whole report as Markdown."""
    parts = ["# lambda-fanout: strategy comparison", ""]
    parts += [f"- {n}" for n in notes]
    parts += [f"- Prices: us-east-1 first tier, {arch}, read {PRICES_READ_ON}; cost per million invocations = "
              "billed duration (1 ms granularity) x memory x price per GB-second + $0.20 per million requests; "
              f"priced at {memory_mb} MB.", ""]
    main = [r for r in rows if r["section"] == "main"]
    recommendations = []
    for name, workload in WORKLOADS.items():
        wrows = _by(main, workload=name)
        if not wrows:
            continue
        items = wrows[0]["items"]
        parts += [f"## {name}: {workload.title}", "", f"{items} items.", "",
                  markdown_table(HEADER, workload_table(wrows, memory_mb, arch)), ""]
        rec = recommend(name, wrows, memory_mb, arch)
        parts += [f"**Recommendation:** {rec}", ""]
        recommendations.append((name, rec))
    sweep = [r for r in rows if r["section"] == "sweep"]
    for name, why in SWEEP_TEXT.items():
        wsweep = _by(sweep, workload=name)
        if not wsweep:
            continue
        header, table = sweep_table(wsweep, arch)
        parts += [f"## Memory size: the {name} workload at Lambda's CPU share for each size", "",
                  "Lambda gives a function CPU in proportion to its memory (1 vCPU at 1,769 MB). " + why, "",
                  markdown_table(header, table), ""]
        parts += [f"**Recommendation:** {sweep_recommendation(wsweep)}", ""]
    startup = [r["startup_ms"] for r in rows if r.get("startup_ms") is not None]
    if startup:
        startup.sort()
        parts += [f"`processes` worker start-up, paid by the first call in an execution environment (and by a "
                  f"worker replaced after a deadline kill): median {startup[len(startup) // 2]:.0f} ms, "
                  f"at most {startup[-1]:.0f} ms, over {len(startup)} runs.", ""]
    parts += ["## Recommendations", ""] + [f"- **{n}**: {r}" for n, r in recommendations]
    return "\n".join(parts) + "\n"


SWEEP_TEXT = {
    "s3": "botocore spends about a millisecond of CPU per call, so at small sizes the client CPU, not the "
          "network, limits what concurrency can gain.",
    "cpu": "Threads and asyncio share one core under the GIL; `processes` runs one worker per vCPU, so it "
           "gains only where the function has more than one, and pays pickling and a pipe round trip per "
           "chunk where it has not.",
}


def sweep_recommendation(rows: list[dict]) -> str:
    gains = {}
    for memory in sorted({r["memory_mb"] for r in rows}):
        at = _by(rows, memory_mb=memory)
        seq = _sequential(at)
        best = min((r for r in at if r["impl"] != "sequential"), key=lambda r: r["median_s"], default=None)
        if seq and best:
            gains[memory] = (best["impl"], seq["median_s"] / best["median_s"])
    if not gains:
        return "Not enough measurements."
    # Never recommend a strategy slower than the plain loop (processes below one vCPU, say).
    text = "; ".join(f"{m} MB: `{impl}` {g:.1f}x" if g >= 1 else
                     f"{m} MB: keep `sequential` (the best, `{impl}`, runs at {g:.2f}x)"
                     for m, (impl, g) in gains.items())
    low, high = min(gains), max(gains)
    return (f"Best speed-up over sequential by memory size: {text}. Concurrency pays "
            f"{gains[high][1] / gains[low][1]:.1f}x more at {high} MB than at {low} MB; for heavy fan-out, "
            "size the function for CPU, not only for memory.")


def write_chart(rows: list[dict], path: str) -> str | None:
    """comparison.png: speed-up per strategy per workload; wall vs workers; the memory sweep."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    main = [r for r in rows if r["section"] == "main"]
    sweep = [r for r in rows if r["section"] == "sweep"]
    workloads = [w for w in WORKLOADS if _by(main, workload=w)]
    worker_counts = sorted({r["workers"] for r in main})
    panels = 1 + (len(worker_counts) > 1) + bool(sweep)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.8), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(STRATEGIES)
    for i, strategy in enumerate(STRATEGIES):
        values = []
        for w in workloads:
            wrows = _by(main, workload=w)
            seq = _sequential(wrows)
            mine = _by(wrows, impl=strategy)
            best = min(mine, key=lambda r: r["median_s"]) if mine else None
            values.append(seq["median_s"] / best["median_s"] if seq and best else 0)
        ax.bar([x + i * width for x in range(len(workloads))], values, width, label=strategy)
    ax.set_xticks([x + width * (len(STRATEGIES) - 1) / 2 for x in range(len(workloads))], workloads)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("speed-up over sequential (x)")
    ax.set_title("Speed-up per strategy per workload")
    ax.legend()
    panel = 1
    if len(worker_counts) > 1:
        ax = axes[0][panel]
        panel += 1
        for w in workloads:
            for strategy in STRATEGIES[1:]:
                pts = sorted((r["workers"], r["median_s"] * 1000) for r in _by(main, workload=w, impl=strategy))
                if len(pts) > 1:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{w} {strategy}")
        ax.set_xlabel("workers")
        ax.set_ylabel("median wall time (ms)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title("Wall time against worker count")
        ax.legend(fontsize=7)
    if sweep:
        ax = axes[0][panel]
        names = sorted({r["workload"] for r in sweep})
        for name in names:
            for strategy in STRATEGIES:
                pts = sorted((r["memory_mb"], r["median_s"] * 1000) for r in _by(sweep, impl=strategy, workload=name))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{name} {strategy}")
        memories = sorted({r["memory_mb"] for r in sweep})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(memories, [str(m) for m in memories])
        ax.minorticks_off()
        ax.set_xlabel("Lambda memory (MB), CPU share emulated")
        ax.set_ylabel("median wall time (ms)")
        ax.set_title(f"{' and '.join(names)} against memory size")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out_dir: str, rows: list[dict], *, memory_mb: int, arch: str, notes: list[str]) -> dict[str, str]:
    """Write report.md and comparison.png under out_dir; return their paths and the Markdown."""
    os.makedirs(out_dir, exist_ok=True)
    md = build_markdown(rows, memory_mb=memory_mb, arch=arch, notes=notes)
    report_path = os.path.join(out_dir, "report.md")
    with open(report_path, "w") as f:
        f.write(md)
    chart = write_chart(rows, os.path.join(out_dir, "comparison.png"))
    return {"report": report_path, "chart": chart or "", "markdown": md}
