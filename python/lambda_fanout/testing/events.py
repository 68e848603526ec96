"""Batch events built from AWS's documented sample events (``sample_events/*.json``).

Every record carries its position ``n``: an SQS body ``{"n": n}``, a Kinesis record's
data (base64 of the same JSON), a DynamoDB stream record's ``NewImage.n``.

:data:`SAMPLES` maps the short names ``./build.sh invoke --event KIND:N`` accepts to
their builders; a new source is one more entry there.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from typing import Callable

EVENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_events")
KINESIS_FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def sample(name: str) -> dict:
    """The documented sample event ``name`` (a file in ``sample_events/``)."""
    with open(os.path.join(EVENTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def _body(n: int) -> str:
    return json.dumps({"n": n})


def sqs(n: int, groups: list | None = None) -> dict:
    """n SQS records; groups[i] is record i's MessageGroupId (FIFO) or None (standard)."""
    fifo = groups is not None and any(g is not None for g in groups)
    base = sample("sqs_fifo" if fifo else "sqs")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["messageId"] = f"msg-{i:05d}"
        r["body"] = _body(i)
        if fifo:
            group = groups[i]
            if group is None:
                r["attributes"].pop("MessageGroupId")
            else:
                r["attributes"]["MessageGroupId"] = str(group)
        records.append(r)
    return {"Records": records}


def fifo(n: int, group_count: int = 4) -> dict:
    """n SQS FIFO records spread round-robin over ``group_count`` message groups."""
    return sqs(n, [f"group-{i % group_count}" for i in range(n)])


def kinesis(n: int, keys: list | None = None) -> dict:
    """n Kinesis records; keys[i] is record i's partition key (default one key per record)."""
    base = sample("kinesis")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["kinesis"]["sequenceNumber"] = str(KINESIS_FIRST_SEQUENCE + i)
        r["kinesis"]["partitionKey"] = str(keys[i] if keys else f"pk-{i}")
        r["kinesis"]["data"] = base64.b64encode(_body(i).encode()).decode()
        records.append(r)
    return {"Records": records}


def dynamodb(n: int, keys: list | None = None) -> dict:
    """n DynamoDB stream records; keys[i] is record i's ``Id`` key (default one key per record)."""
    base = sample("dynamodb")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["dynamodb"]["SequenceNumber"] = str(111 + i)
        key = {"N": str(keys[i] if keys else 1000 + i)}
        r["dynamodb"]["Keys"] = {"Id": key}
        r["dynamodb"]["NewImage"] = {"Id": key, "n": {"N": str(i)}}
        records.append(r)
    return {"Records": records}


def position(record: dict) -> int:
    """The ``n`` a record of these builders carries, whatever its source."""
    if "body" in record:
        return json.loads(record["body"])["n"]
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))["n"]
    return int(record["dynamodb"]["NewImage"]["n"]["N"])


def identifier(source: str, record: dict):
    """The identifier a partial-batch response reports for ``record`` of ``source``."""
    return {
        "sqs": lambda r: r["messageId"],
        "kinesis": lambda r: r["kinesis"]["sequenceNumber"],
        "dynamodb": lambda r: r["dynamodb"]["SequenceNumber"],
    }[source](record)


BUILDERS = {"sqs": sqs, "kinesis": kinesis, "dynamodb": dynamodb}

#: ``--event KIND:N`` names -> a builder of an N-record event.
SAMPLES: dict[str, Callable[[int], dict]] = {
    "sqs": sqs,
    "fifo": fifo,
    "kinesis": kinesis,
    "ddb": dynamodb,
}


def from_spec(spec: str) -> dict:
    """The sample event a ``KIND:N`` spec names (e.g. ``sqs:100``).

    Raises:
        ValueError: an unknown kind or a count that is not a whole number from 1 to 10,000.
    """
    kind, sep, count = spec.partition(":")
    if not sep or kind not in SAMPLES:
        raise ValueError(f"a sample event is KIND:N with KIND one of {', '.join(SAMPLES)} (e.g. sqs:100), "
                         f"but got {spec!r}")
    if not count.isdigit() or not 1 <= int(count) <= 10_000:
        raise ValueError(f"{spec!r}: N must be a whole number from 1 to 10000 but got {count!r}")
    return SAMPLES[kind](int(count))
