"""Run lambda_fanout.aws's helpers in this interpreter, on whatever botocore it has; print what came back.

    python aws_helpers_program.py BUCKET TABLE     (the endpoint and credentials from AWS_* variables)

tests/test_aws_tuning.py runs it in .venv-botocore-oldest (boto3/botocore only, with the
staged package on PYTHONPATH), as the package runs installed without its ``aws`` extra
beside an older botocore. One JSON line on stdout: botocore's version, each strategy's
results, and the warnings the caller's process saw.
"""

from __future__ import annotations

import json
import sys
import warnings


def main(bucket: str, table: str) -> dict:
    import botocore

    import lambda_fanout
    from lambda_fanout import aws

    out: dict = {"botocore": botocore.__version__, "strategies": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for strategy in ("sequential", "threads", "threads-map", "processes"):
            keys = [f"{strategy}/k{i}" for i in range(6)]
            etags = lambda_fanout.map(aws.s3_put_object(bucket), [(k, k.encode()) for k in keys], strategy=strategy)
            bodies = lambda_fanout.map(aws.s3_get_object(bucket), keys, strategy=strategy)
            heads = lambda_fanout.map(aws.s3_head_object(bucket), keys, strategy=strategy)
            items = [{"pk": {"S": k}, "n": {"N": str(i)}} for i, k in enumerate(keys)]
            lambda_fanout.map(aws.dynamodb_put_item(table), items, strategy=strategy)
            got = lambda_fanout.map(aws.dynamodb_get_item(table), [{"pk": {"S": k}} for k in keys], strategy=strategy)
            out["strategies"][strategy] = {
                "bodies": [b.decode() for b in bodies],
                "etags_match": [h["ETag"] for h in heads] == etags,
                "sizes": [h["ContentLength"] for h in heads],
                "items": got,
            }
        out["listed"] = aws.clients("s3").sync.list_objects_v2(Bucket=bucket)["KeyCount"]
    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught
                       if "lambda_fanout" in str(w.message)]
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])))
