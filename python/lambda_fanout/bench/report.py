"""The comparison report: tables per workload, Lambda cost, and recommendations backed by statistics.

Every row shows its rounds, median and interquartile range; every ratio its 95%
bootstrap confidence interval (see :mod:`lambda_fanout.bench.stats`). A
recommendation names a winner only when its advantage is measurable; otherwise it
says there is no measurable difference and keeps the simpler or cheaper-in-CPU one.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .. import STRATEGIES, aws
from .._config import DEFAULT_AWS_CLIENT, DEFAULT_MAX_WORKERS, DEFAULT_STRATEGY, ENV_AWS_CLIENT, ENV_MAX_WORKERS
from .._config import ENV_STRATEGY
from ..strategies import strategy_class
from .cases import REFERENCE
from .cost import PRICES_READ_ON, cost_per_million
from .stats import MIN_EFFECT, Ratio, iqr, median, ratio

#: The coverage of the noise control's interval that sets a workload's noise floor.
CONTROL_CONFIDENCE = 0.5
from .workloads import WORKLOADS


def _by(rows: Iterable[dict], **match: Any) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _measured(rows: Iterable[dict]) -> list[dict]:
    """The rows with rounds, the noise controls left out."""
    return [r for r in rows if r.get("data") and not r.get("control")]


def samples(row: dict, figure: str = "wall") -> list[float]:
    """A row's per-round values of ``figure``: its wall times, or its client CPU per item
    (its rounds where recorded, else its one median)."""
    if figure == "wall":
        return row["data"]
    return row.get("cpu_ms_per_item_rounds") or [row["cpu_ms_per_item"]]


def noise_floor(rows: list[dict], figure: str = "wall") -> tuple[float, Ratio | None]:
    """The smallest ratio called measurable among ``rows``, and the control comparison behind it.

    A workload's control row is one of its cases measured a second time, at the other
    end of the workload in every pass. Two measurements of the same thing differ only
    by noise (chiefly the drift of a shared machine between cases, which no case's own
    rounds can show), so a ratio the control reaches is noise too. The floor is the
    larger of MIN_EFFECT and the farther bound of the control's CONTROL_CONFIDENCE
    (50%) interval: where the same-case comparison lands half the time. Its 95%
    interval would count each case's own round-to-round spread twice, since every
    comparison's own interval already holds it.
    """
    control = next((r for r in rows if r.get("control") and r.get("data")), None)
    twin = control and next((r for r in _measured(rows) if r["impl"] == control["impl"]
                             and r.get("workers") == control.get("workers")
                             and r.get("profile") == control.get("profile")), None)
    if not twin:
        return MIN_EFFECT, None
    seen = ratio(samples(control, figure), samples(twin, figure), confidence=CONTROL_CONFIDENCE)
    return max(MIN_EFFECT, seen.high, 1 / seen.low), seen


def _reference(rows: list[dict]) -> dict | None:
    return next((r for r in _measured(rows) if r["impl"] == REFERENCE), None)


def _median(row: dict) -> float:
    return median(row["data"])


def label(row: dict) -> str:
    """The implementation as the report names it: ``threads``, or ``threads [lean]`` with a client profile."""
    return row["impl"] + (f" [{row['profile']}]" if row.get("profile") else "")


def _workers(row: dict) -> str:
    if row.get("workers") is None:
        return "-"
    peak = row.get("limit_peak")
    return str(row["workers"]) + (f" (peak {peak})" if peak is not None else "")


def _result(row: dict) -> str:
    per_round = row.get("responses_503_per_round")
    return row.get("check", "ok") + (f"; {per_round:.0f} 503s per round" if per_round is not None else "")


def _cost(row: dict, memory_mb: int, arch: str) -> float:
    return cost_per_million(_median(row) * 1000, memory_mb, arch)


def _speedup(ref: dict, row: dict, floor: float = MIN_EFFECT) -> Ratio:
    """How many times faster ``row`` ran than the reference (> 1: faster)."""
    return ratio(ref["data"], row["data"], min_effect=floor)


HEADER = ["implementation", "workers", "rounds", "median wall (ms)", "IQR (ms)",
          "speed-up vs sequential (95% CI)", "wall / bound", "client CPU ms / item", "$ per 1M invocations",
          "result"]

#: What the wall / bound column means, in one line of the report.
BOUND_NOTE = ("wall / bound: the median wall time over the median of each round's bound, the larger of the "
              "delays the endpoint applied in that round run in request order on the row's worker count with "
              "no overhead, and the client's CPU time in that round at its full CPU share; 1.00 is a perfect "
              "pool.")


def _table_row(r: dict, ref: dict | None, memory_mb: int, arch: str, floor: float) -> list[str]:
    if r.get("skipped"):
        return [label(r), "-", "0", "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"]
    q1, q3 = iqr(r["data"])
    speed = "n/a"
    if ref is not None:
        s = _speedup(ref, r, floor)
        speed = f"{s.value:.2f}x ({s.low:.2f}-{s.high:.2f})" + ("" if s.measurable or r is ref else " ~")
    return [
        label(r) + (" (noise control)" if r.get("control") else ""), _workers(r), str(len(r["data"])), f"{_median(r) * 1000:.1f}",
        f"{q1 * 1000:.1f}-{q3 * 1000:.1f}", speed, _over_bound(r),
        f"{r['cpu_ms_per_item']:.3f}", f"${_cost(r, memory_mb, arch):,.2f}", _result(r),
    ]


def _over_bound(row: dict) -> str:
    bound = row.get("bound_s")
    return f"{_median(row) / bound:.2f}" if bound else "-"


def workload_table(rows: list[dict], memory_mb: int, arch: str) -> list[list[str]]:
    """Table rows for one workload, fastest first, then the noise control, then skipped rows."""
    ref = _reference(rows)
    floor, _ = noise_floor(rows)
    ordered = (sorted(_measured(rows), key=_median) + [r for r in rows if r.get("control") and r.get("data")]
               + [r for r in rows if r.get("skipped")])
    return [_table_row(r, ref, memory_mb, arch, floor) for r in ordered]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def untuned(rows: list[dict]) -> dict | None:
    """The row of what a function gets with no FANOUT_* settings: the default strategy, worker count and client."""
    return next((r for r in _measured(rows) if r.get("kind", "strategy") == "strategy"
                 and r["impl"] == DEFAULT_STRATEGY and r.get("workers") == DEFAULT_MAX_WORKERS
                 and r.get("profile") in (None, DEFAULT_AWS_CLIENT)), None)


def settings(row: dict) -> str:
    """The settings that select ``row``: ``FANOUT_STRATEGY=threads, FANOUT_MAX_WORKERS=16, client profile lean``."""
    return ", ".join([f"{ENV_STRATEGY}={row['impl']}"]
                     + ([f"{ENV_MAX_WORKERS}={row['workers']}"] if row.get("workers") is not None else [])
                     + ([f"client profile {row['profile']}"] if row.get("profile") else []))


def preconditions(row: dict) -> list[str]:
    """What using ``row``'s setting takes beyond the setting, and what its figures stand for."""
    out = [f"client profile `{row['profile']}` is {ENV_AWS_CLIENT}={row['profile']}"] if row.get("profile") else []
    if row.get("kind", "strategy") == "strategy" and strategy_class(row["impl"]).needs_async_form:
        out.append(f"`{row['impl']}` needs the task's async form (an `async def`, or lambda_fanout.aws's helpers)")
    if row.get("profile") in aws.NATIVE:
        out.append(f"`{row['profile']}` needs the native layer zip (the template deploys the universal one)")
    if isinstance(row.get("workers"), str):
        out.append(f"`{row['workers']}`'s figures are warm: its limit was learned in the warm-up, and a first "
                   "call in a new execution environment starts lower")
    return out


