"""./build.sh bench: compare every strategy on realistic workloads, priced in Lambda dollars.

Starts moto's server and a latency proxy on 127.0.0.1 (unless --endpoint-url), seeds
them, runs the pytest-benchmark workload suite in a child process under Lambda's CPU
share for each memory size, stops everything it started, then writes bench-results/
and prints the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .._config import DEFAULT_MAX_WORKERS
from ..strategies import STRATEGIES
from .cost import ARCHITECTURES, MEMORY_RANGE_MB
from .quota import cpu_quota, vcpus_for_memory
from .report import rows_from_pytest_benchmark, write_report
from .workloads import ENV_OPTIONS, WORKLOADS, Options

REPO = Path(__file__).resolve().parents[3]
SUITE = REPO / "tests" / "benchmarks" / "test_workloads.py"
QUICK_SWEEP = (128, 1769)
FULL_SWEEP = (128, 512, 1769, 3008)
#: The cpu workload's sweep: below, at and above one vCPU, where processes can help.
CPU_SWEEP = (128, 1769, 3008)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers such as 8,32,64, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def _memory(text: str) -> int:
    low, high = MEMORY_RANGE_MB
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a Lambda memory size from {low} to {high} MB, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # The module's docstring is the help text, kept as written (plain text, no markup).
    p = argparse.ArgumentParser(prog="./build.sh bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, under two minutes (CI and smoke tests)")
    p.add_argument("--items", type=int, help="items per workload (default: per workload, 500 for I/O)")
    p.add_argument("--workers", type=_int_list, help=f"worker counts, a sweep when several: 8,32,64 (default {DEFAULT_MAX_WORKERS}, the library's default)")
    p.add_argument("--latency-ms", type=float, help="latency per I/O item (default: 20 latency, 25 S3, 8 DynamoDB medians)")
    p.add_argument("--workload", action="append", choices=list(WORKLOADS), help="run only this workload (repeatable; default: all)")
    p.add_argument("--memory-mb", type=_memory, default=1024, help="Lambda memory to emulate and price (default 1024)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="x86_64", help="price for this architecture (default x86_64)")
    p.add_argument("--no-memory-sweep", action="store_true", help="skip the memory sweep (s3 at 128/512/1769/3008 MB, cpu at 128/1769/3008 MB)")
    p.add_argument("--endpoint-url", help="run against this endpoint (real AWS or S3-compatible) instead of the embedded one")
    p.add_argument("--bucket", default="lambda-fanout-bench", help="bucket for the S3 workload (default lambda-fanout-bench)")
    p.add_argument("--table", default="lambda-fanout-bench", help="table for the DynamoDB workload (default lambda-fanout-bench)")
    p.add_argument("--rounds", type=int, help="timed rounds per case (default 3; 2 quick)")
    p.add_argument("--out", default=str(REPO / "bench-results"), help="where to write the report (default bench-results/)")
    args = p.parse_args(argv)
    if args.items is not None and args.items < 1:
        p.error(f"--items must be a positive whole number, got {args.items}")
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def options(args: argparse.Namespace) -> Options:
    return Options(
        quick=args.quick, items=args.items, workers=args.workers or (DEFAULT_MAX_WORKERS,),
        latency_ms=args.latency_ms, workloads=tuple(args.workload or ()), memory_mb=args.memory_mb,
        arch=args.arch, endpoint_url=args.endpoint_url, bucket=args.bucket, table=args.table,
        rounds=args.rounds or (2 if args.quick else 3),
        memory_sweep=() if args.no_memory_sweep else (QUICK_SWEEP if args.quick else FULL_SWEEP),
    )


def say(text: str) -> None:
    print(text, flush=True)


def run_suite(opts: Options, env: dict, json_path: Path, label: str) -> tuple[bool, str]:
    """Run the workload suite in a child process under the CPU share of opts.memory_mb."""
    quota, why_not = cpu_quota(vcpus_for_memory(opts.memory_mb))
    opts.cpus = quota.cpus if quota else None
    note = (f"{label}: client under {quota.describe()} ({opts.memory_mb} MB)" if quota
            else f"{label}: CPU not emulated ({why_not}); the client had the whole machine")
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-v", "-p", "no:cacheprovider", "-o", "addopts=",
           "--benchmark-json", str(json_path), "--benchmark-columns=median", "-W", "ignore::DeprecationWarning"]
    child_env = {**env, ENV_OPTIONS: opts.to_env()}
    proc = subprocess.Popen(cmd, cwd=REPO, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=quota.enter if quota else None)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line])[-60:]
            if "::test_workload[" in line and ("PASSED" in line or "FAILED" in line or "ERROR" in line):
                case = line.split("[", 1)[1].split("]", 1)[0]
                status = "ok" if "PASSED" in line else "FAILED"
                pct = line.rsplit("[", 1)[-1].strip().rstrip("]")
                say(f"  [{pct:>4}] {label} {case} {status}")
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if quota:
            quota.close()
    if proc.returncode != 0:
        say("".join(tail))
        return False, note
    return True, note


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = options(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the run like Ctrl-C does, so the finally below stops what was started.
    signal.signal(signal.SIGTERM, _interrupt)
    endpoint = None
    started = time.monotonic()
    try:
        env = dict(os.environ)
        notes = [f"Machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; strategies {', '.join(STRATEGIES)}."]
        if opts.endpoint_url:
            env["AWS_ENDPOINT_URL"] = opts.endpoint_url
            notes.append(f"Endpoint: {opts.endpoint_url} (latency as it comes).")
        else:
            from ..testing.endpoint import LocalEndpoint
            from .workloads import seed

            say("==> starting the embedded endpoint (moto server + latency proxy on 127.0.0.1)")
            endpoint = LocalEndpoint().start()
            env.update(endpoint.environ())
            opts.proxy_url = endpoint.proxy_url
            needed = max(opts.n_items(WORKLOADS[w]) for w in ("s3", "dynamodb"))
            say(f"==> seeding {needed} S3 objects and DynamoDB items")
            seed(endpoint.moto_url, opts.bucket, opts.table, needed)
            notes.append("Endpoint: moto's server behind the latency proxy, each in its own process, outside "
                         "the client's CPU quota; latency per request drawn around the median with a lognormal tail.")
        runs = [("main", opts)]
        sweeps = {w: sizes for w, sizes in (("s3", opts.memory_sweep), ("cpu", CPU_SWEEP if opts.memory_sweep else ()))
                  if sizes and (not opts.workloads or w in opts.workloads)}
        for memory in sorted({m for sizes in sweeps.values() for m in sizes}):
            names = tuple(w for w, sizes in sweeps.items() if memory in sizes)
            runs.append((f"sweep-{memory}MB", Options(**{
                **vars(opts), "memory_mb": memory, "workloads": names, "workers": (max(opts.workers),),
                "items": min(opts.n_items(WORKLOADS["s3"]), 40 if opts.quick else 200),
                "rounds": 1 if opts.quick else 2, "with_raw": False})))
        rows = []
        all_json = {}
        for label, run_opts in runs:
            say(f"==> {label}: {', '.join(run_opts.workloads or tuple(WORKLOADS))} at {run_opts.memory_mb} MB")
            json_path = out / f"benchmark-{label}.json"
            ok, note = run_suite(run_opts, env, json_path, label)
            notes.append(note)
            if not ok:
                say(f"benchmark run {label!r} failed; see the output above")
                return 1
            data = json.loads(json_path.read_text())
            all_json[label] = data
            section = "main" if label == "main" else "sweep"
            rows += rows_from_pytest_benchmark(data, section)
        (out / "benchmark.json").write_text(json.dumps(all_json, indent=1))
        notes.append(f"Command: ./build.sh bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
        paths = write_report(str(out), rows, memory_mb=opts.memory_mb, arch=opts.arch, notes=notes)
        say("")
        say(paths["markdown"])
        say(f"==> wrote {paths['report']}, {out / 'benchmark.json'}" + (f", {paths['chart']}" if paths["chart"] else "")
            + f" in {time.monotonic() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        return 130
    finally:
        if endpoint is not None:
            endpoint.stop()
