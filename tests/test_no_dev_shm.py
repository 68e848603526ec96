"""Lambda has no /dev/shm: ``processes`` works without it, where ``multiprocessing.Pool`` fails.

``tests/without-dev-shm`` runs a command with /dev/shm unusable. ``./build.sh test`` runs
its part 2 (the tests that time a deadline, the ``processes`` ones among them) that way,
and tells part 1 so through ``TEST_SERIAL_WITHOUT_DEV_SHM``; the harness below then
runs only part 1's ``processes`` tests inside it. Run any other way, it runs them all.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WITHOUT_SHM = os.path.join(ROOT, "tests", "without-dev-shm")


def run_without_shm(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``argv`` with /dev/shm unusable (skips the test where that cannot be arranged)."""
    probe = subprocess.run([WITHOUT_SHM, "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot make /dev/shm unusable here: {probe.stderr.strip()}")
    return subprocess.run([WITHOUT_SHM, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


NO_SHM_SCRIPT = """
import multiprocessing, sys
sys.path.insert(0, "tests")
import lambda_fanout, xproc
if __name__ == "__main__":
    for name, make in (("Pool", lambda: multiprocessing.Pool(2)), ("Queue", multiprocessing.Queue)):
        try:
            make()
        except OSError as exc:
            print(name, "OSError", exc.errno)
        else:
            print(name, "works")
    out = lambda_fanout.map(xproc.square, range(200), strategy="processes", max_workers=2)
    print("processes", out == [i * i for i in range(200)])
"""


def test_pool_fails_without_dev_shm_and_processes_works():
    done = run_without_shm(sys.executable, "-c", NO_SHM_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["Pool OSError 30", "Queue OSError 30", "processes True"]


def test_process_tests_pass_without_dev_shm():
    # Where part 2 already runs without /dev/shm, only part 1's tests are left to run so.
    part = ["--serial-tests=skip"] if os.environ.get("TEST_SERIAL_WITHOUT_DEV_SHM") else []
    done = run_without_shm(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *part,
        "tests/test_procpool.py", "tests/test_processes.py", "tests/test_map.py", "tests/test_edges.py",
        "tests/test_contract.py", "tests/test_batch.py", "tests/test_deadline.py",
        "-k", "(procpool or processes) and not without_dev_shm",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
