#!/usr/bin/env bash
# rvs network-namespace lab: the classic LVS-DR tutorial topology.
#
#   client ──── router ──┬── rvs (DPDK af_packet on lb0, holds 203.0.113.2 and the VIPs)
#                        ├── rs1 203.0.113.11 ┐
#                        ├── rs2 203.0.113.12 ├ VIP 203.0.113.100/32 on lo, arp_ignore=1
#                        └── rs3 203.0.113.13 ┘
#
# Usage: lab.sh up|down|status [PREFIX]     (PREFIX defaults to "rvs")
#        lab.sh config [PREFIX]             print an rvsd TOML config for this lab
#
# Everything lives in namespaces named PREFIX-*; veths are created directly
# inside them so the root namespace is never touched. State (server logs,
# rvsd socket) lives in /tmp/rvs-lab-PREFIX/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3

cmd="${1:-}"
P="${2:-rvs}"
STATE="/tmp/rvs-lab-$P"
NSS=(cl rt sw lb rs1 rs2 rs3)

die() { echo "lab.sh: $*" >&2; exit 1; }
log() { echo "lab.sh[$P]: $*" >&2; }

[[ "$P" =~ ^[a-zA-Z0-9]{1,8}$ ]] || die "PREFIX must be 1-8 alphanumerics, got '$P'"

ns() { echo "$P-$1"; }
inns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$(ns "$1")"; }

# Checksum offload must be off on every kernel-side veth: frames forwarded by
# rvs keep the partial checksum the sender left for "hardware", and the peer drops them.
txoff() { inns "$1" ethtool -K "$2" tx off >/dev/null; }

kill_ns_procs() {
    local n="$1" pids
    pids="$(ip netns pids "$(ns "$n")" 2>/dev/null || true)"
    [[ -z "$pids" ]] && return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
        pids="$(ip netns pids "$(ns "$n")" 2>/dev/null || true)"
        [[ -z "$pids" ]] && return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
}

