#!/usr/bin/env bash
# Side-by-side benchmark: palisade against minimal echo servers on
# tokio-tungstenite, fastwebsockets, Node ws and Python websockets, and (the
# sio_* cases) against the hero application on socketioxide, the reference
# Node socket.io server and python-socketio under uvicorn (bench/peers/), all
# driven by the same load generator (palisade-bench).
#
# Every measurement gets a fresh server process pinned to CPU 0; the generator
# runs on CPU 1. Each case runs --runs rounds, and every round runs palisade
# and each peer in turn, so drift during the run hits every server alike.
# Raw generator lines go to OUT/raw.txt, the tables to OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bench/compare.sh [OPTIONS]

Builds palisade, palisade-bench and the peer servers, then measures every case
on palisade and on each peer, and prints the medians, the ratios palisade/peer
and a PASS/MISS table against palisade's targets.

OPTIONS:
    --runs N          rounds per case [default: 3]
    --duration S      seconds measured per echo, hero or connect run [default: 5]
    --cases A,B,...   only these cases [default: all]
    --servers A,B,... only these servers [default: all]:
                      palisade,tokio-tungstenite,fastwebsockets,node-ws,python-websockets,
                      socketioxide,node-socketio,python-socketio (the last three run
                      the sio_* cases only, and only they and palisade run those)
    --smoke           palisade only, every case once: echo, hero and connect for
                      1 s, idle with 200 connections; exit 1 if any run fails
    --no-build        use the binaries and packages already in place
    --baseline BIN    also run BIN (another palisade build, e.g. of the commit
                      before a change) as the server palisade-base, alternating
                      with palisade in every case palisade runs: a before/after
                      comparison in one run (the summary adds palisade/palisade-base)
    --workers N       run palisade (and palisade-base) with --workers N; above 1
                      the servers run unpinned (on every CPU, as the generator's
                      CPU too), so compare per server-CPU-second figures
    --rps             receive on the generator's CPU, as on two machines (root
                      only): loopback's receive path (TCP input, the wake-up of
                      the reader) runs on the CPU that sends unless receive
                      packet steering says otherwise, so on one machine a
                      server's CPU time counts its clients' receiving too. This
                      writes CPU 1 into /sys/class/net/lo/queues/rx-0/rps_cpus
                      and raises net.core.netdev_max_backlog to 65536 (the
                      queue a remote CPU takes packets into: at the default
                      1000, a fan-out to 10,000 sockets overflows it and TCP's
                      200 ms retransmission shows up as latency) for the run,
                      and puts the old values back after. Every server is
                      measured alike; the summary's first line says so
    --out DIR         where raw.txt, summary.md and the logs go
                      [default: target/bench/<UTC timestamp>]
    -h, --help        print this help and exit

CASES:
    echo64_100x1 echo64_100x16 echo16k_100x1 echo16k_100x16 echo64_1x1 connect
    idle10k (all servers); sporadic10k (10,000 connections, each sending one
    64 B message every 100 ms: palisade, tokio-tungstenite, fastwebsockets);
    echo64_1x1_busy (palisade with --busy-poll-us 200)
    hero_100x16 flood tls_echo64_100x16 tls_echo16k_100x1 tls_connect tls_idle10k
    (palisade only)
    fanout10k (one publication to 10,000 subscribers, 20 rounds: deliveries per
    server-CPU-second, time until the last subscriber has it, RSS per subscribed
    connection): palisade (raw subscribers, POST /api/publish), node-ws (looping
    over its clients), python-websockets (websockets.broadcast), node-socketio
    (io.to(room).emit)
    sio_fanout10k (the same with Socket.IO subscribers: palisade's, which emit
    subscribe, against node-socketio's room)
    sio_hero_100x1 sio_hero_100x16 (acked get_name round trips over Socket.IO's
    WebSocket transport; every ack compared byte for byte, so every server's
    answers are the same) sio_idle10k (RSS per idle joined Socket.IO connection):
    palisade, socketioxide, node-socketio, python-socketio

EXIT STATUS:
    0 when every run succeeded, 1 when a run failed (generator error or lost
    replies; the summary still shows the other runs), 2 for a usage error.
EOF
}

all_cases=(echo64_100x1 echo64_100x16 echo16k_100x1 echo16k_100x16 echo64_1x1 echo64_1x1_busy connect
    sporadic10k hero_100x16 idle10k flood tls_echo64_100x16 tls_echo16k_100x1 tls_connect tls_idle10k
    sio_hero_100x1 sio_hero_100x16 sio_idle10k fanout10k sio_fanout10k)
