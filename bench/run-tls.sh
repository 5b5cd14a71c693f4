#!/usr/bin/env bash
# TLS beside plain: handshakes per second and echo round trips per second.
# The server is pinned to CPU 0 and the load generator to CPU 1 (taskset).
#   bench/run-tls.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-5}"
cargo build --release -q -p palisade -p palisade-bench
srv=target/release/palisade
gen=target/release/palisade-bench
pin_srv=(); pin_gen=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_srv=(taskset -c 0); pin_gen=(taskset -c 1); fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # start PORT ARGS...
  local port=$1; shift
  "${pin_srv[@]}" "$srv" --listen "127.0.0.1:$port" --app echo --log-level warn "$@" &
  for _ in $(seq 100); do
    curl -sk -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return
    curl -sk -o /dev/null "https://127.0.0.1:$port/healthz" 2>/dev/null && return
    sleep 0.05
  done
  echo "server on port $port did not start" >&2; exit 1
}

plain_port=$(free_port); start "$plain_port"
tls_port=$(free_port); start "$tls_port" --tls-cert certs/localhost.pem --tls-key certs/localhost.key
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
echo "# $(date -u +%F) $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for url in "ws://127.0.0.1:$plain_port/ws" "wss://localhost:$tls_port/ws"; do
  "${pin_gen[@]}" "$gen" --url "$url" --ca certs/ca.pem --mode connect --workers 8 --duration "$dur"
done
for url in "ws://127.0.0.1:$plain_port/ws" "wss://localhost:$tls_port/ws"; do
  "${pin_gen[@]}" "$gen" --url "$url" --ca certs/ca.pem --mode echo --conns 50 --inflight 1 --size 64 --duration "$dur"
  "${pin_gen[@]}" "$gen" --url "$url" --ca certs/ca.pem --mode echo --conns 50 --inflight 16 --size 64 --duration "$dur"
done
