#!/usr/bin/env bash
# Instructions per echoed 64-byte message (10 connections, 16 in flight) for
# palisade and the fastwebsockets peer, counted by callgrind.
#
# Each server runs under callgrind twice, echoing 20,000 and then 120,000
# messages; the difference of the two totals divided by 100,000 leaves out
# start-up, handshakes and shutdown. Also writes the top functions of
# palisade's 120,000-message run to OUT/palisade-profile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bench/callgrind.sh [--no-build] [--bin PATH] [--out DIR]

    --no-build   use the binaries already built
    --bin PATH   the palisade binary to measure [default: target/release/palisade]
                 (another build, e.g. of the commit before a change)
    --out DIR    where the callgrind files go [default: target/bench/callgrind-<UTC timestamp>]
    -h, --help   print this help and exit
EOF
}

build=1 out="" srv_bin=target/release/palisade
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-build) build=0; shift ;;
        --bin) [[ -x ${2-} ]] || { usage >&2; exit 2; }; srv_bin=$2; shift 2 ;;
        --out) [[ -n ${2-} ]] || { usage >&2; exit 2; }; out=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
out=${out:-target/bench/callgrind-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool not found" >&2; exit 2; }
done
if [[ $build == 1 ]]; then
    cargo build --release -q -p palisade -p palisade-bench
    CARGO_TARGET_DIR="$PWD/target/peers" cargo build --release -q --locked \
        --manifest-path bench/peers/rust/Cargo.toml --bin fastwebsockets-echo
fi
gen_bin=target/release/palisade-bench

pin_srv=() pin_gen=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    pin_srv=(taskset -c 0) pin_gen=(taskset -c 1)
fi

# SIGTERM: palisade closes its clients and exits 0; the peer dies of the
# signal, and callgrind writes its file either way (up to a minute).
stop_wait_ticks=1200
# shellcheck source=bench/lib.sh
source bench/lib.sh

# Runs SERVER under callgrind for COUNT echoes and prints the total Ir.
measure() { # SERVER COUNT
    local server=$1 count=$2 port cmd file i
    port=$(free_port)
    case $server in
        palisade) cmd=("$srv_bin" --listen "127.0.0.1:$port" --app echo --log-level warn
                       --config bench/palisade-bench.json) ;;
        fastwebsockets) cmd=(target/peers/release/fastwebsockets-echo "$port") ;;
    esac
    file=$out/callgrind.$server.$count.out
    rm -f "$file"
    "${pin_srv[@]}" valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" \
        >>"$out/servers.log" 2>&1 &
    srv_pid=$!
    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$srv_pid" 2>/dev/null || { echo "callgrind.sh: $server exited at start" >&2; exit 1; }
        sleep 0.1
    done
    local line
    line=$("${pin_gen[@]}" "$gen_bin" --url "ws://127.0.0.1:$port/ws" --mode echo --conns 10 --inflight 16 \
        --size 64 --count "$count" --warmup 0 --duration 600 --timeout 600 --pid "$srv_pid" \
        2>>"$out/generator.log") || { echo "callgrind.sh: generator failed on $server: $line" >&2; exit 1; }
    echo "$server $count: $line" >>"$out/raw.txt"
    stop_server
    [[ -s $file ]] || { echo "callgrind.sh: callgrind wrote no $file" >&2; exit 1; }
    # The totals line of the profile, "summary: N" (or "totals: N").
    awk '$1 == "summary:" || $1 == "totals:" { print $2; exit }' "$file"
}

declare -A per_msg
echo "# $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(valgrind --version)"
for server in palisade fastwebsockets; do
    small=$(measure "$server" 20000)
    large=$(measure "$server" 120000)
    per_msg[$server]=$(( (large - small) / 100000 ))
    printf '%-15s Ir(20000)=%d Ir(120000)=%d instructions per message=%d\n' \
        "$server" "$small" "$large" "${per_msg[$server]}"
done
awk -v p="${per_msg[palisade]}" -v f="${per_msg[fastwebsockets]}" \
    'BEGIN { printf "palisade/fastwebsockets = %.2f\n", p / f }'

annotated=$(callgrind_annotate "$out/callgrind.palisade.120000.out")
awk '{ print } /file:function/ { at = 1; next } at == 1 && /^-+$/ { at = 2; next } at == 2 && NF && ++n >= 15 { exit }' \
    <<<"$annotated" >"$out/palisade-profile.txt"
echo "profile of palisade's 120000 run: $out/palisade-profile.txt"