def _group_names(rows: list[dict]) -> str:
    """Rows named in as few words as they allow: each implementation once with its worker counts
    and client profiles where it tied at every combination of them, and implementations that
    tied at the same several combinations together: `` `threads` (16 workers), `threads-map`,
    `asyncio` (16 or auto workers; clients default, lean, crt)``."""
    def details(workers: list, profiles: list[str]) -> str:
        parts = ([" or ".join(map(str, workers)) + " workers"] if workers != [None] else []) + (
            [f"clients {', '.join(profiles)}"] if len(profiles) > 1 else
            [f"client {profiles[0]}"] if profiles[0] != DEFAULT_AWS_CLIENT else [])
        return f" ({'; '.join(parts)})" if parts else ""

    by_impl: dict[str, list[tuple]] = {}
    for r in rows:
        by_impl.setdefault(r["impl"], []).append((r.get("workers"), r.get("profile") or DEFAULT_AWS_CLIENT))
    named: dict[str, list[str]] = {}  # details -> implementations, in order
    for impl, pairs in by_impl.items():
        workers = list(dict.fromkeys(w for w, _ in pairs))
        profiles = list(dict.fromkeys(p for _, p in pairs))
        if len(pairs) == len(workers) * len(profiles) and len(pairs) > 1:  # every combination: one group
            named.setdefault(details(workers, profiles), []).append(f"`{impl}`")
            continue
        for w in workers:  # else one entry per worker count, with its profiles
            named.setdefault(f"{impl}\0{w}", []).append(
                f"`{impl}`" + details([w], [p for x, p in pairs if x == w]))
    return ", ".join(", ".join(names) + (key if "\0" not in key else "") for key, names in named.items())


