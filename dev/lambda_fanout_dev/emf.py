"""CloudWatch Embedded Metric Format lines: find them in a function's logs, check them
against the specification, and show them as a table.

The checks follow the published EMF specification: a root object with an ``_aws``
member holding a millisecond ``Timestamp`` and ``CloudWatchMetrics`` directives; each
directive a ``Namespace`` (1-255 characters), ``Dimensions`` (arrays of at most 30
names, each naming a string member of the root) and ``Metrics`` (at most 100, each a
``Name`` naming a numeric member of the root, an optional standard ``Unit`` and an
optional ``StorageResolution`` of 1 or 60).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})


def documents(lines: Iterable[str]) -> list[dict]:
    """The EMF documents among log lines: JSON objects with an ``_aws`` member."""
    found = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{") or '"_aws"' not in text:
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            found.append(doc)
    return found


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problems(doc: dict) -> list[str]:
    """Every way ``doc`` breaks the EMF specification (empty when it is valid)."""
    out: list[str] = []
    meta = doc.get("_aws")
    if not isinstance(meta, dict):
        return ["_aws must be an object"]
    if not (isinstance(meta.get("Timestamp"), int) and not isinstance(meta.get("Timestamp"), bool)
            and meta["Timestamp"] >= 0):
        out.append(f"_aws.Timestamp must be a non-negative integer of ms but is {meta.get('Timestamp')!r}")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return out + ["_aws.CloudWatchMetrics must be a non-empty array"]
    for d, directive in enumerate(directives):
        where = f"CloudWatchMetrics[{d}]"
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            out.append(f"{where}.Namespace must be a string of 1 to 255 characters but is {namespace!r}")
        dims = directive.get("Dimensions")
        if not isinstance(dims, list):
            out.append(f"{where}.Dimensions must be an array of dimension sets")
            dims = []
        for dset in dims:
            if not isinstance(dset, list) or len(dset) > 30:
                out.append(f"{where}: a dimension set must be an array of at most 30 names but is {dset!r}")
                continue
            for name in dset:
                if not isinstance(doc.get(name), str):
                    out.append(f"{where}: dimension {name!r} must name a string member of the root")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or not 1 <= len(metrics) <= 100:
            out.append(f"{where}.Metrics must be an array of 1 to 100 metric definitions")
            metrics = []
        for metric in metrics:
            name = metric.get("Name") if isinstance(metric, dict) else None
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                out.append(f"{where}: a metric Name must be a string of 1 to 255 characters but is {name!r}")
                continue
            value = doc.get(name)
            if not (_number(value) or (isinstance(value, list) and value and all(map(_number, value)))):
                out.append(f"{where}: metric {name!r} must name a number (or an array of numbers) in the root "
                           f"but is {value!r}")
            if "Unit" in metric and metric["Unit"] not in UNITS:
                out.append(f"{where}: metric {name!r} has unit {metric['Unit']!r}, not a CloudWatch unit")
            if metric.get("StorageResolution", 60) not in (1, 60):
                out.append(f"{where}: metric {name!r} StorageResolution must be 1 or 60")
    return out


def table(docs: list[dict]) -> str:
    """The documents' dimensions and metric values as a text table, one row per document."""
    if not docs:
        return "(no EMF lines)"
    columns: list[str] = []
    for doc in docs:
        for directive in doc["_aws"].get("CloudWatchMetrics", []):
            names = [n for dset in directive.get("Dimensions", []) for n in dset]
            names += [m.get("Name") for m in directive.get("Metrics", [])]
            columns += [n for n in names if n not in columns]
    rows = [[_cell(doc.get(c)) for c in columns] for doc in docs]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return "" if value is None else str(value)
