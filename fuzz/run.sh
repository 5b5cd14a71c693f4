#!/usr/bin/env bash
# Runs the fuzz targets, one after the other, for SECONDS each (default 30),
# and prints one summary line per target: executions, exec/s, coverage.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets when none is named)
#
# Builds with cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP=1) and
# installs cargo-fuzz first when it is missing. Each target runs on its own
# corpus directory fuzz/corpus/<target> (seed-* files are committed; what the
# fuzzer adds is not) with the dictionaries in fuzz/dict/. A crash, leak or
# timeout stops the script with a non-zero status; the input is in
# fuzz/artifacts/<target>/ — add it to fuzz/regressions/<target>/ once fixed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${1:-30}
shift || true
ALL=(handshake frame_decode connection utf8 jwt dispatch http_request socketio_packet engineio_payload socketio_session resp adapter)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

dict_for() {
    case "$1" in
        handshake | http_request) echo "$ROOT/fuzz/dict/http.dict" ;;
        frame_decode | connection) echo "$ROOT/fuzz/dict/ws.dict" ;;
        dispatch) echo "$ROOT/fuzz/dict/json.dict" ;;
        *) echo "" ;;
    esac
}

cd "$ROOT/fuzz"
cargo fuzz build -O 2>&1 | tail -n 1
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dict=$(dict_for "$t")
    args=(-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1)
    [ -n "$dict" ] && args+=(-dict="$dict")
    log=$(mktemp)
    if cargo fuzz run -O "$t" "corpus/$t" -- "${args[@]}" -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || echo "cov: ?")
    corp=$(find "corpus/$t" -type f | wc -l)
    echo "fuzz $t: $result, ${SECONDS_EACH}s, $execs executions, $rate exec/s, $cov, corpus $corp"
    if [ "$result" = FAILED ]; then
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -n 20
    fi
    rm -f "$log"
done
exit $status