def _cheaper(a: dict, b: dict, rows: list[dict]) -> Ratio:
    """a's client CPU per item over b's, through the same noise control as wall time (< 1: a is cheaper)."""
    floor, _ = noise_floor(rows, "cpu")
    return ratio(samples(a, "cpu"), samples(b, "cpu"), min_effect=floor)


def choose(rows: list[dict]) -> tuple[dict | None, str]:
    """The strategy row to recommend among a workload's rows, and why, in plain words.

    The fastest strategy is recommended only when its speed-up over sequential is
    measurable. Strategies measurably faster than sequential that no other is
    measurably faster than tie (whichever has the lowest median), narrowed to those
    measurably faster than the untuned setting where any is, else joined by it; of a tie, the
    untuned setting (no FANOUT_* settings) is kept where it is part of it, else
    the row closest to it (:func:`simplest`), unless others use measurably less client
    CPU, judged per round through the same noise control: then the simplest of those. No
    choice rests on a median alone, so the same configuration measured again gives the
    same advice. A row whose items came back
    failed (throttled past botocore's retries) is not recommended while another row
    delivered every item, nor one whose results were wrong.
    """
    strategies = [r for r in _measured(rows) if r.get("kind", "strategy") == "strategy"
                  and (r.get("check_ok", True) or r["impl"] == REFERENCE)]
    whole = [r for r in strategies if not r.get("failed_items")]
    if whole and len(whole) < len(strategies):
        strategies = whole
    ref = _reference(strategies)
    floor, _ = noise_floor(rows)
    if ref is None or len(strategies) < 2:
        return None, "Not enough measurements to recommend a strategy."
    best = min(strategies, key=_median)
    workload = WORKLOADS.get(ref["workload"])
    why = getattr(workload, "why_no_gain", "") or "overlap does not pay for its hand-off at this size"
    if best is ref:
        others = [r for r in strategies if r is not ref]
        unclear = [r for r in others if not ratio(r["data"], ref["data"], min_effect=floor).measurable]
        # The claim "every other is measurably slower" needs every one of them, not the runner-up alone.
        runner_up = min(unclear or others, key=_median)
        slower = ratio(runner_up["data"], ref["data"], min_effect=floor)
        if not unclear:
            return ref, (f"Keep `{REFERENCE}` (FANOUT_STRATEGY={REFERENCE}): every other strategy is measurably "
                         f"slower here; the fastest of them, `{label(runner_up)}`, takes {slower.describe()} "
                         f"as long: {why}.")
        return ref, (f"Keep `{REFERENCE}` (FANOUT_STRATEGY={REFERENCE}): no measurable difference between "
                     f"`{REFERENCE}` and `{label(runner_up)}` at this size ({slower.describe()} the time), and "
                     f"`{REFERENCE}` is the simplest.")
    gain = _speedup(ref, best, floor)
    if not gain.b_faster:
        return ref, (f"Keep `{REFERENCE}` (FANOUT_STRATEGY={REFERENCE}): no measurable difference between "
                     f"`{REFERENCE}` and `{label(best)}` at this size (`{label(best)}` runs at {gain.describe()} "
                     f"sequential's speed), and `{REFERENCE}` is the simplest.")
    # The tie: the rows faster than sequential that no row is measurably faster than. Not
    # "not slower than the lowest median": which of several indistinguishable rows has it
    # changes from run to run, and a row measurably slower than another would join the
    # tie whenever a third, noisy one came first.
    tied = [r for r in strategies if r is not ref and _speedup(ref, r, floor).b_faster
            and not any(ratio(r["data"], o["data"], min_effect=floor).b_faster for o in strategies if o is not r)]
    tied = tied or [best]
    # Changing a setting is advised only for a row measurably faster than what an untuned
    # function gets: when a row outside the tie is measurably faster than the untuned one,
    # but no tied row is, the untuned one joins the tie (and, being the default, is kept).
    untuned_row = untuned(strategies)
    if (untuned_row is not None and untuned_row is not ref and untuned_row not in tied
            and _speedup(ref, untuned_row, floor).b_faster):
        better = [r for r in tied if ratio(untuned_row["data"], r["data"], min_effect=floor).b_faster]
        tied = better or tied + [untuned_row]
    default = untuned_row if untuned_row in tied else None
    anchor = default or simplest(tied)
    cheaper = [r for r in tied if r is not anchor and _cheaper(r, anchor, rows).a_faster]
    # Of the rows measurably cheaper than the anchor, the one that changes the fewest settings:
    # never the lowest median, which another run of the same rows may give to another row.
    pick = simplest(cheaper) if cheaper else anchor
    text = (f"Use `{pick['impl']}` ({settings(pick)}): {_speedup(ref, pick, floor).describe()} faster than "
            "sequential")
    if len(tied) > 1:
        reason = (f"it uses {_cheaper(pick, anchor, rows).describe()} the client CPU of `{label(anchor)}`"
                  if pick is not anchor else "it is the default" if default else
                  "it is the closest to the default of them")
        text += (f"; no measurable difference between {_group_names(tied)} at this size, and `{label(pick)}` "
                 f"is kept: {reason}")
    return pick, text + "."


