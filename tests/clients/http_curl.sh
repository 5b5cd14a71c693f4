#!/usr/bin/env bash
# External client test: the plain-HTTP side of palisade checked with curl.
#
# Starts the server from $PALISADE_BIN (default target/debug/palisade) with
# `--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), waits for
# `listening on 127.0.0.1:PORT` on its stderr, runs the checks, prints one
# PASS/FAIL line per check and exits non-zero if any failed.
#
# Authentication (SPEC.md section 5) is checked on servers started one after
# the other, each with its own settings (--config FILE) and a users file made
# with `palisade users add` (10000 PBKDF2 iterations, so logins are fast):
#   main   users file with alice, logins_per_ip_per_min 1000, token_ttl_s 600:
#          the static files and handshake checks (logged in, Authorization:
#          Bearer), every POST /login answer (200 with the exact cookie and JWT
#          claims, 400, 401 for a wrong password and an unknown user with the
#          same body, 405, 411, 413, 415), the handshake's credentials (Bearer,
#          cookie, subprotocol, query, Basic) and its 401 refusals with their
#          logged reasons; neither token nor password in the server log;
#   rate   logins_per_ip_per_min 2, token_ttl_s 1, leeway_s 0: the third login
#          is 429 with Retry-After (before the Content-Type check); the token
#          from the first is refused as expired;
#   busy   hash_workers 1, hash_queue 1 and a slow password hash: concurrent
#          logins get 503 busy with Retry-After: 1;
#   none   --auth-mode none: the handshake needs no credentials;
#   demo   no users file: one `demo login: demo / PASSWORD` line, and that
#          password logs in.
# Passwords used here are listed in tests/test-passwords.txt (for
# tests/check-logs.sh). Each server's stderr is kept in target/test-output/logs/.
#
# With PALISADE_TLS=1 the server is started with the development certificate
# (certs/localhost.pem, certs/localhost.key), every request goes to
# https://localhost:PORT/ trusting only the development CA (curl --cacert
# certs/ca.pem), and two more checks run: the Strict-Transport-Security header,
# and a plain http:// request to the TLS port (400 or a clean close within 2 s).
# The login cookie must then carry `; Secure`. Every check name then ends in
# "(tls)".
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
# Body without blanks, to compare with the exact JSON of an error answer.
squeezed() { tr -d ' \t\r\n' <"$WORK/$1.b"; }
# json_str ID KEY / json_num ID KEY: a string / number field of a flat JSON body.
json_str() { tr -d '\r\n' <"$WORK/$1.b" | sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"; }
json_num() { tr -d '\r\n' <"$WORK/$1.b" | sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p"; }
# b64url_decode TEXT: base64url without padding -> bytes.
b64url_decode() {
    local s
    s=$(printf '%s' "$1" | tr '_-' '/+')
    case $((${#s} % 4)) in 2) s="$s==" ;; 3) s="$s=" ;; esac
    printf '%s' "$s" | base64 -d 2>/dev/null
}

# ---- users, settings and the servers -----------------------------------------

# Every password here is listed in tests/test-passwords.txt.
ALICE_PW='curl-alice-Vb7Qm2xT9k'
WRONG_PW='curl-wrong-Hs4Lp8Zc1n'
SLOW_PW='curl-slow-Rk3Wd6Yf0j'

# add_user FILE NAME PASSWORD [ITERATIONS]: `palisade users add`, password on stdin.
add_user() {
    printf '%s\n' "$3" | timeout 60 "$BIN" users add "$2" --users-file "$1" --iterations "${4:-10000}" \
        >/dev/null 2>"$WORK/users-add.err"
    check "palisade users add $2 (${4:-10000} iterations)" $? "$(head -c 300 "$WORK/users-add.err")"
}

# serve [FLAGS...]: start_server with the TLS flags, then sets HOST, PORT, BASE.
serve() {
    start_server ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} "$@"
    HOST=${ADDR%:*}
    PORT=${ADDR##*:}
    if [ "$TLS" = 1 ]; then
        BASE="https://localhost:$PORT" # the name the certificate is checked against
    else
        BASE="http://$ADDR"
    fi
}

command -v curl >/dev/null || { fail "curl is installed"; finish; }

add_user "$WORK/users.json" alice "$ALICE_PW"
printf '%s\n' '{"rate": {"logins_per_ip_per_min": 1000}, "auth": {"token_ttl_s": 600}}' >"$WORK/main.json"
serve --config "$WORK/main.json" --users-file "$WORK/users.json"

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
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
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

csp=$(header "$WORK/nope.h" Content-Security-Policy)
cc=$(header "$WORK/nope.h" Cache-Control)
[ "$csp" = "default-src 'none'; frame-ancestors 'none'" ] && [ "$(lower "$cc")" = no-store ]
check "GET /nope: the error carries CSP default-src 'none' and Cache-Control: no-store" $? "CSP '$csp', Cache-Control '$cc'"

# Host names: curl sends the Host we give it (SPEC.md section 2).
fetch rebind -H "Host: evil.example" "$BASE/healthz"
c=$(code rebind)
[ "$c" = 421 ] && [ "$(cat "$WORK/rebind.b")" = "host not allowed" ]
check "GET /healthz with Host: evil.example -> 421 host not allowed" $? "status $c"
fetch badhost -H "Host: x@evil.com" "$BASE/healthz"
c=$(code badhost)
[ "$c" = 400 ]
check "GET /healthz with Host: x@evil.com -> 400" $? "status $c"

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

# ---- POST /login ---------------------------------------------------------------

# login ID BODY [curl args...]: POST BODY to /login with one Content-Type
# header, $CT (default application/json), without `Expect: 100-continue`.
login() {
    local id=$1 body=$2
    shift 2
    printf '%s' "$body" >"$WORK/$id.req"
    fetch "$id" -X POST -H 'Expect:' -H "Content-Type: ${CT:-application/json}" \
        --data-binary "@$WORK/$id.req" "$@" "$BASE/login"
}
creds() { printf '{"username":"%s","password":"%s"}' "$1" "$2"; }

# json_answer ID: every /login answer is JSON with Connection: close.
json_answer() {
    local ct conn
    ct=$(header "$WORK/$1.h" Content-Type)
    conn=$(header "$WORK/$1.h" Connection)
    case "$(lower "$ct")" in application/json*) ;; *) return 1 ;; esac
    [ "$(lower "$conn")" = close ]
}
# refused_login ID STATUS ERROR DESCRIPTION: status, the exact body
# {"error":"ERROR"}, Content-Type: application/json and Connection: close.
refused_login() {
    local c body
    c=$(code "$1")
    body=$(squeezed "$1")
    [ "$c" = "$2" ] && [ "$body" = "{\"error\":\"$3\"}" ] && json_answer "$1"
    check "$4 -> $2 {\"error\":\"$3\"}, JSON, Connection: close" $? \
        "status $c, body '$(head -c 200 "$WORK/$1.b")', Content-Type '$(header "$WORK/$1.h" Content-Type)', Connection '$(header "$WORK/$1.h" Connection)'"
}

SECURE=
[ "$TLS" = 1 ] && SECURE='; Secure'

login ok "$(creds alice "$ALICE_PW")"
c=$(code ok)
TOKEN=$(json_str ok token)
[ "$c" = 200 ] && [ -n "$TOKEN" ] && json_answer ok
check "POST /login alice, right password -> 200 JSON with a token, Connection: close" $? \
    "status $c, body '$(head -c 300 "$WORK/ok.b")', Content-Type '$(header "$WORK/ok.h" Content-Type)'"
ttype=$(json_str ok token_type)
expires=$(json_num ok expires_in)
[ "$ttype" = Bearer ] && [ "$expires" = 600 ]
check "login answer has token_type Bearer and expires_in 600 (auth.token_ttl_s)" $? \
    "token_type '$ttype', expires_in '$expires'"
cookie=$(header "$WORK/ok.h" Set-Cookie)
[ -n "$TOKEN" ] && [ "$cookie" = "palisade_token=$TOKEN; HttpOnly; SameSite=Strict; Path=/; Max-Age=600$SECURE" ]
check "Set-Cookie: palisade_token=<the token>; HttpOnly; SameSite=Strict; Path=/; Max-Age=600${SECURE}" $? \
    "got '$cookie'"
cc=$(header "$WORK/ok.h" Cache-Control)
[ "$(lower "$cc")" = no-store ]
check "login answer has Cache-Control: no-store" $? "got '$cc'"
# The token is a JWT: header {"alg":"HS256"}, claims sub, iss, iat, exp = iat + ttl.
IFS=. read -r jwt_h jwt_p jwt_s <<<"$TOKEN"
jwt_header=$(b64url_decode "$jwt_h" | tr -d ' ')
jwt_claims=$(b64url_decode "$jwt_p" | tr -d ' ')
iat=$(printf '%s' "$jwt_claims" | sed -n 's/.*"iat":\([0-9]*\).*/\1/p')
exp=$(printf '%s' "$jwt_claims" | sed -n 's/.*"exp":\([0-9]*\).*/\1/p')
now=$(date +%s)
case "$jwt_header" in *'"alg":"HS256"'*) r=0 ;; *) r=1 ;; esac
[ $r -eq 0 ] && [ -n "$jwt_s" ]
check "token is a signed JWT with alg HS256" $? "header '$jwt_header', signature '${jwt_s:0:8}...'"
case "$jwt_claims" in *'"sub":"alice"'*'"iss":"palisade"'* | *'"iss":"palisade"'*'"sub":"alice"'*) r=0 ;; *) r=1 ;; esac
[ $r -eq 0 ] && [ -n "$iat" ] && [ -n "$exp" ] && [ $((exp - iat)) -eq 600 ] &&
    [ $((iat - now)) -le 5 ] && [ $((now - iat)) -le 60 ]
