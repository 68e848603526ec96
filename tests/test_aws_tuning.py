"""The helpers' cheaper botocore calls change nothing observable; lean changes only what it says.

The timestamp parser is checked against botocore's own on generated timestamps, and
the helper clients against default boto3 / aiobotocore clients over real HTTP
against moto's server: the same parsed responses (timestamps included) and the same
User-Agent header.
"""

from __future__ import annotations

import datetime
import os
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambda_fanout
from lambda_fanout import aws
from lambda_fanout._loop import submit

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def outcome(parse, value):
    """What a parser gives for value, in a form that tells every difference apart."""
    try:
        got = parse(value)
    except Exception as error:  # noqa: BLE001 - the error itself is compared
        return ("error", type(error), str(error))
    try:  # dateutil can return a zone whose offset datetime refuses
        offset = got.utcoffset(), got.tzname()
    except ValueError as error:
        offset = ("error", str(error))
    return ("value", got.replace(tzinfo=None), type(got.tzinfo), got.tzinfo, offset, got.fold)


def rfc7231(dt: datetime.datetime, weekday: str) -> str:
    return f"{weekday}, {dt.day:02d} {MONTHS[dt.month - 1]} {dt.year:04d} {dt:%H:%M:%S} GMT"


def iso8601(dt: datetime.datetime, digits: str) -> str:
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}{'.' + digits if digits else ''}Z"


datetimes = st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31))
well_formed = st.one_of(
    st.builds(rfc7231, datetimes, st.sampled_from(WEEKDAYS)),
    st.builds(iso8601, datetimes, st.text("0123456789", max_size=9)),
)
# Near misses: digits swapped for any character from an alphabet of look-alikes, case
# changes, impossible dates, other zones, epoch numbers.
LOOKALIKES = string.digits + " :-.TZzGMTUCtsn+,\u0663\uff11" + "".join(MONTHS) + "".join(WEEKDAYS)


@st.composite
def mutated(draw):
    text = list(draw(well_formed))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text) - 1))
        action = draw(st.sampled_from(("replace", "delete", "insert", "case")))
        if action == "replace":
            text[at] = draw(st.sampled_from(LOOKALIKES))
        elif action == "delete":
            del text[at]
        elif action == "insert":
            text.insert(at, draw(st.sampled_from(LOOKALIKES)))
        else:
            text[at] = text[at].swapcase()
        if not text:
            break
    return "".join(text)


timestamps = st.one_of(
    well_formed,
    mutated(),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})\Z"),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e11, max_value=1e11),
    st.integers(0, 2**33).map(str),
)


@pytest.mark.filterwarnings("ignore:tzname")  # dateutil's UnknownTimezoneWarning on mutated zones
@settings(max_examples=1500, deadline=None)
@given(timestamps)
def test_timestamp_parser_matches_botocores(value):
    from botocore import parsers

    from lambda_fanout._botocore import parse_timestamp

    assert outcome(parse_timestamp, value) == outcome(parsers.DEFAULT_TIMESTAMP_PARSER, value)


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "UTC-3"])
def test_timestamp_parser_follows_the_local_zone(monkeypatch, zone):
    """dateutil gives "Z" the local zone only where that zone is called UTC: so does the parser.

    "UTC-3" is such a zone, three hours east: there botocore reads "...Z" as +03:00,
    and so does the parser, as its results must be botocore's.
    """
    import time

    from botocore import parsers

    from lambda_fanout._botocore import parse_timestamp

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for value in ("2015-10-21T07:28:00.123Z", "2015-01-21T07:28:00Z", "Wed, 21 Jan 2015 07:28:00 GMT"):
            assert outcome(parse_timestamp, value) == outcome(parsers.DEFAULT_TIMESTAMP_PARSER, value)
    finally:
        monkeypatch.undo()
        time.tzset()


# -- helper clients against default clients, over real HTTP ---------------------------------

VARYING_HEADERS = {"date", "x-amz-request-id", "x-amzn-requestid", "x-amz-id-2"}


def comparable(response: dict, varying: frozenset = frozenset()) -> dict:
    """A response without what differs between two identical calls (request ids, the server clock)."""
    response = dict(response)
    meta = dict(response.pop("ResponseMetadata"))
    meta.pop("RequestId", None)
    meta.pop("HostId", None)
    meta["HTTPHeaders"] = {k: v for k, v in meta["HTTPHeaders"].items() if k not in VARYING_HEADERS | varying}
    response["ResponseMetadata"] = meta
    return response


def user_agents(client) -> list[str]:
    """Record the User-Agent of every request the client sends."""
    sent: list[str] = []
    def record(request, **_):
        agent = request.headers["User-Agent"]
        sent.append(agent.decode() if isinstance(agent, bytes) else agent)

    client.meta.events.register("before-send", record)
    return sent


