"""./build.sh: its help and the bench's (plain text on stdout, every command and option documented), what
``test`` runs, and a ``bench`` that stops everything it started."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
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
    return set(re.findall(r"[\[|] ?(--[a-z][a-z-]*)", usage)) - {"--help"}  # "[--a X | --b]": both


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
    # A full run's item counts as the workloads declare them, in the README; the batch size in the help too.
    from lambda_fanout.bench.workloads import WORKLOADS, Workload

    assert f"a full run: {Workload.default_items}," in section
    for workload in WORKLOADS.values():
        if workload.default_items != Workload.default_items:
            assert f"{workload.default_items:,}" in section and f"`{workload.name}`" in section, workload.name
    records = f"{WORKLOADS['batch'].default_items:,} records for `batch`"
    assert records in section, section
    assert records.replace("`", "") in " ".join(bench_help().split())


def test_bench_default_workers_are_the_library_default():
    from lambda_fanout import DEFAULT_MAX_WORKERS
    from lambda_fanout_dev.bench import cli

    for argv in ([], ["--quick"]):
        # The library's default first (what an untuned function gets), a fixed count beside it.
        assert cli.options(cli.parse_args(argv)).workers == (DEFAULT_MAX_WORKERS, 16)


# -- ./build.sh test: the whole suite, or only the paths given ---------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_test_help_prints_help_only_and_builds_nothing(flag, tmp_path):
    # A copy of build.sh alone: any bootstrap would fail here, or leave a .venv behind.
    (tmp_path / "build.sh").write_text(Path(BUILD_SH).read_text())
    proc = subprocess.run(["bash", str(tmp_path / "build.sh"), "test", flag], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("usage: ./build.sh test [PATH...]")
    assert "the whole test suite" in proc.stdout and "Options go to pytest" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.sh"]


PROBE = '''
def test_one():
    assert 1 + 1 == 2


def test_two():
    assert "two".upper() == "TWO"
'''


@pytest.fixture
def probe(tmp_path):
    """A folder holding one test file of two tests, for build.sh to run; skipped while .venv is out of date.

    build.sh rebuilds an out-of-date .venv before it tests, which would pull it from under
    the running suite.
    """
    stamp = Path(ROOT, ".venv", ".fanout-stamp")
    if not stamp.exists() or stamp.stat().st_mtime < Path(ROOT, "requirements", "dev.txt").stat().st_mtime:
        pytest.skip(".venv is missing or older than requirements/dev.txt: ./build.sh test makes it")
    (tmp_path / "test_probe.py").write_text(PROBE)
    return tmp_path


@pytest.mark.parametrize("args, summary", [
    (["test_probe.py"], "2 passed"),
    (["test_probe.py::test_one"], "1 passed"),
    (["-k", "two", "test_probe.py"], "1 passed, 1 deselected"),
    (["-p", "no:cacheprovider", "./test_probe.py", "-m", "not slow"], "2 passed"),
])
def test_test_with_paths_runs_only_those_paths(probe, args, summary):
    proc = subprocess.run(["bash", BUILD_SH, "test", *args, "-q"], capture_output=True, text=True, timeout=300,
                          cwd=probe)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith(summary), proc.stdout[-3000:]
    assert "property tests" not in proc.stderr  # nor the rest of the whole suite's run


def test_test_with_a_path_passes_failures_on(probe):
    (probe / "test_probe.py").write_text(PROBE + "\n\ndef test_three():\n    assert 1 == 2\n")
    proc = subprocess.run(["bash", BUILD_SH, "test", str(probe / "test_probe.py"), "-q"], capture_output=True,
                          text=True, timeout=300, cwd="/")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("1 failed, 2 passed"), proc.stdout[-3000:]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_bench_help_prints_at_once_and_builds_nothing(flag, tmp_path):
    # build.sh beside the sources it needs and nothing else: any bootstrap would leave a venv behind.
    (tmp_path / "build.sh").write_text(Path(BUILD_SH).read_text())
    for name in ("python", "dev"):
        (tmp_path / name).symlink_to(Path(ROOT, name))
    proc = subprocess.run(["bash", str(tmp_path / "build.sh"), "bench", flag], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("usage: ./build.sh bench")
    assert "--quick" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.sh", "dev", "python"]


def test_a_venv_that_cannot_be_made_says_what_to_do(tmp_path):
    # build.sh beside a requirements file pip cannot satisfy (no index: nothing is fetched).
    (tmp_path / "build.sh").write_text(Path(BUILD_SH).read_text())
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "dev.txt").write_text("no-such-package-for-fanout==1.0 --hash=sha256:" + "0" * 64 + "\n")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    proc = subprocess.run(["bash", str(tmp_path / "build.sh"), "layer"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "could not make" in proc.stderr and "requirements/dev.txt" in proc.stderr, proc.stderr
    assert "run the same command again" in proc.stderr
    assert not (tmp_path / ".venv" / ".fanout-stamp").exists()  # so the next run makes it anew


# -- ./build.sh bench: stopped from outside, it leaves nothing behind ---------------------------

def _marked(mark: str) -> list[int]:
    """The processes whose environment holds ``mark`` (every process a run started inherits it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _as_in_a_terminal() -> None:
    """Ctrl-C's default handling, as a shell in a terminal has it: a suite started in the background
    (``./build.sh test &``) passes SIGINT on ignored, and bash can neither trap nor reset a signal
    ignored when it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how, to_group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGHUP, True),
                                          (signal.SIGTERM, True)])
def test_a_bench_run_stopped_from_outside_stops_everything_it_started(how, to_group, tmp_path, request):
    """A kill of build.sh, Ctrl-C, or a hangup of the terminal (which reaches the whole group)."""
    stamp = Path(ROOT, ".venv", ".fanout-stamp")
    if not stamp.exists() or stamp.stat().st_mtime < Path(ROOT, "requirements", "dev.txt").stat().st_mtime:
        pytest.skip(".venv is missing or older than requirements/dev.txt: ./build.sh test makes it")
    mark = f"FANOUT_TEST_RUN_MARK={uuid.uuid4().hex}"
    # The run's temporary directory, short: the processes strategy's forkserver listens on a Unix
    # socket in it, and a socket's path is at most 107 bytes (pytest's tmp_path can leave less).
    scratch = Path(tempfile.mkdtemp(prefix="fanout-run-"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "AWS_", "PYTEST_XDIST_"))}
    env.update(dict([mark.split("=")]), TMPDIR=str(scratch))
    # Enough rounds that the run outlasts this test's look at it, once its processes case has run, by
    # seconds rather than by its report's writing alone (every pass runs in one suite process).
    proc = subprocess.Popen(["bash", BUILD_SH, "bench", "--quick", "--workload", "frequency", "--items", "8",
                             "--rounds", "150", "--no-memory-sweep", "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                            start_new_session=True, preexec_fn=_as_in_a_terminal)
    try:
        seen = []
        for line in proc.stdout:  # until the suite has run a case on worker processes (they stay up)
            seen.append(line)
            if "frequency-processes" in line:
                break
        assert seen[-1].rstrip().endswith(" ok"), "".join(seen)  # its workers started, and stay up
        assert proc.poll() is None, "".join(seen)
        assert len(_marked(mark)) > 3  # the run, its endpoint, its suite and its worker processes
        if to_group:
            os.killpg(proc.pid, how)
        else:
            proc.send_signal(how)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(seen) + rest
    until = time.monotonic() + 10
    while _marked(mark) and time.monotonic() < until:
        time.sleep(0.1)
    assert _marked(mark) == [], "processes of the run outlived it"
    assert list(scratch.iterdir()) == [], "the run left its files behind"
