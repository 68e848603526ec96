"""SnapStart: a snapshot restored into many environments shares no connection, randomness or latency floor.

The function runs under the runtime interface client's real snap-start path
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``: before-snapshot hooks, ``/runtime/restore/next``,
after-restore hooks), each restore a fork of the initialised process
(lambda_fanout_dev.snapstart). Between the snapshot and the restores the proxy
freezes every connection open to it: a request on one is reset and counted.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import lambda_fanout
from lambda_fanout_dev import snapstart
from lambda_fanout_dev.runtime_api import RuntimeApi

KEYS = [f"key-{i}" for i in range(8)]

APP = textwrap.dedent('''
    import json, os, random
    import lambda_fanout
    from lambda_fanout import aws, _limiter
    from snapshot_restore_py import register_after_restore

    BUCKET = os.environ["BUCKET"]
    KEYS = json.loads(os.environ["KEYS"])
    get = aws.s3_get_object(BUCKET)

    if os.environ.get("FAIL_RESTORE"):
        @register_after_restore
        def broken():
            raise RuntimeError("restore went wrong")

    # Init warms what the function keeps: client pairs, their pools, processes' workers, auto's limiter.
    assert lambda_fanout.map(get, KEYS, max_workers="auto") == [k.encode() for k in KEYS]
    limiter = _limiter.learned(get, os.environ["FANOUT_STRATEGY"])
    OWN = None
    if os.environ.get("OWN_CLIENT"):  # a client the layer does not manage, pooled at the snapshot
        import boto3
        OWN = boto3.client("s3")
        OWN.head_bucket(Bucket=BUCKET)

    def handler(event, context):
        from botocore.retries.standard import ExponentialBackoff

        floor = None if limiter is None else limiter._floor
        bodies = lambda_fanout.map(get, KEYS, max_workers="auto")
        attempt = type("Attempt", (), {"attempt_number": 3})()
        out = {"bodies": [b.decode() for b in bodies], "random": [random.random() for _ in range(4)],
               "jitter": [ExponentialBackoff().delay_amount(attempt) for _ in range(4)],
               "floor_before_call": floor, "limit": None if limiter is None else limiter.limit}
        if OWN is not None:
            out["own_retries"] = OWN.head_bucket(Bucket=BUCKET)["ResponseMetadata"]["RetryAttempts"]
        return out
''')


class Snapshot:
    """The function initialised under the snap-start path, parked as the snapshot."""

    def __init__(self, tmp_path, env: dict) -> None:
        (tmp_path / "app.py").write_text(APP)
        self.api = RuntimeApi(function_name="snap").start()
        self.log = open(tmp_path / "function.log", "w+")
        base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path), "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_LAMBDA_FUNCTION_NAME": "snap", **env}
        self.proc = subprocess.Popen(snapstart.command(sys.executable, "app.handler"), cwd=tmp_path,
                                     env=snapstart.environ(base), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.restored: list[snapstart.Restored] = []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def restore(self) -> snapstart.Restored:
        copy = snapstart.restore(self.api, function_name="snap")
        self.restored.append(copy)
        return copy

    def close(self) -> None:
        for copy in self.restored:
            copy.stop()
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.api.stop()
        self.log.close()


@pytest.fixture
def snapshot(tmp_path, aws_endpoint, s3_bucket):
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws_endpoint.moto_url)
    for key in KEYS:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    made = []

    def make(strategy: str, **env) -> Snapshot:
        import json

        made.append(Snapshot(tmp_path, {**aws_endpoint.environ(), "BUCKET": s3_bucket, "KEYS": json.dumps(KEYS),
                                        "FANOUT_STRATEGY": strategy, "FANOUT_METRICS": "0", **env}))
        fn = made[-1]
        assert fn.api.wait_ready(60, fn.alive), ("init failed", fn.api.init_error, fn.output())
        assert fn.api.snapshot_at is not None, "the runtime did not take the snap-start path"
        return fn

    yield make
    for fn in made:
        fn.close()


def _freeze_and_resume(fn: Snapshot, endpoint) -> None:
    endpoint.freeze()
    endpoint.reset_stats()
    fn.api.resume()


@pytest.mark.parametrize("strategy", lambda_fanout.STRATEGIES)
def test_restored_copies_share_no_connection_and_no_random_state(snapshot, aws_endpoint, strategy, capsys):
    fn = snapshot(strategy)
    _freeze_and_resume(fn, aws_endpoint)
    first, second = fn.restore(), fn.restore()
    assert first.pid != second.pid
    answers = []
    for copy in (first, second):
        assert copy.wait_ready(), ("restore failed", copy.api.restore_error, fn.output())
        for _ in range(2):
            inv = copy.invoke({})
            assert inv.status == "ok", (inv.status, inv.response, fn.output())
            assert inv.response["bodies"] == KEYS
            answers.append(inv.response)
    stats = aws_endpoint.stats()
    # The first invocation after a restore meets no frozen socket, and nothing is retried:
    # one request per key per invocation reached the endpoint.
    assert stats["frozen"] == 0, [e for e in stats["log"] if e["fault"]]
    assert stats["requests"] == 2 * 2 * len(KEYS) and stats["served"] == stats["requests"], stats["log"]
    # Two restored copies draw different random sequences, and so different retry jitter.
    assert answers[0]["random"] != answers[2]["random"]
    assert answers[0]["jitter"] != answers[2]["jitter"]
    # auto kept its limit but forgot the floor measured before the snapshot.
    if answers[0]["limit"] is not None:
        assert answers[0]["floor_before_call"] is None and answers[2]["floor_before_call"] is None
    hooks = {"before-snapshot": fn.api.hook_ms["before-snapshot"],
             "after-restore": [copy.api.hook_ms["after-restore"] for copy in (first, second)],
             "restore (fork + hooks, to the first event request)": [copy.restore_ms for copy in (first, second)]}
    with capsys.disabled():
        print(f"\nSnapStart hooks under {strategy} (ms): {hooks}")
    # A sanity bound only: Lambda allows the after-restore hooks 10 s.
    assert hooks["before-snapshot"] < snapstart.HOOKS_TIMEOUT_S * 1000
    assert max(hooks["after-restore"]) < snapstart.HOOKS_TIMEOUT_S * 1000


def test_a_client_the_layer_does_not_manage_meets_the_frozen_connection(snapshot, aws_endpoint):
    """The check above can fail: a client pooled at the snapshot and left alone is reset and retried."""
    fn = snapshot("threads", OWN_CLIENT="1")
    _freeze_and_resume(fn, aws_endpoint)
    copies = [fn.restore(), fn.restore()]
    retries = []
    for copy in copies:
        assert copy.wait_ready(), ("restore failed", copy.api.restore_error, fn.output())
        inv = copy.invoke({})
        assert inv.status == "ok", (inv.status, inv.response, fn.output())
        retries.append(inv.response["own_retries"])
    assert aws_endpoint.stats()["frozen"] >= 1
    assert max(retries) >= 1


def test_an_after_restore_hook_error_is_reported_as_the_runtime_reports_it(snapshot, aws_endpoint):
    fn = snapshot("threads", FAIL_RESTORE="1")
    fn.api.resume()
    copy = fn.restore()
    assert not copy.wait_ready()
    assert copy.api.restore_error_type == "Runtime.AfterRestoreError"
    assert copy.api.restore_error["errorType"] == "RuntimeError"
    assert "restore went wrong" in copy.api.restore_error["errorMessage"]
    assert copy.invoke({}, timeout_s=5).status in ("restore-error", "exited")


# -- the hooks themselves, in this process ---------------------------------------------------

def _modules_after(code: str, **env: str) -> set[str]:
    import json

    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_hooks_register_only_in_a_snap_start_environment():
    uses = ("import lambda_fanout, lambda_fanout.aws as aws; aws.clients('s3'); "
            "lambda_fanout.map(abs, [-1], max_workers='auto')")
    assert "snapshot_restore_py" not in _modules_after(uses, AWS_LAMBDA_INITIALIZATION_TYPE="on-demand")
    # A map that keeps nothing across invocations (no clients, no auto limiter) registers nothing.
    plain = "import lambda_fanout; lambda_fanout.map(abs, [-1], max_workers=4)"
    assert "snapshot_restore_py" not in _modules_after(plain, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    registered = _modules_after(
        uses + "\nimport snapshot_restore_py as s, lambda_fanout._snapstart as ss, lambda_fanout._limiter as lim"
        "\nassert [f for f, _, _ in s.get_before_snapshot()] == [aws.renew_pools]"
        "\nassert [f for f, _, _ in s.get_after_restore()] == [ss.reseed_random, aws.renew_pools, lim.forget_floors]"
        "\naws.clients('dynamodb'); lambda_fanout.map(abs, [-2], max_workers='auto')"  # registered once
        "\nassert len(s.get_before_snapshot()) == 1 and len(s.get_after_restore()) == 3",
        AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    assert "snapshot_restore_py" in registered


@pytest.mark.parametrize("strategy", ["threads", "asyncio"])
def test_renew_pools_leaves_no_connection_opened_before(aws_endpoint, s3_bucket, strategy):
    from lambda_fanout import aws

    task = aws.s3_head_object(s3_bucket)
    aws.clients("s3").sync.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    lambda_fanout.map(task, ["k"] * 8, strategy=strategy, max_workers=4)
    aws_endpoint.freeze()  # the control: the pooled connections are frozen and met
    lambda_fanout.map(task, ["k"] * 8, strategy=strategy, max_workers=4)
    assert aws_endpoint.stats()["frozen"] >= 1
    aws_endpoint.reset_stats()
    aws.renew_pools()
    aws_endpoint.freeze()
    assert [r["ContentLength"] for r in lambda_fanout.map(task, ["k"] * 8, strategy=strategy, max_workers=4)] == [1] * 8
    stats = aws_endpoint.stats()
    assert stats["frozen"] == 0 and stats["requests"] == 8, stats["log"]


def _established_to(port: int) -> set:
    """The socket inodes of this process's ESTABLISHED TCP connections to ``port`` on 127.0.0.1 (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.read().splitlines()[1:]]
    return {row[9] for row in rows if int(row[2].split(":")[1], 16) == port and row[3] == "01" and row[9] in inodes}