check "token claims: sub alice, iss palisade, iat now, exp = iat + 600" $? "claims '$jwt_claims', now $now"

CT='application/json; charset=utf-8' login charset "$(creds alice "$ALICE_PW")"
c=$(code charset)
[ "$c" = 200 ] && [ -n "$(json_str charset token)" ]
check "POST /login with Content-Type: application/json; charset=utf-8 -> 200" $? \
    "status $c, body '$(head -c 200 "$WORK/charset.b")'"

# Exactly 4096 bytes (the limit; JSON allows trailing blanks) are accepted, 4097 are not.
json=$(creds alice "$ALICE_PW")
login max "$json$(printf '%*s' $((4096 - ${#json})) '')"
c=$(code max)
[ "$(wc -c <"$WORK/max.req")" -eq 4096 ] && [ "$c" = 200 ]
check "POST /login with a 4096-byte body -> 200" $? "status $c, body '$(head -c 200 "$WORK/max.b")'"
login big "$json$(printf '%*s' $((4097 - ${#json})) '')"
refused_login big 413 body_too_large "POST /login with a 4097-byte body"

login wrongpw "$(creds alice "$WRONG_PW")"
refused_login wrongpw 401 invalid_credentials "POST /login alice, wrong password"
login nouser "$(creds mallory "$WRONG_PW")"
refused_login nouser 401 invalid_credentials "POST /login unknown user"
cmp -s "$WORK/wrongpw.b" "$WORK/nouser.b"
check "wrong password and unknown user get byte-identical bodies" $? \
    "'$(cat "$WORK/wrongpw.b")' vs '$(cat "$WORK/nouser.b")'"
