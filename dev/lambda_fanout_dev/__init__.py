"""Development tools for lambda-fanout: never part of the layer.

- :mod:`.endpoint`, :mod:`.proxy`: moto's server behind a latency and fault proxy, the
  local AWS endpoint of the tests, the bench and ``./build.sh invoke``;
- :mod:`.local_lambda`, :mod:`.runtime_api`, :mod:`.invoke`: a function run with the
  layer attached the way Lambda runs it (``./build.sh invoke``);
- :mod:`.events` (with ``sample_events/``), :mod:`.emf`: sample batch events, and a
  reader for the EMF lines a function writes;
- :mod:`.quota`: Lambda's CPU share for a memory size, as a cgroup CPU quota;
- :mod:`.bench`: ``./build.sh bench``, the comparison's command line, chart and saved runs.

Imports go one way: these modules use ``lambda_fanout`` (the comparison's in-Lambda
part, ``lambda_fanout.bench``, included); nothing in ``lambda_fanout`` imports them.
The layer ships ``python/lambda_fanout/`` and ``strategies/`` only. Everything here
listens on and talks to 127.0.0.1 only.
"""

from pathlib import Path

#: The source checkout these tools work in (layer/, requirements/, build/, dist/).
ROOT = Path(__file__).resolve().parents[2]
