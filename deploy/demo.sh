#!/usr/bin/env bash
# One-command demo of rvs on a fresh Debian 12 machine (run as root): builds rvs, brings up
# the namespace lab, starts rvsd, adds a DR service with two real servers and shows
# round-robin load balancing from the client, then the same with NAT real servers
# (docs/modes.md has every mode).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
P=demo
STATE="/tmp/rvs-lab-$P"
LOG="$STATE/rvsd.log"
SOCK="$STATE/rvsd.sock"
RVSD_PID=

[[ $(id -u) -eq 0 ]] || { echo "demo.sh: run as root (bash deploy/demo.sh as root)" >&2; exit 1; }

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() {
    local rc=$?
    if [[ -n "$RVSD_PID" ]] && kill -0 "$RVSD_PID" 2>/dev/null; then
        kill -TERM "$RVSD_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$RVSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RVSD_PID" 2>/dev/null || true
    fi
    bash "$ROOT/deploy/lab.sh" down "$P" 2>/dev/null || true
    if [[ $rc -ne 0 && -f "$LOG" ]]; then
        echo "--- rvsd log ($LOG) ---" >&2; tail -n 30 "$LOG" >&2 || true
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "installing dependencies"
# shellcheck source=deploy/install-deps.sh
source deploy/install-deps.sh

step "building (release)"
cargo build --release --workspace --bins
RVSD="$ROOT/target/release/rvsd"
RVSADM="$ROOT/target/release/rvsadm"
rvsadm() { echo "# rvsadm $*"; "$RVSADM" --socket "$SOCK" "$@"; }
cl() { ip netns exec "$P-cl" "$@"; }

step "bringing up the lab ($P-*)"
bash deploy/lab.sh up "$P"
bash deploy/lab.sh config "$P" >"$STATE/rvsd.toml"

step "starting rvsd in $P-lb (log: $LOG)"
ip netns exec "$P-lb" "$RVSD" -c "$STATE/rvsd.toml" >"$LOG" 2>&1 &
RVSD_PID=$!
for _ in $(seq 1 200); do
    "$RVSADM" --socket "$SOCK" -L -n >/dev/null 2>&1 && break
    kill -0 "$RVSD_PID" 2>/dev/null || { echo "rvsd exited" >&2; exit 1; }
    sleep 0.1
done
"$RVSADM" --socket "$SOCK" -L -n >/dev/null || { echo "rvsd control socket did not answer" >&2; exit 1; }

step "configuring the virtual service (ipvsadm syntax)"
rvsadm -A -t 203.0.113.100:80 -s rr
rvsadm -a -t 203.0.113.100:80 -r 203.0.113.11:80 -g
rvsadm -a -t 203.0.113.100:80 -r 203.0.113.12:80 -g
rvsadm -L -n

step "client pings rvs (203.0.113.2)"
cl ping -c 3 -W 1 203.0.113.2

step "client curls the VIP 6 times (DR: replies go straight from the RS)"
for i in 1 2 3 4 5 6; do
    printf 'curl #%d -> %s\n' "$i" "$(cl curl -s --max-time 2 http://203.0.113.100/ || echo FAILED)"
done

step "NAT: the same VIP served by rn1/rn2 on the internal segment (their gateway is rvs)"
rvsadm -C
rvsadm -A -t 203.0.113.100:80 -s rr
rvsadm -a -t 203.0.113.100:80 -r 192.0.2.11:80 -m
rvsadm -a -t 203.0.113.100:80 -r 192.0.2.12:80 -m
rvsadm -L -n
for i in 1 2 3 4; do
    printf 'curl #%d -> %s\n' "$i" "$(cl curl -s --max-time 2 http://203.0.113.100/ || echo FAILED)"
done

step "counters"
rvsadm link show || true
echo

if [[ -t 0 ]]; then
    echo "Lab is up: try 'ip netns exec $P-cl curl http://203.0.113.100/' or"
    echo "'$RVSADM --socket $SOCK -L -n' from another shell."
    read -r -p "Press Enter to tear down... " _
fi
step "tearing down"
