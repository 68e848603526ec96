"""Bad configuration gets a clear error naming the setting, the value and the valid choices."""

from __future__ import annotations

import pytest

import batches
import lambda_fanout


@pytest.mark.parametrize("value", ["", "thread", "THREAD", "gevent", "threads\u00a0", "\tasyncio", " "])
def test_bad_strategy_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_STRATEGY", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.get_strategy()
    msg = str(info.value)
    assert "FANOUT_STRATEGY" in msg and repr(value) in msg
    for name in lambda_fanout.STRATEGIES:
        assert repr(name) in msg


def test_close_match_hint(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    with pytest.raises(lambda_fanout.ConfigError, match="Did you mean 'threads'"):
        lambda_fanout.map(abs, [1])


def test_bad_strategy_argument():
    with pytest.raises(lambda_fanout.ConfigError, match=r"argument strategy= must be one of .* but got 'fast'"):
        lambda_fanout.get_strategy("fast")
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        lambda_fanout.map(abs, [1], strategy="fast")


async def only_async(item):
    return item


def only_sync(item):
    return item


@pytest.mark.parametrize("task,expected", [
    (only_async, "asyncio"),
    (lambda_fanout.Task(None, only_async), "asyncio"),
    (only_sync, "threads"),
    (lambda_fanout.Task(only_sync), "threads"),
    (lambda_fanout.Task(only_sync, only_async), lambda_fanout.DEFAULT_STRATEGY),
    (None, lambda_fanout.DEFAULT_STRATEGY),  # the task is not known: get_strategy()
    (42, lambda_fanout.DEFAULT_STRATEGY),  # not a task: that strategy's own check refuses it
])
def test_unset_strategy_follows_the_form_the_task_has(task, expected):
    assert lambda_fanout.Settings.resolve(environ={}, task=task).strategy == expected


@pytest.mark.parametrize("task,expected", [(only_async, "asyncio"), (only_sync, "threads")])
def test_an_empty_strategy_names_the_default_the_task_would_get(task, expected):
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve(environ={"FANOUT_STRATEGY": ""}, task=task)
    assert f"Unset it to use the default {expected!r}" in str(info.value)


@pytest.mark.parametrize("task", [only_async, only_sync, lambda_fanout.Task(only_sync, only_async)])
@pytest.mark.parametrize("name", ["sequential", "threads", "asyncio", "processes"])
def test_a_strategy_that_is_set_wins_whatever_the_task(task, name):
    assert lambda_fanout.Settings.resolve(environ={"FANOUT_STRATEGY": name}, task=task).strategy == name
    assert lambda_fanout.Settings.resolve(strategy=name, environ={}, task=task).strategy == name
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_STRATEGY"):
        lambda_fanout.Settings.resolve(environ={"FANOUT_STRATEGY": "thread"}, task=task)


@pytest.mark.parametrize("value", ["", "0", "-4", "abc", "1.5", "1e3", "2000", "ten", " "])
def test_bad_max_workers_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.get_strategy("threads")
    msg = str(info.value)
    assert "FANOUT_MAX_WORKERS" in msg and repr(value) in msg and "1 to 1024" in msg


@pytest.mark.parametrize("value", [0, -1, 1.5, "8", True, 5000])
def test_bad_max_workers_argument(value):
    with pytest.raises(lambda_fanout.ConfigError, match="max_workers"):
        lambda_fanout.get_strategy("threads", max_workers=value)


@pytest.mark.parametrize("value", ["", "-1", "soon", "1e3"])
def test_bad_margin_env(monkeypatch, value):
    monkeypatch.setenv("FANOUT_DEADLINE_MARGIN_MS", value)
    with pytest.raises(lambda_fanout.ConfigError, match="FANOUT_DEADLINE_MARGIN_MS"):
        lambda_fanout.get_strategy("sequential")


def test_bad_errors_argument(strategy_name):
    with pytest.raises(lambda_fanout.ConfigError, match=r"errors= must be one of 'raise', 'collect' but got 'ignore'"):
        lambda_fanout.map(abs, [1], strategy=strategy_name, errors="ignore")


def test_errors_none_is_a_bad_errors_argument(strategy_name):
    """errors= takes 'raise' or 'collect': None is refused like any other value, not read as the default."""
    with pytest.raises(lambda_fanout.ConfigError, match=r"errors= must be one of 'raise', 'collect' but got None"):
        lambda_fanout.map(abs, [1], strategy=strategy_name, errors=None)


HUGE = "9" * 5000  # more digits than int() takes from a string (4,300)


@pytest.mark.parametrize("variable,value", [
    ("FANOUT_MAX_WORKERS", HUGE), ("FANOUT_MAX_WORKERS", "0" * 5000 + "8" + HUGE),
    ("FANOUT_MAX_WORKERS", "auto:" + HUGE), ("FANOUT_DEADLINE_MARGIN_MS", HUGE),
])
def test_a_number_of_thousands_of_digits_is_listed_with_the_other_bad_settings(variable, value):
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve(environ={variable: value, "FANOUT_STRATEGY": "thread"})
    assert len(info.value.problems) == 2, info.value.problems
    assert "FANOUT_STRATEGY" in info.value.problems[0] and variable in info.value.problems[1]


def test_an_auto_cap_of_thousands_of_digits_is_a_bad_max_workers_argument():
    with pytest.raises(lambda_fanout.ConfigError, match="argument max_workers="):
        lambda_fanout.map(abs, [1], max_workers="auto:" + HUGE)


def test_leading_zeros_still_spell_the_number():
    settings = lambda_fanout.Settings.resolve(environ={"FANOUT_MAX_WORKERS": "0" * 5000 + "8",
                                                      "FANOUT_DEADLINE_MARGIN_MS": "0" * 5000 + "250"})
    assert settings.max_workers == 8 and settings.deadline_margin_ms == 250


def test_env_is_read_at_construction_and_arguments_win(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "threads-map")
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "7")
    s = lambda_fanout.get_strategy()
    assert (s.name, s.max_workers) == ("threads-map", 7)
    s = lambda_fanout.get_strategy("asyncio", max_workers=3)
    assert (s.name, s.max_workers) == ("asyncio", 3)
    monkeypatch.delenv("FANOUT_STRATEGY")
    monkeypatch.delenv("FANOUT_MAX_WORKERS")
    s = lambda_fanout.get_strategy()
    # The defaults the README documents: auto, whose pool holds up to its cap.
    assert (s.name, str(s.settings.max_workers), s.max_workers) == ("threads", "auto", 256)


