"""A record handler module as users write them: boto3 imported at module level."""

import boto3  # noqa: F401 - the import is the point: what a worker pays to load the task


def square(x):
    return x * x
