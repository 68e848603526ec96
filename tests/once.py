"""Work done once per test run, shared by its pytest-xdist workers (each worker is a session of its own).

A session fixture hands :func:`once_per_run` a name and a function that makes a JSON value in
a given folder. The first worker to ask makes it, under a file lock in the run's shared
temporary folder (``tmp_path_factory.getbasetemp().parent``, as pytest-xdist's docs lay it
out); the other workers wait for it and read it. Without workers the value is simply made.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def once_per_run(config, tmp_path_factory, name: str, make: Callable[[Path], Any]) -> Any:
    """``make(folder)``'s value, made by one worker of the run and read by the others."""
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker (as its own worker_id fixture tells)
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    made = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if made.exists():
            return json.loads(made.read_text())
        folder = shared / name
        folder.mkdir(exist_ok=True)
        value = make(folder)
        made.write_text(json.dumps(value))
        return value