def test_strategies_contract():
    assert lambda_fanout.STRATEGIES == ("sequential", "threads", "threads-map", "asyncio", "processes")


def test_task_needs_a_form():
    with pytest.raises(lambda_fanout.ConfigError, match="at least one form"):
        lambda_fanout.Task(None, None)
    with pytest.raises(lambda_fanout.ConfigError, match="callable"):
        lambda_fanout.Task(42)


@pytest.mark.parametrize("var,value,fragment", [
    ("FANOUT_FIFO_ON_FAILURE", "stop", "'group', 'batch'"),
    ("FANOUT_FIFO_ON_FAILURE", "", "empty"),
    ("FANOUT_FIFO_ON_FAILURE", "Batches", "Did you mean 'batch'"),
    ("FANOUT_RAISE_ON_ALL_FAILED", "maybe", "'on', 'off'"),
    ("FANOUT_RAISE_ON_ALL_FAILED", "2", "'on', 'off'"),
])
def test_bad_batch_settings_env(monkeypatch, var, value, fragment):
    monkeypatch.setenv(var, value)
    ran = []
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), ran.append)
    assert var in str(info.value) and repr(value) in str(info.value) and fragment in str(info.value)
    assert ran == []


CHOICE_VARIABLES = {
    # variable: (a spelling of a choice, what it resolves to, where to look)
    "FANOUT_STRATEGY": ("THREADS", "threads", "strategy"),
    "FANOUT_FIFO_ON_FAILURE": ("BATCH", "batch", "fifo_on_failure"),
    "FANOUT_LOG_FAILURES": ("Type-Only", "type-only", "log_failures"),
    "FANOUT_METRICS": ("ON", True, "metrics"),
    "FANOUT_RAISE_ON_ALL_FAILED": ("True", True, "raise_on_all_failed"),
}


