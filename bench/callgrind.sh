#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind, for
# palisade and the fastwebsockets peer, in four shapes of load:
#
#   pipelined  64 B, 10 connections x 16 in flight (many messages per wake-up)
#   lone       64 B, 1 connection x 1 in flight (every message its own wake-up)
#   lone16k    16 KiB, 1 x 1
#   sporadic   64 B, 10,000 connections, each sending one message every 2 s
#              and waiting for its reply (the shape of a real deployment:
#              many connections, each quiet most of the time; 2 s rather
#              than the 100 ms of compare.sh's sporadic case because a server
#              under callgrind runs some 50 times slower and must keep up)
#   sio_hero   acked Socket.IO get_name events over the WebSocket transport,
#              10 connections x 16 in flight, the hero application
#              (palisade only: the fastwebsockets peer speaks no Socket.IO)
#
# Each server runs under callgrind twice per case, echoing a small and then a
# large count of messages; the difference of the two totals divided by the
# difference of the counts leaves out start-up, handshakes and shutdown.
# Also writes the top functions of palisade's larger run of each case to
# OUT/palisade-<case>-profile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bench/callgrind.sh [--no-build] [--bin PATH] [--out DIR] [--cases A,B] [--palisade-only]

    --no-build   use the binaries already built
    --bin PATH   the palisade binary to measure [default: target/release/palisade]
                 (another build, e.g. of the commit before a change)
    --out DIR    where the callgrind files go [default: target/bench/callgrind-<UTC timestamp>]
    --cases A,B  only these of pipelined, lone, lone16k, sporadic, sio_hero [default: all]
    --palisade-only
                 leave out the fastwebsockets peer
    -h, --help   print this help and exit
EOF
}

build=1 out="" srv_bin=target/release/palisade only="" servers=(palisade fastwebsockets)
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-build) build=0; shift ;;
        --bin) [[ -x ${2-} ]] || { usage >&2; exit 2; }; srv_bin=$2; shift 2 ;;
        --out) [[ -n ${2-} ]] || { usage >&2; exit 2; }; out=$2; shift 2 ;;
        --cases) [[ -n ${2-} ]] || { usage >&2; exit 2; }; only=$2; shift 2 ;;
        --palisade-only) servers=(palisade); shift ;;
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

# Generator arguments and the two message counts of each case.
declare -A load=(
    [pipelined]="--conns 10 --inflight 16 --size 64"
    [lone]="--conns 1 --inflight 1 --size 64"
    [lone16k]="--conns 1 --inflight 1 --size 16384"
    [sporadic]="--conns 10000 --inflight 1 --size 64 --interval-ms 2000"
    [sio_hero]="--conns 10 --inflight 16"
)
declare -A counts=(
    [pipelined]="20000 120000"
    [lone]="5000 25000"
    [lone16k]="2000 12000"
    [sporadic]="10000 30000"
    [sio_hero]="20000 120000"
)
case_order=(pipelined lone lone16k sporadic sio_hero)
if [[ -n $only ]]; then
    IFS=, read -ra wanted <<<"$only"
    for c in "${wanted[@]}"; do
        [[ -n ${load[$c]-} ]] || { echo "callgrind.sh: unknown case $c" >&2; usage >&2; exit 2; }
    done
fi

# Runs SERVER under callgrind for COUNT echoes of CASE and prints the total Ir.
measure() { # SERVER CASE COUNT
    local server=$1 case_id=$2 count=$3 port cmd file i app=echo mode=(--mode echo) path=/ws
    if [[ $case_id == sio_hero ]]; then
        app=hero mode=(--mode hero --socketio) path="/socket.io/?EIO=4&transport=websocket"
    fi
    port=$(free_port)
    case $server in
        palisade) cmd=("$srv_bin" --listen "127.0.0.1:$port" --app "$app" --log-level warn
                       --config bench/palisade-bench.json) ;;
        fastwebsockets) cmd=(target/peers/release/fastwebsockets-echo "$port") ;;
    esac
    file=$out/callgrind.$server.$case_id.$count.out
    rm -f "$file"
    "${pin_srv[@]}" valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" \
        >>"$out/servers.log" 2>&1 &
    srv_pid=$!
    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$srv_pid" 2>/dev/null || { echo "callgrind.sh: $server exited at start" >&2; exit 1; }
        sleep 0.1
    done
    local line args
    read -ra args <<<"${load[$case_id]}"
    line=$("${pin_gen[@]}" "$gen_bin" --url "ws://127.0.0.1:$port$path" "${mode[@]}" "${args[@]}" \
        --count "$count" --warmup 0 --duration 600 --timeout 600 --pid "$srv_pid" \
        2>>"$out/generator.log") || { echo "callgrind.sh: generator failed on $server ($case_id): $line" >&2; exit 1; }
    echo "$server $case_id $count: $line" >>"$out/raw.txt"
    stop_server
    [[ -s $file ]] || { echo "callgrind.sh: callgrind wrote no $file" >&2; exit 1; }
    # The totals line of the profile, "summary: N" (or "totals: N").
    awk '$1 == "summary:" || $1 == "totals:" { print $2; exit }' "$file"
}

# The top functions (inclusive) of palisade's larger run of a case.
profile() { # CASE COUNT
    local annotated
    annotated=$(callgrind_annotate --inclusive=yes "$out/callgrind.palisade.$1.$2.out")
    awk '{ print } /file:function/ { at = 1; next } at == 1 && /^-+$/ { at = 2; next } at == 2 && NF && ++n >= 30 { exit }' \
        <<<"$annotated" >"$out/palisade-$1-profile.txt"
}

echo "# $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(valgrind --version)"
echo "# instructions per echoed message, or per acked event for sio_hero (callgrind Ir, user space)"
printf '%-10s %10s %15s %10s\n' case palisade fastwebsockets ratio
for case_id in "${case_order[@]}"; do
    [[ -z $only || ,$only, == *",$case_id,"* ]] || continue
    read -r small large <<<"${counts[$case_id]}"
    declare -A per_msg=()
    for server in "${servers[@]}"; do
        [[ $case_id == sio_hero && $server != palisade ]] && continue
        a=$(measure "$server" "$case_id" "$small")
        b=$(measure "$server" "$case_id" "$large")
        per_msg[$server]=$(( (b - a) / (large - small) ))
        echo "$server $case_id Ir($small)=$a Ir($large)=$b per message=${per_msg[$server]}" >>"$out/raw.txt"
    done
    profile "$case_id" "$large"
    p=${per_msg[palisade]-} f=${per_msg[fastwebsockets]-}
    ratio=$(awk -v p="${p:-0}" -v f="${f:-0}" 'BEGIN { if (p > 0 && f > 0) printf "%.2f", p / f; else print "-" }')
    printf '%-10s %10s %15s %10s\n' "$case_id" "${p:--}" "${f:--}" "$ratio"
done
echo "details: $out/raw.txt; profiles: $out/palisade-<case>-profile.txt"
