#!/usr/bin/env bash
# Generates a DEVELOPMENT certificate authority and a certificate for
# localhost (DNS:localhost, IP:127.0.0.1, IP:::1) signed by it.
#
#   certs/gen.sh [OUT_DIR] [DAYS]
#
# Writes OUT_DIR/ca.pem, ca.key, localhost.pem (leaf then CA), localhost.key.
# The keys are ECDSA P-256. Never use these files outside development: the
# private keys are public (they are in this repository).
set -euo pipefail
out="${1:-$(dirname "$0")}"
days="${2:-825}"
if ! command -v openssl >/dev/null; then
  echo "openssl not found; installing it" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openssl >/dev/null
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days "$days" \
  -subj "/O=palisade development/CN=palisade development CA (DO NOT TRUST)" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$tmp/ca.pem"

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/localhost.key"
openssl req -new -key "$tmp/localhost.key" -subj "/O=palisade development/CN=localhost" -out "$tmp/localhost.csr"
cat > "$tmp/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$tmp/localhost.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" -extfile "$tmp/ext.cnf" \
  -out "$tmp/leaf.pem" 2>/dev/null
# PKCS#8 keys, the form rustls reads most widely.
openssl pkcs8 -topk8 -nocrypt -in "$tmp/localhost.key" -out "$out/localhost.key"
openssl pkcs8 -topk8 -nocrypt -in "$tmp/ca.key" -out "$out/ca.key"
cat "$tmp/leaf.pem" "$tmp/ca.pem" > "$out/localhost.pem"
cp "$tmp/ca.pem" "$out/ca.pem"
chmod 600 "$out/localhost.key" "$out/ca.key"
echo "wrote $out/ca.pem, $out/ca.key, $out/localhost.pem, $out/localhost.key (valid $days days)"
openssl x509 -in "$out/localhost.pem" -noout -serial -enddate