down() {
    local n
    for n in "${NSS[@]}"; do
        if ns_exists "$n"; then
            kill_ns_procs "$n"
            ip netns del "$(ns "$n")" 2>/dev/null || true
        fi
    done
    rm -f "$STATE/rvsd.sock" "$STATE"/*.pid 2>/dev/null || true
    # Namespace deletion is asynchronous for the veths inside; wait until gone.
    for _ in $(seq 1 50); do
        local left=0
        for n in "${NSS[@]}"; do ns_exists "$n" && left=1; done
        [[ $left -eq 0 ]] && return 0
        sleep 0.1
    done
    die "namespaces of lab '$P' still present after down"
}

sysctl_ns() { inns "$1" sysctl -qw "$2=$3"; }

mk_ns() {
    local n="$1"
    ip netns add "$(ns "$n")"
    inns "$n" ip link set lo up
    # No IPv6 anywhere in the lab: keeps router solicitations/MLD off the wire.
    sysctl_ns "$n" net.ipv6.conf.all.disable_ipv6 1
    sysctl_ns "$n" net.ipv6.conf.default.disable_ipv6 1
}

# veth NAME_IN_A inside ns A <-> NAME_IN_B inside ns B
veth() {
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
}

start_servers() {
    local i name rip
    for i in 1 2 3; do
        name="rs$i"; rip="203.0.113.1$i"
        inns "$name" setsid "$PY" "$HERE/lab-server.py" --name "$name" \
            --udp-bind "$rip" --udp-bind 203.0.113.100 --udp-bind 127.0.0.1 \
            </dev/null >"$STATE/$name.log" 2>&1 &
        echo $! >"$STATE/$name.pid"
    done
    # Wait until each server answers on its own loopback.
    for i in 1 2 3; do
        local ok=0
        for _ in $(seq 1 100); do
            if [[ "$(inns "rs$i" curl -s --max-time 1 http://127.0.0.1/ 2>/dev/null)" == "rs$i" ]]; then
                ok=1; break
            fi
            sleep 0.1
        done
        [[ $ok -eq 1 ]] || { cat "$STATE/rs$i.log" >&2 || true; die "server in $(ns "rs$i") did not come up"; }
    done
}

up() {
    command -v ethtool >/dev/null || die "ethtool not installed (run deploy/install-deps.sh)"
    [[ -x "$PY" ]] || die "$PY not found"
    down
    rm -rf "$STATE"; mkdir -p "$STATE"
    local n i
    for n in "${NSS[@]}"; do mk_ns "$n"; done

    # client <-> router
    veth cl eth0 rt eth0
    # server segment: a bridge in PREFIX-sw
    # If br_netfilter is loaded, bridged IPv4 goes through netfilter, which
    # silently drops malformed IP headers before rvs can see (and count) them.
    for c in iptables ip6tables arptables; do
        if inns sw test -e "/proc/sys/net/bridge/bridge-nf-call-$c"; then
            sysctl_ns sw "net.bridge.bridge-nf-call-$c" 0
        fi
    done
    inns sw ip link add br0 type bridge stp_state 0 forward_delay 0
    inns sw ip link set br0 up
    veth rt eth1 sw rt
    veth lb lb0 sw lb
    for i in 1 2 3; do veth "rs$i" eth0 sw "rs$i"; done
    for n in rt lb rs1 rs2 rs3; do
        inns sw ip link set "$n" master br0
        inns sw ip link set "$n" up
        txoff sw "$n"
    done

    # client
    inns cl ip addr add 198.51.100.10/24 dev eth0
    inns cl ip link set eth0 up
    inns cl ip route add default via 198.51.100.1
    txoff cl eth0

    # router
    inns rt ip addr add 198.51.100.1/24 dev eth0
    inns rt ip addr add 203.0.113.1/24 dev eth1
    inns rt ip link set eth0 up
    inns rt ip link set eth1 up
    sysctl_ns rt net.ipv4.ip_forward 1
    sysctl_ns rt net.ipv4.conf.all.rp_filter 0
    txoff rt eth0
    txoff rt eth1

    # rvs port: up, no address (rvs holds 203.0.113.2 itself), no offloads
    sysctl_ns lb net.ipv6.conf.lb0.disable_ipv6 1
    inns lb ip link set lb0 up
    inns lb ethtool -K lb0 tx off rx off tso off gso off gro off >/dev/null

    # real servers: VIP on lo, never answer ARP for it
    for i in 1 2 3; do
        n="rs$i"
        inns "$n" ip addr add "203.0.113.1$i/24" dev eth0
        inns "$n" ip addr add 203.0.113.100/32 dev lo
        for c in all eth0; do
            sysctl_ns "$n" "net.ipv4.conf.$c.arp_ignore" 1
            sysctl_ns "$n" "net.ipv4.conf.$c.arp_announce" 2
        done
        inns "$n" ip link set eth0 up
        inns "$n" ip route add default via 203.0.113.1
        txoff "$n" eth0
    done

    start_servers
    log "up (state in $STATE)"
}

status() {
    local n any=0
    for n in "${NSS[@]}"; do
        ns_exists "$n" || continue
        any=1
        echo "== $(ns "$n")"
        inns "$n" ip -br addr | sed 's/^/   /'
        local pids
        pids="$(ip netns pids "$(ns "$n")" 2>/dev/null | tr '\n' ' ')"
        if [[ -n "$pids" ]]; then
            # shellcheck disable=SC2086
            ps -o pid=,args= -p $pids | sed 's/^/   proc /'
        fi
    done
    if [[ $any -eq 0 ]]; then echo "lab '$P': not running"; return 1; fi
}

config() {
    cat <<EOF
# rvsd config for lab '$P' (generated by deploy/lab.sh config $P)
[eal]
args = ["--no-huge", "-m", "512", "--file-prefix", "rvs-$P", "--no-shconf"]

[workers]
lcores = [1]
idle_sleep_us = 100
idle_polls = 64

[ctrl]
socket = "$STATE/rvsd.sock"

[[port]]
name = "eth0"
device = "net_af_packet0,iface=lb0"
addrs = ["203.0.113.2/24"]

[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.1"
port = "eth0"
EOF
}

case "$cmd" in
    up) up ;;
    down) down; log "down" ;;
    status) status ;;
    config) config ;;
    *) die "usage: lab.sh up|down|status|config [PREFIX]" ;;
esac