def simplest(rows: list[dict]) -> dict:
    """Of rows that do not differ measurably, the one closest to what an untuned function runs: the
    fewest settings changed from the defaults, then the registries' order (strategies, worker modes
    before counts, client profiles), so that the same tie gives the same answer in every run."""
    profiles = list(aws.CLIENT_PROFILES)
    order = list(STRATEGIES)

    def key(r: dict) -> tuple:
        profile = r.get("profile") or DEFAULT_AWS_CLIENT
        workers = r.get("workers")
        changed = ((r["impl"] != DEFAULT_STRATEGY) + (workers not in (None, DEFAULT_MAX_WORKERS))
                   + (profile != DEFAULT_AWS_CLIENT))
        return (changed, order.index(r["impl"]) if r["impl"] in order else len(order),
                (0, str(workers)) if isinstance(workers, str) else (1, workers or 0),
                profiles.index(profile) if profile in profiles else len(profiles))

    return min(rows, key=key)


def untuned_clause(rows: list[dict], pick: dict | None) -> str:
    """What a function with no FANOUT_* settings gets, beside the pick."""
    default = untuned(rows)
    ref = _reference(rows)
    if default is None or ref is None:
        return (f"Untuned ({ENV_STRATEGY}={DEFAULT_STRATEGY}, {DEFAULT_MAX_WORKERS} workers): not measured in "
                "this run.")
    floor, _ = noise_floor(rows)
    speed = _speedup(ref, default, floor)
    text = (f"Untuned (no FANOUT_* settings: `{DEFAULT_STRATEGY}`, {DEFAULT_MAX_WORKERS} workers, client "
            f"{DEFAULT_AWS_CLIENT}): " + (f"{speed.describe()} faster than sequential" if speed.value >= 1 else
                                          f"takes {ratio(default['data'], ref['data'], min_effect=floor).describe()}"
                                          " as long as sequential"))
    if not default.get("check_ok", True):
        return text + "; but its result was wrong, so it is not compared with the pick."
    if default.get("failed_items"):
        return text + (f"; but {default['failed_items']} items came back failed (throttled past botocore's "
                       "retries), so it is not compared with the pick.")
    if pick is not None and pick is not default and pick is not ref:
        vs = ratio(default["data"], pick["data"], min_effect=floor)
        text += (f"; the pick is {vs.describe()} faster than untuned" if vs.b_faster
                 else f"; untuned is measurably faster than the pick ({vs.describe()} its time)" if vs.a_faster
                 else f"; no measurable difference from the pick ({vs.describe()})")
    return text + "."


