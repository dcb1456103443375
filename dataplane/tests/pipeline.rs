//! Byte-level fixtures through `Worker::process`/`tick`: input frames → exact output frames, or
//! the drop reason counted. The frames were written out by an independent generator (Python,
//! its own RFC 1071 checksum), not by the code under test.
//!
//! Topology: port 0 (02:00:00:00:00:01, 203.0.113.2/24), default route via 203.0.113.1
//! (02:00:00:00:00:fe), TCP 203.0.113.100:80 rr and UDP 203.0.113.100:53 rr over the DR real
//! servers 203.0.113.11 (…:0b) and 203.0.113.12 (…:0c). Clients are behind the gateway.

use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::neigh::NeighConfig;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute};
use rvs_dataplane::wire::{icmp, ipv4};
use rvs_dataplane::worker::{Io, Worker, WorkerConfig};
use rvs_dataplane::{DropReason, PacketBuf, Snapshot, VecBuf};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

const ARP_REQ_LOCAL: &str = "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007102000000000000000000000000000000000000";
const ARP_REP_LOCAL: &str = "0200000000fe02000000000108060001080006040002020000000001cb0071020200000000fecb007101000000000000000000000000000000000000";
const ARP_REQ_VIP: &str = "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007164000000000000000000000000000000000000";
const ARP_REP_VIP: &str = "0200000000fe02000000000108060001080006040002020000000001cb0071640200000000fecb007101000000000000000000000000000000000000";
const ARP_REQ_OTHER: &str = "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007132000000000000000000000000000000000000";
const OUR_ARP_REQ_GW: &str = "ffffffffffff02000000000108060001080006040001020000000001cb007102000000000000cb007101";
const OUR_ARP_REQ_RS11: &str = "ffffffffffff02000000000108060001080006040001020000000001cb007102000000000000cb00710b";
const OUR_ARP_REQ_RS12: &str = "ffffffffffff02000000000108060001080006040001020000000001cb007102000000000000cb00710c";
const GW_ARP_REPLY: &str = "0200000000010200000000fe080600010800060400020200000000fecb007101020000000001cb007102000000000000000000000000000000000000";
const RS11_ARP_REPLY: &str = "02000000000102000000000b0806000108000604000202000000000bcb00710b020000000001cb007102000000000000000000000000000000000000";
const RS12_ARP_REPLY: &str = "02000000000102000000000c0806000108000604000202000000000ccb00710c020000000001cb007102000000000000000000000000000000000000";
const ECHO_REQ: &str = "0200000000010200000000fe08004500003c333340003f01a24dc633640acb0071020800f3c812340001101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
const ECHO_REP: &str = "0200000000fe02000000000108004500003c333340004001a14dcb007102c633640a0000fbc812340001101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";
const SYN_IN: &str = "0200000000010200000000fe08004500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307";
const SYN_OUT_RS11: &str = "02000000000b02000000000108004500003c1c4640003f06b8d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307";
const UDP_IN: &str = "0200000000010200000000fe080045000026222240004011b202c633640acb007164cf0800350012a07668656c6c6f207276730a0000000000000000";
const UDP_OUT_RS11: &str =
    "02000000000b020000000001080045000026222240003f11b302c633640acb007164cf0800350012a07668656c6c6f207276730a";
const SYN_TTL1: &str = "0200000000010200000000fe08004500003c1c4640000106f6d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307";
const TIME_EXCEEDED: &str = "0200000000fe020000000001080045c0003800000000400113c5cb007102c633640a0b00bed3000000004500003c1c4640000106f6d3c633640acb0071649c4000503e2a5b71";

const PM: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const MAC11: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const MAC12: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const MAC13: [u8; 6] = [2, 0, 0, 0, 0, 0x0d];
const S: u64 = 1_000_000_000;

fn h(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn rs(last: u8, port: u16) -> RealServer {
    RealServer {
        addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, last).into(), port),
        fwd: FwdMode::Dr,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn tcp_key() -> ServiceKey {
    ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }
}

