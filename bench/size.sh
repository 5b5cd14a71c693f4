#!/usr/bin/env bash
# Size of the stripped release binary, with TLS (the default build) and
# without it (`--no-default-features`: plain HTTP and WebSocket only),
# against the 3 MiB budget; checks that rustls is in the first and not in
# the second.
#   bench/size.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
case ${1-} in
    "") ;;
    --no-build) build=0 ;;
    -h|--help) echo "usage: bench/size.sh [--no-build]"; exit 0 ;;
    *) echo "usage: bench/size.sh [--no-build]" >&2; exit 2 ;;
esac

budget=$((3 * 1024 * 1024))
status=0

# Builds (into TARGET_DIR), strips and prints one line; WANT is whether
# rustls must be in it (yes) or not (no).
measure() { # LABEL TARGET_DIR WANT [CARGO ARGS...]
    local label=$1 dir=$2 want=$3 bin stripped bytes mib verdict
    shift 3
    if [[ $build == 1 ]]; then
        CARGO_TARGET_DIR=$dir cargo build --release -q -p palisade "$@"
    fi
    bin=$dir/release/palisade
    [[ -x $bin ]] || { echo "size.sh: $bin is missing (run without --no-build)" >&2; exit 2; }
    stripped=$dir/palisade.stripped
    strip -o "$stripped" "$bin"
    bytes=$(stat -c %s "$stripped")
    mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
    if [[ $bytes -le $budget ]]; then verdict="within 3 MiB"; else verdict="OVER 3 MiB"; status=1; fi
    # Stripping drops the symbol table but keeps rustls' own strings (panic
    # locations and error texts name its source files).
    local rustls="no rustls" has=no
    if grep -aq 'rustls' "$stripped"; then
        has=yes
        rustls="rustls $(grep -ao 'rustls-0\.[0-9]*\.[0-9]*' "$stripped" | sort -u | head -n 1 | cut -d- -f2)"
    fi
    printf '%-37s %9d bytes (%s MiB), %s, %s\n' "$label" "$bytes" "$mib" "$verdict" "$rustls"
    if [[ $has != "$want" ]]; then
        echo "size.sh: rustls expected: $want, found: $has" >&2
        status=1
    fi
}

measure "with TLS (default)" target yes
measure "without TLS (--no-default-features)" target/no-tls no --no-default-features
exit $status