[ -z "$(header "$WORK/wrongpw.h" Set-Cookie)" ] && [ -z "$(header "$WORK/nouser.h" Set-Cookie)" ]
check "a refused login sets no cookie" $? "Set-Cookie '$(header "$WORK/wrongpw.h" Set-Cookie)'"

fetch getlogin "$BASE/login"
refused_login getlogin 405 method_not_allowed "GET /login"
allow=$(header "$WORK/getlogin.h" Allow)
[ "$allow" = POST ]
check "GET /login -> Allow: POST" $? "got '$allow'"

CT=text/plain login textplain "$(creds alice "$ALICE_PW")"
refused_login textplain 415 unsupported_media_type "POST /login with Content-Type: text/plain"
CT=application/x-www-form-urlencoded login formenc "username=alice&password=$ALICE_PW"
refused_login formenc 415 unsupported_media_type "POST /login with a form-encoded body"
creds alice "$ALICE_PW" >"$WORK/noct.req"
fetch noct -X POST -H 'Expect:' -H 'Content-Type:' --data-binary "@$WORK/noct.req" "$BASE/login"
refused_login noct 415 unsupported_media_type "POST /login without Content-Type"

# No body and no Content-Length at all (curl -X POST without data sends none).
fetch nolength -X POST -H 'Content-Type: application/json' "$BASE/login"
refused_login nolength 411 length_required "POST /login without Content-Length"

