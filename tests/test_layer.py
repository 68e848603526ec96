"""The layer zip, the SAM template, and the layer attached the way Lambda attaches it."""

from __future__ import annotations

import contextlib
import json
import os
import re
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
    assert not [n for n in names if n.startswith("python/lambda_fanout/testing/") or "lambda_fanout_dev" in n], \
        "dev-only code shipped"
    for package in ("botocore", "boto3", "aiobotocore", "aiohttp", "awscrt"):
        assert f"{site}{package}/__init__.py" in names
    assert f"{site}awscrt-0.38.0.dist-info/METADATA" in names  # the native zips' FANOUT_AWS_CLIENT=crt
    assert f"{site}botocore-1.43.117.dist-info/METADATA" in names
    assert f"{site}aiobotocore-3.10.0.dist-info/METADATA" in names
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyi", "/RECORD"))]
    assert not [n for n in names if "awslambdaric" in n or "runtime_client" in n], "Lambda's runtime client shipped"
    # lambda_fanout.powertools ships; Powertools itself is the function's own (or its public layer's).
    assert "python/lambda_fanout/powertools.py" in names
    assert not [n for n in names if "aws_lambda_powertools" in n or "pydantic" in n], "Powertools shipped"
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
    assert not [n for n in names if n.startswith("python/awscrt")], "awscrt belongs in the native zips only"
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


# -- the built layer under Lambda's runtime interface client (awslambdaric) --------------------
#
# Each case runs the built zip as Lambda runs it (lambda_fanout_dev.local_lambda): the
# zip unpacked and mounted read-only at /opt, awslambdaric against the local Runtime API,
# Lambda's environment and path order, and the runtime's own older boto3 after /opt/python.

PYTHONS = ("3.11", "3.12", "3.13")
VARIANTS = [("native", v) for v in PYTHONS] + [("universal", v) for v in PYTHONS]


class Attached:
    """A layer zip unpacked as /opt, the Python to run it with and that Python's runtime packages."""

    def __init__(self, opt, python: str, runtime) -> None:
        self.opt, self.python, self.runtime = opt, python, runtime

    def function(self, task_root, *, env: dict, handler: str = "lambda_fanout.handler.handler",
                 timeout_s: float = 30.0):
        from lambda_fanout_dev.local_lambda import LocalFunction

        return LocalFunction(handler, task_root=task_root, opt=self.opt, python=self.python, runtime=self.runtime,
                             env=env, timeout_s=timeout_s)


@pytest.fixture(params=VARIANTS, ids=lambda v: f"{v[0]}-py{v[1]}")
def attached(request, build_layer_module, lambda_runtime) -> Attached:
    """Each built zip (native per Python, universal under each Python) with its runtime."""
    from lambda_fanout_dev.local_lambda import unpack_layer

    kind, version = request.param
    if build_layer_module.find_interpreter(version) is None:
        pytest.skip(f"no python{version} on this machine to run the layer with")
    if kind == "native":
        zip_path = request.getfixturevalue("native_layer")(version)["path"]
    else:
        zip_path = request.getfixturevalue("layer_universal")[1]["path"]
    return Attached(unpack_layer(zip_path), version, lambda_runtime(version))


@contextlib.contextmanager
def started(fn):
    """``fn`` running, after an init that must succeed (its logs in the failure message); stopped on exit."""
    with fn:
        assert fn.wait_ready(), ("init failed", fn.init_error, fn.lines)
        yield fn