all_servers=(palisade tokio-tungstenite fastwebsockets node-ws python-websockets
    socketioxide node-socketio python-socketio)
sio_servers=" socketioxide node-socketio python-socketio "

runs=3 duration=5 smoke=0 build=1 out="" baseline="" workers=1 rps=0
cases=("${all_cases[@]}") servers=("${all_servers[@]}")

die() { echo "compare.sh: $*" >&2; exit 2; }
warn() { echo "compare.sh: warning: $*" >&2; }

# Splits a comma list into the array named $1, checking each item against the rest.
parse_list() {
    local -n dest=$1
    local list=$2 item known
    shift 2
    IFS=, read -r -a dest <<<"$list"
    [[ ${#dest[@]} -gt 0 ]] || die "empty list"
    for item in "${dest[@]}"; do
        for known in "$@"; do [[ $item == "$known" ]] && continue 2; done
        die "unknown name '$item' (known: $*)"
    done
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) [[ ${2-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"; runs=$2; shift 2 ;;
        --duration) [[ ${2-} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration needs a number of seconds"; duration=$2; shift 2 ;;
        --cases) parse_list cases "${2-}" "${all_cases[@]}"; shift 2 ;;
        --servers) parse_list servers "${2-}" "${all_servers[@]}"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --no-build) build=0; shift ;;
        --out) [[ -n ${2-} ]] || die "--out needs a directory"; out=$2; shift 2 ;;
        --workers) [[ ${2-} =~ ^[1-9][0-9]*$ ]] || die "--workers needs a positive integer"; workers=$2; shift 2 ;;
        --rps) rps=1; shift ;;
        --baseline) [[ -x ${2-} ]] || die "--baseline needs an executable palisade binary"; baseline=$(readlink -f "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

idle_conns=10000
if [[ $smoke == 1 ]]; then
    runs=1 duration=1 idle_conns=200 servers=(palisade)
fi
if [[ -n $baseline ]]; then
    [[ $smoke == 0 ]] || die "--baseline does not go with --smoke"
    servers+=(palisade-base)
fi
out=${out:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

has_server() { local s; for s in "${servers[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

srv_bin=target/release/palisade
gen_bin=target/release/palisade-bench
peer_dir=target/peers/release
venv=target/bench-venv
node_dir=bench/peers/node
websockets_pin=15.0.1
uvloop_pin=0.23.0
socketio_pin=5.18.1
uvicorn_pin=0.55.0
httptools_pin=0.7.1

# --- build -------------------------------------------------------------------

if [[ $build == 1 ]]; then
    echo "building palisade and palisade-bench" >&2
    cargo build --release -q -p palisade -p palisade-bench
    if has_server tokio-tungstenite || has_server fastwebsockets || has_server socketioxide; then
        echo "building the rust peers" >&2
        CARGO_TARGET_DIR="$PWD/target/peers" cargo build --release -q --locked \
            --manifest-path bench/peers/rust/Cargo.toml
    fi
    if has_server node-ws || has_server node-socketio; then
        command -v node >/dev/null || die "node not found (leave node-ws and node-socketio out with --servers)"
        want=$(node -p "const d = require('./$node_dir/package.json').dependencies; d.ws + ' ' + d['socket.io']")
        have=$(node -p "const v = (m) => { try { return require('./$node_dir/node_modules/' + m + '/package.json').version } catch { return '' } }; v('ws') + ' ' + v('socket.io')")
        if [[ $have != "$want" ]]; then
            echo "installing ws and socket.io ($want)" >&2
            npm install --prefix "$node_dir" --no-audit --no-fund --silent
        fi
    fi
    if has_server python-socketio; then
        have=$("$venv/bin/python" -c 'import socketio, uvicorn; from importlib.metadata import version; print(version("python-socketio"), uvicorn.__version__)' 2>/dev/null || true)
        if [[ $have != "$socketio_pin $uvicorn_pin" ]]; then
            echo "installing python-socketio $socketio_pin and uvicorn $uvicorn_pin into $venv" >&2
            [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
            "$venv/bin/pip" install -q "python-socketio==$socketio_pin" "uvicorn==$uvicorn_pin" "httptools==$httptools_pin"
            "$venv/bin/pip" install -q "uvloop==$uvloop_pin" || warn "uvloop not installed: uvicorn runs on asyncio's own loop"
        fi
    fi
    if has_server python-websockets; then
        have=$("$venv/bin/python" -c 'import websockets; print(websockets.__version__)' 2>/dev/null || true)
        if [[ $have != "$websockets_pin" ]]; then
            echo "installing websockets $websockets_pin into $venv" >&2
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q "websockets==$websockets_pin"
            "$venv/bin/pip" install -q "uvloop==$uvloop_pin" || warn "uvloop not installed: python-websockets runs on asyncio's own loop"
        fi
    fi
fi

for f in "$srv_bin" "$gen_bin"; do [[ -x $f ]] || die "$f is missing (run without --no-build)"; done
"$gen_bin" --help 2>&1 | grep -q 'idle' || die "$gen_bin does not know --mode idle: it is older than this script"
has_server tokio-tungstenite && { [[ -x $peer_dir/tokio-tungstenite-echo ]] || die "$peer_dir/tokio-tungstenite-echo is missing"; }
has_server fastwebsockets && { [[ -x $peer_dir/fastwebsockets-echo ]] || die "$peer_dir/fastwebsockets-echo is missing"; }
has_server node-ws && { [[ -d $node_dir/node_modules/ws ]] || die "$node_dir/node_modules/ws is missing"; }
has_server python-websockets && { [[ -x $venv/bin/python ]] || die "$venv is missing"; }
has_server socketioxide && { [[ -x $peer_dir/socketioxide-hero ]] || die "$peer_dir/socketioxide-hero is missing"; }
has_server node-socketio && { [[ -d $node_dir/node_modules/socket.io ]] || die "$node_dir/node_modules/socket.io is missing"; }
has_server python-socketio && { "$venv/bin/python" -c 'import socketio, uvicorn' 2>/dev/null || die "python-socketio is missing from $venv"; }

# --- machine -----------------------------------------------------------------

ulimit -n "$(ulimit -Hn)" 2>/dev/null || warn "cannot raise the open-file limit to $(ulimit -Hn)"
nofile=$(ulimit -n)
if [[ $nofile != unlimited && $nofile -lt $((idle_conns + 100)) ]]; then
    warn "open-file limit $nofile is below $idle_conns connections: the idle cases will fail"
fi

pin_srv=() pin_gen=()
if [[ $workers -gt 1 ]]; then
    warn "--workers $workers: the servers run unpinned, on every CPU"
    command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]] && pin_gen=(taskset -c 1)
elif ! command -v taskset >/dev/null; then
    warn "taskset not found: server and generator run unpinned"
elif [[ $(nproc) -lt 2 ]]; then
    warn "$(nproc) CPU: server and generator run unpinned and share it"
else
    pin_srv=(taskset -c 0) pin_gen=(taskset -c 1)
fi

lock_version() { # CRATE -> its version in the rust peers' Cargo.lock
    awk -v n="\"$1\"" '$1 == "name" && $3 == n { getline; gsub(/"/, "", $3); print $3; exit }' \
        bench/peers/rust/Cargo.lock
}
machine="$(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Linux $(uname -r)"
machine+=", $(rustc --version | cut -d' ' -f1-2), palisade $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || machine+="+dirty"
has_server tokio-tungstenite && machine+=", tokio-tungstenite $(lock_version tokio-tungstenite) (tokio $(lock_version tokio))"
has_server fastwebsockets && machine+=", fastwebsockets $(lock_version fastwebsockets) (hyper $(lock_version hyper))"
has_server node-ws && machine+=", node $(node --version) ws $(node -p "require('./$node_dir/node_modules/ws/package.json').version")"
has_server socketioxide && machine+=", socketioxide $(lock_version socketioxide)"
has_server node-socketio && machine+=", node $(node --version) socket.io $(node -p "require('./$node_dir/node_modules/socket.io/package.json').version")"
has_server python-socketio && machine+=", $("$venv/bin/python" -c 'import sys, uvicorn
from importlib.metadata import version
v = version("python-socketio")
print(f"python {sys.version.split()[0]} python-socketio {v} uvicorn {uvicorn.__version__}")')"
if has_server python-websockets; then
    machine+=", $("$venv/bin/python" -c 'import sys, websockets
try:
    import uvloop; loop = "uvloop " + uvloop.__version__
except ImportError:
    loop = "asyncio loop"
print(f"python {sys.version.split()[0]} websockets {websockets.__version__} ({loop})")')"
fi
[[ -n $baseline ]] && machine+=", palisade-base $baseline"
rps_file=/sys/class/net/lo/queues/rx-0/rps_cpus rps_was=""
backlog_file=/proc/sys/net/core/netdev_max_backlog backlog_was=""
if [[ $rps == 1 ]]; then
    [[ ${#pin_srv[@]} -gt 0 ]] || die "--rps needs the server and the generator pinned (2 CPUs or more, taskset, --workers 1)"
    [[ -w $rps_file ]] || die "--rps needs to write $rps_file (root)"
    [[ -w $backlog_file ]] || die "--rps needs to write $backlog_file (root)"
    rps_was=$(cat "$rps_file") backlog_was=$(cat "$backlog_file")
    machine+=", loopback receive on CPU 1 (--rps)"
fi
if [[ $workers -gt 1 ]]; then
    machine+=", palisade --workers $workers unpinned, generator on CPU 1"
elif [[ ${#pin_srv[@]} -gt 0 ]]; then
    machine+=", server on CPU 0, generator on CPU 1"
else
    machine+=", unpinned"
fi
# Other work on the machine skews every figure; the load average shows it.
machine+=", load average $(cut -d' ' -f1 /proc/loadavg) at start"
echo "# $machine" >&2

# --- servers -----------------------------------------------------------------

# shellcheck source=bench/lib.sh
source bench/lib.sh
if [[ $rps == 1 ]]; then
    restore_rps() {
        echo "$rps_was" >"$rps_file" 2>/dev/null || warn "could not restore $rps_file to $rps_was"
        echo "$backlog_was" >"$backlog_file" 2>/dev/null || warn "could not restore $backlog_file to $backlog_was"
    }
    trap 'stop_server; restore_rps' EXIT
    echo 65536 >"$backlog_file" || die "--rps: could not write $backlog_file"
    echo 2 >"$rps_file" || die "--rps: could not write $rps_file"
fi

# Sets srv_pid. taskset execs the server, so $! is the server process itself.
start_server() { # SERVER APP TLS PORT [PALISADE ARGS...]
    local server=$1 app=$2 tls=$3 port=$4 cmd=() exe
    shift 4
    case $server in
        palisade | palisade-base)
            exe=$srv_bin
            [[ $server == palisade-base ]] && exe=$baseline
            cmd=("$exe" --listen "127.0.0.1:$port" --app "$app" --log-level warn --config "$c_config")
            [[ $tls == 1 ]] && cmd+=(--tls-cert certs/localhost.pem --tls-key certs/localhost.key)
            [[ $workers -gt 1 ]] && cmd+=(--workers "$workers")
            cmd+=("$@") ;;
        tokio-tungstenite) cmd=("$peer_dir/tokio-tungstenite-echo" "$port"); exe=${cmd[0]} ;;
        fastwebsockets) cmd=("$peer_dir/fastwebsockets-echo" "$port"); exe=${cmd[0]} ;;
        node-ws) cmd=(node "$node_dir/echo.mjs" "$port"); exe=$(command -v node) ;;
        python-websockets) cmd=("$venv/bin/python" bench/peers/python/echo.py "$port"); exe=$venv/bin/python ;;
        node-ws-fanout) cmd=(node "$node_dir/fanout.mjs" "$port"); exe=$(command -v node) ;;
        python-websockets-fanout) cmd=("$venv/bin/python" bench/peers/python/fanout.py "$port"); exe=$venv/bin/python ;;
        node-socketio-fanout) cmd=(node "$node_dir/sio_fanout.mjs" "$port"); exe=$(command -v node) ;;
        socketioxide) cmd=("$peer_dir/socketioxide-hero" "$port"); exe=${cmd[0]} ;;
        node-socketio) cmd=(node "$node_dir/sio.mjs" "$port"); exe=$(command -v node) ;;
        python-socketio) cmd=("$venv/bin/python" bench/peers/python/sio.py "$port"); exe=$venv/bin/python ;;
    esac
    echo "== $(date -u +%T) $server: ${cmd[*]}" >>"$out/servers.log"
    "${pin_srv[@]}" "${cmd[@]}" >>"$out/servers.log" 2>&1 &
    srv_pid=$!
    local i
    for ((i = 0; i < 200; i++)); do
        if ! alive "$srv_pid"; then
            echo "compare.sh: $server exited at start (see $out/servers.log)" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            if [[ $(readlink -f "/proc/$srv_pid/exe") != "$(readlink -f "$exe")" ]]; then
                echo "compare.sh: pid $srv_pid is $(readlink -f "/proc/$srv_pid/exe"), not $server" >&2
                return 1
            fi
            return 0
        fi
        sleep 0.05
    done
    echo "compare.sh: $server did not accept on port $port within 10 s" >&2
    return 1
}


