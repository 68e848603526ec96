"""The guarantees, each proved under faults, hangs, load and bad input.

Every item ends in exactly one of: succeeded, failed (reported), not started before
the deadline (reported). None is lost, none is reported twice.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import re
import sys
import threading
import time
import tracemalloc
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batches
import lambda_fanout
import xproc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def zero_code_handler(monkeypatch, spec: str, strategy: str, workers: int = 8):
    """lambda_fanout.handler as Lambda would load it at init, with these settings."""
    monkeypatch.setenv("FANOUT_RECORD_HANDLER", spec)
    monkeypatch.setenv("FANOUT_STRATEGY", strategy)
    monkeypatch.setenv("FANOUT_MAX_WORKERS", str(workers))
    from lambda_fanout import handler as zero_code

    return zero_code.load()  # a fresh init with the settings above


def sqs_reads(keys: list[str]) -> dict:
    event = batches.sqs(len(keys))
    for record, key in zip(event["Records"], keys):
        record["body"] = json.dumps({"key": key})
    return event


# -- faults end to end ------------------------------------------------------------------------

FAULT_RATES = st.fixed_dictionaries({
    "503": st.sampled_from([0.0, 0.05, 0.2]),
    "500": st.sampled_from([0.0, 0.05, 0.2]),
    "reset": st.sampled_from([0.0, 0.05, 0.15]),
    "stall": st.sampled_from([0.0, 0.05, 0.1]),
})
FAULT_TALLY: dict = {}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rates=FAULT_RATES, seed=st.integers(0, 2**16))
def test_faults_lose_no_record(strategy_name, aws_endpoint, s3_bucket, monkeypatch, rates, seed):
    keys = [f"faults/{i:03d}" for i in range(16)]
    lambda_fanout.map(lambda_fanout.aws.s3_put_object(s3_bucket), [(k, k.encode()) for k in keys], strategy="threads")
    monkeypatch.setenv("FAULT_BUCKET", s3_bucket)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    # Far above a served response's time, so a timeout means a stall, not a slow success.
    monkeypatch.setenv(lambda_fanout.aws.ENV_READ_TIMEOUT_S, "1.0")
    lambda_fanout.aws.reset_clients()
    handler = zero_code_handler(monkeypatch, "xproc.READ", strategy_name)
    event = sqs_reads(keys)
    aws_endpoint.reset_stats()
    aws_endpoint.configure(faults=rates, seed=seed, stall_s=2.5)
    try:
        out = handler(event, None)
    finally:
        aws_endpoint.configure()
    failed = [f["itemIdentifier"] for f in out["batchItemFailures"]]
    assert len(failed) == len(set(failed)), "a record reported twice"
    every = {r["messageId"]: json.loads(r["body"])["key"] for r in event["Records"]}
    assert set(failed) <= set(every)
    log = aws_endpoint.stats()["log"]
    served = {e["path"].split("/", 2)[2] for e in log if e["fault"] is None and e.get("status") == 200}
    for message_id, key in every.items():
        ok = message_id not in failed
        # Succeeded exactly when the proxy served its object: never both, never neither.
        assert ok == (key in served), (message_id, ok, rates)
    tally = FAULT_TALLY.setdefault(strategy_name, {"patterns": 0, "records": 0, "failed": 0, "faults": 0, "lost": 0})
    tally["patterns"] += 1
    tally["records"] += len(every)
    tally["failed"] += len(failed)
    tally["faults"] += sum(1 for e in log if e["fault"])
    print(f"\nFAULTS {strategy_name} {json.dumps(tally)}")


# -- hung record handlers ---------------------------------------------------------------------

def test_hung_record_handler_returns_in_time(strategy_name, fake_context, monkeypatch):
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "200")
    handler = zero_code_handler(monkeypatch, "xproc.HANG", strategy_name, workers=2)
    event = batches.sqs(40)
    xproc.RELEASE.clear()
    xproc.STARTED.clear()
    ctx = fake_context(600)
    try:
        t0 = time.monotonic()
        out = handler(event, ctx)
        elapsed = time.monotonic() - t0
        assert ctx.get_remaining_time_in_millis() > 0, f"returned after the deadline ({elapsed:.2f} s)"
        reported = [f["itemIdentifier"] for f in out["batchItemFailures"]]
        started = set(xproc.STARTED)
        # Reported: the hung record and exactly the records that never started.
        assert reported == ["msg-00000"] + [f"msg-{i:05d}" for i in range(40) if i not in started]
        if strategy_name in ("threads", "asyncio"):
            assert reported == ["msg-00000"], "the rest should finish on the other worker"
        if strategy_name == "sequential":
            assert started == {0}, "one at a time: nothing starts behind the hung record"
        snapshot = json.dumps(out)
    finally:
        xproc.RELEASE.set()
    time.sleep(0.05)  # the blocked thread resumes and finishes now; its result must land nowhere
    assert json.dumps(out) == snapshot
    # The next (warm) invocation is unaffected by the late result.
    xproc.RELEASE.clear()
    again = batches.sqs(5)
    for record in again["Records"]:
        record["body"] = json.dumps({"n": 100 + int(record["messageId"][-5:])})
    assert handler(again, fake_context(5000)) == {"batchItemFailures": []}


def test_hung_record_and_unstarted_ones_are_all_reported(strategy_name, fake_context, monkeypatch):
    """A long queue behind a hang: the hung record and every record not started are reported."""
    monkeypatch.setenv(lambda_fanout.ENV_DEADLINE_MARGIN_MS, "200")
    monkeypatch.setattr(xproc, "HUNG_INDEX", 0)
    handler = zero_code_handler(monkeypatch, "xproc.HANG", strategy_name, workers=1)
    event = batches.sqs(10)
    xproc.RELEASE.clear()
    try:
        out = handler(event, fake_context(500))
    finally:
        xproc.RELEASE.set()
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [f"msg-{i:05d}" for i in range(10)]


# -- soak: warm invocations leak nothing ------------------------------------------------------

def _resources() -> tuple[int, int, int]:
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return threading.active_count(), len(os.listdir("/proc/self/fd")), rss


SOAK_INVOCATIONS = 1000
SOAK_REPORT: dict = {}


def test_soak_1000_warm_invocations(strategy_name, aws_endpoint, s3_bucket, monkeypatch, caplog):
    lambda_fanout.map(lambda_fanout.aws.s3_put_object(s3_bucket), [("soak/ok", b"ok")], strategy="threads")
    monkeypatch.setenv("FAULT_BUCKET", s3_bucket)
    handler = zero_code_handler(monkeypatch, "xproc.READ", strategy_name, workers=4)
    event = sqs_reads(["soak/ok", "soak/missing", "soak/ok"])  # two succeed, one fails each time
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(50):  # warm-up: clients, pools, loop
            handler(event, None)
        gc.collect()
        before = _resources()
        for _ in range(SOAK_INVOCATIONS):
            out = handler(event, None)
            assert out == {"batchItemFailures": [{"itemIdentifier": "msg-00001"}]}
        gc.collect()
        after = _resources()
    SOAK_REPORT[strategy_name] = {"threads": (before[0], after[0]), "fds": (before[1], after[1]),
                                  "rss_mb": (round(before[2] / 2**20, 1), round(after[2] / 2**20, 1))}
    print(f"\nSOAK {strategy_name} {json.dumps(SOAK_REPORT[strategy_name])}")
    assert after[0] == before[0], "threads leaked"
    assert after[1] <= before[1] + 2, "file descriptors leaked"
    assert after[2] - before[2] < 8 * 2**20, "RSS grew by 8 MB or more"
    bad = [str(w.message) for w in caught if issubclass(w.category, (ResourceWarning, RuntimeWarning))]
    assert not bad, bad
    logged = caplog.text
    for phrase in ("Task was destroyed but it is pending", "Event loop is closed", "Unclosed", "Connection pool is full"):
        assert phrase not in logged


# -- volume -------------------------------------------------------------------------------------

def test_million_item_generator_stays_small(strategy_name):
    n = 1_000_000

    async def azero(x):
        return 0

    task = lambda_fanout.Task(_zero, azero)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = lambda_fanout.map(task, (i for i in range(n)), strategy=strategy_name, max_workers=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == n and out[-1] == 0
    beyond = peak - base - sys.getsizeof(out)
    print(f"\nVOLUME {strategy_name} peak {(peak - base) / 2**20:.2f} MB, result list "
          f"{sys.getsizeof(out) / 2**20:.2f} MB, beyond it {beyond / 2**20:.2f} MB")
    assert beyond < 32 * 2**20


def _zero(x):
    return 0


def _fail_on_7(record):
    if record["messageId"].endswith("7"):
        raise ValueError("ends in 7")


def test_ten_thousand_record_sqs_batch(strategy_name):
    event = batches.sqs(10_000, [None if i % 3 else f"g{i % 7}" for i in range(10_000)])

    async def ahandle(record):
        _fail_on_7(record)

    out = lambda_fanout.process_batch(event, lambda_fanout.Task(_fail_on_7, ahandle), strategy=strategy_name, max_workers=16)
    failed = [f["itemIdentifier"] for f in out["batchItemFailures"]]
    # Reference: a failure, plus the later records of its FIFO group.
    groups = [None if i % 3 else f"g{i % 7}" for i in range(10_000)]
    want, broken = [], set()
    for i, g in enumerate(groups):
        mid = f"msg-{i:05d}"
        if (g is not None and g in broken) or mid.endswith("7"):
            want.append(mid)
            if g is not None:
                broken.add(g)
    assert failed == want


# -- bad input ----------------------------------------------------------------------------------

BAD_VALUES = {
    "FANOUT_STRATEGY": ["", "-1", "abc", "THREADS\u00a0", "fastest"],
    "FANOUT_MAX_WORKERS": ["", "-1", "abc", "0", "1e3", "99999"],
    "FANOUT_DEADLINE_MARGIN_MS": ["", "-1", "abc", "10s"],
    "FANOUT_METRICS": ["", "-1", "abc", "2", "maybe"],
    "FANOUT_LOG_FAILURES": ["", "abc", "verbose", "type_only"],
    "FANOUT_METRICS_NAMESPACE": ["", " "],
    "FANOUT_RECORD_HANDLER": ["", "-1", "abc", "App.Process", "nosuch.fn"],
    "FANOUT_AWS_READ_TIMEOUT_S": ["", "-1", "abc", "0", "\u0663", "\uff11\uff16", "1_0", "\u20073"],
    "FANOUT_AWS_CONNECT_TIMEOUT_S": ["", "-1", "abc", "0", "\u0663", "\uff11\uff16", "1_0", "\u20073"],
    "FANOUT_AWS_CLIENT": ["", "-1", "abc", "LEAN\t", "1"],
}


@pytest.mark.parametrize("variable,value", [(k, v) for k, vs in BAD_VALUES.items() for v in vs])
def test_every_bad_setting_fails_at_init_naming_it(variable, value, monkeypatch, tmp_path):
    (tmp_path / "app.py").write_text("def process(record):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "app", raising=False)  # this folder's app, not an earlier test's
    monkeypatch.setenv("FANOUT_RECORD_HANDLER", "app.process")
    monkeypatch.setenv(variable, value)
    ran = []
    with pytest.raises(lambda_fanout.ConfigError) as info:
        from lambda_fanout import handler as zero_code

        zero_code.load()  # what Lambda's init runs
        ran.append("init passed")
    msg = str(info.value)
    assert variable in msg and repr(value) in msg, msg
    assert ran == []


def _raise_on_second(exc, record):
    if record["messageId"] == "msg-00002":
        raise exc()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_escape_process_batch(strategy_name, exc):
    handle = functools.partial(_raise_on_second, exc)

    async def ahandle(record):
        handle(record)

    with pytest.raises(exc):
        lambda_fanout.process_batch(batches.sqs(5), lambda_fanout.Task(handle, ahandle), strategy=strategy_name)
    if strategy_name == "asyncio":
        from lambda_fanout._loop import reset_loop

        reset_loop()


# -- security -----------------------------------------------------------------------------------

def test_layer_requirements_are_pinned_with_hashes():
    from pathlib import Path

    text = Path(ROOT, "layer", "requirements.txt").read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)(==[^\s;\\]+)?", text, re.M)
    assert requirements
    for name, pin in requirements:
        assert pin, f"{name} is not pinned with =="
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
    for block in blocks:
        if block.strip() and not block.lstrip().startswith("#"):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_layer_build_installs_with_require_hashes(build_layer_module, monkeypatch, tmp_path):
    # The command the layer build really runs, for a native and the universal zip.
    import subprocess

    commands = []

    def record(cmd, *args, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(build_layer_module.subprocess, "run", record)
    build_layer_module.install_dependencies(tmp_path / "native", "3.12", "x86_64")
    build_layer_module.install_dependencies(tmp_path / "universal", "universal", "any")
    assert len(commands) == 2
    for cmd in commands:
        assert "--require-hashes" in cmd and str(build_layer_module.REQUIREMENTS) in cmd


SECRET = "AKIAFAKESECRET9876-topsecret-payload"


def _reject(record):
    # The error's own text carries the payload, as real errors often do.
    raise ValueError(f"rejected {record['body'] if isinstance(record, dict) else record}")


def test_no_payload_in_logs_errors_or_metrics(strategy_name, monkeypatch, capsys, caplog):
    # With the default settings. Identifiers (messageId here) are metadata: they go back
    # to Lambda and into the failure log line, so operators can match the DLQ.
    monkeypatch.setenv("FANOUT_METRICS", "on")
    caplog.set_level(logging.DEBUG)
    event = batches.sqs(6)
    for record in event["Records"]:
        record["body"] = json.dumps({"card": SECRET})

    async def ahandle(record):
        _reject(record)

    task = lambda_fanout.Task(_reject, ahandle)
    texts = []
    out = lambda_fanout.process_batch(event, task, strategy=strategy_name)
    assert len(out["batchItemFailures"]) == 6  # identifiers go back to Lambda, and only there
    with pytest.raises(lambda_fanout.TaskError) as info:
        lambda_fanout.map(task, [r["body"] for r in event["Records"]], strategy=strategy_name)
    texts.append(str(info.value))
    s3_event = batches.sample("s3")
    s3_event["Records"][0]["s3"]["object"]["key"] = SECRET
    with pytest.raises(lambda_fanout.BatchError) as info:
        lambda_fanout.process_batch(s3_event, task, strategy=strategy_name)
    texts.append(str(info.value))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert captured.out.count('"_aws"') == 3  # the metrics were written
    failure_lines = [r for r in caplog.records if r.name == "lambda_fanout" and r.levelname == "ERROR"]
    assert len(failure_lines) == 6 + 1 + 1  # one per failed record, and one for the failure map raised
    assert "msg-00000" in caplog.text and "ValueError" in caplog.text
    for text in texts:
        assert SECRET not in text