RECORDS = textwrap.dedent('''
    import base64, json, os, sys
    from lambda_fanout import aws, Task

    S3 = aws.clients("s3")
    _told = set()

    def position(record):
        if "body" in record:
            return json.loads(record["body"])["n"]
        if "kinesis" in record:
            return json.loads(base64.b64decode(record["kinesis"]["data"]))["n"]
        return int(record["dynamodb"]["NewImage"]["n"]["N"])

    def key(record):
        return record.get("messageId") or record.get("kinesis", {}).get("sequenceNumber") \\
            or record["dynamodb"]["SequenceNumber"]

    try:  # Lambda's /opt is read-only
        open(os.path.join(os.path.dirname(aws.__file__), "written-at-init"), "w").close()
        print("OPT WRITABLE")
    except OSError as exc:
        print("OPT READ-ONLY", exc.errno)

    def tell(form):
        # Once per form: where each package the function used was imported from.
        if form not in _told:
            _told.add(form)
            origins = {n: m.__file__ for n, m in list(sys.modules.items())
                       if n in ("lambda_fanout", "boto3", "botocore", "aiobotocore", "aiohttp", "records")}
            print("ORIGINS " + json.dumps(origins))

    def check(record):
        if position(record) % 4 == 0:
            raise ValueError("every fourth fails")
        S3.sync.put_object(Bucket=BUCKET, Key=key(record), Body=b"x")
        tell("sync")

    async def acheck(record):
        if position(record) % 4 == 0:
            raise ValueError("every fourth fails")
        await S3.aio.put_object(Bucket=BUCKET, Key=key(record), Body=b"x")
        tell("async")

    process = Task(check, acheck)
''')


def _records_root(tmp_path, bucket: str):
    root = tmp_path / "task"
    root.mkdir()
    (root / "records.py").write_text(RECORDS.replace("BUCKET", repr(bucket)))
    return root


def _origins(lines: list[str]) -> dict:
    return json.loads(next(line for line in lines if line.startswith("ORIGINS "))[len("ORIGINS "):])


def _failed(response: dict) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def _older(runtime) -> str:
    """The version of the runtime's own botocore, checked older than the layer's."""
    import glob

    (info,) = glob.glob(os.path.join(str(runtime), "botocore-*.dist-info"))
    version = os.path.basename(info)[len("botocore-"):-len(".dist-info")]
    assert tuple(map(int, version.split("."))) < (1, 43, 117), version
    return version


@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_zero_code_handler_under_the_runtime_client(attached, strategy, s3_bucket, aws_endpoint, tmp_path):
    from lambda_fanout_dev import emf, events

    env = {"FANOUT_RECORD_HANDLER": "records.process", "FANOUT_STRATEGY": strategy, "FANOUT_MAX_WORKERS": "4",
           "FANOUT_METRICS": "on", **aws_endpoint.environ()}
    sources = {"sqs": events.sqs(12), "fifo": events.fifo(12), "kinesis": events.kinesis(12),
               "ddb": events.dynamodb(12)}
    stored = set()
    with started(attached.function(_records_root(tmp_path, s3_bucket), env=env)) as fn:
        logs = []
        for name, event in sources.items():
            source = "dynamodb" if name == "ddb" else "kinesis" if name == "kinesis" else "sqs"
            inv = fn.invoke(event)
            assert inv.status == "ok", (name, inv.status, inv.response, inv.logs)
            records = event["Records"]
            assert _failed(inv.response) == [events.identifier(source, r) for r in records[::4]], name
            stored |= {events.identifier(source, r) for i, r in enumerate(records) if i % 4}
            docs = emf.documents(inv.logs)
            assert len(docs) == 1 and not emf.problems(docs[0]), (name, inv.logs)
            # FIFO: record 0 fails and holds back 4 and 8 of its group, which count as not run.
            ran_and_failed = 1 if name == "fifo" else 3
            assert docs[0]["FunctionName"] == fn.function_name, docs[0]
            assert (docs[0]["Strategy"], docs[0]["Items"], docs[0]["Succeeded"], docs[0]["Failed"],
                    docs[0]["Unprocessed"]) == (strategy, 12, 9, ran_and_failed, 3 - ran_and_failed), docs[0]
            logs += inv.logs
    origins = _origins(logs)
    # The layer's packages win: the task root comes first, then /opt, then the runtime's older copy.
    used = ("aiobotocore", "aiohttp", "botocore") if strategy == "asyncio" else ("boto3", "botocore")
    for package in ("lambda_fanout",) + used:
        assert origins[package].startswith(fn.opt + "/python/"), (package, origins[package])
    assert origins["records"].startswith(fn.task_root)
    assert _older(attached.runtime)
    # /opt is read-only where the machine allows a private mount namespace, as in Lambda.
    assert ("OPT READ-ONLY 30" if fn.read_only else "OPT WRITABLE") in fn.lines, (fn.notes, fn.lines)
    s3 = __import__("boto3").client("s3", endpoint_url=aws_endpoint.moto_url)
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])} == stored


