"""template.yaml: the Distributed Map writes its results to S3, the layer build fails early
without its zip, and the sample events fit the functions and the state machine."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

import staging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "template.yaml")
EVENTS = os.path.join(ROOT, "examples", "events")


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    decoded, matches = decode(TEMPLATE)
    assert not matches, matches
    return decoded


def fan_out_state(template: dict) -> dict:
    return template["Resources"]["FanoutStateMachine"]["Properties"]["Definition"]["States"]["FanOut"]


def statements(template: dict, resource: str) -> list[dict]:
    return [s for p in template["Resources"][resource]["Properties"]["Policies"] for s in p["Statement"]]


def test_distributed_map_writes_its_results_to_s3_with_the_iam_that_needs(template):
    writer = fan_out_state(template)["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"]["Bucket"] == {"Ref": "DataBucket"}
    prefix = writer["Parameters"]["Prefix"]
    assert prefix and "*" not in prefix
    # The state machine's role may write (multipart included) under that prefix, and only there.
    needed = {"s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
    granted = [s for s in statements(template, "FanoutStateMachine") if needed & set(s["Action"])]
    assert len(granted) == 1 and set(granted[0]["Action"]) == needed
    assert granted[0]["Resource"] == {"Fn::Sub": f"${{DataBucket.Arn}}/{prefix}/*"}


def test_the_worker_keeps_its_items_and_batch_input_contract(template):
    state = fan_out_state(template)
    assert state["ItemBatcher"]["BatchInput"] == {"prefix.$": "$.prefix"}
    task = state["ItemProcessor"]["States"]["ProcessBatch"]
    assert task["Parameters"]["Payload.$"] == "$" and task["OutputPath"] == "$.Payload"
    worker = template["Resources"]["MapWorkerFunction"]["Properties"]
    assert worker["Handler"] == "lambda_fanout.handler.handler"


def test_description_names_the_zip_the_layer_is_built_from(template):
    assert "./build.sh layer --universal" in template["Description"]
    layer = template["Resources"]["FanoutLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "WorkingDirectory": "."}
    text = Path(ROOT, layer["Properties"]["ContentUri"], "Makefile").read_text()
    assert "LAYER_ZIP := dist/lambda-fanout-layer-universal.zip" in text
    assert "build-FanoutLayer:" in text


def run_layer_target(cwd, artifacts) -> subprocess.CompletedProcess:
    # What sam build runs for FanoutLayer: make in the project root (WorkingDirectory).
    makefile = os.path.join(ROOT, "layer", "sam", "Makefile")
    return subprocess.run(["make", "--makefile", makefile, "build-FanoutLayer", f"ARTIFACTS_DIR={artifacts}"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_layer_build_fails_early_without_the_zip_and_unpacks_it_when_there(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    proc = run_layer_target(tmp_path, artifacts)
    assert proc.returncode != 0
    assert "dist/lambda-fanout-layer-universal.zip, which is missing" in proc.stderr
    assert "./build.sh layer --universal" in proc.stderr
    assert list(artifacts.iterdir()) == []
    (tmp_path / "dist").mkdir()
    with zipfile.ZipFile(tmp_path / "dist" / "lambda-fanout-layer-universal.zip", "w") as zf:
        zf.writestr("python/lambda_fanout/__init__.py", "LAYER = True\n")
    proc = run_layer_target(tmp_path, artifacts)
    assert proc.returncode == 0, proc.stderr
    assert (artifacts / "python" / "lambda_fanout" / "__init__.py").read_text() == "LAYER = True\n"


def load(name: str) -> dict:
    with open(os.path.join(EVENTS, name)) as f:
        return json.load(f)


def test_sample_events_fit_what_they_are_for(template):
    from lambda_fanout import batch

    sqs = batch.detect(load("sqs_records.json"))
    assert sqs.source == "sqs" and len(sqs.records) == 2
    worker = batch.detect(load("map_worker_batch.json"))
    assert worker.source == "distributed-map" and all("Key" in item for item in worker.records)
    # The state machine reads $.prefix for both the listing and each batch's BatchInput.
    start = load("state_machine_input.json")
    state = fan_out_state(template)
    assert state["ItemReader"]["Parameters"]["Prefix.$"] == "$.prefix" and isinstance(start["prefix"], str)
    assert load("map_worker_batch.json")["BatchInput"] == {"prefix": start["prefix"]}
    assert isinstance(load("s3_fanout.json")["keys"], list)
    bench = load("bench.json")
    assert set(bench) <= {"workloads", "items", "workers", "rounds", "quick", "seed"}


def test_the_sqs_sample_runs_through_the_zero_code_handler(tmp_path):
    # examples/events/sqs_records.json through lambda_fanout.handler with a record
    # handler that fails the second message: the reply names that message only.
    import sys
    import textwrap

    (tmp_path / "records.py").write_text(textwrap.dedent('''
        import json

        def process(record):
            if json.loads(record["body"])["order"] == 2:
                raise ValueError("order 2 is refused")
    '''))
    code = ("import json, sys; from lambda_fanout.handler import handler; "
            "print('RESULT ' + json.dumps(handler(json.load(open(sys.argv[1])), None)))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": staging.python_dir(),
           "LAMBDA_TASK_ROOT": str(tmp_path), "FANOUT_RECORD_HANDLER": "records.process"}
    proc = subprocess.run([sys.executable, "-c", code, os.path.join(EVENTS, "sqs_records.json")], env=env,
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    second = load("sqs_records.json")["Records"][1]["messageId"]
    assert json.loads(proc.stdout.split("RESULT ", 1)[1]) == {"batchItemFailures": [{"itemIdentifier": second}]}


def test_the_max_workers_parameter_defaults_as_the_library_and_takes_what_it_takes(template):
    import re

    from lambda_fanout import ConfigError
    from lambda_fanout._config import DEFAULT_MAX_WORKERS, Settings

    parameter = template["Parameters"]["FanoutMaxWorkers"]
    assert parameter["Default"] == str(DEFAULT_MAX_WORKERS)
    pattern = re.compile(parameter["AllowedPattern"])
    for value in ["auto", "auto:1", "auto:64", "auto:1024", "1", "16", "999", "1009", "1019", "1024"]:
        assert Settings.resolve(strategy="threads", environ={"FANOUT_MAX_WORKERS": value}) and pattern.fullmatch(value), value
    for value in ["0", "abc", "auto:0", "1e3", "-1", "", "1025", "1030", "2000", "auto:1025"]:
        with pytest.raises(ConfigError):
            Settings.resolve(strategy="threads", environ={"FANOUT_MAX_WORKERS": value})
        assert not pattern.fullmatch(value), value
