"""./build.sh bench: compare every strategy on realistic workloads, priced in Lambda dollars.

Starts moto's server and the latency proxy (unless --endpoint-url), seeds them, runs
the pytest-benchmark workload suite in a child process under Lambda's CPU share for
each memory size (and again from .venv-peers for the peers whose pins clash with the
layer's), stops everything it started, then writes bench-results/, saves the run,
appends it to the history and prints the comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from lambda_fanout import DEFAULT_MAX_WORKERS, STRATEGIES, ConfigError, get_strategy
from lambda_fanout.bench.cases import REFERENCE, cases, unscheduled
from lambda_fanout.bench.cost import ARCHITECTURES, MEMORY_RANGE_MB
from lambda_fanout.bench.options import (CPU_SWEEP, DEFAULT_BUCKET, DEFAULT_MEMORY_MB, DEFAULT_TABLE, ENV_OPTIONS,
                                         FIXED_WORKERS, FULL, Options)
from lambda_fanout.bench.peers import PEERS_VENV_DIR
from lambda_fanout.bench.report import build_markdown
from lambda_fanout.bench.seeding import seed
from lambda_fanout.bench.workloads import WORKLOADS, selected

from .. import ROOT as REPO
from ..endpoint import LocalEndpoint
from ..quota import client_cpus, cpu_quota, endpoint_cpus, vcpus_for_memory
from . import history
from .chart import write_chart, write_limit_chart
from .history import rows_from_pytest_benchmark

SUITE = REPO / "tests" / "benchmarks" / "test_workloads.py"
#: How long an interrupted suite may take to stop as on Ctrl-C before it is killed.
SUITE_STOP_S = 10.0
#: Where the embedded endpoint runs (None: anywhere); each suite's client keeps off it where it can.
ENDPOINT_CPUS = endpoint_cpus()


# -- arguments -----------------------------------------------------------------------------

def _workers(text: str) -> tuple:
    """Comma-separated worker counts or modes (8,32,auto): each checked by the library itself."""
    values: list = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        value = int(token) if token.isdigit() else token
        try:
            get_strategy(REFERENCE, max_workers=value)  # the library's own check, on its cheapest strategy
        except (ConfigError, TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"bad worker value {token!r} in {text!r}: {exc}") from None
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError(f"expected worker counts such as 8,32,64, got {text!r}")
    return tuple(values)


def _memory(text: str) -> int:
    low, high = MEMORY_RANGE_MB
    value = int(text) if text.isascii() and text.isdigit() else -1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a Lambda memory size from {low} to {high} MB, got {text!r}")
    return value


def _memory_sizes(text: str) -> tuple[int, ...]:
    """Comma-separated Lambda memory sizes (128,1769), each checked as --memory-mb is."""
    sizes = tuple(sorted({_memory(token.strip()) for token in text.split(",") if token.strip()}))
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected memory sizes such as 128,1769, got {text!r}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # The module's docstring is the help text, kept as written (plain text, no markup).
    p = argparse.ArgumentParser(prog="./build.sh bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer items, two passes of at least two rounds, no memory sweep unless --memory-sweep names its sizes: about two minutes on two cores (CI and smoke tests)")
    p.add_argument("--items", type=int, help="items per workload (default: per workload; "
                   f"{WORKLOADS['batch'].default_items:,} records for batch)")
    p.add_argument("--workers", type=_workers, help=f"worker counts or modes, a sweep when several: 8,32,64,auto (default {DEFAULT_MAX_WORKERS},{FIXED_WORKERS}: the library's default, and a fixed count beside it)")
    p.add_argument("--latency-ms", type=float, help="latency per I/O item for every I/O workload (default: each workload's own median)")
    p.add_argument("--workload", action="append", choices=list(WORKLOADS), help="run only this workload (repeatable; default: all)")
    p.add_argument("--memory-mb", type=_memory, default=DEFAULT_MEMORY_MB, help=f"Lambda memory to emulate and price (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--arch", choices=ARCHITECTURES, default="x86_64", help="price for this architecture (default x86_64)")
    sweep = p.add_mutually_exclusive_group()
    sweep.add_argument("--memory-sweep", type=_memory_sizes, metavar="SIZES", help=f"the memory sizes of the s3 sweep, e.g. 128,1769 (default {','.join(map(str, FULL.memory_sweep))}; none with --quick); the cpu workload runs at {','.join(map(str, CPU_SWEEP))} whenever there is a sweep")
    sweep.add_argument("--no-memory-sweep", action="store_true", help="skip the memory sweep (s3 and cpu at other memory sizes)")
    p.add_argument("--endpoint-url", help="run against this endpoint (real AWS or S3-compatible) instead of the embedded one")
    p.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"bucket for the S3 and batch workloads (default {DEFAULT_BUCKET})")
    p.add_argument("--table", default=DEFAULT_TABLE, help=f"table for the DynamoDB workload (default {DEFAULT_TABLE})")
    p.add_argument("--rounds", type=int, help="a fixed number of timed rounds per case (default: as many as fit)")
    p.add_argument("--compare", metavar="RUN", help="a benchmark JSON file or a saved run's name to compare against")
    p.add_argument("--save", metavar="NAME", help="the name to save this run under (default: run-<UTC time>)")
    p.add_argument("--out", default=str(REPO / "bench-results"), help="where to write the report (default bench-results/)")
    args = p.parse_args(argv)
    if args.items is not None and args.items < 1:
        p.error(f"--items must be a positive whole number, got {args.items}")
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def options(args: argparse.Namespace) -> Options:
    return Options.create(
        quick=args.quick, items=args.items, workers=args.workers, latency_ms=args.latency_ms,
        workloads=tuple(args.workload or ()), memory_mb=args.memory_mb, arch=args.arch,
        endpoint_url=args.endpoint_url, bucket=args.bucket, table=args.table, rounds=args.rounds,
        memory_sweep=() if args.no_memory_sweep else args.memory_sweep)


def say(text: str) -> None:
    print(text, flush=True)


# -- one suite run in a child process -------------------------------------------------------

def _progress(proc: subprocess.Popen, label: str, passes: int) -> list[str]:
    """Echo one line per finished case; the output's last lines, for a failure."""
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        done = _CASE_DONE.search(line)
        if done:
            case, number = unscheduled(done["id"])
            status = "ok" if done["status"] == "PASSED" else done["status"].lower()
            say(f"  [{done['pct']:>4}] {label} pass {number}/{passes} {case} {status}")
    return tail


