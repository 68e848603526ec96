#!/usr/bin/env bash
# lambda-fanout's one entry point: ./build.sh help lists the commands.
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY_MIN=3.11

log() { printf '==> %s\n' "$*" >&2; }

usage() {
  cat <<'EOF'
usage: ./build.sh COMMAND [options]

Commands:
  test     bootstrap .venv and run the whole test suite (what CI runs), or only the PATHs given (test --help)
  bench    compare every strategy on realistic workloads against a local endpoint (bench --help)
  layer    build the Lambda layer zip into dist/ (layer --help)
  invoke   run a function with the layer attached, the way Lambda runs it (invoke --help)
  help     show this help (also -h, --help)

The first run of test, bench, layer or invoke creates .venv from pinned, hash-checked requirements.
EOF
}

# A Python of at least $PY_MIN: $PYTHON if set, else python3, else python3.1x.
find_python() {
  local c
  for c in ${PYTHON:-} python3 python3.11 python3.12 python3.13; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "build.sh: needs Python $PY_MIN or newer; set PYTHON=/path/to/python3.11" >&2
  return 1
}

# Where pyenv or the system has python$1 (e.g. 3.12), or nothing.
python_version_path() {
  local v=$1 p
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" /usr/bin/python"$v" /usr/local/bin/python"$v"; do
    [ -x "$p" ] && "$p" -c "" 2>/dev/null && { echo "$p"; return 0; }
  done
  return 1
}

# Create or refresh a venv from a hashed requirements file; a stamp skips unchanged work.
# Arguments after the third go to pip install.
ensure_venv() {
  local venv=$1 python=$2 req=$3 stamp sum
  shift 3
  sum=$( (cat "$req"; "$python" -V) | sha256sum | cut -c1-16)
  stamp=$venv/.fanout-stamp
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  log "creating $venv ($("$python" -V)) from $req"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # `|| return 1`: also stop where a caller tests this function (set -e is off there).
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$req" "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) || return 1
  echo "$sum" > "$stamp"
}

bootstrap() {
  local py
  py=$(find_python)
  if ! ensure_venv "$VENV" "$py" requirements/dev.txt; then
    log "could not make $VENV from requirements/dev.txt (pip's error is above). Check that this machine reaches the package index (or PIP_INDEX_URL's), then run the same command again: it starts the venv anew."
    exit 1
  fi
  if ! "$VENV/bin/python" -c "import lambda_fanout, lambda_fanout_dev, sys; sys.exit(not all(m.__file__.startswith('$ROOT/') for m in (lambda_fanout, lambda_fanout_dev)))" 2>/dev/null; then
    log "installing lambda-fanout (editable) into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
      || { log "could not install this checkout into $VENV (pip's error is above); remove $VENV and run again"; exit 1; }
  fi
}

test_usage() {
  cat <<'EOF'
usage: ./build.sh test [PATH...] [pytest options]

Without a PATH: the whole test suite, what CI runs. First the tests on every core
(pytest-xdist), then the tests marked serial one at a time (they time a Lambda deadline
of a few hundred ms); beside them, the property tests under Python 3.12 and 3.13 where
those are installed. Benchmarks run once each, untimed.

With PATHs (test files, folders or FILE::TEST ids, as pytest takes them): only those,
in one pytest run from the current folder.

Options go to pytest, e.g.
  ./build.sh test -x --durations=20
  ./build.sh test tests/test_config.py -k readme -q
EOF
}

# Whether the arguments name a test path: an argument that is not an option, nor the
# value of one of pytest's short options that take one, and whose file part (before
# "::") exists, seen from the caller's folder.
names_test_paths() {
  local arg skip=0
  for arg in "$@"; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    case $arg in
      -k|-m|-p|-o|-c|-W|-r|-n) skip=1 ;;
      -*) ;;
      *) if (cd "$CALLER_PWD" && [ -e "${arg%%::*}" ]); then return 0; fi ;;
    esac
  done
  return 1
}

