# Shared harness of the shell client tests: sourced after NAME, BIN and ROOT
# (and SUFFIX, appended to every check name) are set. Gives a work directory,
# PASS/FAIL lines with counts, the server's start and clean-up, and `finish`,
# which prints "NAME: N passed, M failed" and exits non-zero on a failure.
# Every server's stderr is kept under $LOG_DIR (default
# target/test-output/logs/) when it stops, for tests/check-logs.sh.
# shellcheck shell=bash
START_TIMEOUT_S=10
WORK=$(mktemp -d "${TMPDIR:-/tmp}/palisade-$NAME.XXXXXX")
LOG_DIR=${PALISADE_LOG_DIR:-$ROOT/target/test-output/logs}
SERVER_PID=
SERVER_RUNS=0
PASSED=0
FAILED=0

# save_server_log: copies $WORK/server.log to $LOG_DIR under a name no other
# run uses (script, mode, time, process id, server number).
save_server_log() {
    [ -f "$WORK/server.log" ] || return 0
    local mode=
    [ -n "${SUFFIX:-}" ] && mode=-tls
    mkdir -p "$LOG_DIR" &&
        cp "$WORK/server.log" "$LOG_DIR/$NAME$mode-$(date +%Y%m%dT%H%M%S)-$$-$SERVER_RUNS.log"
}

# stop_server: SIGTERM (SIGKILL after 5 s) to the running server, then keeps its log.
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=
    save_server_log
    rm -f "$WORK/server.log"
}

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "PASS $NAME: $1${SUFFIX:-}"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $NAME: $1${SUFFIX:-}${2:+ -- $2}"; }
check() { # check NAME CONDITION-STATUS DETAIL
    if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "$3"; fi
}

finish() {
    if [ "$FAILED" -gt 0 ] && [ -f "$WORK/server.log" ]; then
        echo "--- last server log lines ($NAME) ---" >&2
        tail -n 30 "$WORK/server.log" >&2
    fi
    echo "$NAME: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# start_server [FLAGS...]: runs $BIN on 127.0.0.1:0 with FLAGS (and
# $PALISADE_EXTRA_ARGS), waits for its `listening on` line and sets ADDR;
# a server that does not start is a failure that ends the script. A server
# still running from an earlier call is stopped first (one at a time).
start_server() {
    stop_server
    SERVER_RUNS=$((SERVER_RUNS + 1))
    # shellcheck disable=SC2086 # PALISADE_EXTRA_ARGS is a list of flags
    "$BIN" --listen 127.0.0.1:0 "$@" ${PALISADE_EXTRA_ARGS:-} </dev/null >/dev/null 2>"$WORK/server.log" &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 1 $((START_TIMEOUT_S * 10))); do
        ADDR=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$WORK/server.log" 2>/dev/null | head -n 1 | sed 's/^listening on //')
        [ -n "$ADDR" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$ADDR" ]; then
        fail "server starts and reports its address" "no 'listening on' line within ${START_TIMEOUT_S} s from $BIN"
        finish
    fi
    pass "server starts and reports its address"
}
