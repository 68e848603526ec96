"""A child that runs the cpu workload on request, under whatever CPU quota it was started in.

Reads one strategy name per line on stdin, runs the cpu workload with it and answers one
JSON line: the result's length and, for ``processes``, its workers' start-up times.
Worker processes it starts inherit its cgroup, so the quota covers them too.
"""

import json
import sys

import lambda_fanout
from lambda_fanout import _procpool
from lambda_fanout.bench.workloads import WORKLOADS

if __name__ == "__main__":
    items = WORKLOADS["cpu"].items(int(sys.argv[1]))
    task = WORKLOADS["cpu"].task(None)
    for line in sys.stdin:
        impl = line.strip()
        strategy = lambda_fanout.get_strategy(impl, max_workers=None if impl == "processes" else 8)
        out = strategy.map(task, items)
        pool = _procpool.get_pool()
        print(json.dumps({"n": len(out), "workers": strategy.max_workers,
                          "startup_ms": pool.startup_ms, "cpus": _procpool.cgroup_cpus()}), flush=True)