cmd_test() {
  local arg
  for arg in "$@"; do
    case $arg in -h|--help) test_usage; return 0 ;; esac
  done
  bootstrap
  # boto3/botocore alone at the oldest version lambda_fanout.aws claims: tests/test_aws_tuning.py
  # runs the helpers in it (the package on PYTHONPATH) against moto's server.
  ensure_venv "$ROOT/.venv-botocore-oldest" "$(find_python)" requirements/botocore-oldest.txt
  if names_test_paths "$@"; then
    cd "$CALLER_PWD"
    "$VENV/bin/python" -m pytest --benchmark-disable "$@"
    return
  fi
  local logs status=0 code parts=0 empty=0
  logs=$(mktemp -d)
  # The property tests again under Lambda's other current runtimes, beside the first part
  # (they time nothing); their output follows the suite's.
  property_tests "$logs" &
  local props=$!
  # Lambda has no /dev/shm: where it can be made unusable here (root, unshare(1)), part 2 runs
  # that way, and tests/test_no_dev_shm.py runs part 1's processes tests that way.
  local part2=("$VENV/bin/python" -m pytest tests --benchmark-disable --serial-tests=only "$@") shm=""
  if "$ROOT/tests/without-dev-shm" true 2>/dev/null; then
    part2=("$ROOT/tests/without-dev-shm" "${part2[@]}") shm=", with /dev/shm unusable as in Lambda"
  fi
  log "test suite, part 1 of 2: the tests that time nothing, on every core (benchmarks run once each, untimed)"
  TEST_SERIAL_WITHOUT_DEV_SHM=${shm:+1} "$VENV/bin/python" -m pytest tests --benchmark-disable -n auto \
    --serial-tests=skip "$@" && code=0 || code=$?
  parts=$((parts + 1)); [ "$code" = 5 ] && empty=$((empty + 1)) || { [ "$code" = 0 ] || status=$code; }
  log "test suite, part 2 of 2: the tests that time a deadline, one at a time$shm"
  "${part2[@]}" && code=0 || code=$?
  parts=$((parts + 1)); [ "$code" = 5 ] && empty=$((empty + 1)) || { [ "$code" = 0 ] || status=$code; }
  # Options that select no test in either part: pytest's own "no tests ran".
  [ "$empty" = "$parts" ] && status=5
  wait "$props" && code=0 || code=$?
  cat "$logs"/*.log 2>/dev/null
  [ "$code" = 0 ] || status=$code
  rm -rf "$logs"
  return "$status"
}

# The property tests under Python 3.12 and 3.13 (where present), on the package as the layer
# lays it out (python/ plus strategies/), and dev/ (the tests' sample events); each run's
# output goes to $1/<version>.log.
property_tests() {
  local logs=$1 v py stage status=0
  stage=$("$VENV/bin/python" "$ROOT/layer/build_layer.py" --stage "$ROOT/build/stage/python")
  for v in 3.12 3.13; do
    if py=$(python_version_path "$v"); then
      { ensure_venv "$ROOT/.venv-py$v" "$py" requirements/props.txt && log "property tests under Python $v" &&
        PYTHONPATH="$stage:$ROOT/dev" "$ROOT/.venv-py$v/bin/python" -m pytest -p no:cacheprovider tests/test_properties.py -q
      } >"$logs/$v.log" 2>&1 || status=1
    else
      log "Python $v not found: property tests under $v skipped" 2>>"$logs/$v.log"
    fi
  done
  return "$status"
}

# .venv-peers: the benchmark peers whose pins clash with the layer's (aioboto3 pins an
# older aiobotocore), with lambda-fanout itself (editable, no dependencies). If it cannot
# be built, the bench still runs and reports those peers as skipped, with the reason.
bootstrap_peers() {
  local venv=$ROOT/.venv-peers
  # One build at a time: another run's build of the same venv is waited for, never undone.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$ROOT/.venv-peers.lock"
    flock 9
  fi
  # --no-compile: the peers' suite imports a few dozen of their modules (compiled then, once),
  # so byte-compiling all of them up front would double the time this takes.
  if ! ensure_venv "$venv" "$(find_python)" requirements/peers.txt --no-compile; then
    log "could not build $venv; the peers it holds will be reported as skipped"
    rm -rf "$venv"
    return 0
  fi
  if ! "$venv/bin/python" -c "import lambda_fanout, lambda_fanout_dev, sys; sys.exit(not all(m.__file__.startswith('$ROOT/') for m in (lambda_fanout, lambda_fanout_dev)))" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
      || { log "could not install lambda-fanout into $venv; its peers will be reported as skipped"; rm -rf "$venv"; }
  fi
}

# The bench's help is its CLI's own, printed by any Python from this checkout's sources
# (the CLI imports nothing outside the standard library before parsing): nothing is built.
bench_help() {
  local py=$VENV/bin/python
  [ -x "$py" ] || py=$(find_python)
  PYTHONPATH="$ROOT/python:$ROOT/dev${PYTHONPATH:+:$PYTHONPATH}" "$py" -m lambda_fanout_dev.bench "$@"
}

cmd_bench() {
  local arg
  for arg in "$@"; do
    case $arg in -h|--help) bench_help "$@"; return ;; esac
  done
  bootstrap
  # .venv-peers (made on the first run, or anew when its pins change) is needed only by the
  # peers' cases, which run after the main ones: it is made beside those, at idle priority on
  # the last CPU (the endpoint's, whose proxy runs at real-time priority where allowed), and
  # the bench waits for it only before the peers' cases. Once made, this takes a second.
  # The build's own files (pip's temporary ones too) live in $scratch, removed whichever ends last.
  local scratch ready peers bench status=0 stopped=""
  scratch=$(mktemp -d)
  ready=$scratch/peers-ready
  : > "$ready"
  ( # Killed on its own (a signal to the whole group once the run is over), it still cleans up.
    trap 'rm -rf "$scratch"; exit 143' TERM HUP
    chrt --idle -p 0 "$BASHPID" >/dev/null 2>&1 || renice -n 19 -p "$BASHPID" >/dev/null 2>&1 || true
    taskset -p -c "$(($(nproc) - 1))" "$BASHPID" >/dev/null 2>&1 || true
    mkdir -p "$scratch/tmp"
    TMPDIR=$scratch/tmp bootstrap_peers
    # Told only while the run still listens; a file removed means the run is over.
    if [ -e "$ready" ]; then echo done > "$ready"; else rm -rf "$scratch"; fi ) &
  peers=$!
  # The run goes in the background so that a signal reaches this script at once: Ctrl-C, or a
  # kill of this script, stops the run (which then stops what it started: endpoint, suites,
  # CPU quota) and the venv being made beside it. Nothing outlives an interrupted bench.
  FANOUT_BENCH_PEERS_READY=$ready "$VENV/bin/python" -m lambda_fanout_dev.bench "$@" &
  bench=$!
  trap 'stopped=1; kill -TERM "$bench" 2>/dev/null || true' INT TERM HUP
  while :; do
    wait "$bench" && status=0 || status=$?
    kill -0 "$bench" 2>/dev/null || break  # still running: the wait was cut by a signal
  done
  trap - INT TERM HUP
  if [ -n "$stopped" ]; then
    # Only a build still running (it says "done" before it ends): never a pid reused since.
    [ -s "$ready" ] || kill_tree "$peers"
    rm -f "$ready"
    wait "$peers" 2>/dev/null || true
    rm -rf "$scratch"
    return 130
  fi
  if [ -s "$ready" ] || ! kill -0 "$peers" 2>/dev/null; then
    wait "$peers" 2>/dev/null || true
    rm -rf "$scratch"
  else
    rm -f "$ready"  # the build removes $scratch when it ends
    log "$ROOT/.venv-peers is still being made in the background, at idle priority; a run that needs it waits for it"
  fi
  return "$status"
}

# Stop a process and every process it started (each held still while its children are found).
kill_tree() {
  local child
  kill -STOP "$1" 2>/dev/null || return 0
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
  kill -CONT "$1" 2>/dev/null || true
}

cmd_layer() {
  bootstrap
  "$VENV/bin/python" "$ROOT/layer/build_layer.py" "$@"
}

cmd_invoke() {
  bootstrap
  # From the caller's folder, so --task-root and --event paths mean what they say.
  (cd "$CALLER_PWD" && "$VENV/bin/python" -m lambda_fanout_dev.invoke "$@")
}

case "${1:-}" in
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  layer) shift; cmd_layer "$@" ;;
  invoke) shift; cmd_invoke "$@" ;;
  help|-h|--help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "build.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
