"""./build.sh's help, and the bench's: plain text on stdout, every command and option documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_SH = os.path.join(ROOT, "build.sh")


def build_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", BUILD_SH, *args], capture_output=True, text=True, timeout=60, cwd="/")


def dispatched_commands() -> list[str]:
    text = Path(BUILD_SH).read_text()
    return re.findall(r"^  ([a-z]+)\) shift; cmd_", text, re.M)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_command_on_stdout(flag):
    proc = build_sh(flag)
    assert proc.returncode == 0 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "usage: ./build.sh COMMAND [options]"
    commands = dispatched_commands()
    assert {"test", "bench", "layer"} <= set(commands)
    for command in [*commands, "invoke", "help"]:
        (line,) = [line for line in lines if line.startswith(f"  {command} ")]
        assert len(line.split(None, 1)[1]) > 10, line  # a one-line description
    assert "the way Lambda runs it" in proc.stdout


@pytest.mark.parametrize("args", [[], ["nope"]])
def test_no_or_unknown_command_is_an_error_on_stderr(args):
    proc = build_sh(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "usage: ./build.sh COMMAND" in proc.stderr
    if args:
        assert "unknown command 'nope'" in proc.stderr


def bench_help() -> str:
    proc = subprocess.run([sys.executable, "-m", "lambda_fanout_dev.bench", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def bench_options(text: str) -> set[str]:
    """Every long option the bench's help lists (its usage line names them all)."""
    usage = text[:text.index("\n\n")]
    return set(re.findall(r"\[(--[a-z][a-z-]*)", usage)) - {"--help"}


def test_bench_help_is_plain_text():
    text = bench_help()
    assert text.startswith("usage: ./build.sh bench")
    assert "./build.sh bench: compare every strategy" in text
    for markup in ("``", ":class:", ":func:", ":meth:", ".. "):
        assert markup not in text, markup
    assert {"--quick", "--workers", "--rounds", "--out"} <= bench_options(text)


def test_every_bench_option_is_in_the_readme_with_its_default():
    from lambda_fanout import DEFAULT_MAX_WORKERS

    readme = Path(ROOT, "README.md").read_text()
    section = readme[readme.index("| `--quick` |"):]
    section = section[:section.index("\n\n")]
    documented = set(re.findall(r"`(--[a-z-]+)", section))
    options = bench_options(bench_help())
    assert options == documented, (options - documented, documented - options)
    assert f"(default {DEFAULT_MAX_WORKERS}" in section


def test_bench_default_workers_are_the_library_default():
    from lambda_fanout import DEFAULT_MAX_WORKERS
    from lambda_fanout_dev.bench import cli

    for argv in ([], ["--quick"]):
        assert cli.options(cli.parse_args(argv)).workers == (DEFAULT_MAX_WORKERS,)
