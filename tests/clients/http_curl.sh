#!/usr/bin/env bash
# External client test: the plain-HTTP side of palisade checked with curl.
#
# Starts the server from $PALISADE_BIN (default target/debug/palisade) with
# `--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), waits for
# `listening on 127.0.0.1:PORT` on its stderr, runs the checks, prints one
# PASS/FAIL line per check and exits non-zero if any failed.
#
# With PALISADE_TLS=1 the server is started with the development certificate
# (certs/localhost.pem, certs/localhost.key), every request goes to
# https://localhost:PORT/ trusting only the development CA (curl --cacert
# certs/ca.pem), and two more checks run: the Strict-Transport-Security header,
# and a plain http:// request to the TLS port (400 or a clean close within 2 s).
# Every check name then ends in "(tls)".
#
#   bash tests/clients/http_curl.sh
set -u

NAME=http_curl
BIN=${PALISADE_BIN:-target/debug/palisade}
ROOT=$(cd "$(dirname "$0")/../.." && pwd) # the repository root
TLS=0
[ "${PALISADE_TLS:-}" = 1 ] && TLS=1
SUFFIX=
TLS_ARGS=()
CURL_TLS=()
if [ "$TLS" = 1 ]; then
    SUFFIX=" (tls)"
    TLS_ARGS=(--tls-cert "$ROOT/certs/localhost.pem" --tls-key "$ROOT/certs/localhost.key")
    # Trust only the development CA; curl verifies the chain and the host name.
    CURL_TLS=(--cacert "$ROOT/certs/ca.pem")
fi
# shellcheck source=tests/clients/lib.sh
. "$(dirname "$0")/lib.sh"

# header FILE NAME: value of the last header NAME (case-insensitive) in a -D dump.
header() {
    tr -d '\r' <"$1" | awk -v want="$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" '
        { i = index($0, ":"); if (i == 0) next
          name = tolower(substr($0, 1, i - 1))
          if (name == want) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); found = v; seen = 1 } }
        END { if (seen) print found; else exit 1 }'
}
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# fetch ID [curl args...]: status -> $WORK/ID.code, headers -> ID.h, body -> ID.b
fetch() {
    local id=$1
    shift
    curl -sS --max-time 5 --noproxy '*' ${CURL_TLS[@]+"${CURL_TLS[@]}"} \
        -o "$WORK/$id.b" -D "$WORK/$id.h" -w '%{http_code}' "$@" \
        >"$WORK/$id.code" 2>"$WORK/$id.err"
    local rc=$?
    : >>"$WORK/$id.h"
    : >>"$WORK/$id.b"
    return $rc
}
code() { cat "$WORK/$1.code" 2>/dev/null; }

# ---- start the server ------------------------------------------------------

command -v curl >/dev/null || { fail "curl is installed"; finish; }

start_server ${TLS_ARGS[@]+"${TLS_ARGS[@]}"}
HOST=${ADDR%:*}
PORT=${ADDR##*:}
if [ "$TLS" = 1 ]; then
    BASE="https://localhost:$PORT" # the name the certificate is checked against
else
    BASE="http://$ADDR"
fi

# ---- checks ----------------------------------------------------------------

fetch healthz "$BASE/healthz"
c=$(code healthz)
body=$(cat "$WORK/healthz.b")
[ "$c" = 200 ] && [ "$body" = ok ]
check "GET /healthz -> 200 body ok" $? "status $c, body '$body'"

fetch root "$BASE/"
c=$(code root)
[ "$c" = 200 ]
check "GET / -> 200" $? "status $c"
ct=$(header "$WORK/root.h" Content-Type)
[ "$(lower "$ct")" = "text/html; charset=utf-8" ]
check "GET / Content-Type is text/html; charset=utf-8" $? "got '$ct'"
csp=$(header "$WORK/root.h" Content-Security-Policy)
[ -n "$csp" ]
check "GET / has a Content-Security-Policy header" $? "missing"
case "$csp" in *"default-src 'none'"*"script-src 'self'"*"frame-ancestors 'none'"*) r=0 ;; *) r=1 ;; esac
check "GET / CSP allows only same-origin script and no framing" $r "got '$csp'"
xcto=$(header "$WORK/root.h" X-Content-Type-Options)
[ "$(lower "$xcto")" = nosniff ]
check "GET / X-Content-Type-Options: nosniff" $? "got '$xcto'"
grep -q 'data-hero\|id="heroes"' "$WORK/root.b" && grep -q '/index.js' "$WORK/root.b"
check "GET / body is the demo page" $? "$(head -c 120 "$WORK/root.b")"
if [ "$TLS" = 1 ]; then
    hsts=$(header "$WORK/root.h" Strict-Transport-Security)
    [ "$(lower "$hsts" | tr -d ' ')" = "max-age=31536000" ]
    check "GET / Strict-Transport-Security: max-age=31536000" $? "got '$hsts'"
