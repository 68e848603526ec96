"""The local Runtime API, the sample events, the EMF checks and `./build.sh invoke`.

The Runtime API is driven by the real runtime interface client (awslambdaric, from the
dev venv) in its own process; `./build.sh invoke` runs end to end on the built layer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from lambda_fanout_dev import emf, events
from lambda_fanout_dev.runtime_api import RuntimeApi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = textwrap.dedent('''
    import os, time
    print("init log line")
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("init went wrong: " + os.environ["FAIL_INIT"])

    def handler(event, context):
        print("handling", context.aws_request_id)
        if event.get("raise"):
            raise ValueError("asked to fail")
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("exit"):
            os._exit(3)
        return {"event": event, "request_id": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "arn": context.invoked_function_arn}
''')


class Function:
    """awslambdaric from the dev venv, serving app.handler against a RuntimeApi."""

    def __init__(self, tmp_path, **env) -> None:
        (tmp_path / "app.py").write_text(APP)
        self.api = RuntimeApi(function_name="unit").start()
        self.proc = subprocess.Popen([sys.executable, "-m", "awslambdaric", "app.handler"], cwd=tmp_path,
                                     env={"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path),
                                          "AWS_LAMBDA_RUNTIME_API": self.api.address, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> str:
        if self.alive():
            self.proc.kill()
        if not self.proc.stdout.closed:
            self.out = self.proc.communicate()[0]
        self.api.stop()
        return self.out


@pytest.fixture
def function(tmp_path):
    made = []

    def make(**env) -> Function:
        made.append(Function(tmp_path, **env))
        return made[-1]

    yield make
    for fn in made:
        fn.close()


def test_events_and_answers_round_trip(function):
    fn = function()
    assert fn.api.wait_ready(30, fn.alive)
    first = fn.api.invoke({"n": 1}, timeout_s=5, alive=fn.alive)
    assert first.status == "ok" and first.response["event"] == {"n": 1}
    assert first.response["request_id"] == first.request_id
    assert first.response["arn"] == fn.api.function_arn
    # The context's remaining time comes from the deadline header: at most the timeout.
    assert 0 < first.response["remaining_ms"] <= 5000
    assert first.duration_ms is not None and first.answered_epoch_ms <= first.deadline_ms
    second = fn.api.invoke({"raise": True}, timeout_s=5, alive=fn.alive)
    assert second.status == "error" and second.response["errorType"] == "ValueError"
    assert second.response["errorMessage"] == "asked to fail"
    third = fn.api.invoke({"n": 3}, timeout_s=5, alive=fn.alive)  # the environment survives an error
    assert third.status == "ok" and third.request_id != first.request_id
    out = fn.close()
    assert "init log line" in out and out.count("handling") == 3


def test_init_error_is_recorded_and_ends_waits(function):
    fn = function(FAIL_INIT="bad setting X")
    assert not fn.api.wait_ready(30, fn.alive)
    assert fn.api.init_error["errorType"] == "RuntimeError"
    assert "init went wrong: bad setting X" in fn.api.init_error["errorMessage"]
    inv = fn.api.invoke({}, timeout_s=5, alive=fn.alive)
    assert inv.status in ("init-error", "exited")


def test_timeout_and_exit_end_the_wait(function):
    fn = function()
    assert fn.api.wait_ready(30, fn.alive)
    start = time.monotonic()
    late = fn.api.invoke({"sleep": 30}, timeout_s=1, alive=fn.alive)
    assert late.status == "timeout" and late.response is None
    assert time.monotonic() - start < 20  # ended by the timeout, not by the 30 s sleep
    fn.close()
    fn = function()
    assert fn.api.wait_ready(30, fn.alive)
    gone = fn.api.invoke({"exit": True}, timeout_s=30, alive=fn.alive)
    assert gone.status == "exited" and fn.proc.wait(10) == 3


def test_unknown_paths_and_ids_are_refused():
    import urllib.error
    import urllib.request

    with RuntimeApi() as api:
        base = f"http://{api.address}/2018-06-01/runtime"
        for path, data in (("/nothing", None), ("/invocation/nope/response", b"{}")):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(urllib.request.Request(base + path, data=data), timeout=5)
            caught.value.close()
            assert caught.value.code in (400, 404)


@pytest.mark.parametrize("kind,source", [("sqs", "sqs"), ("fifo", "sqs"), ("kinesis", "kinesis"),
                                         ("ddb", "dynamodb")])
def test_sample_events_carry_their_position(kind, source):
    from lambda_fanout.batch import process_batch

    event = events.from_spec(f"{kind}:7")
    assert [events.position(r) for r in event["Records"]] == list(range(7))
    ids = [events.identifier(source, r) for r in event["Records"]]
    assert len(set(ids)) == 7
    # The zero-code batch layer accepts each sample and reports by the source's identifier.
    out = process_batch(event, lambda r: 1 / (events.position(r) % 3), strategy="sequential")
    failed = [0, 3, 6]
    if kind == "fifo":
        # Four groups, round-robin: a failure holds back the rest of its group (0 -> 4).
        assert [r["attributes"]["MessageGroupId"] for r in event["Records"][:5]] == [
            "group-0", "group-1", "group-2", "group-3", "group-0"]
        failed = [0, 3, 4, 6]
    assert out == {"batchItemFailures": [{"itemIdentifier": ids[i]} for i in failed]}


def test_the_kafka_sample_carries_its_position():
    event = events.from_spec("kafka:7")
    records = events.kafka_records(event)
    assert sorted(events.position(r) for r in records) == list(range(7))
    assert sorted(events.position_of(r) for r in records) == list(range(7))
    assert len(event["records"]) == 3  # three partitions, round robin


@pytest.mark.parametrize("kind,source,reply", [("s3", "s3", {"batchSize": 7, "succeeded": 7}),
                                               ("sns", "sns", {"batchSize": 7, "succeeded": 7}),
                                               ("dmap", "distributed-map", list(range(7)))])
def test_the_s3_sns_and_distributed_map_samples_carry_their_position(kind, source, reply):
    from lambda_fanout.batch import detect, process_batch

    event = events.from_spec(f"{kind}:7")
    shape = detect(event)
    assert shape.source == source and [events.position(r) for r in shape.records] == list(range(7))
    assert events.objects_named(event) == (0 if kind == "sns" else 7)
    assert process_batch(event, events.position, strategy="sequential") == reply


def test_the_eventbridge_sample_is_one_event_for_the_nth_object():
    from lambda_fanout.batch import detect

    event = events.from_spec("eventbridge:5")
    assert detect(event).source == "eventbridge" and events.position(event) == 4
    assert event["detail"]["object"]["key"] == "bench/000004" and events.objects_named(event) == 5


@pytest.mark.parametrize("spec,fragment", [("sqs", "KIND:N"), ("mq:3", "KIND one of sqs, fifo, kinesis, ddb, kafka"),
                                           ("sqs:0", "from 1 to 10000"), ("sqs:x", "got 'x'")])
def test_bad_sample_specs_say_what_is_accepted(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        events.from_spec(spec)


def test_invoke_event_spec_superscript_count():
    """README (invoke): a generated sample is KIND:N; bad input gets "a clear error: what was wrong,
    what was expected". load_event's other bad counts say "N must be a whole number from 1 to 10000",
    and so does a count written in superscript digits."""
    from lambda_fanout_dev.invoke import load_event

    with pytest.raises(ValueError, match="N must be a whole number"):
        load_event("sqs:²")


def test_emf_checks_follow_the_specification(monkeypatch):
    from lambda_fanout import _metrics

    line = _metrics.emf_line("threads", {"Items": 3, "Succeeded": 2, "Failed": 1, "Unprocessed": 0,
                                         "DurationMs": 1.5, "Workers": 4})
    (doc,) = emf.documents(["START", line, '{"not": "emf"}', "END"])
    assert emf.problems(doc) == []
    assert "threads" in emf.table([doc]).splitlines()[1]
    broken = json.loads(line)
    broken["_aws"]["Timestamp"] = "now"
    broken["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "Apples"
    broken["Strategy"] = 7
    del broken["Failed"]
    found = " | ".join(emf.problems(broken))
    for fragment in ("Timestamp", "'Apples'", "dimension 'Strategy'", "metric 'Failed'"):
        assert fragment in found, (fragment, found)


def test_build_sh_invoke_end_to_end(layer_build, tmp_path):
    """The CLI on the built zip: logs, EMF table, response, REPORT lines, warm repeats."""
    zip_path = layer_build[1]["path"]
    if layer_build[0].find_interpreter("3.12") is None:
        pytest.skip("no python3.12 on this machine")
    cmd = [sys.executable, "-m", "lambda_fanout_dev.invoke", "--python", "3.12", "--layer-zip", zip_path,
           "--handler", "lambda_fanout.handler.handler", "--task-root", os.path.join(ROOT, "examples", "local"),
           "--env", "FANOUT_RECORD_HANDLER=app.process_record", "--event", "sqs:50", "--repeat", "3",
           "--timeout", "10", "--memory-mb", "512"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("== invocation ") == 3 and "(cold): ok" in out and "(warm): ok" in out
    assert out.count("REPORT Duration") == 3 and out.count("Init Duration") == 1
    assert "Memory Size 512 MB" in out and "per million invocations" in out
    assert out.count('"itemIdentifier": "msg-00024"') == 3 and '"msg-00049"' in out
    # The EMF table's rows: FunctionName, Strategy, then the counts.
    rows = [line.split()[1:] for line in out.splitlines() if line.split()[:2] == ["local-function", "threads"]]
    assert len(rows) == 3 and all(r[1:5] == ["50", "48", "2", "0"] for r in rows), rows
    assert "invalid EMF" not in out
    assert "read-only" in out or "NOT read-only" in out
    assert "3 invocations: cold" in out


def test_build_sh_invoke_reports_an_init_error(layer_build):
    if layer_build[0].find_interpreter("3.12") is None:
        pytest.skip("no python3.12 on this machine")
    cmd = [sys.executable, "-m", "lambda_fanout_dev.invoke", "--python", "3.12", "--layer-zip",
           layer_build[1]["path"], "--handler", "lambda_fanout.handler.handler", "--task-root",
           os.path.join(ROOT, "examples", "local"), "--env", "FANOUT_RECORD_HANDLER=app.nothing", "--event", "sqs:2",
           "--endpoint-url", "http://127.0.0.1:9"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "== init failed ==" in proc.stdout and "has no attribute 'nothing'" in proc.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--handler", "app"], "module.function"),
    (["--handler", "a.b", "--event", "mq:3"], "neither a file nor a sample"),
    (["--handler", "a.b", "--memory-mb", "64"], "--memory-mb must be from 128"),
    (["--handler", "a.b", "--env", "NOEQUALS"], "NAME=VALUE"),
    (["--handler", "a.b", "--task-root", "/no/such/dir"], "is not a folder"),
    (["--handler", "a.b", "--seed", "nothing.py"], "neither 'bench' (or bench:N) nor a file"),
    (["--handler", "a.b", "--seed", "bench:0"], "N must be a whole number from 1 to 10000"),
])
def test_build_sh_invoke_refuses_bad_arguments(args, fragment):
    proc = subprocess.run([sys.executable, "-m", "lambda_fanout_dev.invoke", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr


def test_without_a_private_mount_namespace_it_says_so_and_still_runs(layer_build, lambda_runtime, monkeypatch,
                                                                     tmp_path):
    from lambda_fanout_dev import local_lambda

    module, result = layer_build
    if module.find_interpreter(result["python"]) is None:
        pytest.skip(f"no python{result['python']} on this machine")
    monkeypatch.setattr(local_lambda, "private_mounts", lambda: "unshare -m is not allowed here (needs root)")
    (tmp_path / "app.py").write_text("import lambda_fanout\n"
                                     "def handler(event, context):\n"
                                     "    return {'from': lambda_fanout.__file__}\n")
    opt = local_lambda.unpack_layer(result["path"])
    fn = local_lambda.LocalFunction("app.handler", task_root=tmp_path, opt=opt, python=result["python"],
                                    runtime=lambda_runtime(result["python"]))
    assert fn.notes == [f"/opt is NOT read-only: unshare -m is not allowed here (needs root); "
                        f"the layer runs from {opt}"]
    assert fn.command()[0] == fn.interpreter
    with fn:
        assert fn.wait_ready(), fn.lines
        inv = fn.invoke({})
    assert inv.status == "ok" and inv.response["from"] == f"{opt}/python/lambda_fanout/__init__.py"
