"""Every example under examples/, and the README's 30-second example, runs end to end.

Each runs through `./build.sh invoke`'s entry point (``lambda_fanout_dev.invoke.main``):
the built layer, the real runtime interface client (awslambdaric) against the local
Runtime API, AWS calls to one endpoint for the module (moto behind the latency proxy),
filled by ``--seed``. Each must answer with no failed record.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from lambda_fanout_dev import events, invoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SEED = "bench:20"  # the samples below name at most 20 of the bench's objects


@pytest.fixture(scope="module")
def run(layer_build, endpoint):
    """``run(*args) -> (exit code, output, response)``: one `./build.sh invoke` against the module's endpoint."""
    module, result = layer_build
    if module.find_interpreter(result["python"]) is None:
        pytest.skip(f"no python{result['python']} on this machine")
    mp = pytest.MonkeyPatch()
    for name, value in endpoint.environ().items():
        if name != "AWS_ENDPOINT_URL":
            mp.setenv(name, value)  # what --endpoint-url passes on to the function
    base = ["--python", result["python"], "--layer-zip", result["path"], "--endpoint-url", endpoint.url,
            "--timeout", "30"]

    def run(capsys, *args: str) -> tuple[int, str, object]:
        capsys.readouterr()
        code = invoke.main(base + list(args))
        out = capsys.readouterr().out
        found = re.search(r"-- response --\n(.*?)\nREPORT ", out, re.S)
        return code, out, json.loads(found.group(1)) if found else None

    yield run
    mp.undo()


def assert_no_failure(code: int, out: str) -> None:
    assert code == 0, out
    assert "(cold): ok" in out, out
    # FANOUT_LOG_FAILURES is on locally: any failed record would have its ERROR line.
    assert "settings: FANOUT_METRICS=on, FANOUT_LOG_FAILURES=on (local defaults; in Lambda off, type-only" in out
    assert not re.search(r"lambda_fanout: \S+ (record|item) #\d+", out), out


def test_the_readme_30_second_example_sums_the_sizes_of_the_objects_it_is_notified_of(run, capsys):
    readme = Path(ROOT, "README.md").read_text()
    section = readme[readme.index("## A 30-second example"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert code in Path(EXAMPLES, "s3_fanout", "sizes.py").read_text()  # the file is the README's code
    status, out, response = run(capsys, "--handler", "sizes.handler", "--task-root",
                                os.path.join(EXAMPLES, "s3_fanout"), "--seed", SEED, "--event", "s3:20")
    assert_no_failure(status, out)
    from lambda_fanout.bench.seeding import s3_body, s3_keys

    assert response == {"objects": 20, "total": sum(len(s3_body(k)) for k in s3_keys(20))}
    assert "seed: bucket lambda-fanout-bench and table lambda-fanout-bench, 20 objects and items" in out


def test_s3_fanout_heads_the_keys_it_is_given(run, capsys):
    keys = ["bench/000000", "bench/000001", "bench/000019"]
    status, out, response = run(capsys, "--handler", "app.handler", "--task-root", os.path.join(EXAMPLES, "s3_fanout"),
                                "--seed", SEED, "--event", json.dumps({"keys": keys}))
    assert_no_failure(status, out)
    assert response["objects"] == 3 and response["bytes"] > 0


def test_sqs_records_stores_every_message(run, capsys, endpoint):
    import boto3

    status, out, response = run(capsys, "--handler", "lambda_fanout.handler.handler", "--task-root",
                                os.path.join(EXAMPLES, "sqs_records"), "--env", "FANOUT_RECORD_HANDLER=records.process",
                                "--seed", SEED, "--event", "sqs:20")
    assert_no_failure(status, out)
    assert response == {"batchItemFailures": []}
    s3 = boto3.client("s3", endpoint_url=endpoint.moto_url, region_name="us-east-1")
    stored = s3.get_object(Bucket="lambda-fanout-bench", Key="messages/msg-00019.json")["Body"].read()
    assert json.loads(stored) == {"n": 19}


def test_distributed_map_worker_reads_each_item_of_its_batch(run, capsys):
    status, out, response = run(capsys, "--handler", "lambda_fanout.handler.handler", "--task-root",
                                os.path.join(EXAMPLES, "distributed_map"), "--env", "FANOUT_RECORD_HANDLER=worker.process",
                                "--seed", SEED, "--event", "dmap:20")
    assert_no_failure(status, out)
    assert [item["key"] for item in response] == [f"bench/{i:06d}" for i in range(20)]


@pytest.mark.parametrize("kind", sorted(events.SAMPLES))
def test_local_app_takes_a_record_of_every_sample_source(run, capsys, kind):
    # 20 records: the example's every-25th failure does not come up.
    status, out, response = run(capsys, "--handler", "lambda_fanout.handler.handler", "--task-root",
                                os.path.join(EXAMPLES, "local"), "--env", "FANOUT_RECORD_HANDLER=app.process_record",
                                "--event", f"{kind}:20")
    assert_no_failure(status, out)
    assert response in ({"batchItemFailures": []}, {"batchSize": 20, "succeeded": 20},
                        {"batchSize": 1, "succeeded": 1}, list(range(20)))


def test_local_objects_writes_and_reads_its_own_objects(run, capsys):
    status, out, response = run(capsys, "--handler", "objects.handler", "--task-root", os.path.join(EXAMPLES, "local"))
    assert_no_failure(status, out)
    assert response["objects"] == 32


def test_the_bench_function_runs_its_quick_comparison(run, capsys):
    # examples/bench is the benchmark function's (empty) code folder: its handler is in the layer.
    event = {"seed": True, "quick": True, "workloads": ["s3"], "items": 20, "workers": [3], "rounds": 1}
    status, out, response = run(capsys, "--handler", "lambda_fanout.bench.runner.lambda_handler", "--task-root",
                                os.path.join(EXAMPLES, "bench"), "--memory-mb", "1769", "--event", json.dumps(event))
    assert_no_failure(status, out)
    ran = [row for row in response["rows"] if not row.get("skipped")]
    assert ran and all(row["check_ok"] and row["failed_items"] == 0 for row in ran), ran


def test_a_seed_script_runs_against_the_endpoint_before_the_function(run, capsys, tmp_path):
    (tmp_path / "seed.py").write_text(
        "import boto3\n"
        "s3 = boto3.client('s3')  # AWS_ENDPOINT_URL: the local endpoint\n"
        "s3.create_bucket(Bucket='seeded-by-script')\n"
        "s3.put_object(Bucket='seeded-by-script', Key='hello', Body=b'12345')\n"
        "print('wrote hello')\n")
    (tmp_path / "app.py").write_text(
        "import boto3\n"
        "def handler(event, context):\n"
        "    return boto3.client('s3').head_object(Bucket='seeded-by-script', Key='hello')['ContentLength']\n")
    status, out, response = run(capsys, "--handler", "app.handler", "--task-root", str(tmp_path),
                                "--seed", str(tmp_path / "seed.py"))
    assert_no_failure(status, out)
    assert response == 5 and f"seed: ran {tmp_path / 'seed.py'}\nwrote hello" in out
