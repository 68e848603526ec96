"""comparison.png: speed-up per strategy per workload, wall time against workers, the memory sweep;
auto-limits.png: auto's limit over time, a small chart per workload."""

from __future__ import annotations

from typing import Any

from lambda_fanout import STRATEGIES
from lambda_fanout.bench.cases import REFERENCE
from lambda_fanout.bench.report import _by, _measured, _median, _reference, label, round_end
from lambda_fanout.bench.workloads import WORKLOADS


def _numeric_workers(rows: list[dict]) -> list[int]:
    return sorted({r["workers"] for r in rows if isinstance(r.get("workers"), int)})


def speedup_panel(ax: Any, main: list[dict]) -> None:
    """Bars: each strategy's best speed-up over sequential, per workload."""
    workloads = [w for w in WORKLOADS if _by(main, workload=w)]
    width = 0.8 / len(STRATEGIES)
    for i, strategy in enumerate(STRATEGIES):
        values = []
        for w in workloads:
            wrows = _by(main, workload=w)
            ref = _reference(wrows)
            mine = _by(wrows, impl=strategy)
            values.append(_median(ref) / min(_median(r) for r in mine) if ref and mine else 0)
        ax.bar([x + i * width for x in range(len(workloads))], values, width, label=strategy)
    ax.set_xticks([x + width * (len(STRATEGIES) - 1) / 2 for x in range(len(workloads))], workloads,
                  rotation=20, fontsize=8)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("speed-up over sequential (x)")
    ax.set_title("Speed-up per strategy per workload")
    ax.legend(fontsize=7)


def workers_panel(ax: Any, main: list[dict]) -> None:
    """Lines: median wall time against worker count, per workload and concurrent strategy."""
    for w in WORKLOADS:
        for strategy in STRATEGIES:
            pts = sorted((r["workers"], _median(r) * 1000) for r in _by(main, workload=w, impl=strategy)
                         if isinstance(r.get("workers"), int))
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{w} {strategy}")
    ax.set_xlabel("workers")
    ax.set_ylabel("median wall time (ms)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title("Wall time against worker count")
    ax.legend(fontsize=7)


def sweep_panel(ax: Any, sweep: list[dict]) -> None:
    """Lines: each swept workload's median wall time per strategy against Lambda memory size."""
    names = [w for w in WORKLOADS if _by(sweep, workload=w)]
    for name in names:
        for strategy in STRATEGIES:
            pts = sorted((r["memory_mb"], _median(r) * 1000) for r in _by(sweep, impl=strategy, workload=name))
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
    ax.legend(fontsize=7)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_limit_chart(rows: list[dict], path: str) -> str | None:
    """One small step chart per workload of auto's limit against time in the last round, a line
    per strategy; None when no row ran under auto or matplotlib is not installed."""
    autos = [r for r in _measured(_by(rows, section="main")) if r.get("limit_over_time")]
    plt = _pyplot() if autos else None
    if plt is None:
        return None
    names = [w for w in WORKLOADS if _by(autos, workload=w)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        for r in _by(autos, workload=name):
            history = r["limit_over_time"]
            xs = [t * 1000 for t, _ in history] + [round_end(r) * 1000]
            ys = [n for _, n in history] + [history[-1][1]]
            ax.step(xs, ys, where="post", label=label(r))
        ax.set_yscale("log", base=2)
        ax.set_xlabel("ms into the round")
        ax.set_ylabel("limit")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_chart(rows: list[dict], path: str) -> str | None:
    """Draw the panels that have data into ``path``; None when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return None
    main = _measured(_by(rows, section="main"))
    sweep = _measured(_by(rows, section="sweep"))
    panels = [speedup_panel]
    if len(_numeric_workers(main)) > 1:
        panels.append(workers_panel)
    if sweep:
        panels.append(sweep_panel)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        panel(ax, sweep if panel is sweep_panel else main)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
