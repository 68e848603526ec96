"""Batch events built from AWS's documented sample events (``sample_events/*.json``).

Every record carries its position ``n``: an SQS body ``{"n": n}``, a Kinesis record's
data (base64 of the same JSON), a DynamoDB stream record's ``NewImage.n``, a Kafka
record's value, an SNS ``Message``, an EventBridge event's ``detail.n``, a Distributed
Map item's ``n``. The S3 notifications, the EventBridge event and the Distributed Map
items name the bench's objects (``lambda_fanout.bench.seeding``): record i names object
i of the bench's bucket, which ``./build.sh invoke --seed bench`` writes.

:data:`SAMPLES` maps the short names ``./build.sh invoke --event KIND:N`` accepts to
their builders; a new source is one more entry there.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from typing import Callable

from lambda_fanout._config import DEFAULT_BENCH_BUCKET
from lambda_fanout.bench.seeding import s3_body, s3_keys

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


def s3(n: int, bucket: str = DEFAULT_BENCH_BUCKET) -> dict:
    """n S3 ObjectCreated notifications, record i naming the bench's object i (its key URL-encoded, as S3 sends it)."""
    from urllib.parse import quote_plus

    base = sample("s3")["Records"][0]
    records = []
    for i, key in enumerate(s3_keys(n)):
        r = copy.deepcopy(base)
        r["s3"]["bucket"]["name"] = bucket
        r["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        r["s3"]["object"].update(key=quote_plus(key), size=len(s3_body(key)), sequencer=f"{i:018X}")
        records.append(r)
    return {"Records": records}


def sns(n: int) -> dict:
    """n SNS notifications; record i's Message is ``{"n": i}``."""
    base = sample("sns")["Records"][0]
    records = []
    for i in range(n):
        r = copy.deepcopy(base)
        r["Sns"]["MessageId"] = f"95df01b4-ee98-5cb9-9903-{i:012d}"
        r["Sns"]["Message"] = _body(i)
        records.append(r)
    return {"Records": records}


def eventbridge(n: int, bucket: str = DEFAULT_BENCH_BUCKET) -> dict:
    """One EventBridge "Object Created" event from S3 for the bench's object ``n - 1``.

    EventBridge invokes a function with one event at a time, so ``eventbridge:N`` is
    one event: the N-th object's (``detail.n`` is N - 1).
    """
    key = s3_keys(n)[-1]
    event = sample("eventbridge")
    event.update({"id": f"fe8d3c65-xmpl-c5c3-2c87-{n - 1:012d}", "detail-type": "Object Created",
                  "source": "aws.s3", "resources": [f"arn:aws:s3:::{bucket}"],
                  "detail": {"version": "0", "bucket": {"name": bucket},
                             "object": {"key": key, "size": len(s3_body(key))}, "n": n - 1}})
    return event


def distributed_map(n: int) -> dict:
    """One Distributed Map ItemBatcher batch of n S3 listing entries, item i the bench's object i."""
    event = sample("distributed_map")
    event["Items"] = [{"Key": key, "Size": len(s3_body(key)), "n": i} for i, key in enumerate(s3_keys(n))]
    event["BatchInput"] = {"prefix": "bench/"}
    return event


def objects_named(event: object) -> int:
    """How many of the bench's objects a generated event names (0 for the other samples)."""
    if not isinstance(event, dict):
        return 0
    if event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        return event["detail"].get("n", 0) + 1
    records = event.get("Items") or event.get("Records") or []
    return sum(1 for r in records if isinstance(r, dict) and ("s3" in r or "Key" in r))


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
    if "Sns" in record:
        return json.loads(record["Sns"]["Message"])["n"]
    if "s3" in record:
        return int(record["s3"]["object"]["key"].rpartition("%2F")[2])
    if "detail" in record:
        return record["detail"]["n"]
    if "Key" in record:
        return record["n"]
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
    "s3": s3,
    "sns": sns,
    "eventbridge": eventbridge,
    "dmap": distributed_map,
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