# --- cases -------------------------------------------------------------------

# Sets c_args (generator arguments), c_app, c_tls and c_everyone (1 when every
# server runs the case, 0 for palisade only, or the list of servers that do).
case_spec() {
    c_app=echo c_tls=0 c_everyone=1 c_srv=() c_sio=0 c_fanout=0 c_config=bench/palisade-bench.json
    local timed=1
    case $1 in
        echo64_100x1) c_args=(--mode echo --conns 100 --inflight 1 --size 64) ;;
        echo64_100x16) c_args=(--mode echo --conns 100 --inflight 16 --size 64) ;;
        echo16k_100x1) c_args=(--mode echo --conns 100 --inflight 1 --size 16384) ;;
        echo16k_100x16) c_args=(--mode echo --conns 100 --inflight 16 --size 16384) ;;
        echo64_1x1) c_args=(--mode echo --conns 1 --inflight 1 --size 64) ;;
        echo64_1x1_busy) c_args=(--mode echo --conns 1 --inflight 1 --size 64); c_srv=(--busy-poll-us 200) c_everyone=0 ;;
        connect) c_args=(--mode connect --conns 8) ;;
        sporadic10k) c_args=(--mode echo --conns "$idle_conns" --inflight 1 --size 64 --interval-ms 100
                             --warmup 2 --timeout 120)
                     c_everyone="tokio-tungstenite fastwebsockets" ;;
        hero_100x16) c_args=(--mode hero --conns 100 --inflight 16); c_app=hero c_everyone=0 ;;
        idle10k) c_args=(--mode idle --conns "$idle_conns" --settle 2 --timeout 120); timed=0 ;;
        flood) c_args=(--mode echo --conns 1000 --inflight 1 --size 64 --probe); c_everyone=0 ;;
        tls_echo64_100x16) c_args=(--mode echo --conns 100 --inflight 16 --size 64); c_tls=1 c_everyone=0 ;;
        tls_echo16k_100x1) c_args=(--mode echo --conns 100 --inflight 1 --size 16384); c_tls=1 c_everyone=0 ;;
        tls_connect) c_args=(--mode connect --conns 8); c_tls=1 c_everyone=0 ;;
        tls_idle10k) c_args=(--mode idle --conns "$idle_conns" --settle 2 --timeout 120); c_tls=1 c_everyone=0 timed=0 ;;
        sio_hero_100x1) c_args=(--mode hero --socketio --conns 100 --inflight 1); c_app=hero c_sio=1 ;;
        sio_hero_100x16) c_args=(--mode hero --socketio --conns 100 --inflight 16); c_app=hero c_sio=1 ;;
        sio_idle10k) c_args=(--mode idle --socketio --conns "$idle_conns" --settle 2 --timeout 120)
                     c_app=hero c_sio=1 timed=0 ;;
        fanout10k) c_args=(--mode fanout --conns "$idle_conns" --rounds "$fanout_rounds" --settle 2 --timeout 300)
                   c_everyone="node-ws python-websockets node-socketio" c_fanout=1 c_app=hero timed=0
                   fanout_setup; c_config=$fanout_dir/palisade.json ;;
        sio_fanout10k) c_args=(--mode fanout --conns "$idle_conns" --rounds "$fanout_rounds" --settle 2 --timeout 300)
                       c_everyone="node-socketio" c_fanout=1 c_sio=1 c_app=hero timed=0
                       fanout_setup; c_config=$fanout_dir/palisade.json ;;
    esac
    if [[ $timed == 1 ]]; then c_args+=(--duration "$duration"); fi
}