fn snapshot_with(generation: u64, tcp_reals: &[RealServer], udp_reals: &[RealServer]) -> Arc<Snapshot> {
    let port = PortInfo { id: 0, name: "p0".into(), mac: PM, addrs: vec![(ip("203.0.113.2"), 24)], mtu: 1500 };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    let services = [
        Service { key: tcp_key(), sched: SchedKind::Rr, persistence: None, laddrs: Vec::new(), client_addr: Default::default(), reals: tcp_reals.to_vec() },
        Service {
            key: ServiceKey { proto: Proto::Udp, vip: "203.0.113.100:53".parse().unwrap() },
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: udp_reals.to_vec(),
        },
    ];
    Arc::new(Snapshot::build(generation, vec![port], &[default], &services, Default::default()).unwrap())
}

fn snapshot() -> Arc<Snapshot> {
    snapshot_with(1, &[rs(11, 80), rs(12, 80)], &[rs(11, 53), rs(12, 53)])
}

#[derive(Default)]
struct TestIo {
    out: Vec<VecBuf>,
    /// Buffers `alloc` may still hand out; `None` = unlimited.
    budget: Option<usize>,
}

impl Io<VecBuf> for TestIo {
    fn alloc(&mut self) -> Option<VecBuf> {
        match &mut self.budget {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(VecBuf::empty())
            }
            None => Some(VecBuf::empty()),
        }
    }
    fn tx(&mut self, pkt: VecBuf) {
        self.out.push(pkt);
    }
}