@pytest.mark.parametrize("variable", sorted(CHOICE_VARIABLES))
@pytest.mark.parametrize("around", [("", ""), (" ", ""), ("", "  "), (" ", " ")])
def test_every_choice_variable_takes_any_case_with_spaces_around(variable, around):
    spelled, meant, field = CHOICE_VARIABLES[variable]
    value = around[0] + spelled + around[1]
    assert getattr(lambda_fanout.Settings.resolve(environ={variable: value}), field) == meant


@pytest.mark.parametrize("variable", sorted(CHOICE_VARIABLES) + ["FANOUT_AWS_CLIENT"])
@pytest.mark.parametrize("around", [("\t", ""), ("", "\n"), ("\u00a0", ""), ("", "\u3000")])
def test_every_choice_variable_refuses_other_spaces_around(variable, around):
    # One rule: ASCII spaces around a value are ignored; tabs, line breaks and Unicode
    # spaces are part of the value, which is then not one of the choices.
    value = around[0] + CHOICE_VARIABLES.get(variable, ("lean",))[0] + around[1]
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve(environ={variable: value})
    assert f"environment variable {variable} must be one of" in str(info.value) and repr(value) in str(info.value)


def test_the_aws_client_setting_takes_any_case_where_its_argument_is_exact(monkeypatch):
    from lambda_fanout import aws

    monkeypatch.setenv("FANOUT_AWS_CLIENT", " LEAN ")
    assert aws.client_profile() == "lean"
    lambda_fanout.Settings.resolve()  # checked with the others: accepted
    with pytest.raises(lambda_fanout.ConfigError, match=r"argument profile= must be one of .* but got 'LEAN'"):
        aws.client_profile("LEAN")


@pytest.mark.parametrize("variable", ["FANOUT_AWS_READ_TIMEOUT_S", "FANOUT_AWS_CONNECT_TIMEOUT_S"])
@pytest.mark.parametrize("value", ["\u0663", "\uff11\uff16", "1_0", "\u20073", "3\u3000", "3\n", "1e1", "inf", "nan",
                                   "+3", "0x10", "3,5", "0", "0.0", "901"])
def test_aws_timeouts_take_plain_ascii_decimal_seconds_only(monkeypatch, variable, value):
    from lambda_fanout import aws

    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve(environ={variable: value})
    assert f"environment variable {variable} must be a number of seconds above 0 and at most 900" in str(info.value)
    assert repr(value) in str(info.value)
    monkeypatch.setenv(variable, value)
    with pytest.raises(lambda_fanout.ConfigError, match=variable):
        aws.client_settings(8)


@pytest.mark.parametrize("value,seconds", [("2.5", 2.5), (" 3 ", 3.0), ("900", 900.0), ("0.3", 0.3), ("07", 7.0)])
def test_aws_timeouts_in_plain_digits(monkeypatch, value, seconds):
    from lambda_fanout import aws

    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", value)
    monkeypatch.setenv("FANOUT_AWS_CONNECT_TIMEOUT_S", value)
    assert aws.client_settings(8)["read_timeout"] == aws.client_settings(8)["connect_timeout"] == seconds


def test_aws_settings_are_listed_with_the_others(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    monkeypatch.setenv("FANOUT_AWS_CLIENT", "fast")
    monkeypatch.setenv("FANOUT_AWS_CONNECT_TIMEOUT_S", "1_0")
    monkeypatch.setenv("FANOUT_AWS_READ_TIMEOUT_S", "\u0663")
    ran: list = []
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), ran.append)
    lines = str(info.value).splitlines()
    assert lines[0] == "4 settings are not valid:"
    assert [line.split()[3] for line in lines[1:]] == ["FANOUT_STRATEGY", "FANOUT_AWS_CLIENT",
                                                       "FANOUT_AWS_CONNECT_TIMEOUT_S", "FANOUT_AWS_READ_TIMEOUT_S"]
    assert ran == []