# The fan-out case's palisade: a user its subscribers log in as, an API key
# that publishes, the channel rule (made once per run).
fanout_dir="" fanout_key="" fanout_password=fanout-bench-Vq8Lc2Xn5d fanout_rounds=20
[[ $smoke == 1 ]] && fanout_rounds=2
fanout_setup() {
    [[ -n $fanout_dir ]] && return 0
    fanout_dir=$out/fanout
    mkdir -p "$fanout_dir"
    printf '%s\n' "$fanout_password" | "$srv_bin" users add bench --users-file "$fanout_dir/users.json" \
        --iterations 10000 >/dev/null 2>&1
    fanout_key=$("$srv_bin" apikeys add bench --keys-file "$fanout_dir/keys.json" 2>/dev/null)
    python3 - "$fanout_dir" <<'PY'
import json, sys
d = sys.argv[1]
c = json.load(open("bench/palisade-bench.json"))
c["auth"] = {"mode": "required", "users_file": f"{d}/users.json"}
c["api"] = {"keys_file": f"{d}/keys.json"}
c["channels"] = [{"pattern": "bench", "subscribe": ["authenticated"], "publish": ["key:bench"]}]
c["rate"]["logins_per_ip_per_min"] = 1000
json.dump(c, open(f"{d}/palisade.json", "w"), indent=2)
PY
}