struct Rig {
    w: Worker<VecBuf>,
    io: TestIo,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(WorkerConfig::default())
    }
    fn with(cfg: WorkerConfig) -> Rig {
        Rig { w: Worker::new(cfg, snapshot()), io: TestIo::default() }
    }
    /// Feed one frame on port 0 and return what was transmitted (bytes, all on port 0).
    fn rx(&mut self, frame: &[u8], now: u64) -> Vec<Vec<u8>> {
        self.w.process(VecBuf::new(frame, 0), now, &mut self.io);
        self.take()
    }
    fn tick(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.w.tick(now, &mut self.io);
        self.take()
    }
    fn take(&mut self) -> Vec<Vec<u8>> {
        self.io
            .out
            .drain(..)
            .map(|b| {
                assert_eq!(b.port(), 0, "only one port");
                b.to_vec()
            })
            .collect()
    }
    fn drops(&self, r: DropReason) -> u64 {
        self.w.counters().drops_of(r)
    }
    /// Pre-resolve the real servers and the gateway with unsolicited ARP replies to us.
    fn resolve_all(&mut self) {
        for f in [RS11_ARP_REPLY, RS12_ARP_REPLY, GW_ARP_REPLY] {
            assert!(self.rx(&h(f), 0).is_empty());
        }
    }
    fn counts(&self) -> Vec<(SocketAddr, (u32, u32))> {
        let mut v: Vec<_> = self.w.conn_counts().map(|(_, a, c)| (*a, c)).collect();
        v.sort();
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Test-side packet builders, with their own checksum (independent from rvs_dataplane::wire).

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn fix_ip_csum(f: &mut [u8]) {
    let hl = usize::from(f[14] & 0x0f) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = csum(&f[14..14 + hl.min(f.len() - 14)]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Client 198.51.100.10:sport → VIP:dport TCP segment (no options) from the gateway's MAC.
fn tcp_frame(sport: u16, dport: u16, flags: u8, ttl: u8) -> Vec<u8> {
    let src = [198, 51, 100, 10];
    let dst = [203, 0, 113, 100];
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & 0x10 != 0 { 0x2000_0000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    let mut ph = Vec::new();
    ph.extend_from_slice(&src);
    ph.extend_from_slice(&dst);
    ph.extend_from_slice(&[0, 6, 0, t.len() as u8]);
    ph.extend_from_slice(&t);
    let c = csum(&ph);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip_frame(6, ttl, &t)
}

fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // no checksum (RFC 768)
    u.extend_from_slice(payload);
    ip_frame(17, 64, &u)
}

fn ip_frame(proto: u8, ttl: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&PM);
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let tl = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tl.to_be_bytes());
    f.extend_from_slice(&[0xab, 0xcd, 0x40, 0x00, ttl, proto, 0, 0, 198, 51, 100, 10, 203, 0, 113, 100]);
    f.extend_from_slice(l4);
    fix_ip_csum(&mut f);
    f
}

/// What DR makes of a frame: MACs rewritten, TTL − 1, IP checksum recomputed, padding gone.
fn dr_out(frame: &[u8], rs_mac: [u8; 6]) -> Vec<u8> {
    let tl = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let mut f = frame[..14 + tl].to_vec();
    f[0..6].copy_from_slice(&rs_mac);
    f[6..12].copy_from_slice(&PM);
    f[22] -= 1;
    fix_ip_csum(&mut f);
    f
}

fn assert_ip_checksum_valid(f: &[u8]) {
    let p = ipv4::Packet::new_checked(&f[14..]).unwrap();
    assert!(p.verify_checksum(), "IP checksum of {f:02x?}");
    assert_eq!(csum(&f[14..14 + p.header_len()]), 0, "independent check");
}

// ---------------------------------------------------------------------------------------------
// ARP

#[test]
fn arp_request_for_local_address_gets_exact_reply() {
    let mut r = Rig::new();
    assert_eq!(r.rx(&h(ARP_REQ_LOCAL), 0), vec![h(ARP_REP_LOCAL)]);
    assert_eq!(r.w.counters().arp_replies, 1);
    assert_eq!(r.w.counters().tx_pkts, 1);
    assert_eq!(r.w.counters().tx_bytes, 60);
    // The requester was learned from the request itself.
    assert!(r.w.neigh_entries().iter().any(|e| e.ip == ip("203.0.113.1") && e.mac == Some(GW_MAC)));
}

#[test]
fn arp_request_for_vip_gets_exact_reply() {
    let mut r = Rig::new();
    assert_eq!(r.rx(&h(ARP_REQ_VIP), 0), vec![h(ARP_REP_VIP)]);
    assert_eq!(r.w.counters().arp_replies, 1);
}

#[test]
fn arp_for_someone_else_is_dropped() {
    let mut r = Rig::new();
    assert!(r.rx(&h(ARP_REQ_OTHER), 0).is_empty());
    assert_eq!(r.drops(DropReason::ArpNotForUs), 1);
    assert!(r.w.neigh_entries().is_empty(), "not learned: no entry for the sender");
}

#[test]
fn arp_not_for_us_refreshes_a_known_neighbour() {
    let mut r = Rig::new();
    r.rx(&h(SYN_IN), 0); // RS11 pending
    let mut other = h(RS11_ARP_REPLY);
    other[38..42].copy_from_slice(&[203, 0, 113, 50]); // reply to someone else
    other[0..6].copy_from_slice(&[0xff; 6]);
    let out = r.rx(&other, 1);
    assert_eq!(out, vec![h(SYN_OUT_RS11)], "learned from, and the held SYN released");
    assert_eq!(r.drops(DropReason::ArpNotForUs), 1);
}

#[test]
fn malformed_arp() {
    let mut r = Rig::new();
    let mut f = h(ARP_REQ_LOCAL);
    f[21] = 3; // RARP request opcode
    assert!(r.rx(&f, 0).is_empty());
    let short = &h(ARP_REQ_LOCAL)[..14 + 20];
    assert!(r.rx(short, 0).is_empty());
    assert_eq!(r.drops(DropReason::MalformedArp), 2);
}

// ---------------------------------------------------------------------------------------------
// ICMP echo to a local address, through the gateway

#[test]
fn icmp_echo_via_gateway() {
    let mut r = Rig::new();
    // The reply must go back via 203.0.113.1, not resolved yet: an ARP request goes out.
    assert_eq!(r.rx(&h(ECHO_REQ), 0), vec![h(OUR_ARP_REQ_GW)]);
    assert_eq!(r.w.counters().arp_requests, 1);
    let nv = r.w.neigh_entries();
    assert_eq!(nv.len(), 1);
    assert_eq!((nv[0].ip, nv[0].mac, nv[0].pending), (ip("203.0.113.1"), None, 1));
    // The gateway answers: the held echo reply is released with the right MACs.
    let out = r.rx(&h(GW_ARP_REPLY), 1000);
    assert_eq!(out, vec![h(ECHO_REP)]);
    assert_ip_checksum_valid(&out[0]);
    assert_eq!(out[0][22], 64, "fresh TTL");
    assert!(icmp::Packet::new_checked(&out[0][34..]).unwrap().verify_checksum());
    assert_eq!(r.w.counters().icmp_echo_replies, 1);
    assert_eq!(r.w.counters().total_drops(), 0);
    // Resolved now: the next echo is answered at once.
    assert_eq!(r.rx(&h(ECHO_REQ), 2000), vec![h(ECHO_REP)]);
}

#[test]
fn local_malformed_and_unhandled() {
    let mut r = Rig::new();
    let mut bad = h(ECHO_REQ);
    bad[50] ^= 0xff; // ICMP data byte: ICMP checksum now wrong
    assert!(r.rx(&bad, 0).is_empty());
    assert_eq!(r.drops(DropReason::MalformedIcmp), 1);
    // UDP to the interface address.
    let mut u = udp_frame(1000, 53, b"x");
    u[30..34].copy_from_slice(&[203, 0, 113, 2]);
    fix_ip_csum(&mut u);
    assert!(r.rx(&u, 0).is_empty());
    // ICMP echo reply (type 0) to us.
    let mut rep = h(ECHO_REQ);
    rep[34] = 0;
    assert!(r.rx(&rep, 0).is_empty());
    assert_eq!(r.drops(DropReason::LocalUnhandled), 2);
}

// ---------------------------------------------------------------------------------------------
// DR forwarding

#[test]
fn tcp_syn_to_vip_is_forwarded_dr_after_arp() {
    let mut r = Rig::new();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.w.counters().sessions_created, 1);
    let out = r.rx(&h(RS11_ARP_REPLY), 10);
    assert_eq!(out, vec![h(SYN_OUT_RS11)]);
    assert_ip_checksum_valid(&out[0]);
    assert_eq!(r.w.counters().fwd_pkts, 1);
    assert_eq!(r.counts(), vec![(rs(11, 80).addr, (0, 1))]);

    // Second client port: rr gives the other server.
    let syn2 = tcp_frame(40001, 80, 0x02, 64);
    assert_eq!(r.rx(&syn2, 20), vec![h(OUR_ARP_REQ_RS12)]);
    assert_eq!(r.rx(&h(RS12_ARP_REPLY), 30), vec![dr_out(&syn2, MAC12)]);

    // Later packets stick to their server; the ACK establishes (active count).
    let ack1 = {
        let mut f = h(SYN_IN);
        f[47] = 0x10;
        f[50] ^= 1; // TCP checksum is not verified by the director
        f
    };
    assert_eq!(r.rx(&ack1, 40), vec![dr_out(&ack1, MAC11)]);
    let ack2 = tcp_frame(40001, 80, 0x10, 64);
    assert_eq!(r.rx(&ack2, 50), vec![dr_out(&ack2, MAC12)]);
    assert_eq!(r.counts(), vec![(rs(11, 80).addr, (1, 0)), (rs(12, 80).addr, (1, 0))]);
    assert_eq!(r.w.counters().fwd_pkts, 4);
    assert_eq!(r.w.counters().sessions_active, 2);
    assert_eq!(r.w.sessions().len(), 2);
}

