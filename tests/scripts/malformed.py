#!/usr/bin/python3
"""Injects malformed frames at rvs (run with /usr/bin/python3, which has scapy).

Sent with sendp on the server segment (the router's eth1), L2-addressed to rvs's
MAC: a Linux router would itself drop malformed IP, so it cannot be routed in.
Prints one line per frame and, last, a JSON object of the drop counters each
frame kind should increase.
"""
import argparse
import json

from scapy.all import IP, TCP, Ether, Raw, conf, get_if_hwaddr, sendp  # type: ignore

conf.verb = 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--src", default="198.51.100.10")
    ap.add_argument("--vip", default="203.0.113.100")
    ap.add_argument("--port", type=int, default=80)
    a = ap.parse_args()

    # Explicit source MAC: scapy cannot guess it for a Raw payload, and a bridge
    # drops frames from 00:00:00:00:00:00.
    eth = Ether(src=get_if_hwaddr(a.iface), dst=a.dst_mac, type=0x0800)
    syn = TCP(sport=40000, dport=a.port, flags="S", seq=1)
    frames = []

    # 1. IPv4 header cut short: 14 + 10 bytes.
    whole = bytes(IP(src=a.src, dst=a.vip) / syn)
    frames.append(("truncated_ipv4_header", eth / Raw(whole[:10]), "drop_malformed_ipv4"))
    # 2. IHL 4 (header shorter than the 20-byte minimum, RFC 791).
    frames.append(("ihl_4", eth / IP(src=a.src, dst=a.vip, ihl=4) / syn, "drop_malformed_ipv4"))
    # 3. IHL 15 (60-byte header) in a 40-byte packet.
    frames.append(("ihl_15", eth / IP(src=a.src, dst=a.vip, ihl=15) / syn, "drop_malformed_ipv4"))
    # 4. Wrong IPv4 header checksum (the correct one plus one).
    good = IP(bytes(IP(src=a.src, dst=a.vip) / syn))
    frames.append(("bad_ipv4_checksum", eth / IP(src=a.src, dst=a.vip, chksum=(good.chksum + 1) & 0xFFFF) / syn,
                   "drop_bad_ipv4_checksum"))
    # 5. TCP header cut short: 8 bytes of TCP to the VIP.
    frames.append(("truncated_tcp_header", eth / IP(src=a.src, dst=a.vip, proto=6) / Raw(bytes(syn)[:8]),
                   "drop_malformed_l4"))
    # 6. TCP data offset 3 (< 5 words, RFC 9293).
    frames.append(("tcp_data_offset_3", eth / IP(src=a.src, dst=a.vip) / TCP(sport=40001, dport=a.port, flags="S",
                                                                                  dataofs=3), "drop_malformed_l4"))
    # 7. A well-formed SYN to the VIP with TTL 1: rvs is an IP hop.
    frames.append(("syn_ttl_1", eth / IP(src=a.src, dst=a.vip, ttl=1) / TCP(sport=40002, dport=a.port, flags="S"),
                   "drop_ttl_exceeded"))

    expected: dict = {}
    for name, frame, counter in frames:
        raw = bytes(frame)
        sendp(frame, iface=a.iface)
        print("sent %-22s %3d bytes -> %s" % (name, len(raw), counter))
        expected[counter] = expected.get(counter, 0) + 1
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