def test_batch_settings_are_listed_with_the_others(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    monkeypatch.setenv("FANOUT_FIFO_ON_FAILURE", "all")
    monkeypatch.setenv("FANOUT_RAISE_ON_ALL_FAILED", "sometimes")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve()
    lines = str(info.value).splitlines()
    assert lines[0] == "3 settings are not valid:"
    assert [v for v in ("FANOUT_STRATEGY", "FANOUT_FIFO_ON_FAILURE", "FANOUT_RAISE_ON_ALL_FAILED")
            if any(v in line for line in lines[1:])] == ["FANOUT_STRATEGY", "FANOUT_FIFO_ON_FAILURE",
                                                         "FANOUT_RAISE_ON_ALL_FAILED"]


def test_batch_settings_defaults_env_and_arguments():
    resolve = lambda_fanout.Settings.resolve
    assert (resolve(environ={}).fifo_on_failure, resolve(environ={}).raise_on_all_failed) == ("group", False)
    env = {"FANOUT_FIFO_ON_FAILURE": "batch", "FANOUT_RAISE_ON_ALL_FAILED": "on"}
    assert (resolve(environ=env).fifo_on_failure, resolve(environ=env).raise_on_all_failed) == ("batch", True)
    explicit = resolve(fifo_on_failure="group", raise_on_all_failed=False, environ=env)
    assert (explicit.fifo_on_failure, explicit.raise_on_all_failed) == ("group", False)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"fifo_on_failure": "stop"}, "argument fifo_on_failure= must be one of 'group', 'batch' but got 'stop'"),
    ({"raise_on_all_failed": "on"}, "argument raise_on_all_failed= must be True or False but got 'on'"),
    ({"raise_on_all_failed": 1}, "must be True or False"),
])
def test_bad_batch_settings_arguments(kwargs, fragment):
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), abs, **kwargs)
    assert fragment in str(info.value)
def test_every_bad_setting_in_one_error(monkeypatch):
    monkeypatch.setenv("FANOUT_STRATEGY", "thread")
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "0")
    monkeypatch.setenv("FANOUT_METRICS", "maybe")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.map(abs, [1])
    lines = str(info.value).splitlines()
    assert lines[0] == "3 settings are not valid:"
    assert [line.split()[3] for line in lines[1:]] == ["FANOUT_STRATEGY", "FANOUT_MAX_WORKERS", "FANOUT_METRICS"]
    assert "Did you mean 'threads'" in lines[1] and "'0'" in lines[2] and "'maybe'" in lines[3]
    # The same lines as a list, without the "- " the message puts before each.
    assert info.value.problems == [line[2:] for line in lines[1:]]


@pytest.mark.parametrize("strategy", lambda_fanout.STRATEGIES)
def test_the_memory_size_is_read_once_with_the_settings(monkeypatch, strategy):
    """AWS_LAMBDA_FUNCTION_MEMORY_SIZE sets the CPU share every strategy's batch plans for:
    read with the other settings, a size Lambda never gives is listed with them."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", " 1769 ")
    assert lambda_fanout.Settings.resolve(strategy=strategy).memory_mb == 1769
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert lambda_fanout.Settings.resolve(strategy=strategy).memory_mb is None
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "64")
    monkeypatch.setenv("FANOUT_METRICS", "maybe")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.process_batch(batches.sqs(2), abs, strategy=strategy)
    assert len(info.value.problems) == 2, info.value.problems
    assert "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" in info.value.problems[0] and "'64'" in info.value.problems[0]


@pytest.mark.parametrize("value", [" ", "64", "1e3"])
def test_a_bad_memory_size_says_what_unset_means(monkeypatch, value):
    """Unset, the memory size has no default to name: the error says who sets it and what to do."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", value)
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve()
    message = str(info.value)
    assert "from 128 to 10240" in message and repr(value) in message
    assert "Lambda sets it to the function's memory in MB" in message and "None" not in message


def test_a_single_bad_setting_is_the_message_and_the_one_problem(monkeypatch):
    monkeypatch.setenv("FANOUT_MAX_WORKERS", "0")
    with pytest.raises(lambda_fanout.ConfigError) as info:
        lambda_fanout.Settings.resolve()
    assert info.value.problems == [str(info.value)]
    assert str(info.value).startswith("environment variable FANOUT_MAX_WORKERS must be a whole number")