login notjson '{"username": "alice", "password": '
refused_login notjson 400 invalid_request "POST /login with a truncated JSON body"
login garbage "$ALICE_PW"
refused_login garbage 400 invalid_request "POST /login with a body that is not JSON"
login nopw '{"username":"alice"}'
refused_login nopw 400 invalid_request "POST /login without a password"
login numpw '{"username":"alice","password":12345}'
refused_login numpw 400 invalid_request "POST /login with a numeric password"
login arr '["alice","x"]'
refused_login arr 400 invalid_request "POST /login with a JSON array"

# A real opening handshake: after the 101 the connection stays open, so curl
# ends on --max-time (exit status 28); the status and headers are what count.
# handshake ID [curl args...] on $BASE$WS_PATH (default /ws), logged in with
# $AUTH (curl args, default: Authorization: Bearer $TOKEN) unless NOAUTH=1.
handshake() {
    local id=$1
    shift
    local auth=()
    [ "${NOAUTH:-0}" = 1 ] || auth=(-H "Authorization: Bearer $TOKEN")
    curl -sS --max-time 2 --noproxy '*' ${CURL_TLS[@]+"${CURL_TLS[@]}"} \
        -o "$WORK/$id.b" -D "$WORK/$id.h" -w '%{http_code}' \
        -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
        -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' ${auth[@]+"${auth[@]}"} "$@" "$BASE${WS_PATH:-/ws}" \
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
! header "$WORK/ws101.h" Sec-WebSocket-Protocol >/dev/null
check "101 without an offered subprotocol has no Sec-WebSocket-Protocol" $? \
    "got '$(header "$WORK/ws101.h" Sec-WebSocket-Protocol)'"

handshake wsproto -H 'Sec-WebSocket-Protocol: palisade.v1'
c=$(code wsproto)
proto=$(header "$WORK/wsproto.h" Sec-WebSocket-Protocol)
[ "$c" = 101 ] && [ "$proto" = palisade.v1 ]
check "handshake offering palisade.v1 -> 101 selecting palisade.v1" $? "status $c, protocol '$proto'"

# ---- credentials at the handshake ------------------------------------------------

# refusals REASON: how many `handshake refused ... status=401 ... reason=REASON`
# lines the server has logged so far.
refusals() {
    local n
    n=$(grep -cE "handshake refused .*status=401 .*reason=$1([^A-Za-z_]|\$)" "$WORK/server.log" 2>/dev/null)
    echo "${n:-0}"
}
# refused_handshake ID REASON BEFORE DESCRIPTION: 401 with WWW-Authenticate:
# Bearer, and within 2 s one more refusal logged with REASON than BEFORE.
refused_handshake() {
    local id=$1 reason=$2 before=$3 what=$4 c www logged=1
    c=$(code "$id")
    www=$(header "$WORK/$id.h" WWW-Authenticate)
    case "$www" in Bearer | "Bearer "*) r=0 ;; *) r=1 ;; esac
    [ "$c" = 401 ] && [ $r -eq 0 ]
    check "handshake $what -> 401 with WWW-Authenticate: Bearer" $? "status $c, WWW-Authenticate '$www'"
    for _ in $(seq 1 20); do
        [ "$(refusals "$reason")" -gt "$before" ] && { logged=0; break; }
        sleep 0.1
    done
    check "handshake $what is logged: handshake refused ... status=401 reason=$reason" $logged \
        "$(grep 'handshake refused' "$WORK/server.log" | tail -n 2 | tr '\n' ' ' | cut -c 1-300)"
}

before=$(refusals missing)
NOAUTH=1 handshake nocreds
refused_handshake nocreds missing "$before" "without credentials"

before=$(refusals malformed)
NOAUTH=1 handshake garbagetoken -H 'Authorization: Bearer not-a-jwt-at-all'
refused_handshake garbagetoken malformed "$before" "with Authorization: Bearer <garbage>"

