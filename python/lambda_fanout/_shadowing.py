"""Is the botocore Python would import one that aiobotocore accepts? (A function may bundle its own.)

A function whose deployment package bundles boto3/botocore puts them ahead of the
layer's (Lambda's task root comes first on ``sys.path``). The sync strategies then run
on the function's botocore; aiobotocore, pinned to a narrow botocore range, fails on
it at the first call of every invocation. :func:`check` says so at init instead: a
``ConfigError`` for the async form, one logged warning for the sync form.

Nothing here imports botocore or aiobotocore: versions are read from botocore's
``__init__.py`` and from aiobotocore's installed metadata, so the check costs a few
file reads, once per ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache

from ._errors import ConfigError

#: Version clauses of a requirement (``<1.43.118``); ``re`` is compiled only when a clause is read.
_CLAUSE = r"\s*(==|!=|<=|>=|<|>|~=)\s*([0-9][0-9A-Za-z.*+!-]*)\s*"
_warned = False


def _release(version: str) -> tuple[int, ...] | None:
    # botocore's versions are plain release numbers (1.43.117); anything else is not judged.
    import re

    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(p) for p in match.group(0).split(".")) if match else None


def _version_of(init_text: str) -> str:
    # botocore/__init__.py says `__version__ = '1.43.117'` on a line of its own.
    for line in init_text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == "__version__":
            return value.strip().strip("\"'") or "unknown"
    return "unknown"


def _satisfies(version: str, specifier: str) -> bool | None:
    """Whether ``version`` meets a requirement's comma-separated clauses; None if unreadable."""
    import re

    have = _release(version)
    if have is None:
        return None
    for clause in specifier.split(","):
        match = re.fullmatch(_CLAUSE, clause)
        want = _release(match.group(2)) if match else None
        if want is None:
            return None
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        op = match.group(1)
        ok = {"==": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b,
              "~=": a >= b and a[: len(want) - 1] == b[: len(want) - 1]}[op]
        if not ok:
            return False
    return True


def _copies(path: tuple[str, ...]) -> list[tuple[str, str]]:
    """(folder, version) of each botocore on ``path``, in import order."""
    found = []
    for entry in path:
        init = os.path.join(entry or ".", "botocore", "__init__.py")
        try:
            with open(init, encoding="utf-8") as f:
                version = _version_of(f.read())
        except OSError:
            continue
        found.append((os.path.dirname(init), version))
    return found


def _home(package: str, path: tuple[str, ...]) -> str | None:
    """The first ``path`` entry holding ``package``, or None."""
    for entry in path:
        if os.path.isfile(os.path.join(entry or ".", package, "__init__.py")):
            return os.path.normpath(entry or ".")
    return None


def _aiobotocore_needs() -> tuple[str, str] | None:
    """(aiobotocore's version, its botocore requirement) from its installed metadata, or None."""
    from importlib import metadata

    try:
        dist = metadata.distribution("aiobotocore")
    except metadata.PackageNotFoundError:
        return None
    for requirement in dist.requires or ():
        name, _, rest = requirement.partition(";")[0].strip().partition("botocore")
        if name == "" and rest[:1] in ("<", ">", "=", "!", "~", " ", "("):
            return dist.version, rest.strip(" ()")
    return None


@lru_cache(maxsize=8)
def _problem(path: tuple[str, ...], full: bool) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the botocore first on ``path`` is outside aiobotocore's range."""
    copies = _copies(path)
    if not copies or (not full and len(copies) < 2):
        return None  # one copy (or none) shadows nothing; the async form checks it all the same
    if not full and os.path.normpath(os.path.dirname(copies[0][0])) == _home("aiobotocore", path):
        # The first botocore was installed beside aiobotocore (the layer, resolved by pip
        # together): nothing shadows it, and the sync form's cold start skips the metadata.
        return None
    needs = _aiobotocore_needs()
    if needs is None:
        return None
    aio_version, specifier = needs
    (where, version), others = copies[0], copies[1:]
    if _satisfies(version, specifier) is not False:
        return None
    layer = next(((w, v) for w, v in others if _satisfies(v, specifier)), None)
    shadowed = f", ahead of the layer's botocore {layer[1]} at {layer[0]}" if layer else ""
    what = (f"the botocore Python imports is {version}, from {where}{shadowed}; aiobotocore {aio_version} "
            f"needs botocore {specifier}. Lambda puts the function's own code (the task root) first on "
            "sys.path, so a boto3/botocore bundled in the deployment package shadows the layer's.")
    pin = f"botocore=={layer[1]}" if layer else f"botocore {specifier}"
    fix = (f"Remove boto3 and botocore from the deployment package (the layer carries them), or pin them "
           f"to the layer's versions ({pin} and the boto3 of the same version).")
    return what, fix


def check(form: str) -> None:
    """Check the botocore that would be imported against aiobotocore's requirement.

    Args:
        form: "async" (aiobotocore will run: a mismatch is an error) or "sync" (boto3
            will run on the shadowing copy: a mismatch is logged once per process).

    Raises:
        ConfigError: ``form`` is "async" and the botocore first on ``sys.path`` is
            outside the range aiobotocore's metadata requires.
    """
    global _warned
    if form == "sync" and _warned:
        return
    problem = _problem(tuple(sys.path), form == "async")
    if problem is None:
        return
    what, fix = problem
    if form == "async":
        raise ConfigError(f"The asyncio strategy and lambda_fanout.aws's async calls cannot run: {what} {fix}")
    import logging

    _warned = True
    logging.getLogger("lambda_fanout").warning(
        "The function's botocore shadows the layer's; the sync strategies run on it: %s %s", what, fix)
