"""The strategy comparison: workloads, measurement, Lambda cost and report.

:func:`lambda_fanout.bench.runner.lambda_handler` runs it inside a deployed function
against real AWS; ``./build.sh bench`` (the dev package's ``lambda_fanout_dev.bench``)
runs the same workloads and harness locally against an embedded endpoint, and adds
the charts and saved runs. Nothing here imports the dev package.
"""
