"""What a test takes stock of to show that nothing leaked: the process's open files and threads.

A leak is something open after a loop that was not open before it. Counting is not enough:
leftovers of earlier tests in the same process (an idle connection timing out, garbage
collected) may close meanwhile, and a count would then hide a leak or fail for nothing.
"""

from __future__ import annotations

import os
import threading


def open_files() -> set[tuple[str, str]]:
    """Each open descriptor with what it points to (a file's path, a pipe's or socket's inode)."""
    files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            files.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # the descriptor listdir itself used, closed since
            pass
    return files


def threads() -> set[threading.Thread]:
    """The threads alive now."""
    return set(threading.enumerate())
