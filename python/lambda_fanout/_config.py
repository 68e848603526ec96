"""Settings: every ``FANOUT_*`` name declared once, resolved once into one frozen object.

:meth:`Settings.resolve` reads the environment (an explicit argument wins) and checks
every value, reporting all bad ones in one :class:`ConfigError` (its ``problems``). It
runs at the top of ``map`` / ``amap`` / ``process_batch``, and once at init for the
zero-code handler; the object is passed down and nothing below reads ``os.environ``.
Nothing here reads the environment at import.

A new setting goes here: its ``ENV_*`` name and default, a row of :data:`VARIABLES`
(which renders the README's Configuration table), a slot of :class:`Settings`, and its
resolution in :meth:`Settings.resolve` (with the ``resolve_*`` helpers below). A rule
that differs by strategy is not written here: it is a method of the strategy's class
(``default_workers``, ``auto_workers``), found through ``lambda_fanout.strategies``,
which also declares the strategy names.
"""

from __future__ import annotations

import os
# Annotations only (postponed by `from __future__ import annotations`): typing is
# not imported at run time, which keeps cold starts short.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

from ._errors import ConfigError
from .strategies import STRATEGIES, default_for, strategy_class

ENV_STRATEGY = "FANOUT_STRATEGY"
ENV_MAX_WORKERS = "FANOUT_MAX_WORKERS"
ENV_DEADLINE_MARGIN_MS = "FANOUT_DEADLINE_MARGIN_MS"
ENV_RECORD_HANDLER = "FANOUT_RECORD_HANDLER"
ENV_METRICS = "FANOUT_METRICS"
ENV_METRICS_NAMESPACE = "FANOUT_METRICS_NAMESPACE"
ENV_FIFO_ON_FAILURE = "FANOUT_FIFO_ON_FAILURE"
ENV_RAISE_ON_ALL_FAILED = "FANOUT_RAISE_ON_ALL_FAILED"
ENV_AWS_CONNECT_TIMEOUT_S = "FANOUT_AWS_CONNECT_TIMEOUT_S"
ENV_AWS_READ_TIMEOUT_S = "FANOUT_AWS_READ_TIMEOUT_S"
#: Which client settings lambda_fanout.aws uses (one of AWS_CLIENTS).
ENV_AWS_CLIENT = "FANOUT_AWS_CLIENT"
ENV_LOG_FAILURES = "FANOUT_LOG_FAILURES"
ENV_BENCH_OPTIONS = "FANOUT_BENCH_OPTIONS"
ENV_BENCH_BUCKET = "FANOUT_BENCH_BUCKET"
ENV_BENCH_TABLE = "FANOUT_BENCH_TABLE"
#: Set by Lambda in every function's environment; not ours.
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
#: Set by Lambda: the function's memory, which sets its CPU share (one vCPU per 1,769 MB).
ENV_LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
#: Lambda's log format setting (``Text`` or ``JSON``); not ours, read to match it.
ENV_LAMBDA_LOG_FORMAT = "AWS_LAMBDA_LOG_FORMAT"

#: The strategy of a task with both forms (a ``Task(sync_fn, async_fn)``) when FANOUT_STRATEGY is unset.
DEFAULT_STRATEGY = "threads"
#: FANOUT_STRATEGY unset: the first of these that runs a form the task has, so a task with
#: only an async form runs under asyncio, any other under DEFAULT_STRATEGY.
DEFAULT_STRATEGIES = (DEFAULT_STRATEGY, "asyncio")
#: The memory sizes Lambda gives a function.
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10240
#: Lambda allows 1024 processes and threads per execution environment in all.
MAX_WORKERS_LIMIT = 1024
#: ``FANOUT_MAX_WORKERS=auto``: adaptive concurrency up to a cap (``auto:N``), 256 unless given.
AUTO = "auto"
DEFAULT_AUTO_CAP = 256
#: FANOUT_MAX_WORKERS unset: auto, under every strategy but ``processes`` (its vCPUs). Chosen by
#: measurement (tests/benchmarks/test_defaults_bench.py): the limit starts at the old fixed
#: default of 16 and climbs as far as the work gains by it, and it backs off a throttling service.
DEFAULT_MAX_WORKERS = AUTO
#: Time kept back from the Lambda deadline to report results and flush metrics.
DEFAULT_DEADLINE_MARGIN_MS = 500
MAX_DEADLINE_MARGIN_MS = 15 * 60 * 1000
DEFAULT_METRICS_NAMESPACE = "LambdaFanout"
#: One log line per failed record: "on" (with the exception's message), "type-only"
#: (its type and traceback, not its message, which often carries the payload), "off".
LOG_FAILURES_CHOICES = ("on", "type-only", "off")
DEFAULT_LOG_FAILURES = "type-only"
DEFAULT_AWS_CONNECT_TIMEOUT_S = 3.0
DEFAULT_AWS_READ_TIMEOUT_S = 10.0
MAX_AWS_TIMEOUT_S = 900.0
#: lambda_fanout.aws's client settings (its CLIENT_PROFILES): ``default`` (results exactly
#: as botocore's), ``lean`` (less client-side checking), ``crt`` (S3 calls through awscrt).
AWS_CLIENTS = ("default", "lean", "crt")
DEFAULT_AWS_CLIENT = "default"
DEFAULT_BENCH_BUCKET = DEFAULT_BENCH_TABLE = "lambda-fanout-bench"

