#!/usr/bin/env bash
# End-to-end check of rvs-ipip-decap in two network namespaces (root needed):
#
#   tt-a-PID  203.0.113.1/24  ── veth ──  tt-b-PID  203.0.113.11/24, VIP 203.0.113.100/32 on lo,
#   (plays balancer + client)             rvstun0 (up, rp_filter 0), rvs-ipip-decap --allow 203.0.113.1
#
# From tt-a, scapy sends IPIP packets (outer 203.0.113.1 -> 203.0.113.11, inner 203.0.113.1 ->
# VIP): a UDP datagram must reach a UDP server on the VIP in tt-b and its reply must come back to
# a UDP socket in tt-a directly (no tunnel on the way back, source = VIP); a TCP SYN to VIP:80
# must be answered by a SYN-ACK from the VIP; an IPIP packet from a source outside --allow must
# not get through. Exits non-zero on any failure; always removes what it created.
#
# Usage: selftest.sh [PATH-TO-rvs-ipip-decap]   (default: $RVS_IPIP_DECAP, else cargo build)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY=/usr/bin/python3 # the system Python has scapy; a pyenv python3 on PATH may not

A="tt-a-$$"
B="tt-b-$$"
LB=203.0.113.1
RS=203.0.113.11
VIP=203.0.113.100
SPOOF=203.0.113.2
WORK="$(mktemp -d /tmp/tt-ipip-XXXXXX)"
PIDS=()

log() { echo "selftest: $*" >&2; }
fail() {
    echo "selftest: FAIL: $*" >&2
    for f in decap.log server.log; do
        [[ -f "$WORK/$f" ]] && { echo "--- $f" >&2; cat "$WORK/$f" >&2; }
    done
    exit 1
}

cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

[[ $(id -u) -eq 0 ]] || { echo "selftest: must run as root (network namespaces, raw sockets)" >&2; exit 2; }
"$PY" -c 'import scapy' 2>/dev/null || fail "scapy missing for $PY: apt-get install -y python3-scapy"

BIN="${1:-${RVS_IPIP_DECAP:-}}"
if [[ -z "$BIN" ]]; then
    log "building rvs-ipip-decap"
    BIN="$(cd "$ROOT" && cargo build -q -p rvs-ipip-decap --message-format=json |
        "$PY" -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "rvs-ipip-decap":
        print(m["executable"])')" || fail "cargo build -p rvs-ipip-decap failed"
fi
[[ -x "$BIN" ]] || fail "no rvs-ipip-decap binary at '$BIN'"

ina() { ip netns exec "$A" "$@"; }
inb() { ip netns exec "$B" "$@"; }

log "namespaces $A, $B"
ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add tta0 type veth peer name ttb0 netns "$B"
ina ip link set lo up
ina ip addr add "$LB/24" dev tta0
ina ip link set tta0 up
inb ip link set lo up
inb ip addr add "$RS/24" dev ttb0
inb ip link set ttb0 up
inb ip addr add "$VIP/32" dev lo
# Leave checksums to software: with tx offload a veth hands over CHECKSUM_PARTIAL packets, and
# those going through the raw socket/TUN path come out with bad checksums.
ina ethtool -K tta0 tx off >/dev/null
inb ethtool -K ttb0 tx off >/dev/null
# The real-server set-up of docs/tun.md: no ARP for the VIP, no reverse-path filter on the tunnel.
inb sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
inb sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
inb ip tuntap add dev rvstun0 mode tun
inb sysctl -qw net.ipv4.conf.rvstun0.rp_filter=0
inb ip link set rvstun0 up

log "starting $BIN in $B"
# Not through inb: a backgrounded shell function is a subshell, and $! would be its pid rather
# than the program's (ip netns exec execs the command, so here $! is the program itself).
ip netns exec "$B" "$BIN" --dev rvstun0 --allow "$LB" --verbose >"$WORK/decap.log" 2>&1 &
PIDS+=($!)
DECAP=$!

