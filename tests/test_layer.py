"""The layer zip, the SAM template, and the layer attached the way Lambda attaches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

import batches
import lambda_fanout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "template.yaml")


def test_layer_zip_is_reproducible_and_within_limits(layer_build, tmp_path):
    module, first = layer_build
    second = module.build("3.12", "x86_64", tmp_path)
    assert first["sha256"] == second["sha256"], "the same inputs must give a byte-identical zip"
    assert first["zipped"] <= module.ZIPPED_LIMIT and first["unzipped"] <= module.UNZIPPED_LIMIT


def test_layer_contents(layer_build):
    module, result = layer_build
    with zipfile.ZipFile(result["path"]) as zf:
        names = zf.namelist()
        infos = zf.infolist()
    assert names == sorted(names)
    assert all(i.date_time == module.FIXED_TIME for i in infos)
    site = "python/lib/python3.12/site-packages/"
    assert "python/lambda_fanout/__init__.py" in names
    assert "python/lambda_fanout/handler.py" in names and "python/lambda_fanout/bench/runner.py" in names
    assert not [n for n in names if n.startswith("python/lambda_fanout/testing/")], "dev-only code shipped"
    for package in ("botocore", "boto3", "aiobotocore", "aiohttp"):
        assert f"{site}{package}/__init__.py" in names
    assert f"{site}botocore-1.43.117.dist-info/METADATA" in names
    assert f"{site}aiobotocore-3.10.0.dist-info/METADATA" in names
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyi", "/RECORD"))]
    assert any(n.endswith(".cpython-312-x86_64-linux-gnu.so") for n in names), "manylinux wheels for the target"
    if result["bytecode"]:
        assert "python/lambda_fanout/__pycache__/__init__.cpython-312.pyc" in names


def test_universal_layer_serves_every_runtime_and_architecture(layer_universal):
    module, result = layer_universal
    with zipfile.ZipFile(result["path"]) as zf:
        names = zf.namelist()
    assert result["zipped"] <= module.ZIPPED_LIMIT and result["unzipped"] <= module.UNZIPPED_LIMIT
    assert "python/botocore/__init__.py" in names and "python/aiohttp/__init__.py" in names
    assert not [n for n in names if n.endswith(".so")], "a universal layer carries no compiled extension"
    assert not [n for n in names if n.startswith("python/lib/")]
    for version in result["bytecode"]:
        tag = version.replace(".", "")
        assert f"python/lambda_fanout/__pycache__/__init__.cpython-{tag}.pyc" in names


def test_template_is_clean_under_cfn_lint():
    cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    proc = subprocess.run([cfn_lint, TEMPLATE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _template() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(TEMPLATE)
    assert not matches, matches
    return template


def test_template_grants_no_wildcard_actions():
    resources = _template()["Resources"]
    walked = 0
    for name, resource in resources.items():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            assert isinstance(policy, dict) and "Statement" in policy, f"{name}: use inline statements, got {policy!r}"
            for statement in policy["Statement"]:
                assert "NotAction" not in statement and "NotResource" not in statement, name
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                for action in actions:
                    walked += 1
                    assert action != "*" and not action.endswith(":*") and "*" not in action, f"{name}: {action}"
                assert statement.get("Resource") not in ("*", ["*"]), f"{name}: Resource *"
    assert walked >= 10


def test_template_wires_the_functions():
    template = _template()
    params = template["Parameters"]
    assert params["FanoutStrategy"]["AllowedValues"] == list(lambda_fanout.STRATEGIES)
    res = template["Resources"]
    assert res["SqsRecordsFunction"]["Properties"]["Handler"] == "lambda_fanout.handler.handler"
    sqs = res["SqsRecordsFunction"]["Properties"]["Events"]["Messages"]["Properties"]
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert res["BenchmarkFunction"]["Properties"]["Handler"] == "lambda_fanout.bench.runner.lambda_handler"
    fanout = res["FanoutStateMachine"]["Properties"]["Definition"]["States"]["FanOut"]
    assert fanout["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED" and "ItemBatcher" in fanout
    layer = res["FanoutLayer"]["Properties"]
    assert layer["ContentUri"] == "layer/sam/"  # unpacks dist/lambda-fanout-layer-universal.zip (test_template.py)
    assert layer["CompatibleRuntimes"] == ["python3.11", "python3.12", "python3.13"]
    assert layer["CompatibleArchitectures"] == ["x86_64", "arm64"]


RECORDS = textwrap.dedent('''
    import json
    from lambda_fanout import aws, Task

    S3 = aws.clients("s3")

    def put(record):
        S3.sync.put_object(Bucket=BUCKET, Key=record["messageId"], Body=record["body"].encode())

    async def aput(record):
        await S3.aio.put_object(Bucket=BUCKET, Key=record["messageId"], Body=record["body"].encode())

    def fail_some(record):
        if json.loads(record["body"])["n"] % 4 == 0:
            raise ValueError("every fourth fails")

    async def afail_some(record):
        fail_some(record)

    def check(record):
        fail_some(record)
        put(record)

    async def acheck(record):
        fail_some(record)
        await aput(record)

    process = Task(check, acheck)
''')

RUNNER = textwrap.dedent('''
    import json, os, sys
    task_root, opt = sys.argv[1], sys.argv[2]
    version = "%d.%d" % sys.version_info[:2]
    sys.path[:0] = [task_root, os.path.join(opt, f"python/lib/python{version}/site-packages"),
                    os.path.join(opt, "python")]
    import lambda_fanout.handler as h
    event = json.loads(sys.stdin.read())
    result = h.handler(event, None)
    from lambda_fanout._loop import close_all
    close_all()
    origins = {}
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and name.split(".")[0] in ("lambda_fanout", "boto3", "botocore", "aiobotocore", "aiohttp", "records"):
            origins[name.split(".")[0]] = f
    print("RESULT " + json.dumps({"result": result, "origins": origins}))
''')

ATTACH_CASES = [("native", "3.12"), ("universal", "3.11"), ("universal", "3.13")]


@pytest.mark.parametrize("strategy", ["threads", "asyncio"])
@pytest.mark.parametrize("kind,version", ATTACH_CASES)
def test_attach_the_layer_like_lambda(request, build_layer_module, kind, version, strategy, s3_bucket,
                                      aws_endpoint, tmp_path):
    opt = request.getfixturevalue("layer_opt")[0] if kind == "native" else request.getfixturevalue("universal_opt")
    interpreter = build_layer_module.find_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no python{version} on this machine to run the layer with")
    (tmp_path / "records.py").write_text(RECORDS.replace("BUCKET", repr(s3_bucket)))
    event = batches.sqs(12)
    env = {"PATH": os.environ["PATH"], "FANOUT_RECORD_HANDLER": "records.process", "FANOUT_STRATEGY": strategy,
           "FANOUT_MAX_WORKERS": "4", **aws_endpoint.environ()}
    proc = subprocess.run([interpreter, "-S", "-E", "-c", RUNNER, str(tmp_path), str(opt)], input=json.dumps(event),
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert out["result"] == {"batchItemFailures": [{"itemIdentifier": f"msg-{i:05d}"} for i in (0, 4, 8)]}
    # Each form loads only what it needs, and all of it from the layer.
    used = ("boto3", "botocore") if strategy == "threads" else ("aiobotocore", "aiohttp", "botocore")
    for package in ("lambda_fanout",) + used:
        assert out["origins"][package].startswith(str(opt)), (package, out["origins"][package])
    assert out["origins"]["records"].startswith(str(tmp_path))
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws_endpoint.moto_url)
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert stored == {f"msg-{i:05d}" for i in range(12) if i % 4}