# The token with the first character of its signature changed.
sig=${TOKEN##*.}
case "${sig:0:1}" in A) first=B ;; *) first=A ;; esac
before=$(refusals bad_signature)
NOAUTH=1 handshake badsig -H "Authorization: Bearer ${TOKEN%.*}.$first${sig:1}"
refused_handshake badsig bad_signature "$before" "with a token whose signature was altered"

before=$(refusals invalid_credentials)
NOAUTH=1 handshake badbasic -u "alice:$WRONG_PW"
refused_handshake badbasic invalid_credentials "$before" "with Authorization: Basic and a wrong password"

# accepted_handshake ID DESCRIPTION [PROTOCOL]: 101 (selecting PROTOCOL if given).
accepted_handshake() {
    local c proto
    c=$(code "$1")
    proto=$(header "$WORK/$1.h" Sec-WebSocket-Protocol)
    [ "$c" = 101 ] && [ "$proto" = "${3:-}" ]
    check "handshake $2 -> 101${3:+ selecting $3}" $? "status $c, Sec-WebSocket-Protocol '$proto'"
}
NOAUTH=1 handshake bycookie -H "Cookie: palisade_token=$TOKEN"
accepted_handshake bycookie "with the cookie palisade_token"
NOAUTH=1 handshake bysubproto -H "Sec-WebSocket-Protocol: palisade.v1, palisade.bearer.$TOKEN"
accepted_handshake bysubproto "offering palisade.bearer.<token> beside palisade.v1" palisade.v1
NOAUTH=1 handshake bybasic -u "alice:$ALICE_PW"
accepted_handshake bybasic "with Authorization: Basic from loopback"
NOAUTH=1 WS_PATH="/ws?token=$TOKEN" handshake byquery
accepted_handshake byquery "with ?token=<token>"
sleep 0.3 # the log is written by its own thread
! grep -qE 'token=[^[]' "$WORK/server.log"
check "a logged URL shows token=[redacted], never the value" $? \
    "$(grep -oE '.{0,60}token=[^[].{0,20}' "$WORK/server.log" | head -n 1 | cut -c 1-60)..."

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

# secrets_absent WHAT SECRET...: none of SECRET occurs in the current server log.
secrets_absent() {
    local what=$1 s found=
    shift
    for s in "$@"; do
        [ -n "$s" ] && grep -qF -- "$s" "$WORK/server.log" && found="$found ${s:0:12}..."
    done
    [ -z "$found" ]
    check "server log contains no $what" $? "found:$found"
}
sleep 0.2
secrets_absent "token or password" "$TOKEN" "$(json_str charset token)" "$ALICE_PW" "$WRONG_PW"

# ---- login rate and expired tokens -------------------------------------------------

printf '%s\n' '{"rate": {"logins_per_ip_per_min": 2}, "auth": {"token_ttl_s": 1, "leeway_s": 0}}' >"$WORK/rate.json"
serve --config "$WORK/rate.json" --users-file "$WORK/users.json"
login rate1 "$(creds alice "$ALICE_PW")"
c=$(code rate1)
SHORT_TOKEN=$(json_str rate1 token)
[ "$c" = 200 ] && [ -n "$SHORT_TOKEN" ]
check "rate server: first login -> 200" $? "status $c, body '$(head -c 200 "$WORK/rate1.b")'"
logged_in_at=$(date +%s%N)
login rate2 "$(creds alice "$WRONG_PW")"
refused_login rate2 401 invalid_credentials "rate server: second login (wrong password)"
login rate3 "$(creds alice "$ALICE_PW")"
refused_login rate3 429 rate_limited "third POST /login within a minute at logins_per_ip_per_min 2"
ra=$(header "$WORK/rate3.h" Retry-After)
case "$ra" in '' | *[!0-9]*) r=1 ;; *) [ "$ra" -ge 1 ] && [ "$ra" -le 60 ] && r=0 || r=1 ;; esac
check "429 carries Retry-After: N seconds (1 to 60)" $r "got '$ra'"
CT=text/plain login rate4 "$(creds alice "$ALICE_PW")"
refused_login rate4 429 rate_limited "over the login rate, a text/plain login (rate is checked first)"

# token_ttl_s 1 and leeway_s 0: 2.5 s after the login the token has expired.
left_ms=$((2500 - ($(date +%s%N) - logged_in_at) / 1000000))
[ "$left_ms" -gt 0 ] && sleep "$((left_ms / 1000)).$(printf '%03d' $((left_ms % 1000)))"
before=$(refusals expired)
NOAUTH=1 handshake expired -H "Authorization: Bearer $SHORT_TOKEN"
refused_handshake expired expired "$before" "with an expired token"