#: The spellings an on/off variable takes, and what each means. Like every choice read from
#: the environment, they match in any case, with ASCII spaces around them ignored.
FLAG_ALIASES = {"on": "on", "true": "on", "yes": "on", "1": "on",
                "off": "off", "false": "off", "no": "off", "0": "off"}

# When each variable is read, for the Configuration table (its legend is in the README).
_PER_CALL = "per call; at init for the zero-code handler"
_AT_INIT = "at init"
_CLIENT = "when a client is built; checked per call too"
_BENCH = "per bench invocation"

#: Every FANOUT_* variable: (name, default, when it is read, meaning). The README's
#: Configuration table is :func:`configuration_table`, and a test keeps the two equal.
VARIABLES = (
    (ENV_STRATEGY, f"`{DEFAULT_STRATEGIES[1]}` for a task with only an async form, else `{DEFAULT_STRATEGY}`",
     _PER_CALL,
     "how items run: `sequential`, `threads`, `threads-map`, `asyncio` or `processes`"),
    (ENV_MAX_WORKERS, f"`{DEFAULT_MAX_WORKERS}`", _PER_CALL,
     f"concurrency, a whole number from 1 to {MAX_WORKERS_LIMIT}, or `auto` / `auto:N` (an adaptive "
     f"limit up to N, default {DEFAULT_AUTO_CAP}); under `processes` unset or auto, the vCPUs (at most N)"),
    (ENV_DEADLINE_MARGIN_MS, f"`{DEFAULT_DEADLINE_MARGIN_MS}`", _PER_CALL,
     "milliseconds kept back from the Lambda deadline: no item starts after it (a batch keeps more "
     "for its reply: 6 µs of a vCPU per record)"),
    (ENV_LOG_FAILURES, f"`{DEFAULT_LOG_FAILURES}`", _PER_CALL,
     "one ERROR log line per failed record: `on` (with the exception's message), "
     "`type-only` (type and traceback, no message), `off`"),
    (ENV_METRICS, "`off`", _PER_CALL,
     "one EMF metrics line per call, dimensions `FunctionName` and `Strategy` (custom metrics: "
     "see Metrics for the cost): on/off, true/false, yes/no or 1/0"),
    (ENV_METRICS_NAMESPACE, f"`{DEFAULT_METRICS_NAMESPACE}`", _PER_CALL,
     "CloudWatch namespace of the metrics: 1 to 255 printable ASCII characters, not starting with `:` "
     "or `AWS/`"),
    (ENV_FIFO_ON_FAILURE, "`group`", _PER_CALL,
     "SQS FIFO batches after a failure: `group` skips the rest of its message group, "
     "`batch` starts no record after the first failure"),
    (ENV_RAISE_ON_ALL_FAILED, "`off`", _PER_CALL,
     "raise `BatchError` instead of a partial response when every record of an SQS, Kinesis, "
     "DynamoDB or Kafka batch failed (for `BisectBatchOnFunctionError`): on/off"),
    (ENV_RECORD_HANDLER, "(required)", _AT_INIT,
     "the per-record function, `module.function` or `dir/module.function`"),
    (ENV_AWS_CONNECT_TIMEOUT_S, f"`{DEFAULT_AWS_CONNECT_TIMEOUT_S:g}`", _CLIENT,
     "`lambda_fanout.aws` clients' connect timeout in seconds, above 0 and at most 900, in plain digits "
     "(`2.5`)"),
    (ENV_AWS_READ_TIMEOUT_S, f"`{DEFAULT_AWS_READ_TIMEOUT_S:g}`", _CLIENT,
     "`lambda_fanout.aws` clients' read timeout in seconds, above 0 and at most 900, in plain digits "
     "(`2.5`)"),
    (ENV_AWS_CLIENT, f"`{DEFAULT_AWS_CLIENT}`", _CLIENT,
     "`lambda_fanout.aws` client settings: `default`, `lean` (no parameter validation, checksums "
     "only where required) or `crt` (the S3 helpers' get, put and head through awscrt; native layer zips)"),
    (ENV_BENCH_BUCKET, f"`{DEFAULT_BENCH_BUCKET}`", _BENCH, "the bucket the bench function reads"),
    (ENV_BENCH_TABLE, f"`{DEFAULT_BENCH_TABLE}`", _BENCH, "the table the bench function reads"),
    (ENV_BENCH_OPTIONS, "(set by `./build.sh bench`)", "by the bench's suite",
     "internal: the options `./build.sh bench` hands its suite; do not set it"),
)

