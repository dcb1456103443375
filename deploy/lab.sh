#!/usr/bin/env bash
# rvs network-namespace lab: the classic LVS topologies (DR, NAT, FULLNAT, TUN) in one.
#
#   client ──── router ─eth1─┬── rvs lb0 (DPDK af_packet port eth0: 203.0.113.2, VIPs, LIPs)
#   198.51.100.10   │ 203.0.113.1├── rs1 203.0.113.11 ┐ VIP 203.0.113.100/32 on lo, arp_ignore=1
#                   │        ├── rs2 203.0.113.12 ├ (DR/TUN; rs1/rs2 also run rvs-ipip-decap
#                   │        └── rs3 203.0.113.13 ┘  and nginx :8080 proxy_protocol, :8081)
#                   │                 (br0 in PREFIX-sw)
#                   └─eth2 192.0.2.129/25 ── rr1 192.0.2.140/25 (remote TUN RS: VIP on lo,
#                                             rvs-ipip-decap, nginx :80)
#   rvs lb1 (port eth1: 192.0.2.1/25) ──┬── rn1 192.0.2.11 ┐ NAT real servers, default route
#                                       └── rn2 192.0.2.12 ┘ via rvs; nginx :80, UDP :9000
#                                             (br1 in PREFIX-sw: internal segment 192.0.2.0/25)
#
# Usage: lab.sh up|down|status [PREFIX]     (PREFIX defaults to "rvs")
#        lab.sh config [PREFIX] [--workers N]   print an rvsd TOML config for this lab (N = 1|2)
#        lab.sh nginx start|stop PREFIX NS  start/stop the nginx of one server namespace
#
# Everything lives in namespaces named PREFIX-*; veths are created directly
# inside them so the root namespace is never touched. State (server logs,
# rvsd socket) lives in /tmp/rvs-lab-PREFIX/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3

cmd="${1:-}"
WORKERS=1
NGX_ACTION=
NGX_NS=
if [[ "$cmd" == nginx ]]; then
    NGX_ACTION="${2:-}"; P="${3:-}"; NGX_NS="${4:-}"
