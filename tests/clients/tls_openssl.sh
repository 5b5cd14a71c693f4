#!/usr/bin/env bash
# External client test: the TLS listener probed with `openssl s_client`.
#
# Starts the server from $PALISADE_BIN (default target/debug/palisade) with
# `--listen 127.0.0.1:0 --tls-cert certs/localhost.pem --tls-key certs/localhost.key`
# (plus any flags in $PALISADE_EXTRA_ARGS), waits for `listening on
# 127.0.0.1:PORT` on its stderr and checks that
#   - TLS 1.0 and TLS 1.1 are refused (the ClientHello is sent, no ServerHello comes back),
#   - TLS 1.2 and TLS 1.3 are accepted, the chain verifies against certs/ca.pem
#     alone for the name localhost, and the negotiated suite is AEAD (GCM or
#     CHACHA20-POLY1305) with forward secrecy,
#   - a TLS 1.2 ClientHello offering only non-AEAD (CBC) suites is refused,
#   - ALPN http/1.1 is selected when offered.
# Prints one PASS/FAIL line per check (all names end in "(tls)") and exits
# non-zero if any failed. Every openssl command is bounded by `timeout`.
#
#   bash tests/clients/tls_openssl.sh
set -u

NAME=tls_openssl
BIN=${PALISADE_BIN:-target/debug/palisade}
ROOT=$(cd "$(dirname "$0")/../.." && pwd) # the repository root
CA=$ROOT/certs/ca.pem
SUFFIX=" (tls)"
CMD_TIMEOUT_S=10
# shellcheck source=tests/clients/lib.sh
. "$(dirname "$0")/lib.sh"

# ---- start the server ------------------------------------------------------

command -v openssl >/dev/null || { fail "openssl is installed"; finish; }

start_server --tls-cert "$ROOT/certs/localhost.pem" --tls-key "$ROOT/certs/localhost.key"

# ---- helpers -----------------------------------------------------------------

# sclient ID [s_client args...]: one handshake with stdin closed (s_client then
# exits right after it); output (with -msg traces) -> $WORK/ID.out, exit status
# -> $WORK/ID.rc (124 when `timeout` had to stop it).
sclient() {
    local id=$1
    shift
    timeout "$CMD_TIMEOUT_S" openssl s_client -connect "$ADDR" -servername localhost -msg "$@" \
        </dev/null >"$WORK/$id.out" 2>&1
    echo $? >"$WORK/$id.rc"
}
rc() { cat "$WORK/$1.rc"; }
# The "New, TLSv1.x, Cipher is X" summary line: prints "TLSv1.x X".
negotiated() { sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\1 \2/p' "$WORK/$1.out" | head -n 1; }
# A short excerpt for FAIL details: the summary, errors and alerts.
excerpt() {
    grep -E '^New,|Cipher is|Verify return code|error|[Aa]lert|ALPN|ServerHello' "$WORK/$1.out" |
        head -n 6 | tr '\n' ' ' | cut -c 1-400
}

# refused ID NAME: the ClientHello went out, no ServerHello came back, no
# session was set up and s_client failed (not a timeout, not a local error).
refused() {
    local id=$1 name=$2 r
    r=$(rc "$id")
    grep -q '^>>> .*ClientHello' "$WORK/$id.out" &&
        ! grep -q '^<<< .*ServerHello' "$WORK/$id.out" &&
        ! negotiated "$id" | grep -qv '(NONE)' &&
        [ "$r" -ne 0 ] && [ "$r" -ne 124 ]
    check "$name" $? "exit $r: $(excerpt "$id")"
}

# accepted ID VERSION NAME: handshake at VERSION (TLSv1.2 / TLSv1.3), chain and
# host name verified against the development CA alone.
accepted() {
    local id=$1 version=$2 name=$3 got
    got=$(negotiated "$id")
    [ "$(rc "$id")" -eq 0 ] &&
        [ "${got%% *}" = "$version" ] && [ "${got#* }" != '(NONE)' ] &&
        grep -q 'Verify return code: 0 (ok)' "$WORK/$id.out" &&
        grep -q '^depth=0 .*localhost' "$WORK/$id.out"
    check "$name" $? "exit $(rc "$id"), negotiated '$got': $(excerpt "$id")"
}

# Trust only the development CA, check the name, abort on any verification error.
VERIFY=(-CAfile "$CA" -verify_hostname localhost -verify_return_error)

# ---- protocol versions ---------------------------------------------------------

# @SECLEVEL=0 so that this openssl is willing to send a TLS 1.0/1.1 ClientHello
# at all: the refusal checked here must come from the server.
sclient tls10 -tls1 -cipher 'DEFAULT:@SECLEVEL=0' "${VERIFY[@]}"
refused tls10 "TLS 1.0 is refused"
sclient tls11 -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' "${VERIFY[@]}"
refused tls11 "TLS 1.1 is refused"

sclient tls12 -tls1_2 "${VERIFY[@]}"
accepted tls12 TLSv1.2 "TLS 1.2 is accepted, Verify return code: 0 (ok) with certs/ca.pem for localhost"
cipher=$(negotiated tls12)
cipher=${cipher#* }
case "$cipher" in ECDHE-*-GCM-* | ECDHE-*-CHACHA20-POLY1305) r=0 ;; *) r=1 ;; esac
check "TLS 1.2 negotiates an ECDHE AEAD suite (GCM or CHACHA20-POLY1305)" $r "got '$cipher'"

sclient tls13 -tls1_3 "${VERIFY[@]}"
accepted tls13 TLSv1.3 "TLS 1.3 is accepted, Verify return code: 0 (ok) with certs/ca.pem for localhost"
cipher=$(negotiated tls13)
cipher=${cipher#* }
case "$cipher" in TLS_AES_*_GCM_* | TLS_CHACHA20_POLY1305_*) r=0 ;; *) r=1 ;; esac
check "TLS 1.3 negotiates an AEAD suite (GCM or CHACHA20-POLY1305)" $r "got '$cipher'"

# ---- cipher suites -------------------------------------------------------------

# Only CBC suites (with and without ECDHE) offered: no common suite may exist.
sclient cbc -tls1_2 -cipher 'AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA256' \
    "${VERIFY[@]}"
refused cbc "TLS 1.2 offering only non-AEAD (CBC) suites is refused"

# ---- ALPN ------------------------------------------------------------------------

sclient alpn -alpn http/1.1 "${VERIFY[@]}"
alpn=$(sed -n 's/^ALPN protocol: //p' "$WORK/alpn.out" | head -n 1)
[ "$(rc alpn)" -eq 0 ] && [ "$alpn" = http/1.1 ]
check "ALPN http/1.1 offered -> ALPN protocol: http/1.1" $? "exit $(rc alpn), got '$alpn': $(excerpt alpn)"

kill -0 "$SERVER_PID" 2>/dev/null
check "server still running after the checks" $? "it exited"

finish
