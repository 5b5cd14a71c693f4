#!/usr/bin/env bash
# Runs every external-client test against the palisade binary, continuing after
# failures: the four client scripts in plain mode, then the plain-only browser
# test of cross-site WebSocket hijacking (tests/browser/cross_site.mjs: a page on
# another origin against the Origin policy) and `palisade users` on a
# pseudo-terminal and through a pipe (tests/clients/users_cli.py), the four client scripts again over
# TLS (PALISADE_TLS=1: https:// and wss:// with the development certificate in
# certs/), then the TLS-only probes (openssl s_client, testssl.sh), and last
# tests/check-logs.sh, which looks for tokens and the test passwords in every
# server log kept under target/test-output/logs/ (by these scripts and by the
# Rust test harness). It ends with one summary line:
#
#   external: N passed, M failed
#
# N and M count the individual PASS/FAIL checks of all scripts; a script that
# fails without printing a FAIL line (crash, timeout) counts as one failure;
# SKIP lines (testssl.sh not installed) count as neither.
# Installs nothing: the Python `websockets` and `python-socketio` packages (tests/clients/requirements.txt),
# the Node packages (npm ci in tests/js), curl, openssl and chromium must already be
# present; testssl.sh (Debian package testssl.sh) is optional.
#
# Environment:
#   PALISADE_BIN       server binary (default target/debug/palisade)
#   PALISADE_PYTHON    python with `websockets` installed (default python3)
#   PALISADE_TEST_OUT  screenshot directory (default target/test-output/browser)
#   PALISADE_EXTRA_ARGS extra server flags passed by every script
#   PALISADE_LOG_DIR   where every script keeps its servers' stderr and
#                      check-logs.sh looks (default target/test-output/logs)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }

if [ -n "${PALISADE_BIN:-}" ]; then PALISADE_BIN=$(abs "$PALISADE_BIN"); else PALISADE_BIN=$ROOT/target/debug/palisade; fi
if [ -n "${PALISADE_TEST_OUT:-}" ]; then PALISADE_TEST_OUT=$(abs "$PALISADE_TEST_OUT"); else PALISADE_TEST_OUT=$ROOT/target/test-output/browser; fi
if [ -n "${PALISADE_LOG_DIR:-}" ]; then PALISADE_LOG_DIR=$(abs "$PALISADE_LOG_DIR"); else PALISADE_LOG_DIR=$ROOT/target/test-output/logs; fi
PY=${PALISADE_PYTHON:-python3}
case "$PY" in */*) PY=$(abs "$PY") ;; esac
export PALISADE_BIN PALISADE_TEST_OUT PALISADE_LOG_DIR
unset PALISADE_TLS # each run below chooses its mode

SCRIPT_TIMEOUT_S=240
PASSED=0
FAILED=0
OUT=$(mktemp "${TMPDIR:-/tmp}/palisade-external.XXXXXX")
trap 'rm -f "$OUT"' EXIT

run() { # run LABEL COMMAND...
    local label=$1
    shift
    echo "== $label"
    (cd "$ROOT" && timeout -k 10 "$SCRIPT_TIMEOUT_S" "$@") 2>&1 | tee "$OUT"
    local rc=${PIPESTATUS[0]}
    local p f
    p=$(grep -c '^PASS ' "$OUT")
    f=$(grep -c '^FAIL ' "$OUT")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $label: exited with status $rc without a FAIL line"
        f=1
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
}

run heroes_websockets "$PY" tests/clients/heroes_websockets.py
run heroes_ws node tests/clients/heroes_ws.mjs
run http_curl bash tests/clients/http_curl.sh
run browser_demo node tests/browser/demo.mjs
run browser_cross_site node tests/browser/cross_site.mjs # plain mode only
run browser_socketio node tests/browser/socketio.mjs # plain mode only
run users_cli "$PY" tests/clients/users_cli.py # a terminal and a pipe; no server
run systemd_unit bash tests/clients/systemd_unit.sh # deploy/palisade.service; no server
run nginx_proxy node tests/clients/nginx_proxy.mjs # behind a real nginx with deploy/nginx.conf (TLS at nginx)
run workers node tests/clients/workers.mjs # --workers 2: 1,000 connections, max_connections exact, 200 Socket.IO clients
run prometheus_metrics "$PY" tests/clients/prometheus_metrics.py # /metrics scraped by a real Prometheus; promtool
run socketio_client "$PY" tests/clients/socketio_client.py # polling and WebSocket (and over TLS below)
run socketio_node node tests/clients/socketio_node.mjs # polling and WebSocket (and over TLS below)
run cluster_redis "$PY" tests/clients/cluster_redis.py # three instances through a real redis-server, stopped and started mid-test
run cluster_socketio node tests/clients/cluster_socketio.mjs # with Node socket.io + @socket.io/redis-adapter on one redis

run "heroes_websockets (tls)" env PALISADE_TLS=1 "$PY" tests/clients/heroes_websockets.py
run "heroes_ws (tls)" env PALISADE_TLS=1 node tests/clients/heroes_ws.mjs
run "http_curl (tls)" env PALISADE_TLS=1 bash tests/clients/http_curl.sh
run "socketio_client (tls)" env PALISADE_TLS=1 "$PY" tests/clients/socketio_client.py
run "socketio_node (tls)" env PALISADE_TLS=1 node tests/clients/socketio_node.mjs
run "workers (tls)" env PALISADE_TLS=1 node tests/clients/workers.mjs
run "cluster_redis (tls)" env PALISADE_TLS=1 "$PY" tests/clients/cluster_redis.py # rediss://
run "browser_demo (tls)" env PALISADE_TLS=1 node tests/browser/demo.mjs
run "tls_openssl (tls)" bash tests/clients/tls_openssl.sh
run "testssl (tls)" bash tests/clients/testssl.sh

# After every other run: no token or test password in any server log.
run check_logs bash tests/check-logs.sh

echo "external: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