failed=0 total=0
: >"$out/raw.txt"
for case_id in "${cases[@]}"; do
    case_spec "$case_id"
    case_servers=()
    for s in "${servers[@]}"; do
        # The Socket.IO peers run the sio_* cases, and only they and palisade.
        is_sio_peer=0
        [[ $sio_servers == *" $s "* ]] && is_sio_peer=1
        if [[ $c_sio == 1 && $c_fanout == 0 ]]; then
            [[ $is_sio_peer == 1 || $s == palisade || $s == palisade-base ]] && case_servers+=("$s")
            continue
        fi
        [[ $is_sio_peer == 1 && $c_fanout == 0 ]] && continue
        [[ $c_everyone == 1 || $s == palisade || $s == palisade-base || " $c_everyone " == *" $s "* ]] \
            && case_servers+=("$s")
    done
    [[ ${#case_servers[@]} -gt 0 ]] || continue
    for ((round = 1; round <= runs; round++)); do
        for server in "${case_servers[@]}"; do
            port=$(free_port)
            run_as=$server fan=()
            if [[ $c_fanout == 1 ]]; then
                case $server in
                    palisade | palisade-base)
                        fan=(--fanout palisade --login "bench:$fanout_password" --key "$fanout_key")
                        [[ $c_sio == 1 ]] && fan[1]=palisade-socketio ;;
                    node-socketio) fan=(--fanout socketio); run_as=node-socketio-fanout ;;
                    *) fan=(--fanout ws); run_as=$server-fanout ;;
                esac
            fi
            if [[ $c_fanout == 1 && $server == node-socketio ]]; then
                url=(--url "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket")
            elif [[ $c_fanout == 1 && $server != palisade* ]]; then
                url=(--url "ws://127.0.0.1:$port/")
            elif [[ $c_tls == 1 ]]; then
                url=(--url "wss://localhost:$port/ws" --ca certs/ca.pem)
            elif [[ $c_sio == 1 ]]; then
                url=(--url "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket")
            else
                url=(--url "ws://127.0.0.1:$port/ws")
            fi
            total=$((total + 1))
            prefix="case=$case_id server=$server round=$round"
            if ! start_server "$run_as" "$c_app" "$c_tls" "$port" "${c_srv[@]}"; then
                stop_server
                echo "$prefix exit=start" >>"$out/raw.txt"
                echo "$prefix: FAILED to start" >&2
                failed=$((failed + 1))
                continue
            fi
            echo "== $(date -u +%T) $prefix" >>"$out/generator.log"
            rc=0
            line=$("${pin_gen[@]}" "$gen_bin" "${url[@]}" "${c_args[@]}" "${fan[@]}" --pid "$srv_pid" \
                2>>"$out/generator.log") || rc=$?
            stop_server
            line=$(printf '%s\n' "$line" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
            echo "$prefix exit=$rc $line" >>"$out/raw.txt"
            if [[ $rc != 0 || -z $line || ! $line =~ (^|\ )errors=0(\ |$) ]]; then
                failed=$((failed + 1))
                echo "$prefix: FAILED (exit $rc): ${line:-no output}" >&2
                tail -n 5 "$out/generator.log" | sed 's/^/    /' >&2
            else
                echo "$prefix: $line" >&2
            fi
        done
    done
done

# --- summary -----------------------------------------------------------------

python3 - "$out" "$machine" "$smoke" "${servers[*]}" <<'PY'
import statistics
import sys
from collections import defaultdict

out, machine, smoke, servers = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4].split()
PEERS = [s for s in servers if s != "palisade"]