fi

# HEAD over a raw socket (curl -I would hide a body sent by mistake): the whole
# answer must end with the blank line after the headers. Over TLS the raw
# stream is openssl s_client's, verifying against the development CA.
if [ "$TLS" = 1 ]; then
    printf 'HEAD / HTTP/1.1\r\nHost: localhost:%s\r\nConnection: close\r\n\r\n' "$PORT" |
        timeout 5 openssl s_client -quiet -connect "$HOST:$PORT" -servername localhost \
            -verify_hostname localhost -verify_return_error -CAfile "$ROOT/certs/ca.pem" \
            >"$WORK/head.raw" 2>"$WORK/head.err"
else
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "HEAD / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1:$2" >&3
        cat <&3' _ "$HOST" "$PORT" >"$WORK/head.raw" 2>/dev/null
fi
status=$(head -n 1 "$WORK/head.raw" | tr -d '\r' | awk '{ print $2 }')
rest=$(awk 'BEGIN { RS = "\r\n\r\n" } NR > 1 { printf "%s", $0 }' "$WORK/head.raw" | wc -c)
head_len=$(header "$WORK/head.raw" Content-Length)
[ "$status" = 200 ] && [ "$rest" -eq 0 ] && [ "$head_len" = "$(wc -c <"$WORK/root.b" | tr -d ' ')" ]
check "HEAD / -> 200, GET's Content-Length, no body" $? \
    "status '$status', $rest bytes after the headers, Content-Length '$head_len'"

fetch js "$BASE/index.js"
c=$(code js)
ct=$(header "$WORK/js.h" Content-Type)
[ "$c" = 200 ] && case "$(lower "$ct")" in text/javascript*) true ;; *) false ;; esac
check "GET /index.js -> 200 text/javascript" $? "status $c, Content-Type '$ct'"

fetch css "$BASE/style.css"
c=$(code css)
ct=$(header "$WORK/css.h" Content-Type)
[ "$c" = 200 ] && case "$(lower "$ct")" in text/css*) true ;; *) false ;; esac
check "GET /style.css -> 200 text/css" $? "status $c, Content-Type '$ct'"

fetch svg "$BASE/favicon.svg"
c=$(code svg)
ct=$(header "$WORK/svg.h" Content-Type)
[ "$c" = 200 ] && case "$(lower "$ct")" in image/svg+xml*) true ;; *) false ;; esac
check "GET /favicon.svg -> 200 image/svg+xml" $? "status $c, Content-Type '$ct'"

fetch nope "$BASE/nope"
c=$(code nope)
[ "$c" = 404 ]
check "GET /nope -> 404" $? "status $c"

fetch traversal --path-as-is "$BASE/../Cargo.toml"
c=$(code traversal)
{ [ "$c" = 404 ] || [ "$c" = 400 ]; } && ! grep -q '\[package\]' "$WORK/traversal.b"
check "GET /../Cargo.toml -> 400 or 404, no file content" $? "status $c"

fetch post -X POST --data-binary 'x' "$BASE/"
c=$(code post)
allow=$(header "$WORK/post.h" Allow)
[ "$c" = 405 ] && [ -n "$allow" ]
check "POST / -> 405 with an Allow header" $? "status $c, Allow '$allow'"

