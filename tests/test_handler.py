"""The zero-code handler, run in a fresh interpreter with a record handler in a temporary task root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import batches
import lambda_fanout
import staging

PYTHON_DIR = staging.python_dir()

RECORD_MODULE = textwrap.dedent('''
    import json

    def process(record):
        body = json.loads(record["body"])
        if body["n"] % 3 == 0:
            raise ValueError("multiples of three fail")
        return body["n"]

    async def aprocess(record):
        return process(record)

    not_callable = 42
''')


@pytest.fixture
def task_root(tmp_path):
    (tmp_path / "app.py").write_text(RECORD_MODULE)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "records.py").write_text(RECORD_MODULE)
    (tmp_path / "broken.py").write_text("raise RuntimeError('import-time failure')\n")
    return tmp_path


def run_handler(task_root, env: dict, event: dict | None) -> subprocess.CompletedProcess:
    code = textwrap.dedent('''
        import json, sys
        from lambda_fanout.handler import handler
        event = json.loads(sys.stdin.read())
        print("RESULT " + json.dumps(handler(event, None)))
    ''')
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    full_env.update({"PYTHONPATH": PYTHON_DIR, "LAMBDA_TASK_ROOT": str(task_root), **env})
    return subprocess.run([sys.executable, "-c", code], input=json.dumps(event or {}), env=full_env,
                          cwd="/", capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spec", ["app.process", "pkg/records.process"])
@pytest.mark.parametrize("workers", ["4", "auto:8"])
def test_sqs_batch_through_the_zero_code_handler(task_root, strategy_name, spec, workers):
    check_sqs_run(task_root, strategy_name, spec, workers)


def test_coroutine_record_handler_under_asyncio(task_root):
    check_sqs_run(task_root, "asyncio", "app.aprocess", "auto")


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
    ({"FANOUT_RECORD_HANDLER": "app.not_callable"}, "is a int, not a function"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_STRATEGY": "thread"}, "Did you mean 'threads'"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_MAX_WORKERS": "-3"}, "FANOUT_MAX_WORKERS"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_MAX_WORKERS": "auto:0"}, "'auto:N'"),
    ({"FANOUT_RECORD_HANDLER": "app.process", "FANOUT_METRICS": "yes"}, "FANOUT_METRICS"),
    ({"FANOUT_RECORD_HANDLER": "app.aprocess", "FANOUT_STRATEGY": "threads"}, "use FANOUT_STRATEGY=asyncio"),
])
def test_bad_settings_fail_at_init(task_root, env, fragment):
    proc = run_handler(task_root, env, None)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and fragment in proc.stderr, proc.stderr
    assert "RESULT" not in proc.stdout