#[test]
fn flows_stick_across_snapshot_changes() {
    let mut r = Rig::new();
    r.resolve_all();
    let syn1 = tcp_frame(41000, 80, 0x02, 64);
    let syn2 = tcp_frame(41001, 80, 0x02, 64);
    assert_eq!(r.rx(&syn1, 0), vec![dr_out(&syn1, MAC11)]);
    assert_eq!(r.rx(&syn2, 0), vec![dr_out(&syn2, MAC12)]);

    // RS .11 removed, .13 added.
    r.w.set_snapshot(snapshot_with(2, &[rs(12, 80), rs(13, 80)], &[rs(12, 53)]));
    assert_eq!(r.w.generation(), 2);
    let ack1 = tcp_frame(41000, 80, 0x10, 64);
    let ack2 = tcp_frame(41001, 80, 0x10, 64);
    assert_eq!(r.rx(&ack1, 1), vec![dr_out(&ack1, MAC11)], "existing flow keeps its removed RS");
    assert_eq!(r.rx(&ack2, 1), vec![dr_out(&ack2, MAC12)]);

    // New flows only go to the new list, alternating.
    let mut seen = Vec::new();
    for (i, port) in [42000u16, 42001, 42002, 42003].into_iter().enumerate() {
        let syn = tcp_frame(port, 80, 0x02, 64);
        let out = r.rx(&syn, 2 + i as u64);
        if out.is_empty() {
            // .13 unresolved: the ARP request was the output instead.
            seen.push(13);
            continue;
        }
        match out[0][5] {
            0x0c => seen.push(12),
            0xff => {
                seen.push(13);
                assert_eq!(
                    r.rx(
                        &h(RS11_ARP_REPLY)
                            .iter()
                            .copied()
                            .enumerate()
                            .map(|(j, b)| match j {
                                11 | 27 | 31 => 0x0d,
                                _ => b,
                            })
                            .collect::<Vec<u8>>(),
                        3
                    ),
                    vec![dr_out(&syn, MAC13)]
                );
            }
            0x0d => seen.push(13),
            other => panic!("unexpected destination {other:02x}"),
        }
    }
    assert!(seen.contains(&12) && seen.contains(&13), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");
    // Still sticky after all that.
    assert_eq!(r.rx(&ack1, 10), vec![dr_out(&ack1, MAC11)]);
}

#[test]
fn udp_is_forwarded_and_sticks() {
    let mut r = Rig::new();
    assert_eq!(r.rx(&h(UDP_IN), 0), vec![h(OUR_ARP_REQ_RS11)]);
    // The 60-byte padded input leaves without its Ethernet padding.
    assert_eq!(r.rx(&h(RS11_ARP_REPLY), 1), vec![h(UDP_OUT_RS11)]);
    r.rx(&h(RS12_ARP_REPLY), 1);
    let other = udp_frame(53001, 53, b"second flow");
    assert_eq!(r.rx(&other, 2), vec![dr_out(&other, MAC12)]);
    assert_eq!(r.rx(&h(UDP_IN), 3), vec![h(UDP_OUT_RS11)]);
    assert_eq!(r.rx(&other, 4), vec![dr_out(&other, MAC12)]);
    assert_eq!(r.w.counters().sessions_created, 2);
    assert_eq!(r.counts(), vec![(rs(11, 53).addr, (0, 1)), (rs(12, 53).addr, (0, 1))]);
}

#[test]
fn ttl_1_gets_time_exceeded() {
    let mut r = Rig::new();
    r.resolve_all();
    let out = r.rx(&h(SYN_TTL1), 0);
    assert_eq!(out, vec![h(TIME_EXCEEDED)]);
    assert_ip_checksum_valid(&out[0]);
    assert!(icmp::Packet::new_checked(&out[0][34..]).unwrap().verify_checksum());
    assert_eq!(r.drops(DropReason::TtlExceeded), 1);
    assert_eq!(r.w.counters().sessions_created, 0, "no session for a packet that dies here");
    // Without a buffer: just the drop.
    r.io.budget = Some(0);
    assert!(r.rx(&h(SYN_TTL1), 0).is_empty());
    assert_eq!(r.drops(DropReason::TtlExceeded), 2);
    assert_eq!(r.drops(DropReason::NoBuffer), 0);
}

#[test]
fn ttl_1_on_established_flow() {
    let mut r = Rig::new();
    r.resolve_all();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(SYN_OUT_RS11)]);
    let mut ack = h(SYN_TTL1);
    ack[47] = 0x10;
    let out = r.rx(&ack, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][34], 11, "time exceeded");
    assert_eq!(r.drops(DropReason::TtlExceeded), 1);
}