@pytest.mark.parametrize("strategy", ["threads", "asyncio"])
def test_fifty_warm_invocations_keep_threads_and_fds_flat(attached, strategy, s3_bucket, aws_endpoint, tmp_path):
    from lambda_fanout_dev import events

    env = {"FANOUT_RECORD_HANDLER": "records.process", "FANOUT_STRATEGY": strategy, "FANOUT_MAX_WORKERS": "4",
           **aws_endpoint.environ()}
    event = events.sqs(8)
    with started(attached.function(_records_root(tmp_path, s3_bucket), env=env)) as fn:
        seen = []
        for n in range(50):
            inv = fn.invoke(event)
            assert inv.status == "ok" and len(_failed(inv.response)) == 2, (n, inv.response, inv.logs)
            if n in (4, 49):
                assert fn.wait_idle()
                seen.append((_settled(fn.threads), _settled(fn.open_fds)))
    (threads_warm, fds_warm), (threads_end, fds_end) = seen
    assert threads_end <= threads_warm and fds_end <= fds_warm, seen


def _settled(probe, samples: int = 10) -> int:
    # A thread joined by Python can still be exiting in the kernel for a moment; a leak
    # stays, so the lowest of a few readings 20 ms apart is the count that matters.
    import time

    readings = []
    for _ in range(samples):
        readings.append(probe())
        time.sleep(0.02)
    return min(readings)


HANGS = textwrap.dedent('''
    import json, threading

    def process(record):
        if json.loads(record["body"])["n"] == 5:
            threading.Event().wait()  # hangs for good
''')


def test_deadline_from_the_header_cuts_a_hung_record(attached, tmp_path):
    root = tmp_path / "task"
    root.mkdir()
    (root / "hangs.py").write_text(HANGS)
    env = {"FANOUT_RECORD_HANDLER": "hangs.process", "FANOUT_STRATEGY": "threads"}
    with started(attached.function(root, env=env, timeout_s=2.0)) as fn:
        for _ in range(2):  # the second invocation runs with the first one's hung thread still there
            inv = fn.invoke(batches.sqs(20))
            assert inv.status == "ok", (inv.status, inv.logs)
            assert _failed(inv.response) == ["msg-00005"]
            # Answered before Lambda's deadline (the margin is 500 ms): no timeout, no whole-batch retry.
            assert inv.answered_epoch_ms < inv.deadline_ms, (inv.answered_epoch_ms, inv.deadline_ms)


def test_bad_setting_fails_init_naming_the_variable(attached, tmp_path):
    root = tmp_path / "task"
    root.mkdir()
    (root / "hangs.py").write_text(HANGS)
    env = {"FANOUT_RECORD_HANDLER": "hangs.process", "FANOUT_MAX_WORKERS": "lots"}
    with attached.function(root, env=env) as fn:
        assert not fn.wait_ready()
        assert fn.init_error["errorType"] == "ConfigError", fn.init_error
        assert "FANOUT_MAX_WORKERS" in fn.init_error["errorMessage"] and "'lots'" in fn.init_error["errorMessage"]
        assert fn.proc.wait(10) != 0


# -- a function's own top-level `strategies` package never meets the layer's ------------------------

OWN_STRATEGIES = textwrap.dedent('''
    WHO = "the function's own WHAT"
    STRATEGIES = ("mine",)

    def strategy_class(name=None):
        raise AssertionError("the layer used the function's own strategies")
''')