ERROR_MODES = ("raise", "collect")
#: SQS FIFO batches: after a failure, stop only its message group, or the whole batch.
FIFO_ON_FAILURE_MODES = ("group", "batch")
DEFAULT_FIFO_ON_FAILURE = "group"


class Settings:
    """Every setting of one call (or of the zero-code handler's life), resolved and checked.

    Build it with :meth:`resolve`; it is immutable, so one object can be shared by
    every thread of a call and by every warm invocation.

    Attributes:
        strategy: one of ``lambda_fanout.STRATEGIES``.
        max_workers: concurrency, 1 to 1024, or an :class:`Auto` (adaptive, up to its cap; never
            under ``processes``, where auto resolves to a count).
        deadline_margin_ms: time kept back from the Lambda deadline.
        metrics: whether one EMF line is written per call (off unless FANOUT_METRICS turns it on).
        metrics_namespace: the CloudWatch namespace of that line.
        function_name: the Lambda function's name (``AWS_LAMBDA_FUNCTION_NAME``), the
            line's FunctionName dimension; ``""`` outside Lambda.
        fifo_on_failure: SQS FIFO batches: ``"group"`` (after a failure only the later
            records of its message group are skipped) or ``"batch"`` (no record starts
            after the first failure).
        raise_on_all_failed: batches with partial responses: raise BatchError instead of
            replying when every record failed (so a stream's BisectBatchOnFunctionError applies).
        log_failures: "on", "type-only" or "off": the log line per failed record.
        log_json: whether Lambda's log format is JSON (the failure line's fields then
            go out as structured keys).
        memory_mb: the function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), which sets
            its CPU share; None outside Lambda.
    """

    # A plain class rather than a frozen dataclass: dataclasses imports inspect, which
    # would add milliseconds to every cold start.
    __slots__ = ("strategy", "max_workers", "deadline_margin_ms", "metrics", "metrics_namespace",
                 "function_name", "fifo_on_failure", "raise_on_all_failed", "log_failures", "log_json",
                 "memory_mb")

    def __init__(self, **values: Any) -> None:
        missing = [n for n in self.__slots__ if n not in values]
        extra = sorted(set(values) - set(self.__slots__))
        if missing or extra:
            raise TypeError(f"Settings needs exactly {list(self.__slots__)}; missing {missing}, unknown {extra}")
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are frozen: build new ones with Settings.resolve(), not by setting {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @classmethod
    def resolve(
        cls,
        *,
        strategy: str | None = None,
        max_workers: int | str | Auto | None = None,
        deadline_margin_ms: int | None = None,
        fifo_on_failure: str | None = None,
        raise_on_all_failed: bool | None = None,
        environ: Mapping[str, str] | None = None,
        task: Any = None,
    ) -> "Settings":
        """Resolve every setting: the explicit argument, else its ``FANOUT_*`` variable, else the default.

        Args:
            strategy: one of STRATEGIES, or None for ``FANOUT_STRATEGY``; unset, the one
                that runs ``task``'s form (:func:`resolve_strategy`).
            max_workers: 1 to 1024, ``"auto"`` / ``"auto:N"``, or None for ``FANOUT_MAX_WORKERS``;
                unset, auto, or for ``processes`` the vCPUs the function has (cgroup quota, CPU
                affinity, and ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` / 1769 rounded up inside
                Lambda); under ``processes`` auto is that count too, at most its cap.
            deadline_margin_ms: ms kept back from the deadline, or None for ``FANOUT_DEADLINE_MARGIN_MS``.
            fifo_on_failure: ``"group"`` or ``"batch"``, or None for ``FANOUT_FIFO_ON_FAILURE``.
            raise_on_all_failed: a bool, or None for ``FANOUT_RAISE_ON_ALL_FAILED`` (on/off).
            environ: the environment to read (default ``os.environ``).
            task: what the call runs (the record handler for a batch), or None when unknown.

        Returns:
            The frozen Settings.

        Raises:
            ConfigError: one or more values are bad; the message has one line per bad
                setting, each naming it, repeating the value and saying what is valid.
        """
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def attempt(resolver, *args, **kwargs):
            try:
                return resolver(*args, **kwargs)
            except ConfigError as exc:
                problems.extend(exc.problems)
                return None

        name = attempt(resolve_strategy, strategy, environ=env, task=task)
        memory = attempt(resolve_memory_mb, env)
        # The strategy's own rules: its default worker count, and what auto means for it.
        chosen = None if name is None else strategy_class(name)
        default_workers = Auto() if chosen is None else attempt(chosen.default_workers, memory)
        # (None: a problem is reported already; auto is only a stand-in.)
        workers = attempt(resolve_workers, max_workers, default=Auto() if default_workers is None else default_workers,
                          environ=env)
        if chosen is not None and default_workers is not None and isinstance(workers, Auto):
            workers = chosen.auto_workers(workers, default_workers)
        margin = attempt(resolve_int, deadline_margin_ms, argument="deadline_margin_ms",
                         env=ENV_DEADLINE_MARGIN_MS, default=DEFAULT_DEADLINE_MARGIN_MS, minimum=0,
                         maximum=MAX_DEADLINE_MARGIN_MS, environ=env)
        metrics = attempt(resolve_flag, ENV_METRICS, default=False, environ=env)
        namespace = attempt(resolve_namespace, env)
        fifo = attempt(resolve_choice, fifo_on_failure, argument="fifo_on_failure", env=ENV_FIFO_ON_FAILURE,
                       default=DEFAULT_FIFO_ON_FAILURE, choices=FIFO_ON_FAILURE_MODES, environ=env)
        raise_all = attempt(resolve_flag, ENV_RAISE_ON_ALL_FAILED, default=False, environ=env,
                            value=raise_on_all_failed, argument="raise_on_all_failed")
        log_failures = attempt(resolve_choice, None, argument=ENV_LOG_FAILURES, env=ENV_LOG_FAILURES,
                               default=DEFAULT_LOG_FAILURES, choices=LOG_FAILURES_CHOICES, environ=env,
                               aliases=FLAG_ALIASES)
        # Read when a lambda_fanout.aws client is built; checked here too, so a bad one is
        # listed with the rest, and fails the zero-code handler at init.
        attempt(resolve_choice, None, argument=ENV_AWS_CLIENT, env=ENV_AWS_CLIENT, default=DEFAULT_AWS_CLIENT,
                choices=AWS_CLIENTS, environ=env)
        attempt(resolve_seconds, ENV_AWS_CONNECT_TIMEOUT_S, default=DEFAULT_AWS_CONNECT_TIMEOUT_S, environ=env)
        attempt(resolve_seconds, ENV_AWS_READ_TIMEOUT_S, default=DEFAULT_AWS_READ_TIMEOUT_S, environ=env)
        if problems:
            raise ConfigError.of(problems)
        return cls(strategy=name, max_workers=workers, deadline_margin_ms=margin, metrics=metrics,
                   metrics_namespace=namespace, function_name=env.get(ENV_LAMBDA_FUNCTION_NAME, ""),
                   fifo_on_failure=fifo, raise_on_all_failed=raise_all,
                   log_failures=log_failures,
                   # Lambda's own rule: JSON when the value is "JSON" in any case, else text.
                   log_json=env.get(ENV_LAMBDA_LOG_FORMAT, "").upper() == "JSON",
                   memory_mb=memory)


def spelling(raw: str) -> str:
    """A value read from the environment, as every variable reads it: ASCII spaces around it ignored.

    Nothing else is stripped: a tab, a line break or a Unicode space is part of the value
    (and makes it invalid), as is any other character.
    """
    return raw.strip(" ")


def _hint(value: str, choices: tuple[str, ...]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.5)
    if not close and value.lower() in choices:
        close = [value.lower()]
    return f" Did you mean {close[0]!r}?" if close else ""


def resolve_choice(
    value: str | None, *, argument: str, env: str | None, default: str, choices: tuple[str, ...],
    environ: Mapping[str, str] | None = None, aliases: Mapping[str, str] | None = None,
) -> str:
    """Pick an explicit argument, else the environment variable, else the default.

    A value from the environment matches in any case, with ASCII spaces around it
    ignored (the one rule of every choice variable); an argument matches exactly.

    Args:
        aliases: other spellings -> the choice each means, e.g. ``"true"`` -> ``"on"``.

    Raises ConfigError naming the source, repeating the value and listing the choices.
    """
    source = f"argument {argument}="
    if value is None and env is not None:
        value = (os.environ if environ is None else environ).get(env)
        source = f"environment variable {env}"
        if value is None:
            return default
        if value == "":
            raise ConfigError(
                f"{source} is set to '' (empty); expected one of {', '.join(map(repr, choices))}. "
                f"Unset it to use the default {default!r}, or set one of those values."
            )
        spelled = spelling(value).lower()
        if aliases is not None:
            spelled = aliases.get(spelled, spelled)
        if spelled in choices:
            return spelled
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        shown = ", ".join(map(repr, choices))
        if aliases:
            others = sorted(set(aliases) - set(choices))
            shown += f" (also {', '.join(others)}; any case)"
        hint = _hint(value, choices) if isinstance(value, str) else ""
        raise ConfigError(
            f"{source} must be one of {shown} but got {value!r}.{hint}"
        )
    return value


def resolve_memory_mb(environ: Mapping[str, str] | None = None) -> int | None:
    """The function's memory from ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` (128 to 10,240 MB), or None when unset.

    Raises:
        ConfigError: the variable is set but is not a memory size Lambda gives.
    """
    return resolve_int(None, argument="memory_mb", env=ENV_LAMBDA_MEMORY_SIZE, default=None,
                       minimum=MIN_MEMORY_MB, maximum=MAX_MEMORY_MB, environ=environ,
                       advice="Lambda sets it to the function's memory in MB: outside Lambda, set it "
                              "so to emulate a memory size, or unset it.")


def resolve_strategy(value: str | None = None, *, environ: Mapping[str, str] | None = None,
                     task: Any = None) -> str:
    """The strategy's name: an explicit argument, else FANOUT_STRATEGY, else the default for ``task``.

    Unset, a task with only an async form (an ``async def``) runs under asyncio, and any
    other task under DEFAULT_STRATEGY (:data:`DEFAULT_STRATEGIES`); an unknown task (None)
    under DEFAULT_STRATEGY. A strategy that is set wins, whatever the task.

    Raises ConfigError naming the source, repeating the value and listing STRATEGIES.
    """
    default = DEFAULT_STRATEGY
    setting = (os.environ if environ is None else environ).get(ENV_STRATEGY, "")
    if task is not None and value is None and not setting.strip():
        # Unset (or set blank, whose error names the default): the task's default, whose
        # strategy classes are imported only here.
        default = default_for(task, DEFAULT_STRATEGIES)
    return resolve_choice(value, argument="strategy", env=ENV_STRATEGY, default=default,
                          choices=STRATEGIES, environ=environ)


def resolve_int(
    value: int | None,
    *,
    argument: str,
    env: str | None,
    default: int,
    minimum: int,
    maximum: int,
    environ: Mapping[str, str] | None = None,
    advice: str | None = None,
) -> int:
    """Pick an explicit integer argument, else the environment variable, else the default.

    Only plain ASCII digits count as a number in the environment (ASCII spaces around
    them are ignored): ``int()`` would also take digits of other scripts, signs, and
    Unicode spaces and line breaks.

    ``advice`` replaces the error's closing sentence (set it in range, or unset it for the
    default) where unset means something other than a default.

    Raises ConfigError naming the source, repeating the value and giving the valid range.
    """
    source = f"argument {argument}="
    raw: object = value
    if value is None and env is not None:
        raw = (os.environ if environ is None else environ).get(env)
        source = f"environment variable {env}"
        if raw is None:
            return default
    if raw is None:
        return default
    expected = f"a whole number from {minimum} to {maximum}"
    if isinstance(raw, str) and value is None:
        text = spelling(raw)
        if not (text.isascii() and text.isdigit()):
            raise ConfigError(
                f"{source} must be {expected} but got {raw!r}. "
                + (advice or f"Set it to such a number, or unset it to use the default {default}.")
            )
        number = whole_number(text, maximum)
    elif isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{source} must be {expected} (an integer) but got {raw!r}.")
    else:
        number = raw
    if number is None or not minimum <= number <= maximum:
        raise ConfigError(
            f"{source} must be {expected} but got {raw!r}. "
            + (advice or f"Use a value in that range, or leave it unset for the default {default}.")
        )
    return number


def whole_number(digits: str, maximum: int) -> int | None:
    """The number ASCII ``digits`` spell, or None when it has more digits than ``maximum`` (so is above it).

    Counted before ``int()``, which refuses a string of over 4,300 digits with a ValueError
    of its own.
    """
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= len(str(maximum)) else None


class Auto:
    """``max_workers="auto"``: an adaptive limit (``lambda_fanout._limiter``) up to ``cap``."""

    __slots__ = ("cap",)

    def __init__(self, cap: int = DEFAULT_AUTO_CAP) -> None:
        self.cap = cap

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Auto) and other.cap == self.cap

    def __hash__(self) -> int:
        return hash((Auto, self.cap))

    def __repr__(self) -> str:
        return f"Auto(cap={self.cap})"

    def __str__(self) -> str:
        return AUTO if self.cap == DEFAULT_AUTO_CAP else f"{AUTO}:{self.cap}"


