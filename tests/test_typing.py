"""Typed: the package ships py.typed, and a type checker sees map/amap's item and result types."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

import pytest

import lambda_fanout
import staging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_CODE = '''
import lambda_fanout
from lambda_fanout import Task

def int_task(key: str) -> int:
    return len(key)

async def aint_task(key: str) -> int:
    return len(key)

def record_handler(record: dict) -> None:
    pass

async def handler() -> None:
    reveal_type(await lambda_fanout.amap(aint_task, ["a"]))

keys = ["a", "bb"]
reveal_type(lambda_fanout.map(int_task, keys))
reveal_type(lambda_fanout.map(aint_task, keys))
reveal_type(lambda_fanout.map(Task(int_task, aint_task), keys))
reveal_type(lambda_fanout.map(int_task, keys, errors="collect"))
reveal_type(lambda_fanout.process_batch({"Records": []}, record_handler, fifo_on_failure="batch"))
name: lambda_fanout.StrategyName = "threads"
reveal_type(name)
lambda_fanout.map(int_task, keys, strategy="thread")
lambda_fanout.map(int_task, [1, 2])
lambda_fanout.process_batch({"Records": []}, record_handler, strategy="gevent")
'''


@pytest.fixture(scope="module")
def mypy_says(tmp_path_factory) -> dict[int, str]:
    """mypy's report on USER_CODE, against the package as the layer lays it out: line -> what it said."""
    folder = tmp_path_factory.mktemp("typed")
    (folder / "user_code.py").write_text(USER_CODE)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--cache-dir", str(folder / "cache"),
         "--no-error-summary", "--hide-error-context", "user_code.py"],
        cwd=folder, env={**os.environ, "MYPYPATH": staging.python_dir()}, capture_output=True, text=True,
        timeout=300,
    )
    said: dict[int, str] = {}
    for line in proc.stdout.splitlines():
        found = re.match(r"user_code\.py:(\d+): (?:error|note): (.*)", line)
        if found and not found.group(2).startswith(("Possible overload", "    ")):
            said.setdefault(int(found.group(1)), found.group(2))
    assert said, proc.stdout + proc.stderr
    return said


def line_of(fragment: str) -> int:
    (number,) = [i for i, line in enumerate(USER_CODE.splitlines(), 1) if fragment in line]
    return number


@pytest.mark.parametrize("call,revealed", [
    ("map(int_task, keys))", "lambda_fanout._task.Results[int]"),
    ("map(aint_task, keys))", "lambda_fanout._task.Results[int]"),
    ("map(Task(int_task, aint_task), keys))", "lambda_fanout._task.Results[int]"),
    ('errors="collect"))', "lambda_fanout._task.Results[lambda_fanout._task.Outcome[int]]"),
    ("await lambda_fanout.amap(aint_task", "lambda_fanout._task.Results[int]"),
    ("process_batch({\"Records\": []}, record_handler, fifo", "dict[str, Any] | list[Any]"),
])
def test_map_is_generic_over_item_and_result(mypy_says, call, revealed):
    assert mypy_says[line_of(call)] == f'Revealed type is "{revealed}"'


def test_strategy_names_are_a_literal_of_the_strategies(mypy_says):
    said = mypy_says[line_of("reveal_type(name)")]
    assert re.findall(r"'([a-z-]+)'", said) == list(lambda_fanout.STRATEGIES), said
    assert 'strategy="thread"' in USER_CODE and "No overload variant" in mypy_says[line_of('strategy="thread"')]
    assert "Literal['gevent']" in mypy_says[line_of('strategy="gevent"')]


def test_items_must_fit_the_task(mypy_says):
    assert "incompatible type" in mypy_says[line_of("map(int_task, [1, 2])")]


def test_py_typed_ships_in_the_layer_and_the_wheel(tmp_path):
    from pathlib import Path

    staged = Path(staging.python_dir())
    assert (staged / "lambda_fanout" / "py.typed").is_file()  # the layer zip is this tree
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), ROOT], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("lambda_fanout-*.whl")
    assert "lambda_fanout/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_typing_is_not_imported_at_run_time():
    code = ("import sys, lambda_fanout\n"
            "lambda_fanout.map(lambda_fanout.Task(abs), [-1], strategy='threads')\n"
            "print('typing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": staging.python_dir()},
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "False"