def same_agent(ours: str, theirs: str) -> bool:
    """Equal User-Agents, the order of the feature ids in ``m/`` (a set in botocore) aside."""
    def split(agent):
        return [tuple(sorted(part[2:].split(","))) if part.startswith("m/") else part for part in agent.split(" ")]

    return split(ours) == split(theirs)


# A "." or ".." path segment is left out: moto's server resolves it as a path (and answers 500),
# where S3 keeps it as part of the key; it says nothing about the clients compared here.
object_names = st.text(string.ascii_letters + string.digits + "-_./ ", min_size=1, max_size=40).filter(
    lambda key: not {".", ".."} & set(key.split("/")))
metadata = st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8),
                           st.text(string.ascii_letters + string.digits, max_size=12), max_size=3)
expiry = st.datetimes(min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2999, 12, 31)).map(
    lambda dt: dt.replace(microsecond=0, tzinfo=datetime.timezone.utc))
dynamo_values = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=20)),
    st.builds(lambda n: {"N": str(n)}, st.integers(-(10**12), 10**12)),
    st.builds(lambda b: {"B": b}, st.binary(min_size=1, max_size=20)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.builds(lambda ss: {"SS": sorted(ss)}, st.sets(st.text(min_size=1, max_size=5), min_size=1, max_size=3)),
)


@pytest.fixture
def pair_and_default(aws_endpoint):
    """The helpers' S3 and DynamoDB clients beside default boto3 clients with the same Config."""
    import boto3
    from botocore.config import Config

    made = {}
    for service in ("s3", "dynamodb"):
        pair = aws.clients(service)
        ours = pair.sync
        theirs = boto3.session.Session().client(service, config=Config(**aws.client_settings(pair.max_workers, pair.profile)))
        made[service] = (ours, theirs, user_agents(ours), user_agents(theirs))
    return made


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=object_names, body=st.binary(max_size=2048), meta=metadata, expires=expiry,
       item=st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6), dynamo_values, max_size=4))
def test_helper_clients_parse_exactly_as_default_clients(pair_and_default, s3_bucket, ddb_table, key, body, meta,
                                                         expires, item):
    s3, s3_default, s3_ours_ua, s3_their_ua = pair_and_default["s3"]
    ddb, ddb_default, ddb_ours_ua, ddb_their_ua = pair_and_default["dynamodb"]
    s3_default.put_object(Bucket=s3_bucket, Key=key, Body=body, Metadata=meta, Expires=expires)
    for sent in (s3_ours_ua, s3_their_ua, ddb_ours_ua, ddb_their_ua):
        sent.clear()

    calls = [
        (s3, s3_default, "head_object", {"Bucket": s3_bucket, "Key": key}),
        (s3, s3_default, "get_object", {"Bucket": s3_bucket, "Key": key}),
        (s3, s3_default, "list_objects_v2", {"Bucket": s3_bucket, "Prefix": key}),
        (s3, s3_default, "put_object", {"Bucket": s3_bucket, "Key": key + ".copy", "Body": body}),
        (ddb, ddb_default, "put_item", {"TableName": ddb_table, "Item": {**item, "pk": {"S": key}}}),
        (ddb, ddb_default, "get_item", {"TableName": ddb_table, "Key": {"pk": {"S": key}}}),
        (ddb, ddb_default, "describe_table", {"TableName": ddb_table}),  # epoch-number timestamps
    ]
    for ours, theirs, operation, params in calls:
        got = getattr(ours, operation)(**params)
        want = getattr(theirs, operation)(**params)
        if operation == "get_object":
            assert got.pop("Body").read() == want.pop("Body").read() == body
        # Two writes are two objects, written at different times.
        written = frozenset({"last-modified"} if operation == "put_object" else ())
        assert comparable(got, written) == comparable(want, written), operation
        if operation == "head_object":
            assert got["Expires"] == expires and type(got["Expires"].tzinfo) is type(want["Expires"].tzinfo)
            assert got["LastModified"].tzinfo == want["LastModified"].tzinfo
        if operation == "list_objects_v2":
            listed = [o["LastModified"] for o in got["Contents"]]
            assert [(t, t.tzinfo) for t in listed] == [(o["LastModified"], o["LastModified"].tzinfo)
                                                      for o in want["Contents"]]
    assert len(s3_ours_ua) == len(s3_their_ua) == 4 and len(ddb_ours_ua) == len(ddb_their_ua) == 3
    for ours_sent, theirs_sent in ((s3_ours_ua, s3_their_ua), (ddb_ours_ua, ddb_their_ua)):
        assert all(same_agent(a, b) for a, b in zip(ours_sent, theirs_sent)), (ours_sent, theirs_sent)