#: pytest -v's line for a finished case: ``...::test_workload[s3-threads[crt]-16w@pass2] PASSED [ 50%]``.
_CASE_DONE = re.compile(r"::test_workload\[(?P<id>.*)\] (?P<status>PASSED|FAILED|ERROR|SKIPPED)\b.*\[\s*(?P<pct>\d+%)\]")


def run_suite(python: str, opts: Options, env: dict, json_path: Path, label: str) -> tuple[bool, str]:
    """Run the workload suite, every pass, with ``python`` in a child process under the CPU share
    of opts.memory_mb."""
    quota, why_not = cpu_quota(vcpus_for_memory(opts.memory_mb))
    opts.cpus = quota.cpus if quota else None
    pinned = client_cpus(vcpus_for_memory(opts.memory_mb), ENDPOINT_CPUS)
    note = (f"{label}: client under {quota.describe()} ({opts.memory_mb} MB)" if quota
            else f"{label}: CPU not emulated ({why_not}); the client had the whole machine")
    note += (f", on CPUs {sorted(pinned)}, the endpoint on CPUs {sorted(ENDPOINT_CPUS)}" if pinned
             else ", sharing its CPUs with the endpoint" if ENDPOINT_CPUS else "")
    cmd = [python, "-m", "pytest", str(SUITE), "-v", "-p", "no:cacheprovider", "-o", "addopts=",
           "--benchmark-json", str(json_path), "--benchmark-columns=median", "-W", "ignore::DeprecationWarning"]
    # The child enters the quota itself once collected and set up (quota_procs): interpreter
    # start-up and imports at 128 MB's 0.07 CPUs would cost tens of seconds and measure nothing.
    opts = dataclasses.replace(opts, quota_procs=quota.procs_file if quota else None)
    proc = subprocess.Popen(cmd, cwd=REPO, env={**env, ENV_OPTIONS: opts.to_env()}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=partial(_suite_child, pinned))
    try:
        tail = _progress(proc, label, opts.n_passes)
        proc.wait()
    finally:
        if proc.poll() is None:  # the run was interrupted: the suite stops as pytest does on Ctrl-C
            _stop(proc)
        if quota:
            quota.close()
    if proc.returncode not in (0, 5):  # 5: every case skipped
        say("".join(tail))
        return False, note
    return True, note


def _suite_child(pinned: set[int] | None) -> None:
    # In the suite's process before it starts: on its CPUs, and with Ctrl-C's default
    # handling (a run started in the background inherits SIGINT ignored), which _stop uses.
    # In a process group of its own: a signal to the run's whole group (a hangup, a kill of
    # the group) reaches it through the run, which stops it that way; the signal itself
    # would end it at once, its temporary files left behind. (Ignoring those signals
    # instead would pass to its worker processes, which multiprocessing ends with SIGTERM.)
    if pinned:
        os.sched_setaffinity(0, pinned)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgid(0, 0)


