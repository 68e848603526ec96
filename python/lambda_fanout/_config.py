"""Environment variable names, defaults and validation: declared once, read at construction."""

from __future__ import annotations

import os

from ._errors import ConfigError

ENV_STRATEGY = "FANOUT_STRATEGY"
ENV_MAX_WORKERS = "FANOUT_MAX_WORKERS"
ENV_DEADLINE_MARGIN_MS = "FANOUT_DEADLINE_MARGIN_MS"
ENV_RECORD_HANDLER = "FANOUT_RECORD_HANDLER"
ENV_METRICS = "FANOUT_METRICS"
ENV_METRICS_NAMESPACE = "FANOUT_METRICS_NAMESPACE"
ENV_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
ENV_LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

DEFAULT_STRATEGY = "threads"
#: Enough to hide typical S3/DynamoDB latency without crowding a small function.
DEFAULT_MAX_WORKERS = 16
#: Lambda allows 1024 processes and threads per execution environment in all.
MAX_WORKERS_LIMIT = 1024
#: Time kept back from the Lambda deadline to report results and flush metrics.
DEFAULT_DEADLINE_MARGIN_MS = 500
DEFAULT_METRICS_NAMESPACE = "LambdaFanout"

ERROR_MODES = ("raise", "collect")


def _hint(value: str, choices: tuple[str, ...]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.5)
    if not close and value.lower() in choices:
        close = [value.lower()]
    return f" Did you mean {close[0]!r}?" if close else ""


def resolve_choice(
    value: str | None, *, argument: str, env: str | None, default: str, choices: tuple[str, ...]
) -> str:
    """Pick an explicit argument, else the environment variable, else the default.

    Raises ConfigError naming the source, repeating the value and listing the choices.
    """
    source = f"argument {argument}="
    if value is None and env is not None:
        value = os.environ.get(env)
        source = f"environment variable {env}"
        if value is None:
            return default
        if value == "":
            raise ConfigError(
                f"{source} is set to '' (empty); expected one of {', '.join(map(repr, choices))}. "
                f"Unset it to use the default {default!r}, or set one of those values."
            )
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        shown = ", ".join(map(repr, choices))
        hint = _hint(value, choices) if isinstance(value, str) else ""
        raise ConfigError(
            f"{source} must be one of {shown} but got {value!r}.{hint}"
        )
    return value


def resolve_int(
    value: int | None,
    *,
    argument: str,
    env: str | None,
    default: int,
    minimum: int,
    maximum: int,
) -> int:
    """Pick an explicit integer argument, else the environment variable, else the default.

    Raises ConfigError naming the source, repeating the value and giving the valid range.
    """
    source = f"argument {argument}="
    raw: object = value
    if value is None and env is not None:
        raw = os.environ.get(env)
        source = f"environment variable {env}"
        if raw is None:
            return default
    if raw is None:
        return default
    expected = f"a whole number from {minimum} to {maximum}"
    if isinstance(raw, str) and value is None:
        text = raw.strip()
        if not text or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())):
            raise ConfigError(
                f"{source} must be {expected} but got {raw!r}. "
                f"Set it to such a number, or unset it to use the default {default}."
            )
        number = int(text)
    elif isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{source} must be {expected} (an int) but got {raw!r}.")
    else:
        number = raw
    if not minimum <= number <= maximum:
        raise ConfigError(
            f"{source} must be {expected} but got {raw!r}. "
            f"Use a value in that range, or leave it unset for the default {default}."
        )
    return number


def resolve_flag(env: str, *, default: bool) -> bool:
    """Read an on/off environment variable; anything else is a ConfigError."""
    raw = os.environ.get(env)
    if raw is None:
        return default
    choice = resolve_choice(
        None, argument=env, env=env, default="on" if default else "off", choices=("on", "off")
    )
    return choice == "on"


def max_workers(value: int | None = None, *, default: int = DEFAULT_MAX_WORKERS) -> int:
    """The worker count: explicit argument, else FANOUT_MAX_WORKERS, else ``default``."""
    return resolve_int(
        value,
        argument="max_workers",
        env=ENV_MAX_WORKERS,
        default=default,
        minimum=1,
        maximum=MAX_WORKERS_LIMIT,
    )


def lambda_memory_mb() -> int | None:
    """The function's memory size in MB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), or None outside Lambda."""
    return resolve_int(
        None,
        argument="memory_mb",
        env=ENV_LAMBDA_MEMORY_SIZE,
        default=None,
        minimum=128,
        maximum=10240,
    )


def deadline_margin_ms() -> int:
    """FANOUT_DEADLINE_MARGIN_MS, else the default margin."""
    return resolve_int(
        None,
        argument="deadline_margin_ms",
        env=ENV_DEADLINE_MARGIN_MS,
        default=DEFAULT_DEADLINE_MARGIN_MS,
        minimum=0,
        maximum=15 * 60 * 1000,
    )


def error_mode(value: str) -> str:
    """Validate the ``errors=`` argument."""
    return resolve_choice(value, argument="errors", env=None, default="raise", choices=ERROR_MODES)