def test_helper_async_client_parses_as_default_aiobotocore(aws_endpoint, s3_bucket):
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    import boto3

    expires = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="k", Body=b"body", Expires=expires)
    pair = aws.clients("s3")

    async def both():
        ours = await pair.aio_client()
        async with get_session().create_client("s3", config=AioConfig(**aws.client_settings(16))) as theirs:
            sent = user_agents(ours), user_agents(theirs)
            got = [await ours.head_object(Bucket=s3_bucket, Key="k"),
                   await ours.list_objects_v2(Bucket=s3_bucket)]
            want = [await theirs.head_object(Bucket=s3_bucket, Key="k"),
                    await theirs.list_objects_v2(Bucket=s3_bucket)]
            return got, want, sent

    got, want, (ours_ua, theirs_ua) = submit(both()).result()
    assert [comparable(r) for r in got] == [comparable(r) for r in want]
    assert got[0]["Expires"] == expires
    assert got[1]["Contents"][0]["LastModified"].tzinfo == want[1]["Contents"][0]["LastModified"].tzinfo
    assert len(ours_ua) == len(theirs_ua) == 2
    assert all(same_agent(a, b) for a, b in zip(ours_ua, theirs_ua))
    assert ours_ua[0].startswith("aiobotocore/")


def timestamp_parser(client):
    """The timestamp parser of the parsers the client's endpoint makes for each response."""
    return client._endpoint._response_parser_factory.create_parser("rest-xml")._timestamp_parser


def test_users_own_clients_are_untouched(aws_endpoint, s3_bucket):
    import boto3
    import botocore.session
    from botocore import parsers, useragent

    from lambda_fanout._botocore import FixedUserAgent, parse_timestamp

    ours = aws.clients("s3").sync
    ours.head_bucket(Bucket=s3_bucket)
    # The helper's client has both parts ...
    assert timestamp_parser(ours) is parse_timestamp
    assert isinstance(ours._user_agent_creator, FixedUserAgent)
    # ... and every other way of making a client has botocore's own, after the helpers ran.
    for theirs in (boto3.client("s3"), boto3.session.Session().client("s3"),
                   botocore.session.get_session().create_client("s3")):
        theirs.head_bucket(Bucket=s3_bucket)
        assert timestamp_parser(theirs) is parsers.DEFAULT_TIMESTAMP_PARSER
        assert type(theirs._user_agent_creator) is useragent.UserAgentString
    from botocore.utils import parse_timestamp as botocores

    assert parsers.DEFAULT_TIMESTAMP_PARSER is botocores


def test_user_agent_is_built_once_per_feature_set(aws_endpoint, s3_bucket, monkeypatch):
    from botocore.useragent import UserAgentString

    client = aws.clients("s3").sync
    client.head_bucket(Bucket=s3_bucket)
    builds = []
    original = UserAgentString.to_string
    monkeypatch.setattr(UserAgentString, "to_string", lambda self: builds.append(1) or original(self))
    sent = user_agents(client)
    for _ in range(20):
        client.head_bucket(Bucket=s3_bucket)
    assert len(sent) == 20 and len(set(sent)) == 1
    assert builds == []  # head_bucket's feature set was seen on the first call


def test_user_agent_under_threads_is_botocores(aws_endpoint, s3_bucket):
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    pair = aws.clients("s3")
    ours = pair.sync
    theirs = boto3.session.Session().client("s3", config=Config(**aws.client_settings(pair.max_workers, pair.profile)))
    sent, reference = user_agents(ours), user_agents(theirs)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: ours.head_bucket(Bucket=s3_bucket), range(64)))
    theirs.head_bucket(Bucket=s3_bucket)
    assert len(sent) == 64 and len(set(sent)) == 1
    assert same_agent(sent[0], reference[0])


# -- one shared client ----------------------------------------------------------------------

def test_one_client_is_shared_by_every_thread(aws_endpoint, s3_bucket):
    import threading

    pair = aws.clients("s3")
    seen = []
    barrier = threading.Barrier(8)

    def use():
        barrier.wait()
        seen.append(pair.sync)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(c is seen[0] for c in seen)


# -- the lean profile -----------------------------------------------------------------------

def test_lean_profile_settings(aws_endpoint, ddb_table, monkeypatch):
    from botocore.exceptions import ClientError, ParamValidationError

    assert aws.client_profile() == "default"
    assert aws.clients("s3").sync.meta.config.request_checksum_calculation == "when_supported"
    assert {k: v for k, v in aws.client_settings(16, "lean").items()
            if k not in aws.client_settings(16)} == aws.LEAN_SETTINGS

    monkeypatch.setenv(lambda_fanout._config.ENV_AWS_CLIENT, "lean")  # read when clients() is called
    lean = aws.clients("s3")
    assert lean.profile == "lean" and lean is not aws.clients("s3", profile="default")
    assert aws.clients("s3", profile="default").profile == "default"  # the argument beats the environment
    config = lean.sync.meta.config
    assert config.request_checksum_calculation == config.response_checksum_validation == "when_required"

    async def no_key(pair):
        try:
            await pair.aio.get_item(TableName=ddb_table)
        except (ClientError, ParamValidationError) as error:
            return type(error)

    assert submit(no_key(aws.clients("dynamodb"))).result() is ClientError  # the service saw it
    assert submit(no_key(aws.clients("dynamodb", profile="default"))).result() is ParamValidationError


