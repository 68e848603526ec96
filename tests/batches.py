"""Batch events for the tests: the builders live in lambda_fanout.testing.events."""

from lambda_fanout.testing.events import BUILDERS, EVENTS_DIR, dynamodb, identifier, kinesis, sample, sqs  # noqa: F401
