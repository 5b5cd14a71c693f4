#!/usr/bin/env bash
# Size of the stripped release binary against the 3 MiB budget, and a check
# that it carries rustls (TLS is always compiled in).
#   bench/size.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1-} in
    "") cargo build --release -q -p palisade ;;
    --no-build) ;;
    -h|--help) echo "usage: bench/size.sh [--no-build]"; exit 0 ;;
    *) echo "usage: bench/size.sh [--no-build]" >&2; exit 2 ;;
esac

bin=target/release/palisade
stripped=target/palisade.stripped
budget=$((3 * 1024 * 1024))
strip -o "$stripped" "$bin"
bytes=$(stat -c %s "$stripped")
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
if [[ $bytes -le $budget ]]; then verdict="within 3 MiB"; else verdict="OVER 3 MiB"; fi
echo "$stripped: $bytes bytes ($mib MiB), $verdict"

# Stripping drops the symbol table but keeps rustls' own strings (panic
# locations and error texts name its source files).
if grep -aq 'rustls' "$stripped" && "$bin" --help | grep -q -- '--tls-cert'; then
    echo "rustls: linked in ($(grep -ao 'rustls-0\.[0-9]*\.[0-9]*' "$stripped" | sort -u | head -n 1))"
else
    echo "rustls: NOT found in $stripped" >&2
    exit 1
fi
[[ $bytes -le $budget ]]