else
    P="${2:-rvs}"
    shift $(( $# < 2 ? $# : 2 ))
    while (($#)); do
        case "$1" in
            --workers) WORKERS="${2:-}"; shift 2 || true ;;
            *) echo "lab.sh: unknown option '$1'" >&2; exit 1 ;;
        esac
    done
fi
STATE="/tmp/rvs-lab-$P"
NSS=(cl rt sw lb rs1 rs2 rs3 rn1 rn2 rr1)
# Where rvs-ipip-decap is looked for (TUN real servers); $RVS_IPIP_DECAP overrides.
DECAP="${RVS_IPIP_DECAP:-$HERE/../target/debug/rvs-ipip-decap}"

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

# nginx in namespace $1 from template deploy/nginx/$2 (per-lab paths under $STATE).
nginx_start() {
    local n="$1" tmpl="$2" conf="$STATE/nginx-$1.conf"
    mkdir -p "$STATE/nginx-$n.tmp"
    sed -e "s|@NAME@|$n|g" -e "s|@STATE@|$STATE|g" "$HERE/nginx/$tmpl" >"$conf"
    inns "$n" nginx -e "$STATE/nginx-$n.error.log" -c "$conf" \
        || { cat "$STATE/nginx-$n.error.log" >&2 || true; die "nginx in $(ns "$n") did not start"; }
}

nginx_stop() {
    local n="$1" pidf="$STATE/nginx-$1.pid" pid
    [[ -f "$pidf" ]] || return 0
    pid="$(cat "$pidf")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# Polls (<= 10 s) until `curl URL` in namespace $1 answers $3.
wait_http() {
    local n="$1" url="$2" want="$3"
    for _ in $(seq 1 100); do
        [[ "$(inns "$n" curl -s --max-time 1 "$url" 2>/dev/null)" == "$want" ]] && return 0
        sleep 0.1
    done
    return 1
}

# rvs-ipip-decap on a TUN real server (the kernel here has no ipip module).
start_decap() {
    local n="$1"
    inns "$n" ip tuntap add dev rvstun0 mode tun
    sysctl_ns "$n" net.ipv4.conf.rvstun0.rp_filter 0
    inns "$n" ip link set rvstun0 up
    ip netns exec "$(ns "$n")" setsid "$DECAP" --dev rvstun0 --allow 203.0.113.2 \
        </dev/null >"$STATE/decap-$n.log" 2>&1 &
    echo $! >"$STATE/decap-$n.pid"
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
    # NAT real servers: UDP from lab-server.py (HTTP off), HTTP from nginx.
    for i in 1 2; do
        inns "rn$i" setsid "$PY" "$HERE/lab-server.py" --name "rn$i" --http-port 0 \
            --udp-bind "192.0.2.1$i" --udp-bind 127.0.0.1 \
            </dev/null >"$STATE/rn$i.log" 2>&1 &
        echo $! >"$STATE/rn$i.pid"
    done
    for n in rs1 rs2; do nginx_start "$n" lab-rs.conf; done
    for n in rn1 rn2 rr1; do nginx_start "$n" lab-web.conf; done
    for n in rs1 rs2; do
        wait_http "$n" http://127.0.0.1:8081/ "$n" || die "nginx in $(ns "$n") does not answer on :8081"
    done
    for n in rn1 rn2 rr1; do
        wait_http "$n" http://127.0.0.1/ "$n" || die "nginx in $(ns "$n") does not answer on :80"
    done
    if [[ -x "$DECAP" ]]; then
        for n in rs1 rs2 rr1; do start_decap "$n"; done
        for n in rs1 rs2 rr1; do
            local ok=0
            for _ in $(seq 1 50); do
                grep -q "ready:" "$STATE/decap-$n.log" 2>/dev/null && { ok=1; break; }
                sleep 0.1
            done
            [[ $ok -eq 1 ]] || { cat "$STATE/decap-$n.log" >&2 || true; die "rvs-ipip-decap in $(ns "$n") did not start"; }
        done
    else
        log "warning: $DECAP missing (cargo build --workspace --bins): TUN real servers not set up"
    fi
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
    # internal segment 192.0.2.0/25 (NAT real servers): a second bridge
    inns sw ip link add br1 type bridge stp_state 0 forward_delay 0
    inns sw ip link set br1 up
    veth lb lb1 sw lb1
    for i in 1 2; do veth "rn$i" eth0 sw "rn$i"; done
    for n in lb1 rn1 rn2; do
        inns sw ip link set "$n" master br1
        inns sw ip link set "$n" up
        txoff sw "$n"
    done
    # remote network 192.0.2.128/25 behind the router (TUN real server)
    veth rt eth2 rr1 eth0

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
    inns rt ip addr add 192.0.2.129/25 dev eth2
    inns rt ip link set eth2 up
    sysctl_ns rt net.ipv4.ip_forward 1
    # TUN replies come back from rr1 with the VIP (203.0.113.0/24, "behind" eth1) as source.
    for c in all default eth0 eth1 eth2; do sysctl_ns rt "net.ipv4.conf.$c.rp_filter" 0; done
    txoff rt eth0
    txoff rt eth1
    txoff rt eth2

    # rvs port: up, no address (rvs holds 203.0.113.2 itself), no offloads
    for n in lb0 lb1; do
        sysctl_ns lb "net.ipv6.conf.$n.disable_ipv6" 1
        inns lb ip link set "$n" up
        inns lb ethtool -K "$n" tx off rx off tso off gso off gro off >/dev/null
    done

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
        for c in all default; do sysctl_ns "$n" "net.ipv4.conf.$c.rp_filter" 0; done
    done

    # NAT real servers: rvs is their default gateway; no VIP.
    for i in 1 2; do
        n="rn$i"
        inns "$n" ip addr add "192.0.2.1$i/25" dev eth0
        inns "$n" ip link set eth0 up
        inns "$n" ip route add default via 192.0.2.1
        txoff "$n" eth0
    done

    # remote TUN real server: VIP on lo, no ARP for it, no reverse-path filter
    inns rr1 ip addr add 192.0.2.140/25 dev eth0
    inns rr1 ip addr add 203.0.113.100/32 dev lo
    for c in all eth0; do
        sysctl_ns rr1 "net.ipv4.conf.$c.arp_ignore" 1
        sysctl_ns rr1 "net.ipv4.conf.$c.arp_announce" 2
    done
    for c in all default; do sysctl_ns rr1 "net.ipv4.conf.$c.rp_filter" 0; done
    inns rr1 ip link set eth0 up
    inns rr1 ip route add default via 192.0.2.129
    txoff rr1 eth0

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
    local lcores
    case "$WORKERS" in
        1) lcores="[1]" ;;
        2) lcores="[0, 1]" ;;
        *) die "--workers must be 1 or 2 (this lab assumes a 2-core machine), got '$WORKERS'" ;;
    esac
    cat <<EOF
# rvsd config for lab '$P' (generated by deploy/lab.sh config $P)
[eal]
args = ["--no-huge", "-m", "512", "--file-prefix", "rvs-$P", "--no-shconf"]

[workers]
lcores = $lcores
idle_sleep_us = 100
idle_polls = 64

[ctrl]
socket = "$STATE/rvsd.sock"

[[port]]
name = "eth0"
device = "net_af_packet0,iface=lb0"
addrs = ["203.0.113.2/24"]

[[port]]
name = "eth1"
device = "net_af_packet1,iface=lb1"
addrs = ["192.0.2.1/25"]

[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.1"
port = "eth0"
EOF
}

nginx_cmd() {
    [[ -n "$P" && -n "$NGX_NS" ]] || die "usage: lab.sh nginx start|stop PREFIX NS"
    [[ "$P" =~ ^[a-zA-Z0-9]{1,8}$ ]] || die "PREFIX must be 1-8 alphanumerics, got '$P'"
    case "$NGX_NS" in
        rs1|rs2) local tmpl=lab-rs.conf url=http://127.0.0.1:8081/ ;;
        rn1|rn2|rr1) local tmpl=lab-web.conf url=http://127.0.0.1/ ;;
        *) die "no nginx in namespace '$NGX_NS' (rs1 rs2 rn1 rn2 rr1)" ;;
    esac
    case "$NGX_ACTION" in
        start) nginx_start "$NGX_NS" "$tmpl"
               wait_http "$NGX_NS" "$url" "$NGX_NS" || die "nginx in $(ns "$NGX_NS") does not answer" ;;
        stop) nginx_stop "$NGX_NS" ;;
        *) die "usage: lab.sh nginx start|stop PREFIX NS" ;;
    esac
}

case "$cmd" in
    up) up ;;
    down) down; log "down" ;;
    status) status ;;
    config) config ;;
    nginx) nginx_cmd ;;
    *) die "usage: lab.sh up|down|status|config [PREFIX] [--workers N] | nginx start|stop PREFIX NS" ;;
esac
