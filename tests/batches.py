"""Batch events built from AWS's documented sample events (tests/events/*.json)."""

from __future__ import annotations

import base64
import copy
import json
import os

import lambda_fanout

EVENTS_DIR = os.path.join(os.path.dirname(__file__), "events")


def sample(name: str) -> dict:
    with open(os.path.join(EVENTS_DIR, f"{name}.json")) as f:
        return json.load(f)


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
        r["body"] = json.dumps({"n": i})
        if grouped:
            r["attributes"].pop("MessageGroupId", None)
            if groups[i] is not None:
                r["attributes"]["MessageGroupId"] = str(groups[i])
        records.append(r)
    return {"Records": records}


#: Record i of a generated Kinesis batch has sequence number KINESIS_SEQUENCE + i.
KINESIS_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def kinesis(n: int, keys: list | None = None) -> dict:
    base = sample("kinesis")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["kinesis"]["sequenceNumber"] = str(KINESIS_SEQUENCE + i)
        r["kinesis"]["partitionKey"] = str(keys[i] if keys else f"pk-{i}")
        records.append(r)
    return {"Records": records}


def dynamodb(n: int, keys: list | None = None) -> dict:
    base = sample("dynamodb")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["dynamodb"]["SequenceNumber"] = str(111 + i)
        r["dynamodb"]["Keys"] = {"Id": {"N": str(keys[i] if keys else 1000 + i)}}
        records.append(r)
    return {"Records": records}


#: Record i of a generated Kafka batch has offset KAFKA_OFFSET + i.
KAFKA_OFFSET = 1000


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
        r["value"] = base64.b64encode(json.dumps({"n": i}).encode()).decode()
        mapping.setdefault(f"{topic}-{partition}", []).append(r)
    event["records"] = mapping
    return event


def kafka_records(event: dict) -> list:
    """A Kafka event's records in the order process_batch lays them out: partition by partition."""
    return [r for batch in event["records"].values() for r in batch]


def records(source: str, event: dict) -> list:
    """The event's records, in the order of the batchItemFailures process_batch returns."""
    return kafka_records(event) if source == "kafka" else event["Records"]


def identifier(source: str, record: dict):
    return {
        "sqs": lambda r: r["messageId"],
        "kinesis": lambda r: r["kinesis"]["sequenceNumber"],
        "dynamodb": lambda r: r["dynamodb"]["SequenceNumber"],
        "kafka": lambda r: {"partition": f"{r['topic']}-{r['partition']}", "offset": r["offset"]},
    }[source](record)


BUILDERS = {"sqs": sqs, "kinesis": kinesis, "dynamodb": dynamodb, "kafka": kafka}


def position_of(record: dict) -> int:
    """The i a generated record was made with, whatever its source."""
    if "messageId" in record:
        return int(record["messageId"].split("-")[1])
    if "kinesis" in record:
        return int(record["kinesis"]["sequenceNumber"]) - KINESIS_SEQUENCE
    if "offset" in record:
        return record["offset"] - KAFKA_OFFSET
    return int(record["dynamodb"]["SequenceNumber"]) - 111


def failing_handler(bad: set, log=None, delay: float = 0.0) -> lambda_fanout.Task:
    """A Task failing for generated records whose position is in ``bad``; ``log`` gets each position run.

    For the processes strategy ``log`` must be an ``xproc.Log`` (a list stays in the caller).
    """
    import xproc

    handler = xproc.Failing(bad, log, delay)
    return lambda_fanout.Task(handler.sync_fn, handler.async_fn)
