"""Batch events built from AWS's documented sample events (tests/events/*.json)."""

from __future__ import annotations

import copy
import json
import os

EVENTS_DIR = os.path.join(os.path.dirname(__file__), "events")


def sample(name: str) -> dict:
    with open(os.path.join(EVENTS_DIR, f"{name}.json")) as f:
        return json.load(f)


def sqs(n: int, groups: list | None = None) -> dict:
    """n SQS records; groups[i] is record i's MessageGroupId (FIFO) or None (standard)."""
    fifo = groups is not None and any(g is not None for g in groups)
    base = sample("sqs_fifo" if fifo else "sqs")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["messageId"] = f"msg-{i:05d}"
        r["body"] = json.dumps({"n": i})
        if fifo:
            group = groups[i]
            if group is None:
                r["attributes"].pop("MessageGroupId")
            else:
                r["attributes"]["MessageGroupId"] = str(group)
        records.append(r)
    return {"Records": records}


def kinesis(n: int, keys: list | None = None) -> dict:
    base = sample("kinesis")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["kinesis"]["sequenceNumber"] = f"{49590338271490256608559692538361571095921575989136588898 + i}"
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


def identifier(source: str, record: dict):
    return {
        "sqs": lambda r: r["messageId"],
        "kinesis": lambda r: r["kinesis"]["sequenceNumber"],
        "dynamodb": lambda r: r["dynamodb"]["SequenceNumber"],
    }[source](record)


BUILDERS = {"sqs": sqs, "kinesis": kinesis, "dynamodb": dynamodb}