/// Every malformed or unwanted frame: nothing sent, exactly its reason counted.
#[test]
fn malformed_and_unwanted_frames() {
    let syn = h(SYN_IN);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = syn.clone();
        f(&mut v);
        v
    };
    let with_csum = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = syn.clone();
        f(&mut v);
        fix_ip_csum(&mut v);
        v
    };
    let small_tcp = tcp_frame(40000, 80, 0x02, 64); // 20-byte TCP header, total length 40
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("truncated ethernet", syn[..13].to_vec(), DropReason::MalformedEth),
        ("empty frame", Vec::new(), DropReason::MalformedEth),
        ("unknown ethertype", with(&|v| v[12..14].copy_from_slice(&[0x88, 0xcc])), DropReason::MalformedEth),
        ("truncated ipv4", syn[..14 + 19].to_vec(), DropReason::MalformedIpv4),
        ("ip version 5", with_csum(&|v| v[14] = 0x55), DropReason::MalformedIpv4),
        ("ihl 4", with_csum(&|v| v[14] = 0x44), DropReason::MalformedIpv4),
        ("ihl 0", with_csum(&|v| v[14] = 0x40), DropReason::MalformedIpv4),
        (
            "ihl 15 beyond the packet",
            {
                let mut v = small_tcp.clone();
                v[14] = 0x4f;
                v
            },
            DropReason::MalformedIpv4,
        ),
        ("total length beyond frame", with_csum(&|v| v[17] = 0x3d), DropReason::MalformedIpv4),
        ("total length below header", with_csum(&|v| v[17] = 19), DropReason::MalformedIpv4),
        ("bad ip checksum", with(&|v| v[25] ^= 0x01), DropReason::BadIpv4Checksum),
        (
            "truncated tcp header",
            {
                let mut v = small_tcp[..14 + 20 + 10].to_vec();
                v[17] = 30;
                fix_ip_csum(&mut v);
                v
            },
            DropReason::MalformedL4,
        ),
        ("tcp data offset 4", with(&|v| v[46] = 0x40), DropReason::MalformedL4),
        ("tcp data offset beyond packet", with(&|v| v[46] = 0xf0), DropReason::MalformedL4),
        (
            "truncated udp",
            {
                let mut v = udp_frame(1, 53, b"");
                v.truncate(14 + 20 + 6);
                v[17] = 26;
                fix_ip_csum(&mut v);
                v
            },
            DropReason::MalformedL4,
        ),
        ("fragment MF", with_csum(&|v| v[20] = 0x20), DropReason::Fragment),
        ("fragment offset", with_csum(&|v| v[21] = 0xb9), DropReason::Fragment),
        ("non-syn without session", tcp_frame(40000, 80, 0x10, 64), DropReason::NoSession),
        ("syn+ack without session", tcp_frame(40000, 80, 0x12, 64), DropReason::NoSession),
        ("rst without session", tcp_frame(40000, 80, 0x04, 64), DropReason::NoSession),
        ("unknown service port", tcp_frame(40000, 81, 0x02, 64), DropReason::NoService),
        ("udp to a vip without that udp service", udp_frame(5000, 80, b"q"), DropReason::NoService),
        ("icmp to a vip", with_csum(&|v| v[23] = 1), DropReason::NoService),
        ("dst mac of someone else", with(&|v| v[5] = 0x99), DropReason::NotForUs),
        (
            "dst ip neither local nor vip",
            with_csum(&|v| v[30..34].copy_from_slice(&[192, 0, 2, 7])),
            DropReason::NotForUs,
        ),
        ("ipv6", with(&|v| v[12..14].copy_from_slice(&[0x86, 0xdd])), DropReason::Ipv6),
    ];
    for (name, frame, reason) in cases {
        let mut r = Rig::new();
        r.resolve_all();
        let out = r.rx(&frame, 0);
        assert!(out.is_empty(), "{name}: sent {out:02x?}");
        assert_eq!(r.drops(reason), 1, "{name}: expected {reason:?}, counters {:?}", r.w.counters());
        assert_eq!(r.w.counters().total_drops(), 1, "{name}: exactly one drop");
        assert_eq!(r.w.counters().rx_pkts, 4, "{name}");
    }
}