OWN_RECORDS = textwrap.dedent('''
    import json, os, sys
    import lambda_fanout
    import strategies
    from lambda_fanout import Task

    async def adouble(x):
        return 2 * x

    DOUBLE = Task(lambda x: 2 * x, adouble)

    def number(record):
        n = json.loads(record["body"])["n"]
        if n % 5 == 0:
            raise ValueError("every fifth fails")
        return n

    def plain(record):
        return lambda_fanout.map(DOUBLE, [number(record)], strategy="threads")

    async def aplain(record):
        return await lambda_fanout.amap(DOUBLE, [number(record)], strategy="asyncio")

    process = Task(plain, aplain)

    def handler(event, context):
        values = lambda_fanout.map(DOUBLE, range(event["n"]), context=context)
        return {"values": values, "mine": strategies.WHO, "own_file": strategies.__file__,
                "layer_file": sys.modules["lambda_fanout.strategies"].__file__,
                "used": sorted(n for n in sys.modules if n.startswith("lambda_fanout.strategies."))}
''')


@pytest.mark.parametrize("strategy", ["sequential", "threads", "threads-map", "asyncio"])
def test_task_root_strategies_module_and_package_never_shadow_the_layer(layer_build, lambda_runtime, strategy,
                                                                        tmp_path):
    """Lambda puts the task root first on sys.path: a function's own strategies.py and
    strategies/ package sit ahead of the layer, and neither is what lambda_fanout loads."""
    from lambda_fanout_dev.local_lambda import unpack_layer

    module, result = layer_build
    if module.find_interpreter(result["python"]) is None:
        pytest.skip(f"no python{result['python']} on this machine")
    attached = Attached(unpack_layer(result["path"]), result["python"], lambda_runtime(result["python"]))
    root = tmp_path / "task"
    (root / "strategies").mkdir(parents=True)
    (root / "strategies.py").write_text(OWN_STRATEGIES.replace("WHAT", "strategies.py"))
    (root / "strategies" / "__init__.py").write_text(OWN_STRATEGIES.replace("WHAT", "strategies package"))
    for name in ("threads.py", "aio.py", "base.py"):
        (root / "strategies" / name).write_text("raise AssertionError('the layer imported the function's module')\n")
    (root / "records.py").write_text(OWN_RECORDS)
    env = {"FANOUT_STRATEGY": strategy, "FANOUT_MAX_WORKERS": "3"}
    with started(attached.function(root, env={**env, "FANOUT_RECORD_HANDLER": "records.process"})) as fn:
        inv = fn.invoke(batches.sqs(11))
        assert inv.status == "ok", (inv.response, inv.logs)
        assert _failed(inv.response) == ["msg-00000", "msg-00005", "msg-00010"]
    with started(attached.function(root, env=env, handler="records.handler")) as fn:
        inv = fn.invoke({"n": 40})
        assert inv.status == "ok", (inv.response, inv.logs)
    out = inv.response
    assert out["values"] == [2 * i for i in range(40)]
    assert out["mine"] == "the function's own strategies package"
    assert out["own_file"] == str(root / "strategies" / "__init__.py")
    assert out["layer_file"].startswith(fn.opt + "/python/lambda_fanout/strategies/")
    module = {"sequential": "sequential", "threads": "threads", "threads-map": "threads_map", "asyncio": "aio"}
    assert f"lambda_fanout.strategies.{module[strategy]}" in out["used"]


def test_check_strategies_passes_the_built_zips(layer_build, layer_universal):
    module = layer_build[0]
    for result in (layer_build[1], layer_universal[1]):
        with zipfile.ZipFile(result["path"]) as zf:
            module.check_strategies(zf.namelist())


@pytest.mark.parametrize("damage,fragment", [
    (lambda package: (package / "lambda_fanout" / "strategies" / "threads_map.py").unlink(),
     "lacks strategy modules ['python/lambda_fanout/strategies/threads_map.py']"),
    (lambda package: __import__("shutil").copytree(package / "lambda_fanout" / "strategies", package / "strategies"),
     "holds a top-level strategies package"),
], ids=["missing-module", "top-level-package"])
def test_check_strategies_fails_the_build(build_layer_module, monkeypatch, tmp_path, damage, fragment):
    module = build_layer_module
    copy = module.copy_package

    def damaged_copy(dest):
        copy(dest)
        damage(dest)

    monkeypatch.setattr(module, "copy_package", damaged_copy)
    with pytest.raises(SystemExit, match=re.escape(fragment)):
        module.build("3.12", "x86_64", tmp_path)
    assert not list(tmp_path.glob("*.zip")), "no zip is written when the check fails"