# Services on the VIP: a UDP echo (logs what it gets) and a TCP listener on port 80.
ip netns exec "$B" "$PY" -u - "$VIP" >"$WORK/server.log" 2>&1 <<'EOF' &
import socket, sys, threading
vip = sys.argv[1]
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((vip, 80)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((vip, 5353))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(2048)
    print("udp from %s:%d %r" % (peer[0], peer[1], data), flush=True)
    u.sendto(b"pong:" + data, peer)
EOF
PIDS+=($!)

for _ in $(seq 50); do
    grep -q "ready:" "$WORK/decap.log" 2>/dev/null && grep -q "^ready" "$WORK/server.log" 2>/dev/null && break
    kill -0 "$DECAP" 2>/dev/null || fail "rvs-ipip-decap exited early"
    sleep 0.1
done
grep -q "ready:" "$WORK/decap.log" || fail "rvs-ipip-decap did not start"
grep -q "^ready" "$WORK/server.log" || fail "VIP servers did not start"

log "sending IPIP-encapsulated UDP, TCP SYN and a spoofed-source packet from $A"
ina "$PY" - "$LB" "$RS" "$VIP" "$SPOOF" <<'EOF' || fail "traffic check failed (see above)"
import logging, socket, sys, time
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, TCP, UDP, AsyncSniffer, conf, send
lb, rs, vip, spoof = sys.argv[1:5]
conf.verb = 0

# The client-side UDP socket: the reply must reach it (valid checksums, right addresses).
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.bind((lb, 40000))
c.settimeout(5)

seen = []  # AsyncSniffer.results is only filled at stop(): collect as we go
sniff = AsyncSniffer(iface="tta0", store=False, prn=seen.append,
                     lfilter=lambda p: IP in p and p[IP].src == vip)
sniff.start()
time.sleep(0.5)

# Spoofed outer source first: must be dropped by --allow, so no reply to it may arrive.
send(IP(src=spoof, dst=rs) / IP(src=lb, dst=vip) / UDP(sport=40000, dport=5353) / b"spoofed")
send(IP(src=lb, dst=rs) / IP(src=lb, dst=vip, flags="DF") / UDP(sport=40000, dport=5353) / b"ping")
try:
    data, peer = c.recvfrom(2048)
except socket.timeout:
    sys.exit("no UDP reply from the VIP")
print("udp reply from %s:%d %r" % (peer[0], peer[1], data))
if peer != (vip, 5353) or data != b"pong:ping":
    sys.exit("unexpected UDP reply %r from %r" % (data, peer))

send(IP(src=lb, dst=rs) / IP(src=lb, dst=vip) / TCP(sport=40001, dport=80, flags="S", seq=1000))
deadline = time.time() + 5
synack = None
while time.time() < deadline and synack is None:
    time.sleep(0.2)
    for p in list(seen):
        if TCP in p and p[TCP].sport == 80 and p[TCP].dport == 40001:
            synack = p
            break
sniff.stop()
pkts = list(seen)
if synack is None:
    sys.exit("no TCP answer from %s:80" % vip)
print("tcp answer from %s: flags %s ack %d" % (synack[IP].src, synack[TCP].flags, synack[TCP].ack))
if str(synack[TCP].flags) != "SA" or synack[TCP].ack != 1001:
    sys.exit("expected SYN-ACK acking 1001")
# Replies go straight back: plain IP from the VIP, not tunnelled.
for p in pkts:
    if p[IP].proto == 4:
        sys.exit("a reply came back IPIP-encapsulated")
print("replies from the VIP seen in %s: %d, none encapsulated" % ("tta0", len(pkts)))
EOF

sleep 0.3
grep -q "udp from $LB:40000 b'ping'" "$WORK/server.log" || fail "UDP server on the VIP did not log the datagram"
if grep -q "spoofed" "$WORK/server.log"; then fail "a packet from outside --allow got through"; fi

kill -TERM "$DECAP"
rc=0
wait "$DECAP" || rc=$?
[[ $rc -eq 0 ]] || fail "rvs-ipip-decap exited with $rc on SIGTERM"
summary="$(grep 'exiting:' "$WORK/decap.log" || true)"
log "decap: ${summary#*: }"
[[ "$summary" == *"forwarded 2 "* ]] || fail "expected 2 packets forwarded: $summary"
[[ "$summary" == *"not_allowed 1 "* ]] || fail "expected 1 packet refused by --allow: $summary"
echo "--- decap.log" >&2
cat "$WORK/decap.log" >&2
echo "selftest: PASS"
