"""A function that bundles its own botocore ahead of the layer's (Lambda's task root comes first).

Each case runs a fresh interpreter whose sys.path starts with a task root holding a
botocore package, as a deployment package that bundles one would; the real botocore and
aiobotocore (the layer's pins) come after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import staging

PYTHON_DIR = staging.python_dir()


def _bundle(root, version: str):
    package = root / "botocore"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = '{version}'\n")
    return root


def run(code: str, task_root=None, **env) -> subprocess.CompletedProcess:
    path = [str(task_root)] if task_root else []
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    full_env.update({"PYTHONPATH": os.pathsep.join(path + [PYTHON_DIR]), "AWS_DEFAULT_REGION": "us-east-1", **env})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd="/",
                          capture_output=True, text=True, timeout=60)


def _installed(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


@pytest.fixture
def shadowed(tmp_path):
    """A task root bundling botocore 1.29.0, older than aiobotocore accepts."""
    return _bundle(tmp_path / "task", "1.29.0")


def test_asyncio_fails_at_init_naming_both_versions_the_copy_and_the_fix(shadowed):
    proc = run('''
        import lambda_fanout
        try:
            lambda_fanout.get_strategy("asyncio")
        except lambda_fanout.ConfigError as exc:
            print("ERROR", exc)
    ''', shadowed)
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.partition("ERROR ")[2]
    requirement = next(r for r in __import__("importlib.metadata").metadata.requires("aiobotocore")
                       if r.startswith("botocore"))
    for fragment in ("1.29.0", str(shadowed / "botocore"), f"aiobotocore {_installed('aiobotocore')}",
                     f"the layer's botocore {_installed('botocore')}", requirement[len("botocore"):].split(";")[0],
                     "Remove boto3 and botocore from the deployment package",
                     f"botocore=={_installed('botocore')}"):
        assert fragment in message, (fragment, message)


def test_the_zero_code_handler_fails_at_init_under_asyncio(shadowed):
    (shadowed / "records.py").write_text(textwrap.dedent('''
        from lambda_fanout import Task
        async def aprocess(record):
            return None
        process = Task(lambda record: None, aprocess)
    '''))
    # Imported as the function's Handler (Lambda sets _HANDLER), where importing it is the init.
    proc = run("import lambda_fanout.handler", shadowed, FANOUT_RECORD_HANDLER="records.process",
               FANOUT_STRATEGY="asyncio", LAMBDA_TASK_ROOT=str(shadowed), _HANDLER="lambda_fanout.handler.handler")
    assert proc.returncode != 0
    assert "ConfigError: The asyncio strategy and lambda_fanout.aws's async calls cannot run" in proc.stderr
    assert "1.29.0" in proc.stderr


def test_aws_async_calls_fail_with_the_same_error_before_any_request(shadowed):
    proc = run('''
        import asyncio
        from lambda_fanout import aws, ConfigError
        try:
            asyncio.run(aws.clients("s3").aio.list_buckets())
        except ConfigError as exc:
            print("ERROR", exc)
    ''', shadowed)
    assert "ERROR The asyncio strategy and lambda_fanout.aws's async calls cannot run" in proc.stdout, proc.stderr
    assert "1.29.0" in proc.stdout


def test_sync_strategies_log_one_warning_and_run(shadowed):
    proc = run('''
        import lambda_fanout
        for strategy in ("sequential", "threads", "threads-map", "threads"):
            assert lambda_fanout.map(abs, [-1, -2], strategy=strategy) == [1, 2]
        print("OK")
    ''', shadowed)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "shadows the layer's" in line]
    assert len(warnings) == 1, proc.stderr
    assert "1.29.0" in warnings[0] and "Remove boto3 and botocore" in warnings[0]


@pytest.mark.parametrize("bundled", [None, "layer"])
def test_no_error_or_warning_without_a_mismatch(tmp_path, bundled):
    # Nothing bundled, or a bundled copy pinned to the layer's version: both are fine.
    root = _bundle(tmp_path / "task", _installed("botocore")) if bundled else None
    proc = run('''
        import lambda_fanout
        lambda_fanout.get_strategy("asyncio")
        assert lambda_fanout.map(abs, [-1], strategy="threads") == [1]
        print("OK")
    ''', root)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr
    assert "shadows" not in proc.stderr


def test_a_newer_bundled_botocore_is_refused_too(tmp_path):
    root = _bundle(tmp_path / "task", "9.0.0")
    proc = run('''
        import lambda_fanout
        try:
            lambda_fanout.get_strategy("asyncio")
        except lambda_fanout.ConfigError as exc:
            print("ERROR", exc)
    ''', root)
    assert "ERROR" in proc.stdout and "9.0.0" in proc.stdout, proc.stderr


def test_the_runtimes_own_older_botocore_after_the_layer_is_no_concern(tmp_path):
    # Lambda's runtime carries its own boto3/botocore after /opt/python: it shadows nothing.
    runtime = _bundle(tmp_path / "var-runtime", "1.29.0")
    proc = run(f'''
        import sys
        sys.path.append({str(runtime)!r})
        import lambda_fanout
        from lambda_fanout import _shadowing
        assert [v for _, v in _shadowing._copies(tuple(sys.path))][-1] == "1.29.0"
        lambda_fanout.get_strategy("asyncio")
        assert lambda_fanout.map(abs, [-1], strategy="threads") == [1]
        print("OK")
    ''')
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr
    assert "shadows" not in proc.stderr