def test_renew_pools_returns_once_the_crt_connections_are_closed(aws_endpoint, s3_bucket, monkeypatch):
    # The before-snapshot hook: the snapshot is taken as soon as it returns, so no crt
    # socket may still be open then (awscrt closes connections on its own thread).
    from urllib.parse import urlsplit

    from lambda_fanout import aws

    monkeypatch.setenv("FANOUT_AWS_CLIENT", "crt")
    aws.reset_clients()
    port = urlsplit(os.environ["AWS_ENDPOINT_URL"]).port
    task = aws.s3_head_object(s3_bucket)
    aws.clients("s3").sync.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert aws.clients("s3").native() is not None, "awscrt is in the dev requirements"
    # Clients that earlier tests in this process dropped may still hold connections to the
    # endpoint until they are collected: those are not the crt path's.
    earlier = _established_to(port)
    for round_ in range(10):
        # Every other round runs more workers than the pool keeps (64): the connections
        # beyond it are closed as they come back, and must be closed by the time it returns too.
        workers = 16 if round_ % 2 else 80
        assert [r["ContentLength"] for r in lambda_fanout.map(task, ["k"] * (2 * workers), strategy="threads",
                                                              max_workers=workers)] == [1] * (2 * workers)
        assert _established_to(port) - earlier  # the control: the crt path pooled its connections
        aws.renew_pools()
        assert _established_to(port) - earlier == set()