#[test]
fn session_table_full_refuses_new_flows_only() {
    let mut r = Rig::with(WorkerConfig { max_sessions: 1, ..WorkerConfig::default() });
    r.resolve_all();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(SYN_OUT_RS11)]);
    let syn2 = tcp_frame(40001, 80, 0x02, 64);
    assert!(r.rx(&syn2, 1).is_empty());
    assert_eq!(r.drops(DropReason::SessionTableFull), 1);
    let ack1 = tcp_frame(40000, 80, 0x10, 64);
    assert_eq!(r.rx(&ack1, 2), vec![dr_out(&ack1, MAC11)]);
    assert_eq!(r.w.counters().sessions_created, 1);
}

#[test]
fn neigh_pending_overflow() {
    let cfg =
        WorkerConfig { neigh: NeighConfig { pending_total: 2, ..NeighConfig::default() }, ..WorkerConfig::default() };
    let mut r = Rig::with(cfg);
    assert_eq!(r.rx(&tcp_frame(1, 80, 0x02, 64), 0), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.rx(&tcp_frame(2, 80, 0x02, 64), 0), vec![h(OUR_ARP_REQ_RS12)]);
    assert!(r.rx(&tcp_frame(3, 80, 0x02, 64), 0).is_empty());
    assert_eq!(r.drops(DropReason::NeighPendingOverflow), 1);
    // The two held ones still go once resolved.
    assert_eq!(r.rx(&h(RS11_ARP_REPLY), 1).len(), 1);
    assert_eq!(r.rx(&h(RS12_ARP_REPLY), 1).len(), 1);
}