def _against_others(pick: dict, rows: list[dict]) -> str:
    """One sentence per peer (and per raw idiom that beats the pick) on how it compares with the pick."""
    parts = []
    floor, _ = noise_floor(rows)
    for r in sorted(_measured(rows), key=_median):
        if r.get("kind") not in ("peer", "raw"):
            continue
        vs = ratio(r["data"], pick["data"], min_effect=floor)  # > 1: the pick is faster
        if vs.b_faster:
            if r["kind"] == "peer":
                parts.append(f"`{label(pick)}` is {vs.describe()} faster than `{r['impl']}`")
        elif vs.a_faster:
            parts.append(f"`{r['impl']}` is measurably faster: `{label(pick)}` takes {vs.describe()} its time")
        elif r["kind"] == "peer":
            parts.append(f"no measurable difference from `{r['impl']}` ({vs.describe()})")
    return ("Beside the others: " + "; ".join(parts) + ".") if parts else ""


def advice(rows: list[dict], memory_mb: int = 1024, arch: str = "x86_64") -> str:
    """The one-screen advice for one workload: the pick with its gain and preconditions, and untuned beside it."""
    pick, text = choose(rows)
    ref = _reference(rows)
    if pick is None or ref is None:
        return text
    if pick is not ref:
        pick_cost, ref_cost = _cost(pick, memory_mb, arch), _cost(ref, memory_mb, arch)
        gain, _, ties = text[:-1].partition("; ")
        text = (f"{gain}, {100 * (1 - pick_cost / ref_cost):.0f}% cheaper per invocation"
                + "".join(f"; {part}" for part in [ties] + preconditions(pick) if part) + ".")
    return f"{text} {untuned_clause(rows, pick)}"


def recommend(workload: str, rows: list[dict], memory_mb: int = 1024, arch: str = "x86_64") -> str:
    """The recommendation for one workload's rows, in plain words: the advice, the peers, the noise."""
    pick, _ = choose(rows)
    text = advice(rows, memory_mb, arch)
    others = _against_others(pick, rows) if pick is not None else ""
    floor, seen = noise_floor(rows)
    noise = ""
    if seen is not None:
        noise = (f" (Noise: the control, one case measured twice, gave {seen.value:.2f}x, 50% interval "
                 f"{seen.low:.2f}-{seen.high:.2f}; ratios within {floor:.2f}x are not called measurable here.)")
    return f"{text} {others}".strip() + noise