# case -> [(figure key, what it is, which direction is better)]
FIGURES = {
    "echo64_100x1": [("rate", "round trips/s", "higher")],
    "echo64_100x16": [("rate", "round trips/s", "higher")],
    "echo16k_100x1": [("rate", "round trips/s", "higher")],
    "echo16k_100x16": [("rate", "round trips/s", "higher")],
    "echo64_1x1": [("p50_us", "p50 µs", "lower")],
    "echo64_1x1_busy": [("p50_us", "p50 µs", "lower")],
    "connect": [("per_server_cpu_s", "handshakes per server-CPU-s", "higher")],
    "sporadic10k": [("per_server_cpu_s", "round trips per server-CPU-s", "higher"),
                    ("p99_us", "p99 µs", "lower"), ("late", "sends skipped (reply late)", "lower")],
    "hero_100x16": [("rate", "round trips/s", "higher")],
    "idle10k": [("rss_per_conn_bytes", "bytes per connection", "lower")],
    "flood": [("probe_p99_us", "probe p99 µs", "lower")],
    "tls_echo64_100x16": [("rate", "round trips/s", "higher")],
    "tls_echo16k_100x1": [("rate", "round trips/s", "higher")],
    "tls_connect": [("per_server_cpu_s", "handshakes per server-CPU-s", "higher"),
                    ("rate", "handshakes/s", "higher")],
    "tls_idle10k": [("rss_per_conn_bytes", "bytes per connection", "lower")],
    "sio_hero_100x1": [("per_server_cpu_s", "acked round trips per server-CPU-s", "higher"),
                       ("rate", "acked round trips/s", "higher")],
    "sio_hero_100x16": [("per_server_cpu_s", "acked round trips per server-CPU-s", "higher"),
                        ("rate", "acked round trips/s", "higher")],
    "sio_idle10k": [("rss_per_conn_bytes", "bytes per connection", "lower")],
    "fanout10k": [("per_server_cpu_s", "deliveries per server-CPU-s", "higher"),
                  ("per_server_user_cpu_s", "deliveries per server-CPU-s in user space", "higher"),
                  ("rate", "deliveries/s", "higher"),
                  ("last_p50_ms", "ms until the last subscriber has it (median round)", "lower"),
                  ("rss_per_conn_bytes", "bytes per subscribed connection", "lower")],
}
FIGURES["sio_fanout10k"] = FIGURES["fanout10k"]

