"""The strategy comparison: workloads, measurement, Lambda cost, report and chart.

``./build.sh bench`` (``python -m lambda_fanout.bench``) runs it locally against an
embedded endpoint; :func:`lambda_fanout.bench.runner.lambda_handler` runs the same
comparison inside a deployed function against real AWS.
"""