def sweep_table(rows: list[dict], arch: str) -> tuple[list[str], list[list[str]]]:
    header = ["memory (MB)", "CPU (vCPUs)", "strategy", "rounds", "median wall (ms)", "IQR (ms)",
              "speed-up vs sequential (95% CI)", "client CPU ms / item", "$ per 1M invocations"]
    out = []
    for memory in sorted({r["memory_mb"] for r in _measured(rows)}):
        at = _by(rows, memory_mb=memory)
        for cells in workload_table(at, memory, arch):
            r_cpus = at[0].get("cpus")
            out.append([str(memory), f"{r_cpus:.3f}" if r_cpus else "not emulated", cells[0], cells[2], cells[3],
                        cells[4], cells[5], cells[7], cells[8]])
    return header, out


#: The memory sweep's workloads, and what their section says about the sizes.
SWEEP_TEXT = {
    "s3": "botocore spends about a millisecond of CPU per call, so at small sizes the client CPU, not the "
          "network, limits what concurrency can gain.",
    "cpu": "Threads and asyncio share one core under the GIL; `processes` runs one worker per vCPU, so it "
           "gains only where the function has more than one, and pays pickling and a pipe round trip per "
           "chunk where it has not.",
}


def sweep_recommendation(rows: list[dict]) -> str:
    parts = []
    for memory in sorted({r["memory_mb"] for r in _measured(rows)}):
        pick, _ = choose(_by(rows, memory_mb=memory))
        ref = _reference(_by(rows, memory_mb=memory))
        if pick is None or ref is None:
            continue
        floor, _ = noise_floor(_by(rows, memory_mb=memory))
        parts.append(f"{memory} MB: no measurable gain over `{REFERENCE}`" if pick is ref
                     else f"{memory} MB: `{label(pick)}` {_speedup(ref, pick, floor).describe()}")
    if not parts:
        return "Not enough measurements."
    return ("Speed-up over sequential by memory size, where measurable: " + "; ".join(parts) +
            ". At small sizes the client's CPU share limits what concurrency can gain: "
            "for heavy fan-out, size the function for CPU, not only for memory.")


SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 32


def round_end(row: dict) -> float:
    """Seconds the auto row's last round lasted: its last wall time, or its last limit change."""
    return max(row["limit_over_time"][-1][0], row["data"][-1] if row.get("data") else 0.0)


def limit_samples(row: dict, width: int = SPARK_WIDTH) -> list[int]:
    """auto's limit at ``width`` even steps through the row's last round (a step function)."""
    history = row["limit_over_time"]
    end = round_end(row) or 1.0
    out, i = [], 0
    for step in range(width):
        t = end * step / (width - 1)
        while i + 1 < len(history) and history[i + 1][0] <= t:
            i += 1
        out.append(history[i][1])
    return out


def sparkline(values: list[int]) -> str:
    """Values as block characters on a log scale from their smallest to their largest (all
    full blocks when they never moved)."""
    low, high = math.log2(max(min(values), 1)), math.log2(max(max(values), 1))
    span = (high - low) or 1.0
    top = len(SPARKS) - 1
    return "".join(SPARKS[top if high == low else round((math.log2(max(v, 1)) - low) / span * top)]
                   for v in values)


def limit_section(rows: list[dict]) -> list[str]:
    """Markdown: where auto's limit went in each auto row's last round; [] without such rows."""
    autos = [r for r in _measured(rows) if r.get("limit_over_time")]
    if not autos:
        return []
    table = []
    for r in autos:
        history = r["limit_over_time"]
        table.append([r["workload"], label(r), f"`{sparkline(limit_samples(r))}`",
                      f"{history[0][1]} → {r['limit_final']}", str(r["limit_peak"]),
                      str(len(history) - 1), f"{_median(r) * 1000:.1f}"])
    return ["## `auto`: the limit over time", "",
            "Each row's adaptive limit through its last timed round, left to right, on a log scale from its "
            "lowest to its highest. The warm-up already taught the limiter, so this is a warm invocation: it starts "
            "where the last one ended (auto-limits.png draws the same data).", "",
            markdown_table(["workload", "implementation", "limit over the round", "start → end", "peak",
                            "changes", "median wall (ms)"], table), ""]


