"""Shared fixtures: one parametrised fixture runs each test under every strategy."""

from __future__ import annotations

import functools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (hstrategies, fakes)

import lambda_fanout  # noqa: E402
from fakes import FakeContext  # noqa: E402
from once import once_per_run  # noqa: E402
from lambda_fanout.strategies import strategy_class  # noqa: E402


# -- the serial tests: the ones that time a deadline or a ratio run alone -------------------------

def pytest_addoption(parser):
    parser.addoption("--serial-tests", choices=("only", "skip"),
                     help="run only the tests marked serial, or all but them (./build.sh test runs the others "
                          "on every core, then these one at a time)")


def pytest_collection_modifyitems(config, items):
    # A Lambda context's remaining time runs on the real clock: a test that takes one times a deadline.
    for item in items:
        if "fake_context" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.serial)
    choice = config.getoption("--serial-tests")
    if choice is None:
        return
    keep, drop = [], []
    for item in items:
        (keep if (item.get_closest_marker("serial") is not None) == (choice == "only") else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(params=lambda_fanout.STRATEGIES)
def strategy_name(request) -> str:
    """Each strategy name in turn (``processes`` with its workers started and ready)."""
    if request.param == "processes":
        _processes_ready()
    return request.param


def _processes_ready() -> None:
    # Tests time deadlines of a few hundred ms; a worker killed by the previous test is
    # replaced in the background, and its start-up (measured by the bench, not here)
    # must not eat that budget.
    import xproc
    from lambda_fanout.bench.workloads import sleep_task

    # Each worker imports what the tests' tasks need now, not inside a test's deadline.
    for task in (xproc.identity, sleep_task(0)):
        lambda_fanout.map(task, range(32), strategy="processes", max_workers=8)


@pytest.fixture(params=[s for s in lambda_fanout.STRATEGIES if s != "sequential"])
def concurrent_strategy(request) -> str:
    """Each strategy that runs items concurrently (not the sequential reference)."""
    if request.param == "processes":
        _processes_ready()
    return request.param


@pytest.fixture(params=[s for s in lambda_fanout.STRATEGIES if not strategy_class(s).needs_async_form])
def sync_strategy(request) -> str:
    """Each strategy that calls a task's blocking form (a plain record handler's)."""
    if request.param == "processes":
        _processes_ready()
    return request.param


@pytest.fixture(autouse=True)
def _clean_fanout_env(monkeypatch):
    """No test sees FANOUT_* settings from the environment it was started in."""
    for name in list(os.environ):
        if name.startswith("FANOUT_") or name == "AWS_LAMBDA_FUNCTION_NAME":
            monkeypatch.delenv(name)


@pytest.fixture
def fake_context():
    """A factory for Lambda contexts with a given remaining time in ms."""
    return FakeContext


# -- a real AWS-like endpoint: moto's server behind the fault proxy ---------------------

@pytest.fixture(scope="session")
def endpoint():
    """moto's server and the latency/fault proxy, in their own processes, for the session."""
    from lambda_fanout_dev.endpoint import LocalEndpoint

    with LocalEndpoint() as ep:
        yield ep


@pytest.fixture
def aws_endpoint(endpoint, monkeypatch):
    """Point boto3 and aiobotocore at the endpoint; a clean proxy and fresh clients per test.

    On teardown the asyncio strategy's loop (and every aiobotocore client bound to it)
    is closed, and any ResourceWarning that produces fails the test.
    """
    import gc
    import warnings

    from lambda_fanout import aws as fanout_aws
    from lambda_fanout._loop import reset_loop

    for name, value in endpoint.environ().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    endpoint.configure()
    endpoint.reset_stats()
    fanout_aws.reset_clients()
    yield endpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reset_loop()
        fanout_aws.reset_clients()
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning) or "Unclosed" in str(w.message)]
    assert not leaks, [str(w.message) for w in leaks]
    endpoint.configure()
    endpoint.forget()  # the test may have written past the proxy


@pytest.fixture
def s3_bucket(aws_endpoint):
    """A fresh bucket on the endpoint; its name."""
    import uuid

    import boto3

    name = f"fanout-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=aws_endpoint.moto_url).create_bucket(Bucket=name)
    return name


@pytest.fixture
def ddb_table(aws_endpoint):
    """A fresh DynamoDB table with a string partition key ``pk``; its name."""
    import uuid

    import boto3

    name = f"fanout-{uuid.uuid4().hex[:12]}"
    boto3.client("dynamodb", endpoint_url=aws_endpoint.moto_url).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


# -- the layer zips, each built once per run (shared by pytest-xdist's workers) ----------------

LAYER_PYTHON = "3.12"


@pytest.fixture(scope="session")
def build_layer_module():
    """layer/build_layer.py, loaded as a module."""
    import staging

    return staging.build_layer_module()


@pytest.fixture(scope="session")
def native_layer(build_layer_module, pytestconfig, tmp_path_factory):
    """A factory: the native layer zip (x86_64) for a Python version ("3.11"), built once per run."""
    def build(version: str) -> dict:
        return once_per_run(pytestconfig, tmp_path_factory, f"dist-{version}",
                            lambda out: build_layer_module.build(version, "x86_64", out))

    return functools.cache(build)


@pytest.fixture(scope="session")
def layer_build(build_layer_module, native_layer):
    """./build.sh layer's default zip (Python 3.12, x86_64), built into a temporary folder."""
    return build_layer_module, native_layer(LAYER_PYTHON)


@pytest.fixture(scope="session")
def layer_universal(build_layer_module, pytestconfig, tmp_path_factory):
    """./build.sh layer --universal's zip, built into a temporary folder."""
    return build_layer_module, once_per_run(pytestconfig, tmp_path_factory, "dist-universal",
                                            lambda out: build_layer_module.build("universal", "any", out))


def _unpack(path, tmp_path_factory):
    import zipfile

    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(path) as zf:
        zf.extractall(opt)
    return opt


@pytest.fixture(scope="session")
def layer_opt(layer_build, tmp_path_factory):
    """The native layer unpacked into an /opt-like folder; (opt path, target interpreter or None)."""
    module, result = layer_build
    return _unpack(result["path"], tmp_path_factory), module.find_interpreter(LAYER_PYTHON)


@pytest.fixture(scope="session")
def lambda_runtime():
    """A factory: Lambda's runtime packages (awslambdaric, an older boto3) for a Python version."""
    from lambda_fanout_dev.local_lambda import runtime_dir

    return runtime_dir
