"""The package as the layer lays it out (python/ plus strategies/), staged once per test process.

Tests that start a fresh interpreter put :func:`python_dir` on PYTHONPATH, so they import
``lambda_fanout`` (with ``lambda_fanout.strategies``) exactly as the zip ships it.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_layer_module():
    """layer/build_layer.py, loaded as a module (once per process)."""
    from lambda_fanout_dev.local_lambda import build_layer_module as load

    return load()


@functools.cache
def python_dir() -> str:
    """A folder holding the staged ``lambda_fanout`` package; removed when the process exits."""
    from pathlib import Path

    tmp = tempfile.mkdtemp(prefix="fanout-stage-")
    atexit.register(shutil.rmtree, tmp, True)
    return str(build_layer_module().stage(Path(tmp) / "python"))