def method_note() -> str:
    return (f"Statistics: each row's rounds are pytest-benchmark's per-round wall times; IQR is their interquartile "
            f"range. A speed-up's interval is the 95% bootstrap confidence interval of the ratio of medians. "
            "Each workload also measures one case twice (the noise control, at both ends of the workload in every "
            "pass); a difference counts as measurable only when its interval lies wholly beyond the control's "
            f"50% interval, and never within +-{(MIN_EFFECT - 1) * 100:.0f}% (`~` marks a ratio that does not). Without "
            "a measurable difference the recommendation keeps sequential, or of concurrent strategies the untuned "
            "default unless another uses measurably less client CPU (compared round by round through the same "
            "noise control). " + BOUND_NOTE)


def build_markdown(rows: list[dict], *, memory_mb: int, arch: str, notes: list[str]) -> str:
    """The whole report as Markdown."""
    parts = ["# lambda-fanout: strategy comparison", ""]
    parts += [f"- {n}" for n in notes]
    parts += [f"- Prices: us-east-1 first tier, {arch}, read {PRICES_READ_ON}; cost per million invocations = "
              "billed duration (1 ms granularity) x memory x price per GB-second + $0.20 per million requests; "
              f"priced at {memory_mb} MB.", f"- {method_note()}", ""]
    main = _by(rows, section="main")
    recommendations = []
    for name, workload in WORKLOADS.items():
        wrows = _by(main, workload=name)
        if not wrows:
            continue
        items = next((r["items"] for r in wrows if r.get("items")), "?")
        rec = recommend(name, wrows, memory_mb, arch)
        endpoint = [r["endpoint_cpu_ms_per_request"] for r in _measured(wrows) if "endpoint_cpu_ms_per_request" in r]
        parts += [f"## {name}: {workload.title}", "", f"{items} items." + (
                      f" The endpoint's own CPU per request: median {median(endpoint):.3f} ms over the rows "
                      f"(at most {max(endpoint):.3f} ms)." if endpoint else ""), "",
                  markdown_table(HEADER, workload_table(wrows, memory_mb, arch)), "",
                  f"**Recommendation:** {rec}", ""]
        recommendations.append((name, advice(wrows, memory_mb, arch)))
    sweep = _by(rows, section="sweep")
    for name, why in SWEEP_TEXT.items():
        wsweep = _by(sweep, workload=name)
        if wsweep:
            header, table = sweep_table(wsweep, arch)
            parts += [f"## Memory size: the {name} workload at Lambda's CPU share for each size", "",
                      "Lambda gives a function CPU in proportion to its memory (1 vCPU at 1,769 MB). " + why, "",
                      markdown_table(header, table), "",
                      f"**Recommendation:** {sweep_recommendation(wsweep)}", ""]
    startup = sorted(r["startup_ms"] for r in rows if r.get("startup_ms") is not None)
    if startup:
        parts += [f"`processes` worker start-up, paid by the first call in an execution environment (and by a "
                  f"worker replaced after a deadline kill): median {median(startup):.0f} ms, "
                  f"at most {startup[-1]:.0f} ms, over {len(startup)} first call{'s' if len(startup) > 1 else ''} "
                  f"(each waits for the slowest of the workers it starts side by side).", ""]
    parts += limit_section(main)
    parts += ["## Recommendations", ""] + [f"- **{n}**: {r}" for n, r in recommendations]
    return "\n".join(parts) + "\n"