def test_forget_floor_keeps_what_was_learned_about_concurrency():
    from lambda_fanout._limiter import Limiter

    now = [0.0]
    limiter = Limiter(64, clock=lambda: now[0])
    for _ in range(200):
        started = now[0]
        now[0] += 0.01
        limiter.sample(started, now[0], limiter.limit - 1)
    limit, peak = limiter.limit, limiter.peak
    assert limiter._floor is not None and limit > 1
    limiter.forget_floor()
    assert limiter._floor is None and limiter._smooth is None
    assert (limiter.limit, limiter.peak) == (limit, peak)


def test_processes_reads_the_vcpus_at_every_call(monkeypatch):
    """Nothing caches the vCPU count: a restored copy on a host with another share uses that host's."""
    from lambda_fanout._procpool import vcpus

    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    for quota in (3.0, 4.5):  # the cgroup CPU quota, as the restored host's kernel reports it
        monkeypatch.setitem(vcpus.__globals__, "cgroup_cpus", lambda *_, quota=quota, **__: quota)
        assert lambda_fanout.get_strategy("processes").max_workers == math.ceil(quota)


# -- ./build.sh invoke --snapstart, on the built layer -------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_sh_invoke_snapstart_end_to_end(layer_build):
    """The CLI on the built zip under Python 3.12: a snapshot, two restores, nothing frozen met."""
    import json
    import re

    if layer_build[0].find_interpreter("3.12") is None:
        pytest.skip("no python3.12 on this machine")
    cmd = [sys.executable, "-m", "lambda_fanout_dev.invoke", "--python", "3.12", "--layer-zip",
           layer_build[1]["path"], "--snapstart", "--handler", "objects.handler", "--task-root",
           os.path.join(ROOT, "examples", "local"), "--repeat", "2", "--timeout", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "== snapshot taken: init" in out and out.count("== restore ") == 2
    assert out.count("Restore Duration") == 2 and "Init Duration" not in out
    assert out.count("(cold): ok") == 2 and out.count("(warm): ok") == 2
    assert "request(s) after the restores, 0 met a frozen connection" in out
    draws = [json.loads(m)["draw"] for m in re.findall(r'^\{\n.*?^\}$', out, flags=re.M | re.S)]
    assert len(draws) == 4 and len(set(draws)) == 4, draws


def test_build_sh_invoke_refuses_no_restores():
    proc = subprocess.run([sys.executable, "-m", "lambda_fanout_dev.invoke", "--handler", "a.b", "--snapstart",
                           "--restores", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--restores must be at least 1" in proc.stderr, proc.stderr
