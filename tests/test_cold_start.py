"""`import lambda_fanout` stays light: no asyncio, boto3, botocore, aiobotocore or aiohttp.

A call loads only what it uses (its own strategy's module, not the others), and every
import written inside a function is there to defer loading, never to hide an import loop.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_fanout
import staging

HEAVY = ("asyncio", "aiobotocore", "aiohttp", "boto3", "botocore")
PYTHON_DIR = staging.python_dir()


def fresh_modules(code: str) -> set[str]:
    out = subprocess.run(
        # The list is taken before json is imported to print it (json loads re, too).
        [sys.executable, "-c", code + "\nimport sys\nloaded = sorted(sys.modules)\nimport json\nprint(json.dumps(loaded))"],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHON_DIR},
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_loads_nothing_heavy():
    loaded = fresh_modules("import lambda_fanout")
    assert not [m for m in HEAVY if m in loaded]


def test_import_loads_no_powertools():
    """Powertools loads with lambda_fanout.powertools only, never with the package or process_batch."""
    loaded = fresh_modules("import lambda_fanout; from lambda_fanout import process_batch")
    assert not [m for m in loaded if m.startswith("aws_lambda_powertools")]


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


def test_process_batch_loads_no_typing():
    """README (Compatibility): process_batch and the zero-code handler import no typing at run time."""
    loaded = fresh_modules("from lambda_fanout import process_batch")
    assert "lambda_fanout.batch" in loaded and "typing" not in loaded


@pytest.mark.parametrize("strategy", ["threads", "processes"])
def test_the_zero_code_handler_init_loads_no_typing(strategy):
    loaded = fresh_modules(f"import os\nos.environ.update(FANOUT_RECORD_HANDLER='json.dumps', FANOUT_STRATEGY='{strategy}')\n"
                           "import lambda_fanout.handler as zero_code\nzero_code.init()")
    assert "lambda_fanout.handler" in loaded and "typing" not in loaded


def test_aws_and_its_crt_profile_load_no_awscrt_until_a_call():
    """awscrt loads when a crt pair first serves an S3 call, not at import or pair lookup."""
    loaded = fresh_modules("import os\nos.environ['FANOUT_AWS_CLIENT'] = 'crt'\n"
                           "import lambda_fanout, lambda_fanout.aws as aws\n"
                           "pair = aws.clients('s3'); task = aws.s3_get_object('bucket')\n"
                           "assert pair.profile == 'crt'")
    assert "lambda_fanout.aws" in loaded
    assert not [m for m in loaded if m == "awscrt" or m.startswith(("awscrt.", "lambda_fanout._crt"))]
    assert not [m for m in HEAVY if m in loaded]


# -- what a call loads, and why an import is written inside a function -------------------

#: The shipped library's source: python/lambda_fanout (without the dev-only parts) and
#: the top-level strategies/ it ships as lambda_fanout.strategies.
SOURCE_ROOT = Path(staging.ROOT)
DEV_ONLY: set[str] = set()  # the dev tools live outside the package (dev/)


def library_modules() -> dict[str, Path]:
    """Module name -> file, for every module of the shipped library."""
    found = {}
    package = SOURCE_ROOT / "python" / "lambda_fanout"
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[0] in DEV_ONLY | {"strategies"}:
            continue
        found[".".join(("lambda_fanout",) + parts)] = path
    for path in sorted((SOURCE_ROOT / "strategies").glob("*.py")):
        found[f"lambda_fanout.strategies.{path.stem}"] = path
    return {name.removesuffix(".__init__"): path for name, path in found.items()}


def is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its parent is a module, not a package
        return False


def function_local_imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for each import statement inside a function of ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for function in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # from package import name: what loads is the submodule, where name is one.
                found += [(f"{base}.{alias.name}" if node.module is None or is_module(f"{base}.{alias.name}")
                           else base, node.lineno) for alias in node.names]
    return found


def test_every_function_local_import_defers_a_module_import_does_not_load():
    """An import inside a function keeps cold start short only if `import lambda_fanout`
    does not load that module anyway; one that does is either needless or hides an
    import loop, and belongs at the top of its module."""
    # What the interpreter loads before any of our code (its startup, site's .pth files)
    # differs by environment and is left out.
    loaded = fresh_modules("import lambda_fanout") - fresh_modules("pass")
    modules = library_modules()
    assert "lambda_fanout._run" in modules and "lambda_fanout.strategies.base" in modules
    needless = [f"{path.relative_to(SOURCE_ROOT)}:{line} imports {imported}"
                for module, path in modules.items()
                for imported, line in function_local_imports(module, path) if imported in loaded]
    assert needless == []


STRATEGY_MODULES = {"sequential": "sequential", "threads": "threads", "threads-map": "threads_map",
                    "asyncio": "aio", "processes": "processes"}


@pytest.mark.parametrize("strategy", lambda_fanout.STRATEGIES)
def test_a_call_loads_only_its_own_strategy(strategy):
    loaded = fresh_modules(f"import lambda_fanout\nassert lambda_fanout.map(abs, [-1, -2], strategy={strategy!r},"
                           " max_workers=2) == [1, 2]")
    used = {m for m in loaded if m.startswith("lambda_fanout.strategies.")}
    assert used == {"lambda_fanout.strategies.base", f"lambda_fanout.strategies.{STRATEGY_MODULES[strategy]}"}
    heavy = [m for m in HEAVY if m in loaded]
    assert heavy == (["asyncio"] if lambda_fanout.get_strategy(strategy).needs_async_form else [])
    assert "lambda_fanout._limiter" not in loaded  # auto's machinery loads only under auto