#[test]
fn arp_request_without_buffer_keeps_the_packet_held() {
    let mut r = Rig::new();
    r.io.budget = Some(0);
    assert!(r.rx(&h(SYN_IN), 0).is_empty());
    assert_eq!(r.drops(DropReason::NoBuffer), 1);
    assert_eq!(r.w.neigh_entries()[0].pending, 1);
    // The retry gets a buffer.
    r.io.budget = None;
    assert_eq!(r.tick(S), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.rx(&h(RS11_ARP_REPLY), S + 1), vec![h(SYN_OUT_RS11)]);
}

#[test]
fn neigh_unreachable_after_retries() {
    let mut r = Rig::new();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(OUR_ARP_REQ_RS11)]);
    assert!(r.tick(S / 2).is_empty(), "no retry before retry_ns");
    assert_eq!(r.tick(S), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.tick(2 * S), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.drops(DropReason::NeighUnreachable), 0);
    assert!(r.tick(3 * S).is_empty());
    assert_eq!(r.drops(DropReason::NeighUnreachable), 1);
    assert_eq!(r.w.counters().arp_requests, 3);
    assert!(r.w.neigh_entries().is_empty());
}

#[test]
fn session_expiry() {
    let mut r = Rig::new();
    r.resolve_all();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(SYN_OUT_RS11)]);
    let ack = tcp_frame(40000, 80, 0x10, 64);
    assert_eq!(r.rx(&ack, S).len(), 1);
    assert_eq!(r.counts(), vec![(rs(11, 80).addr, (1, 0))]);
    // Established timeout is 900 s; not yet at 800 s.
    r.tick(800 * S);
    assert_eq!(r.w.counters().sessions_active, 1);
    r.tick(1000 * S);
    assert_eq!(r.w.counters().sessions_expired, 1);
    assert_eq!(r.w.counters().sessions_active, 0);
    assert!(r.counts().is_empty(), "conn counts back to 0");
    assert!(r.rx(&ack, 1001 * S).is_empty());
    assert_eq!(r.drops(DropReason::NoSession), 1);
}

