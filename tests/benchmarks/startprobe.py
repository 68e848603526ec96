"""One cold start of the worker pool with a given start method, in a warm-looking caller.

The caller has what a warm Lambda has running: an asyncio loop thread, a boto3 client,
and a thread taking a lock in a loop (a client's, logging's). Prints one JSON line:
first call with two workers (ms), replacing a killed worker (ms), and how many of three
new workers could take the lock the caller's thread was holding when they started.
"""

import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lambda_fanout import _procpool  # noqa: E402


def main(method: str) -> dict:
    # Imported here, not at module level: workers started by spawn or forkserver import the
    # main module again, and in Lambda the main module is the runtime's small bootstrap.
    import boto3
    import boto_task
    import xproc

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")

    def hold():
        while True:
            with xproc.LOCK:
                time.sleep(0.001)

    threading.Thread(target=hold, daemon=True).start()
    pool = _procpool.ProcessPool(method)
    task = _procpool.pickled_task(boto_task.square, "processes")
    t0 = time.perf_counter()
    workers = [pool.acquire() for _ in range(2)]
    for w in workers:
        w.call(task, [3])
    cold = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    workers[0].interrupt()
    workers[0].close()
    workers[0] = pool.acquire()
    workers[0].call(task, [3])
    replace = (time.perf_counter() - t0) * 1000
    grab = _procpool.pickled_task(xproc.grab, "processes")
    safe = 0
    for _ in range(3):
        w = pool.acquire()
        safe += w.call(grab, [0])[0][0][1]
        pool.release(w, 0)
    for w in workers:
        pool.release(w, 0)
    return {"method": method, "cold_ms": cold, "replace_ms": replace, "lock_free_in_new_workers": f"{safe}/3"}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
