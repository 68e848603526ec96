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
#: Record i of a generated Kinesis batch has sequence number KINESIS_SEQUENCE + i.
KINESIS_SEQUENCE = 49590338271490256608559692538361571095921575989136588898
#: Record i of a generated Kafka batch has offset KAFKA_OFFSET + i.
KAFKA_OFFSET = 1000


def sample(name: str) -> dict:
    """The documented sample event ``name`` (a file in ``sample_events/``)."""
    with open(os.path.join(EVENTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def _body(n: int) -> str:
    return json.dumps({"n": n})


def sqs(n: int, groups: list | None = None, *, fair: bool = False) -> dict:
    """n SQS records; groups[i] is record i's MessageGroupId or None.

    The queue is FIFO when some record has a group, unless ``fair``: then it is a
    standard queue whose messages carry MessageGroupId as a tenant key (fair queues).
    """
    grouped = groups is not None and any(g is not None for g in groups)
    base = sample("sqs_fifo" if grouped and not fair else "sqs")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["messageId"] = f"msg-{i:05d}"
        r["body"] = _body(i)
        if grouped:
            r["attributes"].pop("MessageGroupId", None)
            if groups[i] is not None:
                r["attributes"]["MessageGroupId"] = str(groups[i])
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
        r["kinesis"]["sequenceNumber"] = str(KINESIS_SEQUENCE + i)
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


def kafka(n: int, partitions: list | None = None, *, self_managed: bool = False) -> dict:
    """n Kafka records; partitions[i] is record i's partition (default: three partitions, round robin).

    ``records`` maps "<topic>-<partition>" to that partition's records in offset order;
    the offsets grow with i, so record i has offset KAFKA_OFFSET + i.
    """
    event = sample("kafka_self_managed" if self_managed else "kafka_msk")
    base = next(iter(event["records"].values()))[0]
    topic = base["topic"]
    mapping: dict = {}
    for i in range(n):
        partition = partitions[i] if partitions else i % 3
        r = copy.deepcopy(base)
        r["partition"] = partition
        r["offset"] = KAFKA_OFFSET + i
        r["value"] = base64.b64encode(_body(i).encode()).decode()
        mapping.setdefault(f"{topic}-{partition}", []).append(r)
    event["records"] = mapping
    return event


def kafka_records(event: dict) -> list:
    """A Kafka event's records in the order process_batch lays them out: partition by partition."""
    return [r for batch in event["records"].values() for r in batch]


def records(source: str, event: dict) -> list:
    """The event's records, in the order of the batchItemFailures process_batch returns."""
    return kafka_records(event) if source == "kafka" else event["Records"]


def position(record: dict) -> int:
    """The ``n`` a record of these builders carries in its payload, whatever its source."""
    if "body" in record:
        return json.loads(record["body"])["n"]
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))["n"]
    if "offset" in record:
        return json.loads(base64.b64decode(record["value"]))["n"]
    return int(record["dynamodb"]["NewImage"]["n"]["N"])


def position_of(record: dict) -> int:
    """The i a generated record was made with, read from its identifier (whatever its source)."""
    if "messageId" in record:
        return int(record["messageId"].split("-")[1])
    if "kinesis" in record:
        return int(record["kinesis"]["sequenceNumber"]) - KINESIS_SEQUENCE
    if "offset" in record:
        return record["offset"] - KAFKA_OFFSET
    return int(record["dynamodb"]["SequenceNumber"]) - 111


def identifier(source: str, record: dict):
    """The identifier a partial-batch response reports for ``record`` of ``source``."""
    return {
        "sqs": lambda r: r["messageId"],
        "kinesis": lambda r: r["kinesis"]["sequenceNumber"],
        "dynamodb": lambda r: r["dynamodb"]["SequenceNumber"],
        "kafka": lambda r: {"partition": f"{r['topic']}-{r['partition']}", "offset": r["offset"]},
    }[source](record)


BUILDERS = {"sqs": sqs, "kinesis": kinesis, "dynamodb": dynamodb, "kafka": kafka}

#: ``--event KIND:N`` names -> a builder of an N-record event.
SAMPLES: dict[str, Callable[[int], dict]] = {
    "sqs": sqs,
    "fifo": fifo,
    "kinesis": kinesis,
    "ddb": dynamodb,
    "kafka": kafka,
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
    if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= 10_000:  # "²" is a digit to isdigit
        raise ValueError(f"{spec!r}: N must be a whole number from 1 to 10000 but got {count!r}")
    return SAMPLES[kind](int(count))
