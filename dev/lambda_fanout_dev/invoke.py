"""``./build.sh invoke``: run a function with the layer attached, the way Lambda runs it, without Docker.

    ./build.sh invoke --handler app.handler --task-root path/to/function --event event.json
    ./build.sh invoke --handler lambda_fanout.handler.handler --env FANOUT_RECORD_HANDLER=app.process_record \\
        --event sqs:100 --repeat 5

It builds (or reuses) the layer zip for this machine's Python, unpacks it as a read-only
/opt (see :mod:`.local_lambda`), starts a local Runtime API and runs the function under the
real runtime interface client (awslambdaric). AWS calls go to the embedded endpoint (moto
behind the latency proxy, on 127.0.0.1) unless ``--endpoint-url`` is given. It prints, per
invocation, the function's logs, its EMF metrics as a table, the response, and the init and
invoke durations with the billed duration and cost from the bench's cost model.

``--seed`` fills the endpoint before the function starts: ``bench`` (or ``bench:N``)
writes the bench's bucket and table (``lambda_fanout.bench.seeding``), which the sample
events ``s3``, ``eventbridge`` and ``dmap`` name, and gives the function
``BUCKET_NAME`` and ``TABLE_NAME``; a path runs that Python script with the endpoint's
environment (``AWS_ENDPOINT_URL`` and test credentials). Locally ``FANOUT_METRICS`` and
``FANOUT_LOG_FAILURES`` default to ``on`` (the metrics table, and each failed record's
message in its log line), unless ``--env`` sets them.

``--snapstart`` takes the runtime's snap-start path (see :mod:`.snapstart`): the init ends
at the snapshot, every connection open to the embedded endpoint is frozen (a request on
one is reset), and ``--restores`` environments are restored from the snapshot, each
serving ``--repeat`` invocations; it prints how long the hooks took and what met a frozen
connection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

from lambda_fanout import _config
from lambda_fanout.bench import seeding
from lambda_fanout.bench.cost import MEMORY_RANGE_MB, billed_ms, cost_per_million

from . import ROOT, emf, events
from .endpoint import LocalEndpoint
from .local_lambda import LocalFunction, build_layer_module, local_arch, runtime_dir, unpack_layer
from .snapstart import Restored

#: What a layer zip is built from: a newer file here means the zip in dist/ is stale.
LAYER_SOURCES = ("python/lambda_fanout", "strategies", "layer/requirements.txt", "layer/build_layer.py")
#: Passed through to the function with --endpoint-url, for the real endpoint's credentials.
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                   "AWS_DEFAULT_REGION")
#: Settings that default to on here, unlike in Lambda (their defaults there second): the
#: run is there to be read, metrics table and failures' messages included.
LOCAL_DEFAULTS = {_config.ENV_METRICS: ("on", "off"), _config.ENV_LOG_FAILURES: ("on", "type-only")}
#: ``--seed bench`` writes at least this many objects and items.
BENCH_SEED_MIN = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="./build.sh invoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--handler", required=True, help="the function's Handler, module.function")
    p.add_argument("--task-root", default=".", help="the function's code folder (default: the current one)")
    p.add_argument("--event", default="{}",
                   help="a JSON file, or a sample KIND:N with KIND one of " + ", ".join(events.SAMPLES)
                   + " (default: {})")
    p.add_argument("--timeout", type=float, default=30.0, help="the function's timeout in seconds (default 30)")
    p.add_argument("--memory-mb", type=int, default=1024,
                   help="memory size: Lambda's CPU share for it, and the price (default 1024)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="an environment variable for the function (repeatable)")
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="N invocations: one cold, then warm")
    p.add_argument("--endpoint-url", help="send AWS calls here instead of the embedded local endpoint")
    p.add_argument("--python", choices=("3.11", "3.12", "3.13"), default="%d.%d" % sys.version_info[:2],
                   help="the runtime's Python (default: the one running this); it must be on this machine")
    p.add_argument("--layer-zip", help="attach this layer zip (default: dist/'s for --python, built if stale)")
    p.add_argument("--arch", choices=("x86_64", "arm64"), default=None,
                   help="architecture to price (default: this machine's)")
    p.add_argument("--seed", action="append", default=[], metavar="bench[:N]|SCRIPT",
                   help="fill the endpoint first: 'bench' writes the bench's bucket and table (N objects and "
                   f"items, default {BENCH_SEED_MIN} or as many as the sample event names) and sets BUCKET_NAME "
                   "and TABLE_NAME; a .py path runs that script against the endpoint (repeatable)")
    p.add_argument("--snapstart", action="store_true",
                   help="SnapStart: snapshot after init, break its connections, restore --restores copies")
    p.add_argument("--restores", type=int, default=2, metavar="N",
                   help="with --snapstart, the environments restored from the snapshot (default 2)")
    args = p.parse_args(argv)
    if not MEMORY_RANGE_MB[0] <= args.memory_mb <= MEMORY_RANGE_MB[1]:
        p.error(f"--memory-mb must be from {MEMORY_RANGE_MB[0]} to {MEMORY_RANGE_MB[1]} but got {args.memory_mb}")
    if not 1 <= args.timeout <= 900:
        p.error(f"--timeout must be from 1 to 900 seconds (Lambda's range) but got {args.timeout:g}")
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1 but got {args.repeat}")
    if args.restores < 1:
        p.error(f"--restores must be at least 1 but got {args.restores}")
    if "." not in args.handler:
        p.error(f"--handler must be module.function (e.g. app.handler) but got {args.handler!r}")
    if args.layer_zip and not os.path.isfile(args.layer_zip):
        p.error(f"--layer-zip {args.layer_zip!r} is not a file")
    if not os.path.isdir(args.task_root):
        p.error(f"--task-root {args.task_root!r} is not a folder")
    try:
        args.env = dict(_pair(item) for item in args.env)
        args.event = load_event(args.event)
        args.seed = [parse_seed(spec, args.event) for spec in args.seed]
    except ValueError as exc:
        p.error(str(exc))
    return args


def parse_seed(spec: str, event: object) -> tuple[str, object]:
    """``("bench", count)`` or ``("script", path)`` for a ``--seed`` value.

    Raises:
        ValueError: neither ``bench[:N]`` nor an existing file, saying what is accepted.
    """
    name, sep, count = spec.partition(":")
    if name == "bench":
        if not sep:
            return "bench", max(BENCH_SEED_MIN, events.objects_named(event))
        if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= 10_000:
            raise ValueError(f"--seed {spec!r}: N must be a whole number from 1 to 10000 but got {count!r}")
        return "bench", int(count)
    if os.path.isfile(spec):
        return "script", os.path.abspath(spec)
    raise ValueError(f"--seed {spec!r} is neither 'bench' (or bench:N) nor a file; give bench, bench:N, or the "
                     "path of a Python script that writes what the function reads")


def seed(seeds: list[tuple[str, object]], env: dict[str, str], cwd: str) -> dict[str, str]:
    """Fill the endpoint ``env`` names, in order; the variables the function gets for it.

    Raises:
        RuntimeError: a script exited with an error (its output is in the message).
    """
    given: dict[str, str] = {}
    for kind, what in seeds:
        if kind == "bench":
            bucket, table = _config.DEFAULT_BENCH_BUCKET, _config.DEFAULT_BENCH_TABLE
            try:
                seeding.seed(env["AWS_ENDPOINT_URL"], bucket, table, what)
            except Exception as exc:  # the endpoint unreachable or refusing: said, not a traceback
                raise RuntimeError(f"--seed bench: {type(exc).__name__}: {exc}") from exc
            given.update(BUCKET_NAME=bucket, TABLE_NAME=table)
            print(f"seed: bucket {bucket} and table {table}, {what} objects and items "
                  "(BUCKET_NAME and TABLE_NAME name them)")
            continue
        proc = subprocess.run([sys.executable, what], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"--seed {what} exited with code {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        print(f"seed: ran {what}" + (f"\n{proc.stdout.rstrip()}" if proc.stdout.strip() else ""))
    return given


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--env takes NAME=VALUE but got {item!r}")
    return name, value


def load_event(spec: str) -> object:
    """The event a ``--event`` value names: a JSON file, inline JSON, or a sample KIND:N.

    Raises:
        ValueError: none of those, saying what is accepted.
    """
    if os.path.isfile(spec):
        with open(spec) as f:
            try:
                return json.load(f)
            except ValueError as exc:
                raise ValueError(f"--event {spec!r}: not valid JSON ({exc})") from None
    if spec.lstrip().startswith(("{", "[")):
        try:
            return json.loads(spec)
        except ValueError as exc:
            raise ValueError(f"--event: not valid JSON ({exc})") from None
    if spec.partition(":")[0] in events.SAMPLES:
        return events.from_spec(spec)
    raise ValueError(f"--event {spec!r} is neither a file nor a sample; give a JSON file, or KIND:N with KIND one "
                     f"of {', '.join(events.SAMPLES)} (e.g. sqs:100)")


def layer_zip(python: str, arch: str) -> Path:
    """dist/'s layer zip for ``python`` and ``arch``, rebuilt when a source is newer than it."""
    module = build_layer_module()
    zip_path = ROOT / "dist" / f"lambda-fanout-layer-py{python}-{arch}.zip"
    newest = max(p.stat().st_mtime for src in LAYER_SOURCES for p in _files(ROOT / src))
    if zip_path.exists() and zip_path.stat().st_mtime >= newest:
        print(f"layer: {zip_path.relative_to(ROOT)} (up to date)", flush=True)
        return zip_path
    print(f"layer: building {zip_path.relative_to(ROOT)} ...", flush=True)
    return Path(module.build(python, arch, ROOT / "dist")["path"])


