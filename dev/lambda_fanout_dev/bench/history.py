"""Saved runs, the history file, and the comparison of a run against an earlier one.

A run is a pytest-benchmark document (the suite's JSON, every round included);
:func:`rows_from_pytest_benchmark` turns it into the report's rows.

Every run of ``./build.sh bench`` is saved through pytest-benchmark's own storage
(``bench-results/.benchmarks/NNNN_<name>.json``, the format its ``compare`` command
reads) and summarised as one line of ``bench-results/history.jsonl``. ``--compare``
takes a JSON path or a saved run's name and reports each row's change, with the
same bootstrap test as the recommendations: a change is flagged only when it is
beyond noise.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lambda_fanout.bench.report import _by, _median, _measured, label, markdown_table, noise_floor
from lambda_fanout.bench.stats import ratio

HISTORY = "history.jsonl"
STORAGE = ".benchmarks"
_log = logging.getLogger(__name__)


def rows_from_pytest_benchmark(data: dict) -> list[dict]:
    """Rows from a pytest-benchmark JSON document written by the workload suite (per-round data
    included), and a row for each case it skipped (``data["skipped"]``, added by the CLI)."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "workload" not in info:
            continue
        rows.append({"section": "main", **info, "data": list(bench["stats"]["data"])})
    rows += [{"section": "main", **skip} for skip in data.get("skipped", [])]
    return rows


def stats_dict(data: list[float]) -> dict:
    """pytest-benchmark's statistics of ``data`` (as in its JSON), with the rounds themselves."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for duration in data:
        stats.update(duration)
    return {**stats.as_dict(), "data": list(data)}


def _storage(out_dir: Path):
    from pytest_benchmark.storage.file import FileStorage

    return FileStorage(out_dir / STORAGE, _log)


def save_run(out_dir: Path, doc: dict, name: str) -> Path:
    """Save ``doc`` (a pytest-benchmark document) as run ``name``; the file written."""
    storage = _storage(out_dir)
    before = set(storage.query())
    storage.save(doc, name)
    return next(iter(set(storage.query()) - before))


def append_history(out_dir: Path, doc: dict, name: str, command: str) -> Path:
    """Add one line for this run to history.jsonl: per row, its median, IQR and rounds."""
    rows = []
    for r in _measured(rows_from_pytest_benchmark(doc)):
        rows.append({"key": row_key(r), "median_s": _median(r), "rounds": len(r["data"]),
                     "cpu_ms_per_item": r.get("cpu_ms_per_item")})
    path = out_dir / HISTORY
    with path.open("a") as f:
        f.write(json.dumps({"run": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "command": command, "rows": rows}) + "\n")
    return path


def load_run(ref: str, out_dir: Path) -> tuple[str, dict]:
    """(label, document) of an earlier run: a JSON file, or the name of a saved run.

    Raises:
        FileNotFoundError: neither a file nor a saved run of that name, listing the saved runs.
    """
    path = Path(ref)
    if path.is_file():
        return str(path), json.loads(path.read_text())
    storage = _storage(out_dir)
    found = [(p, d) for glob in (ref, f"*_{ref}") for p, d in storage.load(glob)]
    if not found:
        saved = ", ".join(p.stem for p in storage.query()) or "none yet"
        raise FileNotFoundError(f"--compare {ref!r}: no such file and no saved run of that name in "
                                f"{out_dir / STORAGE} (saved runs: {saved}).")
    p, doc = found[-1]
    return Path(p).stem, doc


def row_key(r: dict) -> str:
    workers = "" if r.get("workers") is None else f" {r['workers']}w"
    where = f"{r['memory_mb']} MB " if r.get("section") == "sweep" else ""
    return f"{where}{r['workload']} {label(r)}{workers}"


def compare_markdown(label: str, old_doc: dict, new_rows: list[dict]) -> str:
    """A table of each row's change against the earlier run, and a count of changes beyond noise.

    A change is flagged when its 95% interval lies beyond both runs' noise floors for
    that workload (see report.noise_floor), so a machine that got busier or quieter
    between the runs is not taken for a change in the code.
    """
    old_rows = rows_from_pytest_benchmark(old_doc)
    old = {row_key(r): r for r in _measured(old_rows)}
    lines, flagged = [], 0
    for r in _measured(new_rows):
        before = old.get(row_key(r))
        if before is None:
            continue
        # Each run's noise control bounds what counts as a change: the larger floor of the two.
        same = {"workload": r["workload"], "section": r.get("section"), "memory_mb": r.get("memory_mb")}
        floor = max(noise_floor(_by(old_rows, **same))[0], noise_floor(_by(new_rows, **same))[0])
        change = ratio(r["data"], before["data"], min_effect=floor)  # > 1: slower now
        verdict = "within noise"
        if change.measurable:
            flagged += 1
            verdict = "**slower**" if change.low > 1 else "**faster**"
        lines.append([row_key(r), f"{_median(before) * 1000:.1f}", f"{_median(r) * 1000:.1f}",
                      change.describe(), verdict])
    if not lines:
        return f"## Change against {label}\n\nNo row in common with {label}.\n"
    table = markdown_table(["row", "before (ms)", "now (ms)", "now / before (95% CI)", "change"], lines)
    return (f"## Change against {label}\n\n{flagged} of {len(lines)} rows changed beyond noise.\n\n{table}\n")