def _stop(proc: subprocess.Popen, grace: float = SUITE_STOP_S) -> None:
    """Stop a suite as Ctrl-C does, so it removes its temporary files and stops its worker
    processes; killed if it has not ended within ``grace`` seconds."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_skips(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _merge(doc: dict, part: dict, label: str, section: str) -> None:
    """Add a suite's benchmarks to the run's one pytest-benchmark document.

    Rows of another run label are named by it; a case met again in a later pass gets
    that pass's rounds added to its data, and its statistics recomputed.
    """
    for key in ("machine_info", "commit_info", "datetime", "version"):
        doc.setdefault(key, part.get(key))
    known = {b["fullname"]: b for b in doc["benchmarks"]}
    for bench in part.get("benchmarks", []):
        bench["extra_info"]["section"] = section
        for key in ("name", "fullname"):
            bench[key] = unscheduled(bench[key])[0]
            if label != "main":
                bench[key] = f"{label}::{bench[key]}"
        earlier = known.get(bench["fullname"])
        if earlier is None:
            doc["benchmarks"].append(bench)
            known[bench["fullname"]] = bench
            continue
        earlier["stats"] = history.stats_dict(earlier["stats"]["data"] + bench["stats"]["data"])
        info, later = earlier["extra_info"], bench["extra_info"]
        # Per-round figures join their rounds; each row figure is the median of them all.
        for figure, rounds in PER_ROUND.items():
            if rounds in info and rounds in later:
                info[rounds] += later[rounds]
                info[figure] = statistics.median(info[rounds])
        info["rounds"] = len(earlier["stats"]["data"])
        if not bench["extra_info"]["check_ok"]:
            info["check"], info["check_ok"] = bench["extra_info"]["check"], False


#: A row's figures that are the median of per-round values, and the field holding those values.
PER_ROUND = {"cpu_ms_per_item": "cpu_ms_per_item_rounds", "bound_s": "bound_s_rounds",
             "endpoint_cpu_ms_per_request": "endpoint_cpu_ms_per_request_rounds"}


#: A file ./build.sh writes once it has made (or checked) .venv-peers beside the run; unset: nothing to wait for.
ENV_PEERS_READY = "FANOUT_BENCH_PEERS_READY"


def wait_for_peers_venv() -> None:
    """Wait until ./build.sh has made .venv-peers, where it makes it beside the run's first cases."""
    ready = Path(os.environ.get(ENV_PEERS_READY) or "")
    if not os.environ.get(ENV_PEERS_READY) or not ready.exists() or ready.read_text():
        return
    say(f"==> waiting for {PEERS_VENV_DIR} (made beside the first cases, on the first run)")
    while ready.exists() and not ready.read_text():
        time.sleep(0.2)


def run_label(label: str, run_opts: Options, env: dict, out: Path, doc: dict, notes: list[str]) -> bool:
    """Run one label's cases in every environment they need, every pass; merge them into ``doc``."""
    section = "main" if label == "main" else "sweep"
    peers_python = REPO / PEERS_VENV_DIR / "bin" / "python"
    for venv, python in (("main", sys.executable), ("peers", str(peers_python))):
        todo = cases(run_opts, venv)
        if not todo:
            continue
        if venv != "main":
            wait_for_peers_venv()
        # Only a whole one: ./build.sh writes the stamp once every pinned wheel is installed
        # (another run may be making it at this moment).
        if venv != "main" and not (peers_python.exists() and (REPO / PEERS_VENV_DIR / ".fanout-stamp").exists()):
            reason = (f"{PEERS_VENV_DIR} not found or not complete: ./build.sh bench creates it from "
                      "requirements/peers.txt (see its output above for why it could not)")
            doc["skipped"] += [{"workload": c.workload.name, "impl": c.impl, "kind": c.kind, "skipped": reason,
                                "section": section} for c in todo]
            continue
        skip_path = out / f"skipped-{label}-{venv}.jsonl"
        skip_path.unlink(missing_ok=True)
        json_path = out / f"benchmark-{label}-{venv}.json"
        json_path.unlink(missing_ok=True)
        tag = f"{label}{'' if venv == 'main' else '-' + venv}"
        ok, note = run_suite(python, dataclasses.replace(run_opts, venv=venv, skip_file=str(skip_path)), env,
                             json_path, tag)
        notes.append(note)
        if not ok:
            say(f"benchmark run {tag!r} failed; see the output above")
            return False
        if json_path.exists():
            _merge(doc, json.loads(json_path.read_text()), label, section)
        doc["skipped"] += [{**s, "section": section} for s in _read_skips(skip_path)]
    return True