def _files(path: Path):
    # Bytecode caches cannot make the zip stale.
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def report_line(inv, fn: LocalFunction, arch: str, cold: bool, restored: Restored | None = None) -> str:
    """Lambda's REPORT line for one invocation, with the bench's price for it."""
    if inv.duration_ms is None:
        return f"REPORT status {inv.status}"
    parts = [f"Duration {inv.duration_ms:.2f} ms", f"Billed Duration {billed_ms(inv.duration_ms)} ms",
             f"Memory Size {fn.memory_mb} MB", f"Max Memory Used {fn.max_memory_mb():.0f} MB"]
    if cold and restored is not None and restored.restore_ms is not None:
        parts.append(f"Restore Duration {restored.restore_ms:.2f} ms")
    elif cold and fn.init_ms is not None:
        parts.append(f"Init Duration {fn.init_ms:.2f} ms")
    parts.append(f"${cost_per_million(inv.duration_ms, fn.memory_mb, arch):.2f} per million invocations ({arch})")
    return "REPORT " + " | ".join(parts)


def show(inv, fn: LocalFunction, arch: str, number: int, restored: Restored | None = None) -> None:
    cold = number == 1
    print(f"\n== invocation {number} ({'cold' if cold else 'warm'}): {inv.status} ==")
    docs = emf.documents(inv.logs)
    logs = [line for line in inv.logs if not (line.lstrip().startswith("{") and '"_aws"' in line)]
    print("-- logs --")
    print("\n".join(logs) if logs else "(none)")
    print("-- EMF metrics --")
    print(emf.table(docs))
    for doc in docs:
        for problem in emf.problems(doc):
            print(f"   invalid EMF: {problem}")
    print("-- response --")
    if inv.status == "timeout":
        print(f"Task timed out after {fn.timeout_s:.2f} seconds")
    elif inv.status == "exited":
        print(f"the function's process exited (code {fn.proc.returncode}) before answering")
    else:
        print(json.dumps(inv.response, indent=2)[:20000])
    print(report_line(inv, fn, arch, cold, restored))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = args.python
    arch = args.arch or local_arch()
    endpoint = None
    with contextlib.ExitStack() as stack:
        try:
            opt = unpack_layer(args.layer_zip or layer_zip(python, local_arch()))
            runtime = runtime_dir(python)
            if args.endpoint_url:
                env = {name: os.environ[name] for name in CREDENTIAL_VARS if name in os.environ}
                env["AWS_ENDPOINT_URL"] = args.endpoint_url
            else:
                endpoint = stack.enter_context(LocalEndpoint())
                env = endpoint.environ()
                print(f"endpoint: moto behind the latency proxy at {endpoint.url} (local, no AWS account)")
            env = {**env, **seed(args.seed, env, args.task_root)} if args.seed else env
            # Locally the metrics table and each failure's message are part of the report.
            defaults = {name: pair for name, pair in LOCAL_DEFAULTS.items() if name not in args.env}
            if defaults:
                print("settings: " + ", ".join(f"{name}={local}" for name, (local, _) in defaults.items())
                      + " (local defaults; in Lambda " + ", ".join(f"{lam}" for _, lam in defaults.values())
                      + "; --env sets them)")
            env = {**{name: local for name, (local, _) in defaults.items()}, **env, **args.env}
            fn = stack.enter_context(LocalFunction(
                args.handler, task_root=args.task_root, opt=opt, python=python, runtime=runtime, env=env,
                memory_mb=args.memory_mb, timeout_s=args.timeout, cpu_quota=True, snapstart=args.snapstart))
        except (RuntimeError, SystemExit, OSError, zipfile.BadZipFile) as exc:
            # No interpreter for --python, pip or the layer build failing, an unreadable zip.
            print(f"./build.sh invoke: {exc}", file=sys.stderr)
            return 2
        print(f"runtime: Python {python} under awslambdaric, /opt = {opt}"
              + (" (read-only, private mount namespace)" if fn.read_only else ""))
        for note in fn.notes:
            print(f"note: {note}")
        if not fn.wait_ready():
            print("\n== init failed ==")
            print("\n".join(fn.lines))
            if fn.init_error is not None:
                print(json.dumps(fn.init_error, indent=2))
            else:
                print(f"the function did not finish its init (process {'running' if fn.alive() else 'exited'})")
            return 1
        if fn.lines:
            print("-- init logs --")
            print("\n".join(fn.lines))
        if args.snapstart:
            return restore_all(fn, endpoint, args.event, args.repeat, args.restores, arch)
        return invoke_all(fn, args.event, args.repeat, arch)