def resolve_workers(
    value: Any = None, *, default: int | Auto | None = None, environ: Mapping[str, str] | None = None,
) -> int | Auto:
    """The worker setting: an explicit argument, else FANOUT_MAX_WORKERS, else the default.

    Args:
        value: a whole number, ``"auto"``, ``"auto:N"``, an :class:`Auto`, or None.
        default: the count (or an :class:`Auto`) when neither is given; None for auto.
        environ: the environment to read (default ``os.environ``).

    Returns:
        The fixed count, or an :class:`Auto` carrying the cap.

    Raises:
        ConfigError: anything else, naming the source, repeating the value and listing
            what is accepted.
    """
    if default is None:
        default = Auto()
    if isinstance(value, Auto):
        if type(value.cap) is int and 1 <= value.cap <= MAX_WORKERS_LIMIT:
            return value
        value = f"{AUTO}:{value.cap}"  # refused below, with the message every bad spelling gets
    source, raw = "argument max_workers=", value
    if value is None:
        raw = (os.environ if environ is None else environ).get(ENV_MAX_WORKERS)
        source = f"environment variable {ENV_MAX_WORKERS}"
    if not isinstance(raw, str) or not spelling(raw).lower().startswith(AUTO):
        return resolve_int(value, argument="max_workers", env=ENV_MAX_WORKERS, default=default,
                           minimum=1, maximum=MAX_WORKERS_LIMIT, environ=environ)
    text = spelling(raw).lower()
    if text == AUTO:
        return Auto()
    cap = text[len(AUTO) + 1:] if text[len(AUTO)] == ":" else ""
    number = whole_number(cap, MAX_WORKERS_LIMIT) if cap.isascii() and cap.isdigit() else None
    if number is not None and 1 <= number <= MAX_WORKERS_LIMIT:
        return Auto(number)
    raise ConfigError(
        f"{source} must be a whole number from 1 to {MAX_WORKERS_LIMIT}, 'auto', or 'auto:N' with N "
        f"such a number (the cap, default {DEFAULT_AUTO_CAP}), but got {raw!r}. For example 'auto:64'."
    )