# -- the whole run ---------------------------------------------------------------------------

def start_endpoint(opts: Options, env: dict, notes: list[str]):
    """The embedded endpoint, started and seeded (None with --endpoint-url)."""
    if opts.endpoint_url:
        env["AWS_ENDPOINT_URL"] = opts.endpoint_url
        notes.append(f"Endpoint: {opts.endpoint_url} (latency as it comes).")
        return None
    say("==> starting the embedded endpoint (moto server + latency proxy on 127.0.0.1)")
    endpoint = LocalEndpoint(cpus=ENDPOINT_CPUS, prompt=True).start()
    env.update(endpoint.environ())
    opts.proxy_url = endpoint.proxy_url
    needed = max(opts.n_items(w) for w in WORKLOADS.values() if w.needs_aws)
    say(f"==> seeding {needed} S3 objects and DynamoDB items")
    seed(endpoint.moto_url, opts.bucket, opts.table, needed)
    notes.append("Endpoint: moto's server behind the latency proxy, each in its own process, outside "
                 "the client's CPU quota; latency per request drawn around the median with a lognormal tail. "
                 "Reads in timed rounds are answered by the proxy from moto's recorded answers (same body, "
                 "headers, ETag, checksums and errors; recorded in each case's warm-up where its client asks "
                 "in a new way), so moto's own CPU is not in the client's way; "
                 "`endpoint_cpu_ms_per_request` in benchmark.json is the endpoint's CPU per request in each row. "
                 f"The proxy ran at {endpoint.priority} priority (real-time where allowed, so that a loaded "
                 "machine does not make its answers late).")
    return endpoint


def plan(opts: Options) -> list[tuple[str, Options]]:
    """(label, options) of each suite run: the main one, then the memory sweep."""
    return [("main", opts)] + [(f"sweep-{m}MB", opts.sweep_run(m, *names)) for m, names in opts.sweeps()]


def finish(args: argparse.Namespace, opts: Options, doc: dict, notes: list[str], out: Path, command: str) -> str:
    """Write the report, chart and JSON, save the run, append the history; the Markdown."""
    # The run compared against, read before this run's files can replace it (its benchmark.json,
    # a saved run of the same name); then the measurements, so that a report that fails to
    # build loses none of them and leaves no earlier run's report beside them.
    reference = history.load_run(args.compare, out) if args.compare else None
    (out / "report.md").unlink(missing_ok=True)
    (out / "benchmark.json").write_text(json.dumps(doc, indent=1))
    name = args.save or time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
    saved = history.save_run(out, doc, name)
    history.append_history(out, doc, name, command)
    rows = rows_from_pytest_benchmark(doc)
    md = build_markdown(rows, memory_mb=opts.memory_mb, arch=opts.arch, notes=notes)
    if reference is not None:
        md += "\n" + history.compare_markdown(*reference, rows)
    (out / "report.md").write_text(md)
    charts = [c for c in (write_chart(rows, str(out / "comparison.png")),
                          write_limit_chart(rows, str(out / "auto-limits.png"))) if c]
    say(md)
    say(f"==> wrote {out / 'report.md'}, {out / 'benchmark.json'}" + "".join(f", {c}" for c in charts)
        + f"; saved as {saved.stem} (compare later with --compare {name}); history in {out / history.HISTORY}")
    return md


def _interrupt(signum, frame) -> None:
    # Once: a signal sent to the whole group also arrives through build.sh, and a second
    # KeyboardInterrupt would cut short the cleanup the first one starts.
    for again in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(again, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = options(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.compare:
        history.load_run(args.compare, out)  # a bad reference fails now, not after the run
    # SIGTERM and a hangup end the run like Ctrl-C does, so the finally below stops what was
    # started (the endpoint runs in sessions of its own, which a hangup never reaches).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    endpoint = None
    started = time.monotonic()
    command = f"./build.sh bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip()
    try:
        env = dict(os.environ)
        notes = [f"Machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; strategies {', '.join(STRATEGIES)}."]
        endpoint = start_endpoint(opts, env, notes)
        doc: dict = {"benchmarks": [], "skipped": []}
        for label, run_opts in plan(opts):
            say(f"==> {label}: {', '.join(selected(run_opts))} at {run_opts.memory_mb} MB")
            if not run_label(label, run_opts, env, out, doc, notes):
                return 1
        notes.append(f"Command: {command}; the whole run took {time.monotonic() - started:.0f} s.")
        finish(args, opts, doc, notes, out, command)
        return 0
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        return 130
    finally:
        if endpoint is not None:
            endpoint.stop()