def restore_all(fn: LocalFunction, endpoint, event: object, repeat: int, restores: int, arch: str) -> int:
    """Restore the snapshot ``restores`` times and send ``event`` ``repeat`` times to each; 1 if any failed."""
    print(f"\n== snapshot taken: init {fn.init_ms:.1f} ms, before-snapshot hooks "
          f"{fn.api.hook_ms.get('before-snapshot', 0.0):.1f} ms ==")
    if endpoint is not None:
        frozen = endpoint.freeze()
        endpoint.reset_stats()
        print(f"endpoint: {frozen} connection(s) open at the snapshot frozen (a request on one is reset)")
    fn.api.resume()
    failed = False
    for number in range(1, restores + 1):
        restored = fn.restore()
        ready = restored.wait_ready()
        if not ready:
            print(f"\n== restore {number} failed: {restored.api.restore_error_type or 'the copy exited'} ==")
            print(json.dumps(restored.api.restore_error, indent=2))
            return 1
        print(f"\n== restore {number} (process {restored.pid}): after-restore hooks "
              f"{restored.api.hook_ms.get('after-restore', 0.0):.1f} ms, restored in {restored.restore_ms:.1f} ms ==")
        failed |= invoke_all(fn, event, repeat, arch, restored) != 0
    if endpoint is not None:
        stats = endpoint.stats()
        print(f"\nendpoint: {stats['requests']} request(s) after the restores, {stats['frozen']} met a frozen "
              "connection")
        failed |= stats["frozen"] > 0
    return 1 if failed else 0


def invoke_all(fn: LocalFunction, event: object, repeat: int, arch: str, restored: Restored | None = None) -> int:
    """Send ``event`` ``repeat`` times (to ``restored`` if given), printing each; 1 if any did not answer ok."""
    durations = []
    failed = False
    for number in range(1, repeat + 1):
        inv = fn.invoke(event, restored)
        show(inv, fn, arch, number, restored)
        failed |= inv.status != "ok"
        if inv.status not in ("ok", "error"):
            break  # the environment is gone (timeout or exit), as in Lambda
        durations.append(inv.duration_ms)
    if len(durations) > 1:
        warm = durations[1:]
        print(f"\n{len(durations)} invocations: cold {durations[0]:.1f} ms; warm median "
              f"{statistics.median(warm):.1f} ms, min {min(warm):.1f} ms, max {max(warm):.1f} ms "
              f"(init {fn.init_ms:.1f} ms)")
        print("durations (ms): " + ", ".join(f"{d:.1f}" for d in durations))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