#[test]
fn set_timeouts_applies_to_touched_sessions() {
    let mut r = Rig::new();
    r.resolve_all();
    r.w.set_timeouts(Timeouts { udp_ns: 5 * S, ..Timeouts::default() });
    assert_eq!(r.rx(&h(UDP_IN), 0).len(), 1);
    r.tick(20 * S);
    assert_eq!(r.w.counters().sessions_expired, 1);
}

#[test]
fn syn_on_closing_session_is_rescheduled() {
    let mut r = Rig::new();
    r.resolve_all();
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(SYN_OUT_RS11)]);
    let fin = tcp_frame(40000, 80, 0x11, 64);
    assert_eq!(r.rx(&fin, 1), vec![dr_out(&fin, MAC11)]);
    // Same 4-tuple, new connection: rr moves on to .12.
    let syn = tcp_frame(40000, 80, 0x02, 64);
    assert_eq!(r.rx(&syn, 2), vec![dr_out(&syn, MAC12)]);
    assert_eq!(r.w.counters().sessions_created, 2);
    assert_eq!(r.w.sessions().len(), 1);
    assert_eq!(r.counts(), vec![(rs(12, 80).addr, (0, 1))]);
}

#[test]
fn unsupported_fwd_and_unreachable_rs() {
    // A NAT real server: refused until NAT lands; a DR server behind a gateway: no route.
    let port = PortInfo { id: 0, name: "p0".into(), mac: PM, addrs: vec![(ip("203.0.113.2"), 24)], mtu: 1500 };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    let nat = RealServer { fwd: FwdMode::Nat, ..rs(11, 80) };
    let far = RealServer { addr: "192.0.2.9:80".parse().unwrap(), ..rs(11, 80) };
    let svc = |reals: Vec<RealServer>| Service { key: tcp_key(), sched: SchedKind::Rr, persistence: None, laddrs: Vec::new(), client_addr: Default::default(), reals };
    let mut r = Rig::new();
    r.w.set_snapshot(Arc::new(Snapshot::build(5, vec![port.clone()], &[default], &[svc(vec![nat])], Default::default()).unwrap()));
    assert!(r.rx(&h(SYN_IN), 0).is_empty());
    assert_eq!(r.drops(DropReason::UnsupportedFwd), 1);
    r.w.set_snapshot(Arc::new(Snapshot::build(6, vec![port], &[default], &[svc(vec![far])], Default::default()).unwrap()));
    assert!(r.rx(&h(SYN_IN), 0).is_empty());
    assert_eq!(r.drops(DropReason::NoRoute), 1);
    assert_eq!(r.w.counters().sessions_created, 0);
    // All weights 0: no real server.
    let mut r = Rig::new();
    r.w.set_snapshot(snapshot_with(7, &[RealServer { weight: 0, ..rs(11, 80) }], &[]));
    assert!(r.rx(&h(SYN_IN), 0).is_empty());
    assert_eq!(r.drops(DropReason::NoRealServer), 1);
}

#[test]
fn count_drop_adds() {
    let mut r = Rig::new();
    r.w.count_drop(DropReason::TxFull, 5);
    assert_eq!(r.drops(DropReason::TxFull), 5);
}

#[test]
fn unchanged_service_keeps_its_rotation_across_snapshots() {
    let mut r = Rig::new();
    r.resolve_all();
    let syn1 = tcp_frame(43000, 80, 0x02, 64);
    assert_eq!(r.rx(&syn1, 0), vec![dr_out(&syn1, MAC11)]);
    // Same services, new generation (e.g. a route was added): rr continues where it was.
    r.w.set_snapshot(snapshot_with(2, &[rs(11, 80), rs(12, 80)], &[rs(11, 53), rs(12, 53)]));
    let syn2 = tcp_frame(43001, 80, 0x02, 64);
    assert_eq!(r.rx(&syn2, 1), vec![dr_out(&syn2, MAC12)]);
}