runs = defaultdict(list)  # (case, server) -> [dict of one successful run]
fails = defaultdict(int)  # (case, server) -> failed runs
order = []
with open(f"{out}/raw.txt") as f:
    for line in f:
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        key = (kv["case"], kv["server"])
        if kv["case"] not in order:
            order.append(kv["case"])
        if kv.get("exit") == "0" and kv.get("errors") == "0":
            runs[key].append(kv)
        else:
            fails[key] += 1


def median(case, server, fig):
    vals = [float(r[fig]) for r in runs[(case, server)] if fig in r]
    return statistics.median(vals) if vals else None


def fmt(v, fig):
    if v is None:
        return "—"
    if fig in ("rate", "per_server_cpu_s", "per_server_user_cpu_s"):
        return f"{v:,.0f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def ratio(a, b):
    if a is None or not b:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def cell(case, server, fig):
    key = (case, server)
    if not runs[key] and not fails[key]:
        return "—"
    if not runs[key]:
        return "failed"
    text = fmt(median(case, server, fig), fig)
    if fails[key]:
        text += f" ({fails[key]} failed)"
    return text


with open("/proc/loadavg") as f:
    machine += f", {f.read().split()[0]} at end"
lines = [f"# {machine}", ""]
head = ["case", "figure", "better", "palisade"] + PEERS + [f"palisade/{p}" for p in PEERS] + ["note"]
lines.append("| " + " | ".join(head) + " |")
lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (1 + 2 * len(PEERS)) + ["---"]) + "|")
for case in order:
    for fig, what, better in FIGURES[case]:
        pal = median(case, "palisade", fig)
        row = [case, what, better, cell(case, "palisade", fig)]
        row += [cell(case, p, fig) for p in PEERS]
        row += [ratio(pal, median(case, p, fig)) for p in PEERS]
        note = ""
        if case == "hero_100x16":
            echo = median("echo64_100x16", "palisade", "rate")
            note = f"{ratio(pal, echo)} palisade echo64_100x16" if echo else ""
        row.append(note)
        lines.append("| " + " | ".join(row) + " |")