fetch noupgrade "$BASE/ws"
c=$(code noupgrade)
up=$(header "$WORK/noupgrade.h" Upgrade)
[ "$c" = 426 ] && [ "$(lower "$up")" = websocket ]
check "GET /ws without upgrade headers -> 426 Upgrade: websocket" $? "status $c, Upgrade '$up'"

# A real opening handshake: after the 101 the connection stays open, so curl
# ends on --max-time (exit status 28); the status and headers are what count.
handshake() {
    local id=$1
    shift
    curl -sS --max-time 2 --noproxy '*' ${CURL_TLS[@]+"${CURL_TLS[@]}"} \
        -o "$WORK/$id.b" -D "$WORK/$id.h" -w '%{http_code}' \
        -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
        -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$@" "$BASE/ws" \
        >"$WORK/$id.code" 2>"$WORK/$id.err"
    : >>"$WORK/$id.h"
    # The status line of the (only) response, in case -w printed nothing on timeout.
    local status
    status=$(tr -d '\r' <"$WORK/$id.h" | awk '/^HTTP\//{ s = $2 } END { print s }')
    [ -s "$WORK/$id.code" ] && [ "$(cat "$WORK/$id.code")" != 000 ] || echo "$status" >"$WORK/$id.code"
}

handshake ws101
c=$(code ws101)
accept=$(header "$WORK/ws101.h" Sec-WebSocket-Accept)
[ "$c" = 101 ]
check "WebSocket handshake -> 101" $? "status $c"
# The key and accept value are the worked example of RFC 6455 section 1.3.
[ "$accept" = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' ]
check "Sec-WebSocket-Accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" $? "got '$accept'"
up=$(header "$WORK/ws101.h" Upgrade)
conn=$(header "$WORK/ws101.h" Connection)
[ "$(lower "$up")" = websocket ] && case ",$(lower "$conn" | tr -d ' ')," in *,upgrade,*) true ;; *) false ;; esac
check "101 carries Upgrade: websocket and Connection: Upgrade" $? "Upgrade '$up', Connection '$conn'"
header "$WORK/ws101.h" Sec-WebSocket-Protocol >/dev/null
[ $? -ne 0 ]
check "101 without an offered subprotocol has no Sec-WebSocket-Protocol" $? \
    "got '$(header "$WORK/ws101.h" Sec-WebSocket-Protocol)'"

handshake wsproto -H 'Sec-WebSocket-Protocol: palisade.v1'
c=$(code wsproto)
proto=$(header "$WORK/wsproto.h" Sec-WebSocket-Protocol)
[ "$c" = 101 ] && [ "$proto" = palisade.v1 ]
check "handshake offering palisade.v1 -> 101 selecting palisade.v1" $? "status $c, protocol '$proto'"

if [ "$TLS" = 1 ]; then
    # Plain HTTP to the TLS port: a plain-text 400 or a clean close, never a hang.
    started=$(date +%s%N)
    curl -sS --max-time 2 --noproxy '*' -o "$WORK/plain.b" -D "$WORK/plain.h" -w '%{http_code}' \
        "http://$ADDR/" >"$WORK/plain.code" 2>"$WORK/plain.err"
    rc=$?
    ms=$((($(date +%s%N) - started) / 1000000))
    : >>"$WORK/plain.h"
    c=$(code plain)
    # 0 with a 400, or 52 (empty reply) / 56 (connection reset) for a close.
    { [ $rc -eq 0 ] && [ "$c" = 400 ]; } || [ $rc -eq 52 ] || [ $rc -eq 56 ]
    check "plain http:// to the TLS port -> 400 or a close within 2 s" $? \
        "curl exit $rc, status '$c' after $ms ms: $(head -c 200 "$WORK/plain.err")"
    # RFC 6797 section 7.2: never Strict-Transport-Security over plain HTTP.
    ! header "$WORK/plain.h" Strict-Transport-Security >/dev/null
    check "plain http:// answer has no Strict-Transport-Security" $? \
        "got '$(header "$WORK/plain.h" Strict-Transport-Security)'"
fi

kill -0 "$SERVER_PID" 2>/dev/null
check "server still running after the checks" $? "it exited"

finish
