"""The zero-code handler, run in a fresh interpreter with a record handler in a temporary task root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import batches
import lambda_fanout
import staging

PYTHON_DIR = staging.python_dir()

RECORD_MODULE = textwrap.dedent('''
    import base64
    import json
    from lambda_fanout import Task

    def kafka(record):
        n = json.loads(base64.b64decode(record["value"]))["n"]
        if n % 3 == 0:
            raise ValueError("multiples of three fail")
        return n

    async def akafka(record):
        return kafka(record)

    process_kafka = Task(kafka, akafka)

    def plain(record):
        body = json.loads(record["body"])
        if body["n"] % 3 == 0:
            raise ValueError("multiples of three fail")
        return body["n"]

    async def aprocess(record):
        return plain(record)

    process = Task(plain, aprocess)
    not_callable = 42
    unpicklable = lambda record: plain(record)
''')


@pytest.fixture
def task_root(tmp_path):
    (tmp_path / "app.py").write_text(RECORD_MODULE)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "records.py").write_text(RECORD_MODULE)
    (tmp_path / "broken.py").write_text("raise RuntimeError('import-time failure')\n")
    return tmp_path


#: What Lambda sets when the function's Handler is the zero-code handler: importing it is the init.
AS_HANDLER = {"_HANDLER": "lambda_fanout.handler.handler"}


def run_handler(task_root, env: dict, event: dict | None, *, lambda_env: dict = AS_HANDLER,
                code: str = "") -> subprocess.CompletedProcess:
    code = code or textwrap.dedent('''
        import json, sys
        from lambda_fanout.handler import handler
        event = json.loads(sys.stdin.read())
        print("RESULT " + json.dumps(handler(event, None)))
    ''')
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_") and k != "_HANDLER"}
    full_env.update({"PYTHONPATH": PYTHON_DIR, "LAMBDA_TASK_ROOT": str(task_root), **lambda_env, **env})
    return subprocess.run([sys.executable, "-c", code], input=json.dumps(event or {}), env=full_env,
                          cwd="/", capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spec", ["app.process", "pkg/records.process"])
@pytest.mark.parametrize("workers", ["4", "auto:8"])
def test_sqs_batch_through_the_zero_code_handler(task_root, strategy_name, spec, workers):
    check_sqs_run(task_root, strategy_name, spec, workers)


def test_coroutine_record_handler_under_asyncio(task_root):
    check_sqs_run(task_root, "asyncio", "app.aprocess", "auto")


@pytest.mark.parametrize("spec,expected", [
    ("app.aprocess", "asyncio"),  # only an async form (an async def)
    ("app.plain", "threads"),  # only a sync form
    ("app.process", lambda_fanout.DEFAULT_STRATEGY),  # a Task with both
])
def test_unset_strategy_follows_the_record_handlers_form(task_root, spec, expected):
    # Lambda's init resolves the handler (importing it is the init); the strategy it keeps is reported.
    code = textwrap.dedent('''
        import json, sys
        from lambda_fanout import handler
        event = json.loads(sys.stdin.read())
        reply = handler.handler(event, None)
        print("RESULT " + json.dumps([handler.init()[1].name, reply]))
    ''')
    proc = run_handler(task_root, {"FANOUT_RECORD_HANDLER": spec}, batches.sqs(10), code=code)
    assert proc.returncode == 0, proc.stderr
    name, result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert name == expected
    assert result == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in (0, 3, 6, 9)]}


def check_sqs_run(task_root, strategy_name, spec, workers):
    event = batches.sqs(10)
    proc = run_handler(task_root, {"FANOUT_RECORD_HANDLER": spec, "FANOUT_STRATEGY": strategy_name,
                                   "FANOUT_MAX_WORKERS": workers}, event)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in (0, 3, 6, 9)]}


@pytest.mark.parametrize("env,fragment", [
    ({}, "FANOUT_RECORD_HANDLER is not set"),
    ({"FANOUT_RECORD_HANDLER": ""}, "FANOUT_RECORD_HANDLER is set to an empty value ''"),
    ({"FANOUT_RECORD_HANDLER": "process"}, "FANOUT_RECORD_HANDLER='process' is not of the form module.function"),
    ({"FANOUT_RECORD_HANDLER": "app."}, "is not of the form module.function"),
    ({"FANOUT_RECORD_HANDLER": "nosuch.process"}, "module 'nosuch' could not be imported"),
    ({"FANOUT_RECORD_HANDLER": "broken.process"}, "import-time failure"),
    ({"FANOUT_RECORD_HANDLER": "app.missing"}, "has no attribute 'missing'"),
    ({"FANOUT_RECORD_HANDLER": "app.not_callable"}, "is an int, not a function"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_STRATEGY": "thread"}, "Did you mean 'threads'"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_MAX_WORKERS": "-3"}, "FANOUT_MAX_WORKERS"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_METRICS": "maybe"}, "FANOUT_METRICS"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_FIFO_ON_FAILURE": "stop"}, "FANOUT_FIFO_ON_FAILURE"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_RAISE_ON_ALL_FAILED": "maybe"}, "FANOUT_RAISE_ON_ALL_FAILED"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_MAX_WORKERS": "auto:0"}, "'auto:N'"),
    ({"FANOUT_RECORD_HANDLER": "app.aprocess", "FANOUT_STRATEGY": "threads"}, "use FANOUT_STRATEGY=asyncio"),
    ({"FANOUT_RECORD_HANDLER": "app.plain", "FANOUT_STRATEGY": "asyncio"},
     "FANOUT_RECORD_HANDLER='app.plain' has none"),
])
def test_bad_settings_fail_at_init(task_root, env, fragment):
    proc = run_handler(task_root, env, None)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and fragment in proc.stderr, proc.stderr
    assert "RESULT" not in proc.stdout
    # At import, before any event: the traceback runs through the module's import, not a call.
    assert re.search(r'handler\.py", line \d+, in <module>', proc.stderr), proc.stderr
    assert ", in handler\n" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("env,bad_setting,mismatch", [
    ({"FANOUT_STRATEGY": "asyncio", "FANOUT_RECORD_HANDLER": "app.plain", "FANOUT_MAX_WORKERS": "0"},
     "FANOUT_MAX_WORKERS", "FANOUT_RECORD_HANDLER='app.plain' has none"),
    ({"FANOUT_STRATEGY": "processes", "FANOUT_RECORD_HANDLER": "app.unpicklable", "FANOUT_LOG_FAILURES": "maybe"},
     "FANOUT_LOG_FAILURES", "FANOUT_RECORD_HANDLER='app.unpicklable': strategy 'processes'"),
    ({"FANOUT_STRATEGY": "threads", "FANOUT_RECORD_HANDLER": "app.aprocess", "FANOUT_METRICS": "perhaps"},
     "FANOUT_METRICS", "FANOUT_RECORD_HANDLER='app.aprocess': strategy 'threads'"),
], ids=["asyncio-sync-only", "processes-unpicklable", "threads-coroutine"])
def test_a_record_handler_the_strategy_cannot_run_is_listed_with_the_other_bad_settings(
        task_root, env, bad_setting, mismatch):
    """README: "Every bad setting is listed in the one error, so one deploy shows every mistake"."""
    proc = run_handler(task_root, env, None)
    assert proc.returncode != 0 and "RESULT" not in proc.stdout
    assert "ConfigError: 2 settings are not valid:" in proc.stderr, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if line.startswith("- ")]
    assert len(problems) == 2, proc.stderr
    assert bad_setting in problems[0] and mismatch in problems[1], problems


def test_imported_by_other_code_it_resolves_nothing_until_called(task_root):
    """Not the function's Handler (a handler of its own calls it, a test): the import
    resolves nothing, and the first call fails with the same error."""
    env = {"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_STRATEGY": "thread", "FANOUT_MAX_WORKERS": "0"}
    code = textwrap.dedent('''
        import lambda_fanout.handler as h
        print("IMPORTED")
        h.handler({"Records": []}, None)
    ''')
    for lambda_env in ({}, {"_HANDLER": "app.handler"}):
        proc = run_handler(task_root, env, None, lambda_env=lambda_env, code=code)
        assert proc.stdout.startswith("IMPORTED") and proc.returncode != 0, (proc.stdout, proc.stderr)
        assert "lambda_fanout.ConfigError: 2 settings are not valid:\n" in proc.stderr, proc.stderr
        assert ", in handler\n" in proc.stderr, proc.stderr


def test_load_builds_a_handler_per_configuration(task_root, monkeypatch):
    """``load(environ)`` is one init from the given settings: several configurations in one process."""
    from lambda_fanout import handler as zero_code

    monkeypatch.syspath_prepend(str(task_root))
    monkeypatch.delitem(sys.modules, "app", raising=False)  # this task root's app, not an earlier test's
    event = batches.sqs(6, ["a", "b", "b", "b", "b", "b"])
    base = {"LAMBDA_TASK_ROOT": str(task_root), "FANOUT_RECORD_HANDLER": "app.process", "FANOUT_MAX_WORKERS": "1"}
    per_group = zero_code.load({**base, "FANOUT_STRATEGY": "threads"})
    whole_batch = zero_code.load({**base, "FANOUT_STRATEGY": "threads", "FANOUT_FIFO_ON_FAILURE": "batch"})
    assert whole_batch(event, None) == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in range(6)]}
    # Per group: record 0 is group a's only record; in group b, 3 fails and 4 and 5 are skipped.
    assert per_group(event, None) == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in (0, 3, 4, 5)]}
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_STRATEGY"):
        zero_code.load({**base, "FANOUT_STRATEGY": "thread"})


def test_handler_init_unpicklable_record_handler_names_the_variable():
    """README (batches): "The record handler, strategy and metrics settings are resolved at init: a missing
    or wrong value fails the function at once with the variable and its value in the message."
    A record handler that processes cannot pickle (a lambda) is such a wrong value.
    """
    env = {**os.environ, **AS_HANDLER, "FANOUT_STRATEGY": "processes", "FANOUT_RECORD_HANDLER": "xproc.lambda_record",
           "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.run([sys.executable, "-c", "import lambda_fanout.handler"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "ConfigError" in proc.stderr
    assert "FANOUT_RECORD_HANDLER" in proc.stderr and "xproc.lambda_record" in proc.stderr, \
        proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("self_managed", [False, True], ids=["msk", "self-managed"])
def test_kafka_batch_through_the_zero_code_handler(task_root, strategy_name, self_managed):
    event = batches.kafka(8, [0, 1, 0, 1, 0, 1, 0, 1], self_managed=self_managed)
    proc = run_handler(task_root, {"FANOUT_RECORD_HANDLER": "app.process_kafka", "FANOUT_STRATEGY": strategy_name,
                                   "FANOUT_MAX_WORKERS": "4"}, event)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    topic = "orders" if not self_managed else "payments"
    # Partition 0 holds 0, 2, 4, 6: 0 fails, the rest of it is not run. Partition 1: 3 fails, then 5 and 7.
    want = [(0, 0), (0, 2), (0, 4), (0, 6), (1, 3), (1, 5), (1, 7)]
    assert result == {"batchItemFailures": [
        {"itemIdentifier": {"partition": f"{topic}-{p}", "offset": batches.KAFKA_OFFSET + i}} for p, i in want]}


def test_batch_settings_through_the_zero_code_handler(task_root):
    """FANOUT_FIFO_ON_FAILURE=batch and FANOUT_RAISE_ON_ALL_FAILED=on, resolved at init."""
    env = {"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_STRATEGY": "threads", "FANOUT_MAX_WORKERS": "1",
           "FANOUT_FIFO_ON_FAILURE": "batch"}
    # Record 0 (group a) fails first: in batch mode group b never starts (per group, only 3 would fail).
    event = batches.sqs(6, ["a", "b", "b", "b", "b", "b"])
    proc = run_handler(task_root, env, event)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in range(6)]}
    proc = run_handler(task_root, {**env, "FANOUT_RAISE_ON_ALL_FAILED": "on"}, event)
    assert proc.returncode != 0 and "BatchError: 6 of 6 sqs records failed" in proc.stderr, proc.stderr


def test_asyncio_with_a_sync_only_record_handler_says_why_and_what_to_do(task_root):
    proc = run_handler(task_root, {"FANOUT_RECORD_HANDLER": "app.plain", "FANOUT_STRATEGY": "asyncio"}, None)
    assert proc.returncode != 0 and "RESULT" not in proc.stdout
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("lambda_fanout.ConfigError: FANOUT_STRATEGY=asyncio"), message
    for why_and_fix in ("could not be cut at the deadline", "retry the whole batch", "async form",
                        "lambda_fanout.Task(process, aprocess)", "FANOUT_STRATEGY=threads"):
        assert why_and_fix in message, (why_and_fix, message)


@pytest.mark.parametrize("function", ["SqsRecordsFunction", "MapWorkerFunction"])
def test_template_record_handlers_run_under_every_strategy_it_offers(function, strategy_name):
    """Each zero-code function in template.yaml passes init under every FANOUT_STRATEGY value it allows."""
    from cfnlint.decode import decode

    template, _ = decode(os.path.join(staging.ROOT, "template.yaml"))
    assert strategy_name in template["Parameters"]["FanoutStrategy"]["AllowedValues"]
    props = template["Resources"][function]["Properties"]
    assert props["Handler"] == "lambda_fanout.handler.handler"
    spec = props["Environment"]["Variables"]["FANOUT_RECORD_HANDLER"]
    code = textwrap.dedent('''
        import lambda_fanout.handler as h
        record_handler, strategy = h.init()
        print("FORMS", record_handler)
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env.update({"PYTHONPATH": PYTHON_DIR, "LAMBDA_TASK_ROOT": os.path.join(staging.ROOT, props["CodeUri"]),
                "FANOUT_RECORD_HANDLER": spec, "FANOUT_STRATEGY": strategy_name, "BUCKET_NAME": "bucket",
                "AWS_DEFAULT_REGION": "us-east-1"})
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, cwd="/", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "forms=sync+async" in proc.stdout, proc.stdout

