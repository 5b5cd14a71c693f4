#!/usr/bin/env bash
# The whole test suite: installs what the tests need (idempotent), checks
# formatting and lints (with and without TLS), the docs, palisade-proto alone
# (its dependency tree, a no_std build), runs every Rust test (unit,
# integration, conformance, attacks, property tests, fuzz regressions, the
# layering check, the examples), a 30 s smoke run of every fuzz
# target (cargo-fuzz, installed on first use), a smoke run of the load
# generator (bench/compare.sh --smoke), then the external clients
# (Python websockets, Node ws, curl) and the browser tests (Debian's chromium
# driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v testssl >/dev/null || need_apt+=(testssl.sh)
command -v openssl >/dev/null || need_apt+=(openssl)
fc-list >/dev/null 2>&1 || need_apt+=(fontconfig)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" fonts-dejavu-core >/dev/null
fi

# --- Python client (websockets) in a venv ----------------------------------
VENV="$ROOT/target/test-venv"
if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null \
   || ! cmp -s tests/clients/requirements.txt "$VENV/.requirements"; then
  step "pip install -r tests/clients/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt
  cp tests/clients/requirements.txt "$VENV/.requirements"
fi

# --- Node clients (ws, playwright-core) -------------------------------------
if ! cmp -s tests/js/package-lock.json tests/js/node_modules/.package-lock.json 2>/dev/null; then
  step "npm ci in tests/js"
  (cd tests/js && npm ci --silent --no-audit --no-fund)
fi

# --- Rust ------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path palisade-proto/no-std-check/Cargo.toml -- --check
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
step "cargo clippy --no-default-features (the build without TLS)"
cargo clippy --quiet -p palisade --all-targets --no-default-features -- -D warnings
step "cargo doc (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps -p palisade -p palisade-proto
step "palisade-proto alone: its build, its dependency tree, no std"
cargo build --quiet -p palisade-proto
deps=$(cargo tree -p palisade-proto -e normal --depth 1 --prefix none | tail -n +2 | cut -d' ' -f1 | sort | tr '\n' ' ')
echo "palisade-proto depends on: $deps"
if [ "$deps" != "base64 httparse sha1 " ]; then
  echo "palisade-proto must depend on base64, httparse and sha1 only" >&2
  exit 1
fi
if cargo tree -p palisade-proto -e normal,features | grep -q 'feature "std"'; then
  echo "a dependency of palisade-proto is built with its std feature" >&2
  exit 1
fi
# A no_std static library with its own panic handler over the core: it
# does not build if anything in the core's tree links std.
cargo build --quiet --manifest-path palisade-proto/no-std-check/Cargo.toml
echo "palisade-proto: no_std check built"
step "cargo test"
# Server logs of this run only (cargo test and the external clients keep them
# here; tests/check-logs.sh looks through all of them at the end).
rm -rf target/test-output/logs target/test-output/attacks.md
# The attack suite holds thousands of sockets at once (it also raises its own
# soft limit with prlimit when it can).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
set +e
cargo test --workspace --quiet 2>&1 | tee target/cargo-test.log
rust_status=${PIPESTATUS[0]}
set -e
if [ "$rust_status" -ne 0 ]; then
  echo "cargo test failed (exit $rust_status); full output in target/cargo-test.log"
fi
if [ -f target/test-output/attacks.md ]; then
  step "attack suite summary (tests/attacks/)"
  echo "| attack | what the attacker saw | well-behaved replies lost | max round trip | peak RSS |"
  echo "| --- | --- | --- | --- | --- |"
  sort target/test-output/attacks.md
fi

# --- fuzzing smoke run ------------------------------------------------------
# Every fuzz target for 30 s from its seeds (cargo-fuzz is installed on first
# use): a regression that panics on a known input fails here.
step "fuzz smoke run (fuzz/run.sh 30)"
fuzz_status=0
bash fuzz/run.sh "${PALISADE_FUZZ_SECONDS:-30}" || fuzz_status=$?

# --- load generator smoke run ------------------------------------------------
# Every benchmark case once against palisade for a second (idle with 200
# connections): checks that the generator works and that no reply is lost.
# No timing is asserted; docs/BENCHMARKS.md has the measured figures.
step "load generator smoke run (bench/compare.sh --smoke)"
bench_status=0
bash bench/compare.sh --smoke --out target/bench/smoke || bench_status=$?

# --- external clients and the browser --------------------------------------
step "external clients and browser"
cargo build --quiet
export PALISADE_BIN="$ROOT/target/debug/palisade"
export PALISADE_PYTHON="$VENV/bin/python"
export PALISADE_TEST_OUT="$ROOT/target/test-output/browser"
ext_status=0
bash tests/run-external.sh || ext_status=$?

if [ "$rust_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ] || [ "$bench_status" -ne 0 ] \
   || [ "$ext_status" -ne 0 ]; then
  echo "FAILED: cargo test exit $rust_status, fuzz exit $fuzz_status, bench smoke exit $bench_status, external exit $ext_status"
  exit 1
fi
echo "all tests passed"