def pool_size(workers: int | Auto) -> int:
    """How many threads, coroutines or connections a worker setting may use at once: the count, or the cap."""
    return workers.cap if isinstance(workers, Auto) else workers


def resolve_flag(
    env: str, *, default: bool, environ: Mapping[str, str] | None = None,
    value: bool | None = None, argument: str | None = None,
) -> bool:
    """An explicit bool argument, else an on/off environment variable, else the default.

    The variable takes on/off, true/false, yes/no or 1/0, in any case.

    Raises ConfigError for an argument that is not a bool, or a variable of any other
    spelling, listing those.
    """
    if value is not None:
        if not isinstance(value, bool):
            raise ConfigError(f"argument {argument}= must be True or False but got {value!r}.")
        return value
    environ = os.environ if environ is None else environ
    if environ.get(env) is None:
        return default
    choice = resolve_choice(None, argument=env, env=env, default="on" if default else "off",
                            choices=("on", "off"), environ=environ, aliases=FLAG_ALIASES)
    return choice == "on"


def resolve_seconds(env: str, *, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A number of seconds from the environment variable ``env``, else the default.

    Only a plain ASCII decimal number counts (digits, with an optional fraction such as
    ``2.5``; ASCII spaces around it are ignored): ``float()`` would also take digits of
    other scripts, underscores, exponents, ``inf`` and Unicode spaces.

    Raises:
        ConfigError: anything else, or a number not above 0 and at most 900, naming the
            variable and repeating the value.
    """
    raw = (os.environ if environ is None else environ).get(env)
    if raw is None:
        return default
    text = spelling(raw)
    whole, dot, fraction = text.partition(".")
    plain = text.isascii() and whole.isdigit() and (not dot or fraction.isdigit())
    number = float(text) if plain else -1.0
    if not 0 < number <= MAX_AWS_TIMEOUT_S:
        raise ConfigError(
            f"environment variable {env} must be a number of seconds above 0 and at most {MAX_AWS_TIMEOUT_S:g}, "
            f"in plain digits (such as 2.5), but got {raw!r}. Unset it to use the default {default:g}."
        )
    return number


def resolve_namespace(environ: Mapping[str, str] | None = None) -> str:
    """FANOUT_METRICS_NAMESPACE, else the default, checked against CloudWatch's rule for a namespace.

    CloudWatch (PutMetricData, and EMF through it) takes 1 to 255 ASCII characters, no
    control character, not starting with ``:``; ``AWS/`` is kept for AWS's own services.
    A namespace breaking that rule would lose every metric silently, so it is refused here.

    Raises:
        ConfigError: naming the variable, repeating the value and saying which rule it breaks.
    """
    value = (os.environ if environ is None else environ).get(ENV_METRICS_NAMESPACE)
    if value is None:
        return DEFAULT_METRICS_NAMESPACE
    if not value.strip():
        wrong = "it is blank"
    elif len(value) > 255:
        wrong = f"it has {len(value)} characters"
    elif not (value.isascii() and value.isprintable()):
        wrong = "it has a character that is not printable ASCII"
    elif value.startswith(":"):
        wrong = "it starts with ':'"
    elif value.startswith("AWS/"):
        wrong = "'AWS/' is kept for AWS's own services"
    else:
        return value
    raise ConfigError(
        f"environment variable {ENV_METRICS_NAMESPACE} must be a CloudWatch namespace (1 to 255 printable "
        f"ASCII characters, not starting with ':' or 'AWS/') but got {value!r}: {wrong}. "
        f"Set such a name, or unset it to use {DEFAULT_METRICS_NAMESPACE!r}."
    )


def error_mode(value: str) -> str:
    """Validate the ``errors=`` argument: one of ERROR_MODES (None is not one: the default is ``"raise"``).

    Raises ConfigError repeating the value and listing ERROR_MODES.
    """
    if value is None:
        raise ConfigError(
            f"argument errors= must be one of {', '.join(map(repr, ERROR_MODES))} but got None. "
            "Leave it out for the default 'raise'."
        )
    return resolve_choice(value, argument="errors", env=None, default="raise", choices=ERROR_MODES)


def configuration_table() -> str:
    """The README's Configuration table (Markdown), rendered from :data:`VARIABLES`."""
    lines = ["| variable | default | read | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{name}` | {default} | {when} | {meaning} |" for name, default, when, meaning in VARIABLES]
    return "\n".join(lines)

