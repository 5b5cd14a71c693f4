#!/usr/bin/env bash
# Secrets in the server logs: looks through every file under
# target/test-output/logs/ (the stderr of each server the external client
# scripts, the browser test and the Rust test harness started) for
#   - anything that looks like a JWT: eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
#   - each password listed in tests/test-passwords.txt (one per line; blank
#     lines and lines starting with # are ignored),
# skipping lines that contain `demo login:` (the start-up line that shows the
# demo user's password by design); and that debug-level runs in text and in
# JSON are among the logs. Prints one PASS/FAIL line per check and
# "check_logs: N passed, M failed"; fails when the directory holds no log at
# all (nothing was checked) or a password list with no password.
#
# Environment:
#   PALISADE_LOG_DIR  the log directory (default target/test-output/logs)
#
#   bash tests/check-logs.sh
set -u

NAME=check_logs
ROOT=$(cd "$(dirname "$0")/.." && pwd) # the repository root
LOG_DIR=${PALISADE_LOG_DIR:-$ROOT/target/test-output/logs}
PASSWORDS=$ROOT/tests/test-passwords.txt
JWT_RE='eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}'
SHOWN=5 # offending lines shown per failed check
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "PASS $NAME: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $NAME: $1${2:+ -- $2}"; }
finish() {
    echo "$NAME: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# where FILE: "path:line" of each hit in a `grep -rn` listing, shortened, on one line.
where() {
    head -n "$SHOWN" "$1" | cut -d: -f1,2 | sed "s|^$LOG_DIR/||" | tr '\n' ' '
}

files=0
[ -d "$LOG_DIR" ] && files=$(find "$LOG_DIR" -type f | wc -l)
if [ "$files" -eq 0 ]; then
    fail "server logs to check in ${LOG_DIR#"$ROOT"/}" "the directory is missing or empty"
    finish
fi
lines=$(find "$LOG_DIR" -type f -exec cat {} + | wc -l)
pass "server logs to check in ${LOG_DIR#"$ROOT"/} ($files files, $lines lines)"

# Debug-level runs log every request target: they must be among the logs
# checked, in both formats (tests/auth.rs runs them), or a token that only
# debug lines would show could slip through unseen.
debug_text=$(find "$LOG_DIR" -type f -exec grep -haE '^[0-9TZ:.-]+ DEBUG ' {} + | wc -l)
debug_json=$(find "$LOG_DIR" -type f -exec grep -haF '"level":"debug"' {} + | wc -l)
if [ "$debug_text" -gt 0 ] && [ "$debug_json" -gt 0 ]; then
    pass "debug-level runs are among them ($debug_text text and $debug_json JSON debug lines)"
else
    fail "debug-level runs are among them" "$debug_text text and $debug_json JSON debug lines"
fi

HITS=$(mktemp "${TMPDIR:-/tmp}/palisade-check-logs.XXXXXX")
trap 'rm -f "$HITS"' EXIT

# -a: a stray non-UTF-8 byte must not turn a hit into "binary file matches".
grep -rnaE -- "$JWT_RE" "$LOG_DIR" | grep -v 'demo login:' >"$HITS"
n=$(wc -l <"$HITS")
if [ "$n" -eq 0 ]; then
    pass "no log line contains a JWT (eyJ...)"
else
    fail "no log line contains a JWT (eyJ...)" "$n lines, e.g. $(where "$HITS")"
fi

count=0
lineno=0
while IFS= read -r pw || [ -n "$pw" ]; do
    lineno=$((lineno + 1))
    pw=${pw%$'\r'}
    case "$pw" in '' | '#'*) continue ;; esac
    count=$((count + 1))
    label="password on line $lineno of tests/test-passwords.txt (${pw:0:6}...)"
    grep -rnaF -- "$pw" "$LOG_DIR" | grep -v 'demo login:' >"$HITS"
    n=$(wc -l <"$HITS")
    if [ "$n" -eq 0 ]; then
        pass "no log line contains the $label"
    else
        fail "no log line contains the $label" "$n lines, e.g. $(where "$HITS")"
    fi
done <"$PASSWORDS"
if [ "$count" -gt 0 ]; then
    pass "tests/test-passwords.txt lists $count passwords"
else
    fail "tests/test-passwords.txt lists the passwords the tests use" "none found"
fi

finish