# ---- a full password queue ------------------------------------------------------------

# One worker, a queue of one, and a hash slow enough (300000 iterations) that
# the six logins sent at once find both taken.
add_user "$WORK/slow-users.json" slowpoke "$SLOW_PW" 300000
printf '%s\n' '{"rate": {"logins_per_ip_per_min": 1000}, "auth": {"hash_workers": 1, "hash_queue": 1}}' >"$WORK/busy.json"
serve --config "$WORK/busy.json" --users-file "$WORK/slow-users.json"
pids=()
for i in 1 2 3 4 5 6; do
    login "busy$i" "$(creds slowpoke "$SLOW_PW")" --max-time 20 &
    pids+=($!)
done
wait "${pids[@]}" # not a bare `wait`: the server is a child of this shell too
ok=0
busy=0
other=
for i in 1 2 3 4 5 6; do
    c=$(code "busy$i")
    case "$c" in
        200) ok=$((ok + 1)) ;;
        503) busy=$((busy + 1)); busy_id=busy$i ;;
        *) other="$other $c" ;;
    esac
done
[ "$ok" -ge 1 ] && [ "$busy" -ge 1 ] && [ -z "$other" ]
check "six concurrent logins with hash_queue 1 -> some 200, the rest 503" $? \
    "$ok x 200, $busy x 503, others:${other:- none}"
if [ "$busy" -ge 1 ]; then
    refused_login "$busy_id" 503 busy "a login while the password queue is full"
    ra=$(header "$WORK/$busy_id.h" Retry-After)
    [ "$ra" = 1 ]
    check "503 busy carries Retry-After: 1" $? "got '$ra'"
fi

# ---- auth.mode none ---------------------------------------------------------------------

serve --auth-mode none
NOAUTH=1 handshake nonews
accepted_handshake nonews "without credentials when auth.mode is none"

# ---- no users file: the demo user ---------------------------------------------------------

serve
sleep 0.2
demo_lines=$(grep -c 'demo login: demo / ' "$WORK/server.log")
DEMO_PW=$(sed -n 's/.*demo login: demo \/ \([^ ]*\).*/\1/p' "$WORK/server.log" | head -n 1)
[ "$demo_lines" = 1 ] && [ -n "$DEMO_PW" ]
check "without a users file the log has one 'demo login: demo / <password>' line" $? \
    "$demo_lines such lines"
login demo "$(creds demo "$DEMO_PW")"
c=$(code demo)
[ "$c" = 200 ] && [ -n "$(json_str demo token)" ]
check "the demo user logs in with the printed password" $? "status $c, body '$(head -c 200 "$WORK/demo.b")'"
DEMO_TOKEN=$(json_str demo token)
sleep 0.2
n=0
[ -n "$DEMO_PW" ] && n=$(grep -F -- "$DEMO_PW" "$WORK/server.log" | grep -vc 'demo login:')
[ "$n" -eq 0 ] && { [ -z "$DEMO_TOKEN" ] || ! grep -qF -- "$DEMO_TOKEN" "$WORK/server.log"; }
check "the demo password appears only in its start-up line, the token nowhere" $? "$n other lines"

# The README's "From a terminal": the token from /login, then the websockets
# package's own command-line client on ?token= (plain mode; it needs the
# Python venv of the test command).
PY=${PALISADE_PYTHON:-$ROOT/target/test-venv/bin/python}
if [ -z "${SUFFIX:-}" ] && [ -x "$PY" ] && [ -n "$DEMO_TOKEN" ]; then
    out=$( (echo '{"event":"get_name","data":{"hero":"hulk"}}'; sleep 1) \
        | timeout 10 "$PY" -m websockets "ws://$ADDR/ws?token=$DEMO_TOKEN" 2>&1)
    echo "$out" | grep -qF '{"event":"name","data":{"hero":"hulk","hero_name":"Bruce Banner"}}'
    check "README: python -m websockets with the token from curl gets the name" $? \
        "$(echo "$out" | tr -d '\033' | tail -c 300)"
fi

finish
