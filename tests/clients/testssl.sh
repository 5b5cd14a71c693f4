#!/usr/bin/env bash
# External scan: testssl.sh against the TLS listener.
#
# Starts the server from $PALISADE_BIN (default target/debug/palisade) with
# `--listen 127.0.0.1:0 --tls-cert certs/localhost.pem --tls-key certs/localhost.key`
# (plus any flags in $PALISADE_EXTRA_ARGS), runs one full testssl.sh scan of
# localhost:PORT, prints the findings by severity and fails on any finding of
# severity HIGH or CRITICAL (and on a scan that errors out or never reaches the
# server). Every check name ends in "(tls)".
#
# Needs testssl.sh (Debian package `testssl.sh`, command `testssl`); when it is
# not installed the script prints a SKIP line and exits 0 (neither pass nor fail).
#
# Scan options:
#   --add-ca certs/ca.pem  the chain is judged against the development CA, as the
#                          other clients do (otherwise: "self signed CA in chain")
#   --nodns none           no DNS look-ups at all
#   --ip 127.0.0.1         the address the server listens on (`--ip one` would be
#                          the same here, but testssl.sh refuses it with --nodns none);
#                          the name checked against the certificate stays localhost
#   NXCONNECT=127.0.0.1:0  testssl.sh probes the local openssl with
#                          `s_client -connect invalid.`, a DNS query; this keeps
#                          those probes on the loopback too
# So the scan sends nothing beyond 127.0.0.1 / ::1. A full scan (client
# simulations included) takes about 40 s here; it is bounded at TESTSSL_TIMEOUT_S.
#
#   bash tests/clients/testssl.sh
set -u

NAME=testssl
BIN=${PALISADE_BIN:-target/debug/palisade}
ROOT=$(cd "$(dirname "$0")/../.." && pwd) # the repository root
SUFFIX=" (tls)"
TESTSSL_TIMEOUT_S=200
# shellcheck source=tests/clients/lib.sh
. "$(dirname "$0")/lib.sh"

# Debian installs the script as `testssl`; upstream calls it testssl.sh.
TESTSSL=$(command -v testssl || command -v testssl.sh || true)
if [ -z "$TESTSSL" ]; then
    echo "SKIP $NAME: testssl.sh is not installed (no testssl or testssl.sh in PATH; Debian package testssl.sh)"
    exit 0
fi
command -v python3 >/dev/null || { fail "python3 is installed (to read the JSON report)"; finish; }

# ---- start the server ------------------------------------------------------

start_server --tls-cert "$ROOT/certs/localhost.pem" --tls-key "$ROOT/certs/localhost.key"
PORT=${ADDR##*:}

# ---- the scan ----------------------------------------------------------------

version=$("$TESTSSL" --version --color 0 2>/dev/null | grep -m 1 -oE 'testssl(\.sh)? +[0-9][^ ]*' | tr -s ' ')
echo "info $NAME: ${version:-$TESTSSL}"
started=$(date +%s)
NXCONNECT=127.0.0.1:0 timeout -k 10 "$TESTSSL_TIMEOUT_S" "$TESTSSL" --quiet --color 0 --warnings off \
    --nodns none --add-ca "$ROOT/certs/ca.pem" --jsonfile "$WORK/scan.json" --ip 127.0.0.1 "localhost:$PORT" \
    >"$WORK/scan.txt" 2>&1
rc=$?
elapsed=$(($(date +%s) - started))
echo "info $NAME: scan took $elapsed s (exit status $rc)"

# testssl.sh exits with 242..255 on its own errors; 124/137 means timeout stopped it.
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ "$rc" -lt 242 ] && [ -s "$WORK/scan.json" ]
r=$?
check "scan finishes within $TESTSSL_TIMEOUT_S s and writes its JSON report" $r "exit status $rc after $elapsed s"
if [ "$r" -ne 0 ]; then
    echo "--- last lines of the testssl.sh output ---" >&2
    tail -n 30 "$WORK/scan.txt" >&2
    finish
fi

# Summary by severity, every finding of MEDIUM or worse, and the verdicts.
python3 - "$WORK/scan.json" >"$WORK/summary.txt" <<'EOF'
import collections, json, sys

findings = json.load(open(sys.argv[1]))
if isinstance(findings, dict):  # --jsonfile-pretty layout, should it ever be used
    findings = [f for s in findings.get("scanResult", []) for v in s.values()
                if isinstance(v, list) for f in v]
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "FATAL", "OK", "INFO", "DEBUG"]
count = collections.Counter(f.get("severity", "?") for f in findings)
summary = ", ".join(f"{s} {count[s]}" for s in order + sorted(set(count) - set(order)) if count[s] or s in ("CRITICAL", "HIGH"))
print(f"summary findings by severity: {summary}")
for f in findings:
    if f.get("severity") in ("CRITICAL", "HIGH", "MEDIUM", "FATAL"):
        print(f"finding {f['severity']} {f.get('id')}: {f.get('finding')}")
# The one finding allowed, by name: the development CA has no CRL or OCSP
# responder (a throw-away CA cannot offer revocation). A certificate from a
# real CA carries them; every other HIGH or CRITICAL finding fails the test.
ALLOWED = {"cert_revocation": "development certificate: no CRL/OCSP URI"}
for f in findings:
    if f.get("id") in ALLOWED and f.get("severity") in ("CRITICAL", "HIGH"):
        print(f"finding allowed {f.get('id')} ({f['severity']}): {ALLOWED[f['id']]}")
bad = [f"{f.get('id')} ({f['severity']})" for f in findings
       if f.get("severity") in ("CRITICAL", "HIGH") and f.get("id") not in ALLOWED]
print("bad " + ", ".join(bad))
fatal = [f"{f.get('id')}: {f.get('finding')}" for f in findings if f.get("severity") == "FATAL"]
print("fatal " + "; ".join(fatal))
reached = any(f.get("id") in ("TLS1_2", "TLS1_3") and str(f.get("finding", "")).startswith("offered")
              for f in findings)
print(f"reached {int(reached)}")
EOF
py=$?
sed -n 's/^summary /info '"$NAME"': /p; s/^finding /info '"$NAME"':   /p' "$WORK/summary.txt"
reached=$(sed -n 's/^reached //p' "$WORK/summary.txt")
fatal=$(sed -n 's/^fatal //p' "$WORK/summary.txt")
bad=$(sed -n 's/^bad //p' "$WORK/summary.txt")

[ "$py" -eq 0 ] && [ "$reached" = 1 ] && [ -z "$fatal" ]
check "scan reached the server (TLS 1.2 or 1.3 offered) without a FATAL finding" $? \
    "JSON parse status $py, reached '$reached', FATAL: $fatal"
[ "$py" -eq 0 ] && [ -z "$bad" ]
check "no finding of severity HIGH or CRITICAL" $? "$bad"

kill -0 "$SERVER_PID" 2>/dev/null
check "server still running after the scan" $? "it exited"

finish
