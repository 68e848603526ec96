"""`import lambda_fanout` stays light: no asyncio, boto3, botocore, aiobotocore or aiohttp."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lambda_fanout
import staging

HEAVY = ("asyncio", "aiobotocore", "aiohttp", "boto3", "botocore")
PYTHON_DIR = staging.python_dir()


def fresh_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHON_DIR},
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_loads_nothing_heavy():
    loaded = fresh_modules("import lambda_fanout")
    assert not [m for m in HEAVY if m in loaded]


def test_threads_strategy_loads_no_asyncio():
    loaded = fresh_modules("import lambda_fanout; lambda_fanout.map(abs, [-1, -2], strategy='threads')")
    assert not [m for m in HEAVY if m in loaded]


def test_asyncio_loads_when_first_used():
    loaded = fresh_modules("import lambda_fanout; lambda_fanout.get_strategy('asyncio')")
    assert "asyncio" in loaded
    assert not [m for m in HEAVY[1:] if m in loaded]


def test_auto_loads_nothing_heavy():
    loaded = fresh_modules("import os\nos.environ['FANOUT_MAX_WORKERS'] = 'auto'\n"
                           "import lambda_fanout; lambda_fanout.map(abs, [-1, -2], strategy='threads')")
    assert "lambda_fanout._limiter" in loaded
    assert not [m for m in HEAVY if m in loaded]


def test_aws_and_its_crt_profile_load_no_awscrt_until_a_call():
    """awscrt loads when a crt pair first serves an S3 call, not at import or pair lookup."""
    loaded = fresh_modules("import os\nos.environ['FANOUT_AWS_CLIENT'] = 'crt'\n"
                           "import lambda_fanout, lambda_fanout.aws as aws\n"
                           "pair = aws.clients('s3'); task = aws.s3_get_object('bucket')\n"
                           "assert pair.profile == 'crt'")
    assert "lambda_fanout.aws" in loaded
    assert not [m for m in loaded if m == "awscrt" or m.startswith(("awscrt.", "lambda_fanout._crt"))]
    assert not [m for m in HEAVY if m in loaded]
