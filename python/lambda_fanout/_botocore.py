"""Cheaper botocore calls with the same results, for the sessions ``lambda_fanout.aws`` makes.

Loaded when the first helper client is made (it imports botocore). Everything here
goes through botocore's own seams on one session (its ``user_agent_creator``
component and its response parser factory's defaults), so clients made by any
other session, the user's included, are untouched.

A botocore without a seam (an older copy beside the layer, such as a Lambda runtime's
own 1.34, or a container image's) gets every other tuning: the one that needs the
missing seam is skipped, with one warning naming botocore's version. The helpers are
tested from :data:`OLDEST_BOTOCORE` (``requirements/botocore-oldest.txt``) to the
layer's pinned version.
"""

from __future__ import annotations

import datetime
import re
import time
import warnings

import botocore
from botocore import parsers
from botocore.useragent import UserAgentString
from dateutil.tz import tzlocal, tzutc

try:
    # The per-call context whose feature ids (``m/...``) enter the User-Agent; botocore
    # added it in 2025, so the runtime's 1.34 has none.
    from botocore.context import get_context
except ImportError:
    get_context = None

#: The oldest botocore the helpers are tested with (requirements/botocore-oldest.txt).
OLDEST_BOTOCORE = "1.34"
_warned = False

_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# The two shapes AWS sends: RFC 7231 in headers (S3's Last-Modified), ISO 8601 in
# XML bodies. Only exact ASCII forms with four-digit years from 1000 match: dateutil
# reads two-digit-looking years ("0050") as the current century, and case, spacing,
# offsets or Unicode digits are left to it. The weekday is not checked, as dateutil
# does not check it either.
_RFC7231 = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_ISO8601_Z = re.compile(
    r"([1-9][0-9]{3})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z"
)
_UTC = tzutc()
# dateutil gives "Z" the local zone when the local zone is named UTC (as on Lambda).
# A tzlocal() costs more than the rest of the parse, so one is kept per local-zone setting.
_local: tuple = ((), None)


def _zone_for_z() -> datetime.tzinfo:
    global _local
    names = time.tzname
    if "UTC" not in names:
        return _UTC
    key = (names, time.timezone, time.altzone, time.daylight)
    if _local[0] != key:
        _local = (key, tzlocal())
    return _local[1]


def parse_timestamp(value: object) -> datetime.datetime:
    """A timestamp as botocore's default parser returns it, without dateutil for AWS's two formats.

    Args:
        value: a timestamp from a response (a header or body text, or an epoch number).

    Returns:
        The same ``datetime`` (value, tzinfo class and offset) botocore's
        ``DEFAULT_TIMESTAMP_PARSER`` returns.

    Raises:
        ValueError: as botocore's parser does, for a value it cannot parse.
    """
    if type(value) is str:
        try:
            found = _RFC7231.fullmatch(value)
            if found is not None:
                day, month, year, hour, minute, second = found.groups()
                return datetime.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                                         int(second), tzinfo=_UTC)
            found = _ISO8601_Z.fullmatch(value)
            if found is not None:
                year, month, day, hour, minute, second, fraction = found.groups()
                zone = _zone_for_z()
                # dateutil keeps the first six digits of a fraction, padded, never rounded.
                parsed = datetime.datetime(
                    int(year), int(month), int(day), int(hour), int(minute), int(second),
                    int(fraction.ljust(6, "0")[:6]) if fraction else 0, tzinfo=zone)
                # dateutil moves a local zone not named UTC on that date (fold, UK winter) to UTC: rare, left to it.
                if zone is _UTC or parsed.tzname() == "UTC":
                    return parsed
        except ValueError:
            pass  # an impossible date: botocore's parser raises its own error for it
    return parsers.DEFAULT_TIMESTAMP_PARSER(value)


class FixedUserAgent(UserAgentString):
    """botocore's User-Agent, built once per client and set of request features, then reused.

    botocore rebuilds the same string twice per call. Its only per-call input is the
    set of feature ids the call registered (``m/...``), so the built string is kept
    per feature set; the client's configuration and session values are fixed once
    botocore copies the creator for a client (``with_client_config``).
    """

    _built: dict | None = None  # the session's own creator is still being configured: no cache

    def with_client_config(self, client_config):  # noqa: D102 (botocore's)
        copied = super().with_client_config(client_config)
        copied._built = {}
        return copied

    def to_string(self) -> str:  # noqa: D102 (botocore's)
        built = self._built
        if built is None:
            return super().to_string()
        context = get_context()
        key = frozenset(context.features) if context is not None else frozenset()
        found = built.get(key)
        if found is None:
            # Two threads may build the same string at once; both get the same value.
            found = built[key] = super().to_string()
        return found


def _skipped(seam: str, tuning: str) -> None:
    """Say once per process that botocore lacks ``seam``, so ``tuning`` is left to botocore."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"lambda_fanout.aws: botocore {botocore.__version__} has no {seam}, so {tuning} is left to botocore "
        f"(the same requests, a little more CPU per call). The helpers are tested with botocore "
        f"{OLDEST_BOTOCORE} and newer; install lambda-fanout[aws] for the layer's pinned versions.",
        RuntimeWarning, stacklevel=3,
    )


def tune_session(session) -> None:
    """Give a botocore (or aiobotocore) session the fixed User-Agent and the fast timestamp parser.

    Each is skipped, with one warning per process, where botocore lacks its seam.

    Args:
        session: a ``botocore.session.Session`` made for ``lambda_fanout.aws`` alone.
    """
    if get_context is None:
        _skipped("botocore.context", "building the User-Agent once per client")
    else:
        session.register_component("user_agent_creator", FixedUserAgent.from_environment())
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
