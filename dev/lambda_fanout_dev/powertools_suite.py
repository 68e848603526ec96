"""Powertools' own batch test-suite, run against ``lambda_fanout.powertools``: a check outside ``./build.sh test``.

    .venv/bin/python -m lambda_fanout_dev.powertools_suite [--source DIR] [--baseline] [-- PYTEST ARGS]

It finds Powertools' batch tests for the installed ``aws-lambda-powertools`` version:
in ``--source DIR`` (a checkout or unpacked archive of powertools-lambda-python at that
version), else in that version's sdist from PyPI (``pip download``), else in the
GitHub archive of its tag. It copies ``tests/functional/batch`` and the helpers those
tests import into a scratch directory, with a conftest that puts
``lambda_fanout.powertools``' processors in place of Powertools' own wherever the tests
import them, and runs pytest there. ``--baseline`` runs the same tests against
Powertools' own processors, to tell a difference of ours from a test the installed
version fails anyway. The exit status is pytest's.

Where ours differs from Powertools by design (README, "Coming from Powertools"), the
tests that assert Powertools' behaviour fail: a stream's failure also reports the later
records of its ordering group, and stop-the-batch FIFO depends on the order the message
groups ran.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from importlib.metadata import version

ARCHIVE = "https://github.com/aws-powertools/powertools-lambda-python/archive/refs/tags/v{version}.tar.gz"
#: What the batch tests need besides their own folder: the packages above it and their helpers.
HELPERS = ("tests/__init__.py", "tests/functional/__init__.py", "tests/functional/utils.py")
BATCH_TESTS = "tests/functional/batch"

#: The scratch directory's conftest: ours in place of Powertools' processors, before any test imports them.
SWAP = '''"""Powertools' processors replaced by lambda_fanout.powertools' wherever the tests import them."""
from aws_lambda_powertools.utilities import batch
from aws_lambda_powertools.utilities.batch import base, sqs_fifo_partial_processor

import lambda_fanout.powertools as ours

for module in (batch, base, sqs_fifo_partial_processor):
    for name in ("BatchProcessor", "AsyncBatchProcessor", "SqsFifoPartialProcessor"):
        if hasattr(module, name):
            setattr(module, name, getattr(ours, name))
'''


def _unpacked(archive: str, into: str) -> str | None:
    """The root of ``archive`` unpacked in ``into`` if it holds the batch tests, else None."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    found = glob.glob(os.path.join(into, "*", BATCH_TESTS))
    return os.path.dirname(os.path.dirname(os.path.dirname(found[0]))) if found else None


def from_sdist(pinned: str, scratch: str) -> str | None:
    """The sdist's root when it ships the batch tests (3.37.0's does not), else None."""
    where = os.path.join(scratch, "sdist")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                           f"aws-lambda-powertools=={pinned}", "-d", where], capture_output=True, text=True)
    archives = glob.glob(os.path.join(where, "*.tar.gz"))
    if done.returncode or not archives:
        print(f"sdist: pip download failed: {done.stderr.strip()[-300:]}")
        return None
    root = _unpacked(archives[0], where)
    if root is None:
        print(f"sdist: aws-lambda-powertools {pinned}'s sdist carries no tests")
    return root


def from_github(pinned: str, scratch: str) -> str | None:
    """The tag's source archive from GitHub, unpacked; None when it cannot be fetched."""
    url = ARCHIVE.format(version=pinned)
    archive = os.path.join(scratch, "tag.tar.gz")
    try:
        with urllib.request.urlopen(url, timeout=60) as reply, open(archive, "wb") as out:
            shutil.copyfileobj(reply, out)
    except OSError as exc:
        print(f"github: {url}: {exc}")
        return None
    return _unpacked(archive, os.path.join(scratch, "tag"))


def stage(source: str, scratch: str, *, swap: bool) -> str:
    """A directory holding the batch tests, their helpers, and (with ``swap``) the conftest that swaps in ours."""
    suite = os.path.join(scratch, "suite")
    shutil.copytree(os.path.join(source, BATCH_TESTS), os.path.join(suite, BATCH_TESTS))
    for helper in HELPERS:
        if os.path.exists(os.path.join(source, helper)):
            shutil.copyfile(os.path.join(source, helper), os.path.join(suite, helper))
    with open(os.path.join(suite, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")  # Powertools' own settings stay out; so do this repository's
    if swap:
        with open(os.path.join(suite, "conftest.py"), "w") as f:
            f.write(SWAP)
    return suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambda_fanout_dev.powertools_suite",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="a powertools-lambda-python checkout at the installed version")
    parser.add_argument("--baseline", action="store_true", help="run against Powertools' own processors")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    pinned = version("aws-lambda-powertools")
    with tempfile.TemporaryDirectory(prefix="powertools-suite-") as scratch:
        source = args.source or from_sdist(pinned, scratch) or from_github(pinned, scratch)
        if source is None:
            print(f"Powertools {pinned}'s batch tests were not found: pass --source with a checkout of "
                  f"powertools-lambda-python at v{pinned}.")
            return 2
        suite = stage(source, scratch, swap=not args.baseline)
        against = "Powertools' own processors" if args.baseline else "lambda_fanout.powertools"
        print(f"Powertools {pinned}'s batch tests from {source}, against {against}", flush=True)
        # FANOUT_* settings pass through: FANOUT_STRATEGY=sequential runs the suite under that strategy.
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
                               "--tb=line", BATCH_TESTS, *args.pytest_args], cwd=suite).returncode


if __name__ == "__main__":
    sys.exit(main())
