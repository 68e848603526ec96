"""Batch benchmarks: what grouping costs, side by side in one run.

A fair queue (a standard SQS queue whose messages carry MessageGroupId as a tenant key)
is not grouped, so one tenant's messages run concurrently; the same messages on a FIFO
queue run one at a time. A Kafka batch runs its partitions concurrently and each one in
offset order. Read the ratios between the cases of one group.
"""

from __future__ import annotations

import pytest

import batches
import lambda_fanout
from lambda_fanout.bench.workloads import sleep_task

RECORDS = 100
LATENCY_S = 0.010
WORKERS = 16
WAIT = sleep_task(LATENCY_S)

CASES = {
    # one tenant's 100 messages
    "sqs fair queue (standard)": lambda: batches.sqs(RECORDS, ["tenant-1"] * RECORDS, fair=True),
    "sqs FIFO, one group": lambda: batches.sqs(RECORDS, ["tenant-1"] * RECORDS),
    "sqs FIFO, 16 groups": lambda: batches.sqs(RECORDS, [i % 16 for i in range(RECORDS)]),
    "kafka, 4 partitions": lambda: batches.kafka(RECORDS, [i % 4 for i in range(RECORDS)]),
    "kafka, 16 partitions": lambda: batches.kafka(RECORDS, [i % 16 for i in range(RECORDS)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_batch_100x10ms(benchmark, case):
    benchmark.group = f"batch: {RECORDS} records x {LATENCY_S * 1000:.0f} ms, threads, {WORKERS} workers"
    event = CASES[case]()
    out = benchmark.pedantic(lambda_fanout.process_batch, args=(event, WAIT),
                             kwargs={"strategy": "threads", "max_workers": WORKERS}, rounds=3, iterations=1)
    assert out == {"batchItemFailures": []}
