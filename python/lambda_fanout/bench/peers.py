"""The libraries a user would pick instead, measured as rows beside the strategies.

- Powertools for AWS Lambda's batch processors on the batch workloads, through
  ``process_partial_response`` / ``async_process_partial_response`` with the same
  record handler (:mod:`lambda_fanout.bench.records`), its async form for the async one;
- aioboto3 on the s3 workload, gather over one client on a reused loop, as the raw
  aiobotocore idiom does.

aioboto3 pins an older aiobotocore than the layer carries, so it runs from its own
venv (``.venv-peers``, built by ``./build.sh bench`` from requirements/peers.txt), in a
process of its own under the same CPU quota; its rows reach the report in the same
pytest-benchmark JSON. A peer that cannot run says why, and the report lists it as skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import sys
from typing import Any, Callable

from . import idioms, records

#: Environments cases run in: the project's .venv, and .venv-peers for peers whose pins clash.
VENVS = ("main", "peers")
PEERS_VENV_DIR = ".venv-peers"


@dataclasses.dataclass(frozen=True)
class Peer:
    """A peer implementation.

    Attributes:
        module: what must import for it to run.
        make: ``(workload, env, workers) -> idioms.Runner``.
        venv: the environment it runs in (one of VENVS).
        takes_workers: it has a concurrency setting (else one row, workers "-").
        one_at_a_time: it has none and runs items one after another (else it starts them all at once).
        never: a reason it cannot apply at all, shown as the skip reason.
    """

    module: str
    make: Callable[[Any, Any, Any], idioms.Runner]
    venv: str = "main"
    takes_workers: bool = False
    one_at_a_time: bool = False
    never: str | None = None

    def unavailable(self) -> str | None:
        """Why this peer cannot run in this process, or None."""
        if self.never:
            return self.never
        if importlib.util.find_spec(self.module) is None:
            where = f"{PEERS_VENV_DIR} (requirements/peers.txt)" if self.venv == "peers" else "requirements/dev.txt"
            return f"{self.module} is not installed in {sys.prefix}; ./build.sh bench installs it from {where}"
        return None


def _powertools(processor: str, **kwargs: Any) -> Callable[..., idioms.Runner]:
    def make(workload: Any, env: Any, workers: Any) -> idioms.Runner:
        from aws_lambda_powertools.utilities import batch

        # EventType members are named here, as strings, so this module imports without Powertools.
        made = getattr(batch, processor)(**{k: getattr(batch.EventType, v) if k == "event_type" else v
                                            for k, v in kwargs.items()})  # kept across invocations, as user code would
        return idioms.Runner(
            lambda items: batch.process_partial_response({"Records": items}, records.read_record, made), lambda: None)

    return make


def _powertools_async(workload: Any, env: Any, workers: Any) -> idioms.Runner:
    from aws_lambda_powertools.utilities import batch

    from .. import aws

    processor = batch.AsyncBatchProcessor(event_type=batch.EventType.SQS)
    # In Lambda (LAMBDA_TASK_ROOT set) Powertools runs every invocation on the thread's
    # current loop, kept across warm invocations; outside it would start a new loop per call.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    saved = os.environ.get("LAMBDA_TASK_ROOT")
    os.environ["LAMBDA_TASK_ROOT"] = os.getcwd()

    def close() -> None:
        if saved is None:
            os.environ.pop("LAMBDA_TASK_ROOT", None)
        else:
            os.environ["LAMBDA_TASK_ROOT"] = saved
        loop.run_until_complete(aws.aclose())
        asyncio.set_event_loop(None)
        loop.close()

    return idioms.Runner(lambda items: batch.async_process_partial_response(
        {"Records": items}, records.aread_record, processor), close)


def _aioboto3(workload: Any, env: Any, workers: Any) -> idioms.Runner:
    import aioboto3

    service, acall = workload.client_calls(env)["aiobotocore"]
    made = idioms.AiobotocoreGather(service, acall, session=aioboto3.Session())
    return idioms.Runner(lambda items: made(items, workers), made.close)


PEERS: dict[str, Peer] = {
    "peer:powertools BatchProcessor": Peer(
        "aws_lambda_powertools", _powertools("BatchProcessor", event_type="SQS"), one_at_a_time=True),
    "peer:powertools AsyncBatchProcessor": Peer("aws_lambda_powertools", _powertools_async),
    "peer:powertools SqsFifoPartialProcessor": Peer(
        "aws_lambda_powertools", _powertools("SqsFifoPartialProcessor", skip_group_on_error=True),
        one_at_a_time=True),
    "peer:powertools AsyncBatchProcessor (FIFO)": Peer(
        "aws_lambda_powertools", _powertools_async,
        never="Powertools has no async FIFO processor: AsyncBatchProcessor would run a message group's "
              "records concurrently, out of order"),
    "peer:aioboto3+gather": Peer("aioboto3", _aioboto3, venv="peers", takes_workers=True),
}
