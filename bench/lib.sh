# shellcheck shell=bash
# Shared by bench/compare.sh and bench/callgrind.sh (sourced, not run).
# The caller starts a server in the background and sets srv_pid; stop_server
# stops it (SIGTERM, then SIGKILL after stop_wait_ticks × 50 ms) and runs on
# exit or interruption.

srv_pid=""
stop_wait_ticks=${stop_wait_ticks:-40}

alive() { # PID: running, not merely a zombie waiting to be reaped
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

stop_server() {
    [[ -n $srv_pid ]] || return 0
    kill -TERM "$srv_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < stop_wait_ticks; i++)); do alive "$srv_pid" || break; sleep 0.05; done
    kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}

trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
