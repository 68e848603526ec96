"""Cold start from the unpacked layer: import and first-call cost in fresh interpreters.

Each round starts a bare ``python3.12 -S -E -B`` with Lambda's search order (task root,
opt/python/lib/python3.12/site-packages, opt/python); -B keeps it from writing
bytecode, as Lambda's read-only /opt would. The time inside the interpreter (import
plus first call) goes into extra_info["inside_ms"]; the benchmark's own figure also
counts interpreter start-up. The same cases run against a copy of the layer with its
precompiled bytecode removed, to show what precompiling saves.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess

import pytest

CASES = {
    "import only": "import lambda_fanout",
    "threads: import + first map": "import lambda_fanout as f; f.map(abs, range(16), strategy='threads')",
    "asyncio: import + first map": (
        "import lambda_fanout as f\nasync def a(x): return x\nf.map(a, range(16), strategy='asyncio')"),
    "threads: + boto3 S3 client": (
        "import lambda_fanout as f; from lambda_fanout import aws\n"
        "f.map(abs, range(16), strategy='threads'); aws.clients('s3').sync"),
    "asyncio: + aiobotocore S3 client": (
        "import lambda_fanout as f; from lambda_fanout import aws\n"
        "async def a(x): return await aws.clients('s3').aio_client() is not None\n"
        "f.map(a, range(16), strategy='asyncio')"),
}

WRAPPER = (
    "import sys, os, time\n"
    "opt = sys.argv[1]\n"
    "sys.path[:0] = [os.path.join(opt, 'python/lib/python3.12/site-packages'), os.path.join(opt, 'python')]\n"
    "t0 = time.perf_counter()\n"
    "{code}\n"
    "print('INSIDE %.3f' % ((time.perf_counter() - t0) * 1000))\n"
)


@pytest.fixture(scope="module")
def layer_trees(layer_opt, tmp_path_factory):
    opt, interpreter = layer_opt
    if interpreter is None:
        pytest.skip("no python3.12 on this machine to run the layer with")
    bare = tmp_path_factory.mktemp("opt-no-bytecode")
    shutil.copytree(opt, bare, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return {"precompiled": opt, "no bytecode": bare}, interpreter


@pytest.mark.parametrize("tree", ["precompiled", "no bytecode"])
@pytest.mark.parametrize("case", list(CASES))
def test_cold_start(benchmark, layer_trees, case, tree):
    trees, interpreter = layer_trees
    benchmark.group = f"cold start from the layer: {case}"
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    cmd = [interpreter, "-S", "-E", "-B", "-c", WRAPPER.format(code=CASES[case]), str(trees[tree])]
    inside: list[float] = []

    def run():
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        inside.append(float(out.rsplit("INSIDE ", 1)[1]))

    benchmark.pedantic(run, rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info["inside_ms"] = statistics.median(inside)
    assert inside and all(ms > 0 for ms in inside)