@pytest.mark.parametrize("value", ["Lean\u00a0", "fast", "1", ""])
def test_bad_client_profile_setting(monkeypatch, value):
    monkeypatch.setenv(lambda_fanout._config.ENV_AWS_CLIENT, value)
    with pytest.raises(lambda_fanout.ConfigError, match=lambda_fanout._config.ENV_AWS_CLIENT) as raised:
        aws.clients("s3")
    assert "'default', 'lean'" in str(raised.value)
    with pytest.raises(lambda_fanout.ConfigError, match="argument profile="):
        aws.clients("s3", profile=value)


def test_lean_sends_no_checksum_where_none_is_required(aws_endpoint, s3_bucket):
    default, lean = aws.clients("s3"), aws.clients("s3", profile="lean")
    headers = {}
    for pair in (default, lean):
        def record(request, profile=pair.profile, **_):  # returns None: botocore then sends the request
            headers.setdefault(profile, dict(request.headers))

        pair.sync.meta.events.register("before-send", record)
    out = {p.profile: lambda_fanout.map(aws.s3_put_object(s3_bucket, clients=p), [(f"{p.profile}-k", b"x" * 100)])
           for p in (default, lean)}
    assert out["default"] == out["lean"]
    assert "x-amz-checksum-crc32" in headers["default"]
    assert not any(re.match("x-amz-(sdk-)?checksum", h, re.I) for h in headers["lean"])
    assert lambda_fanout.map(aws.s3_get_object(s3_bucket, clients=lean), ["default-k", "lean-k"]) == [b"x" * 100] * 2


def test_lean_leaves_parameter_checks_to_the_service(aws_endpoint, s3_bucket, ddb_table):
    from botocore.exceptions import ClientError, ParamValidationError

    default, lean = aws.clients("dynamodb"), aws.clients("dynamodb", profile="lean")
    with pytest.raises(ParamValidationError, match="Key"):
        default.sync.get_item(TableName=ddb_table)
    with pytest.raises(ClientError):  # the service rejects it instead (moto with a 500), after round trips
        lean.sync.get_item(TableName=ddb_table)
    # What LEAN_SETTINGS warns of: a bad parameter may address something else than meant.
    with pytest.raises(ParamValidationError):
        aws.clients("s3").sync.get_object(Bucket=s3_bucket, Key="")
    assert "ListBucketResult" in aws.clients("s3", profile="lean").sync.get_object(
        Bucket=s3_bucket, Key="")["Body"].read().decode()


# -- beside an older botocore ------------------------------------------------------------------

OLDEST_VENV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-botocore-oldest")


def test_the_helpers_run_beside_the_oldest_botocore_claimed(aws_endpoint, s3_bucket, ddb_table):
    """Installed without the aws extra next to botocore 1.34 (a Lambda runtime's own): same results, one warning."""
    import json
    import subprocess
    import sys

    import staging
    from lambda_fanout import _botocore

    python = os.path.join(OLDEST_VENV, "bin", "python")
    if not os.path.exists(python):
        pytest.skip(f"{OLDEST_VENV} is built by ./build.sh test (from requirements/botocore-oldest.txt)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": staging.python_dir(),
           **aws_endpoint.environ()}
    program = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws_helpers_program.py")
    proc = subprocess.run([python, program, s3_bucket, ddb_table], env=env, cwd="/", capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["botocore"].split(".")[:2] == _botocore.OLDEST_BOTOCORE.split("."), out["botocore"]
    for strategy, seen in out["strategies"].items():
        keys = [f"{strategy}/k{i}" for i in range(6)]
        assert seen["bodies"] == keys and seen["etags_match"], strategy
        assert seen["sizes"] == [len(k) for k in keys], strategy
        assert seen["items"] == [{"pk": {"S": k}, "n": {"N": str(i)}} for i, k in enumerate(keys)], strategy
    assert sorted(out["strategies"]) == ["processes", "sequential", "threads", "threads-map"]
    assert out["listed"] == 24
    (warning,) = out["warnings"]  # one, however many clients and calls
    assert warning.startswith(f"RuntimeWarning: lambda_fanout.aws: botocore {out['botocore']} has no "
                              "botocore.context"), warning
    assert f"tested with botocore {_botocore.OLDEST_BOTOCORE} and newer" in warning, warning