def test_the_zero_code_handler_reports_three_bad_settings_at_once(tmp_path):
    # One deploy shows every mistake at once, as lambda_fanout.ConfigError.
    import os
    import subprocess
    import sys

    import staging

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": staging.python_dir(),
           "LAMBDA_TASK_ROOT": str(tmp_path), "FANOUT_STRATEGY": "thread", "FANOUT_MAX_WORKERS": "0",
           "FANOUT_RECORD_HANDLER": "nope.fn", "_HANDLER": "lambda_fanout.handler.handler"}
    proc = subprocess.run([sys.executable, "-c", "import lambda_fanout.handler"], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    tail = proc.stderr[proc.stderr.index("lambda_fanout.ConfigError: "):].splitlines()
    assert tail[0] == "lambda_fanout.ConfigError: 3 settings are not valid:"
    assert tail[1].startswith("- FANOUT_RECORD_HANDLER='nope.fn': module 'nope' could not be imported")
    assert tail[2].startswith("- environment variable FANOUT_STRATEGY must be one of") and "'threads'" in tail[2]
    assert tail[3].startswith("- environment variable FANOUT_MAX_WORKERS must be a whole number from 1 to 1024")
    assert len(tail) == 4
    assert "lambda_fanout._errors" not in proc.stderr


@pytest.mark.parametrize("name", ["ConfigError", "TaskError", "DeadlineExceeded", "SkippedAfterFailure",
                                  "BatchError"])
def test_public_exceptions_are_named_from_the_package(name):
    import pickle

    cls = getattr(lambda_fanout, name)
    assert cls.__module__ == "lambda_fanout" and getattr(lambda_fanout, cls.__qualname__) is cls
    assert f"{cls.__module__}.{cls.__qualname__}" == f"lambda_fanout.{name}"
    if name == "ConfigError":
        assert type(pickle.loads(pickle.dumps(cls("x")))) is cls


def test_flags_take_the_usual_spellings():
    from lambda_fanout import _config

    for on in ("on", "ON", "true", "True", "yes", "1"):
        assert _config.resolve_flag("X", default=False, environ={"X": on}) is True
    for off in ("off", "Off", "false", "FALSE", "no", "0"):
        assert _config.resolve_flag("X", default=True, environ={"X": off}) is False
    with pytest.raises(lambda_fanout.ConfigError, match=r"'on', 'off' \(also 0, 1, false, no, true, yes; any case\)"):
        _config.resolve_flag("X", default=True, environ={"X": "enable"})


def test_configuration_table_in_the_readme_is_the_declared_one():
    # Every FANOUT_* variable declared in _config.py is in VARIABLES, and the README's
    # table is rendered from it (python -m lambda_fanout._config prints it).
    import os

    from lambda_fanout import _config

    declared = {v for k, v in vars(_config).items() if k.startswith("ENV_") and v.startswith("FANOUT_")}
    assert declared == {row[0] for row in _config.VARIABLES}
    assert len(declared) == len(_config.VARIABLES)
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
        readme = f.read()
    assert _config.configuration_table() in readme
    # Defaults shown are the ones resolved from an empty environment.
    settings = lambda_fanout.Settings.resolve(environ={})
    rows = {row[0]: row[1] for row in _config.VARIABLES}
    async def only_async(item):
        return item

    for_async = lambda_fanout.Settings.resolve(environ={}, task=only_async).strategy
    assert rows["FANOUT_STRATEGY"] == f"`{for_async}` for a task with only an async form, else `{settings.strategy}`"
    assert rows["FANOUT_MAX_WORKERS"] == f"`{settings.max_workers}`"
    assert rows["FANOUT_DEADLINE_MARGIN_MS"] == f"`{settings.deadline_margin_ms}`"
    assert rows["FANOUT_LOG_FAILURES"] == f"`{settings.log_failures}`"
    assert rows["FANOUT_METRICS_NAMESPACE"] == f"`{settings.metrics_namespace}`"
    from lambda_fanout import aws

    timeouts = aws.client_settings(1)
    assert rows["FANOUT_AWS_CONNECT_TIMEOUT_S"] == f"`{timeouts['connect_timeout']:g}`"
    assert rows["FANOUT_AWS_READ_TIMEOUT_S"] == f"`{timeouts['read_timeout']:g}`"