lines.append("")
lines.append("Medians of the successful runs. Every ratio is palisade/peer: above 1× favours "
             "palisade where higher is better, below 1× where lower is better.")

if not smoke:
    # (case, target text, measured value, passed?) for each of palisade's targets
    def vs(case, peer, fig, want, lower=False):
        pal, other = median(case, "palisade", fig), median(case, peer, fig)
        sign = "≤" if lower else "≥"
        text = f"{fig} {sign}{want}× {peer}"
        if pal is None or not other:
            return (case, text, "—", None)
        r = pal / other
        return (case, text, f"{r:.2f}×", r <= want if lower else r >= want)

    def absolute(case, fig, limit, unit, strict=False):
        v = median(case, "palisade", fig)
        sign = "<" if strict else "≤"
        text = f"{fig} {sign} {limit} {unit}"
        if v is None:
            return (case, text, "—", None)
        return (case, text, f"{fmt(v, fig)} {unit}", v < limit if strict else v <= limit)

    targets = [
        vs("echo64_100x1", "tokio-tungstenite", "rate", 2.4),
        vs("echo64_100x1", "fastwebsockets", "rate", 1.1),
        vs("echo64_100x16", "tokio-tungstenite", "rate", 2.9),
        vs("echo16k_100x1", "tokio-tungstenite", "rate", 2.3),
        vs("echo16k_100x16", "tokio-tungstenite", "rate", 1.1),
        vs("echo64_1x1", "tokio-tungstenite", "p50_us", 0.75, lower=True),
        vs("connect", "tokio-tungstenite", "per_server_cpu_s", 2.5),
        vs("connect", "fastwebsockets", "per_server_cpu_s", 1.1),
    ]
    busy, tt = median("echo64_1x1_busy", "palisade", "p50_us"), median("echo64_1x1", "tokio-tungstenite", "p50_us")
    busy_ok = None if busy is None or not tt else busy / tt <= 0.75
    targets.append(("echo64_1x1_busy", "p50_us ≤0.75× tokio-tungstenite echo64_1x1 (palisade with busy_poll_us 200)",
                    ratio(busy, tt) if busy_ok is not None else "—", busy_ok))
    hero, echo = median("hero_100x16", "palisade", "rate"), median("echo64_100x16", "palisade", "rate")
    hero_ok = None if hero is None or not echo else hero / echo >= 0.8
    targets.append(("hero_100x16", "rate ≥0.8× palisade echo64_100x16",
                    ratio(hero, echo) if hero_ok is not None else "—", hero_ok))
    targets.append(absolute("idle10k", "rss_per_conn_bytes", 256, "bytes"))
    targets.append(absolute("flood", "probe_p99_us", 5000, "µs", strict=True))
    for case in ("sio_hero_100x1", "sio_hero_100x16"):
        targets.append(vs(case, "socketioxide", "per_server_cpu_s", 3))
        targets.append(vs(case, "node-socketio", "per_server_cpu_s", 10))
    targets.append(absolute("sio_idle10k", "rss_per_conn_bytes", 1024, "bytes", strict=True))
    best = [(median("fanout10k", p, "per_server_cpu_s") or 0, p) for p in ("node-ws", "python-websockets", "node-socketio")]
    best = max(best) if best else (0, None)
    if best[1] is not None and best[0] > 0:
        targets.append(vs("fanout10k", best[1], "per_server_cpu_s", 3))
    targets.append(vs("sio_fanout10k", "node-socketio", "per_server_cpu_s", 3))

    lines += ["", "| case | target | measured | result |", "|---|---|---:|---|"]
    for case, text, measured, ok in (t for t in targets if t[0] in order):
        result = "n/a" if ok is None else ("PASS" if ok else "MISS")
        lines.append(f"| {case} | {text} | {measured} | {result} |")

text = "\n".join(lines) + "\n"
with open(f"{out}/summary.md", "w") as f:
    f.write(text)
print(text, end="")
PY

echo "raw lines: $out/raw.txt, summary: $out/summary.md" >&2
if [[ $failed -gt 0 ]]; then
    echo "compare.sh: $failed of $total runs failed" >&2
    exit 1
fi
[[ $smoke == 0 ]] || echo "smoke: all $total runs succeeded" >&2
