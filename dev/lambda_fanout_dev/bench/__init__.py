"""``./build.sh bench`` (``python -m lambda_fanout_dev.bench``): the comparison run locally.

The command line (:mod:`.cli`), its charts (:mod:`.chart`) and its saved runs and
history (:mod:`.history`). The workloads, the harness, the statistics, the cost model
and the report are ``lambda_fanout.bench``, which a deployed function runs too
(``lambda_fanout.bench.runner.lambda_handler``).
"""
