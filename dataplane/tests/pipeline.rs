//! Byte-level fixtures through `Worker::process`/`tick`: input frames → exact output frames, or
//! the drop reason counted. The frames were written out by an independent generator (Python,
//! its own RFC 1071 checksum), not by the code under test.
//!
//! Topology: port 0 (02:00:00:00:00:01, 203.0.113.2/24), default route via 203.0.113.1
//! (02:00:00:00:00:fe), TCP 203.0.113.100:80 rr and UDP 203.0.113.100:53 rr over the DR real
//! servers 203.0.113.11 (…:0b) and 203.0.113.12 (…:0c). Clients are behind the gateway.

use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::neigh::NeighConfig;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute};
use rvs_dataplane::wire::{icmp, ipv4};
use rvs_dataplane::worker::{Io, Worker, WorkerConfig};
use rvs_dataplane::{DropReason, PacketBuf, Snapshot, VecBuf};
use rvs_model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
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
        Service {
            key: tcp_key(),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: tcp_reals.to_vec(),
        },
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
    /// (core, packet) handed to other workers.
    redirects: Vec<(usize, VecBuf)>,
    /// Neighbours shared with the other workers.
    learned: Vec<(u16, Ipv4Addr, [u8; 6])>,
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
    fn redirect(&mut self, core: usize, pkt: VecBuf) {
        self.redirects.push((core, pkt));
    }
    fn neigh_learned(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) {
        self.learned.push((port, ip, mac));
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
        ("dst mac of someone else", with(&|v| v[5] = 0x99), DropReason::OtherMac),
        (
            "dst ip neither local nor vip",
            with_csum(&|v| v[30..34].copy_from_slice(&[192, 0, 2, 7])),
            DropReason::UnknownDst,
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
    // A NAT real server is forwarded now (held for ARP); a DR server behind a gateway: no route.
    let port = PortInfo { id: 0, name: "p0".into(), mac: PM, addrs: vec![(ip("203.0.113.2"), 24)], mtu: 1500 };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    let nat = RealServer { fwd: FwdMode::Nat, ..rs(11, 80) };
    let far = RealServer { addr: "192.0.2.9:80".parse().unwrap(), ..rs(11, 80) };
    let svc = |reals: Vec<RealServer>| Service {
        key: tcp_key(),
        sched: SchedKind::Rr,
        persistence: None,
        laddrs: Vec::new(),
        client_addr: Default::default(),
        reals,
    };
    let mut r = Rig::new();
    r.w.set_snapshot(Arc::new(
        Snapshot::build(5, vec![port.clone()], &[default], &[svc(vec![nat])], Default::default()).unwrap(),
    ));
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.w.counters().sessions_created, 1);
    r.w.set_snapshot(Arc::new(
        Snapshot::build(6, vec![port], &[default], &[svc(vec![far])], Default::default()).unwrap(),
    ));
    let syn2 = tcp_frame(40001, 80, 0x02, 64);
    assert!(r.rx(&syn2, 0).is_empty());
    assert_eq!(r.drops(DropReason::NoRoute), 1);
    assert_eq!(r.w.counters().sessions_created, 1);
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

// ---------------------------------------------------------------------------------------------
// NAT, FULLNAT, TUN. Topology as above, plus:
//   TCP 203.0.113.100:80 NAT → 203.0.113.11:8080;   UDP 203.0.113.100:53 NAT → 203.0.113.11:5353
//   TCP 203.0.113.101:80 FULLNAT → 203.0.113.12:8080, local address 203.0.113.200
//   TCP 203.0.113.102:80 TUN → 192.0.2.9:80 (routed via 203.0.113.1)
// Frames are built and checked here with an independent checksum.

use rvs_dataplane::conn::ConnState;
use rvs_dataplane::snapshot::Tunables;
use rvs_model::{ClientAddrMode, Persistence};

const CLIENT: [u8; 4] = [198, 51, 100, 10];
const VIP: [u8; 4] = [203, 0, 113, 100];
const VIP_F: [u8; 4] = [203, 0, 113, 101];
const VIP_T: [u8; 4] = [203, 0, 113, 102];
const RS11: [u8; 4] = [203, 0, 113, 11];
const RS12: [u8; 4] = [203, 0, 113, 12];
const LIP: [u8; 4] = [203, 0, 113, 200];

fn real(addr: &str, fwd: FwdMode) -> RealServer {
    RealServer { addr: addr.parse().unwrap(), fwd, weight: 1, u_threshold: 0, l_threshold: 0 }
}

fn svc_of(proto: Proto, vip: &str, reals: Vec<RealServer>) -> Service {
    Service {
        key: ServiceKey { proto, vip: vip.parse().unwrap() },
        sched: SchedKind::Rr,
        persistence: None,
        laddrs: Vec::new(),
        client_addr: ClientAddrMode::None,
        reals,
    }
}

fn modes_services(ca: ClientAddrMode) -> Vec<Service> {
    vec![
        svc_of(Proto::Tcp, "203.0.113.100:80", vec![real("203.0.113.11:8080", FwdMode::Nat)]),
        svc_of(Proto::Udp, "203.0.113.100:53", vec![real("203.0.113.11:5353", FwdMode::Nat)]),
        Service {
            laddrs: vec!["203.0.113.200".parse().unwrap()],
            client_addr: ca,
            ..svc_of(Proto::Tcp, "203.0.113.101:80", vec![real("203.0.113.12:8080", FwdMode::FullNat)])
        },
        svc_of(Proto::Tcp, "203.0.113.102:80", vec![real("192.0.2.9:80", FwdMode::Tun)]),
    ]
}

fn modes_snapshot(generation: u64, services: &[Service], mtu: u16, tunables: Tunables) -> Arc<Snapshot> {
    let port = PortInfo { id: 0, name: "p0".into(), mac: PM, addrs: vec![(ip("203.0.113.2"), 24)], mtu };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    Arc::new(Snapshot::build(generation, vec![port], &[default], services, tunables).unwrap())
}

fn modes_rig(cfg: WorkerConfig, ca: ClientAddrMode) -> Rig {
    let mut r = Rig {
        w: Worker::new(cfg, modes_snapshot(1, &modes_services(ca), 1500, Tunables::default())),
        io: TestIo::default(),
    };
    r.resolve_all();
    r
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// L4 checksum over the pseudo-header, computed here.
fn l4_csum(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let mut ph = Vec::new();
    ph.extend_from_slice(&src);
    ph.extend_from_slice(&dst);
    ph.extend_from_slice(&[0, proto]);
    ph.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    !fold(sum16(&ph) + sum16(l4))
}

/// A frame from `smac` with an IPv4 TCP segment (options padded by the caller to 4 bytes).
#[allow(clippy::too_many_arguments)]
fn tcp_seg(
    smac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[(((20 + opts.len()) / 4) << 4) as u8, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    let c = l4_csum(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    l3_frame(smac, src, dst, 6, 64, &t)
}

fn udp_dgram(
    smac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
    with_csum: bool,
) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    if with_csum {
        let c = l4_csum(src, dst, 17, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    l3_frame(smac, src, dst, 17, 64, &u)
}

fn l3_frame(smac: [u8; 6], src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&PM);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, ttl, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    fix_ip_csum(&mut f);
    f
}

/// Full recompute of the IP and L4 checksums of an output frame (a UDP checksum of 0 is "none").
fn assert_checksums(f: &[u8]) {
    assert_eq!(fold(sum16(&f[14..34])), 0xffff, "IP checksum of {f:02x?}");
    let (src, dst) = (f[26..30].try_into().unwrap(), f[30..34].try_into().unwrap());
    let l4 = &f[34..];
    let at = if f[23] == 6 { 16 } else { 6 };
    if f[23] == 17 && l4[6..8] == [0, 0] {
        return;
    }
    let mut z = l4.to_vec();
    z[at] = 0;
    z[at + 1] = 0;
    let mut c = l4_csum(src, dst, f[23], &z);
    if f[23] == 17 && c == 0 {
        c = 0xffff;
    }
    assert_eq!(u16::from_be_bytes([l4[at], l4[at + 1]]), c, "L4 checksum of {f:02x?}");
}

/// What NAT/FULLNAT should make of `input`: same frame with MACs, TTL−1 and the given
/// addresses/ports; checksums recomputed here.
fn translated(input: &[u8], dmac: [u8; 6], src: Option<([u8; 4], u16)>, dst: Option<([u8; 4], u16)>) -> Vec<u8> {
    let mut f = input.to_vec();
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&PM);
    f[22] -= 1;
    if let Some((a, p)) = src {
        f[26..30].copy_from_slice(&a);
        f[34..36].copy_from_slice(&p.to_be_bytes());
    }
    if let Some((a, p)) = dst {
        f[30..34].copy_from_slice(&a);
        f[36..38].copy_from_slice(&p.to_be_bytes());
    }
    fix_ip_csum(&mut f);
    let at = if f[23] == 6 { 34 + 16 } else { 34 + 6 };
    if !(f[23] == 17 && f[at..at + 2] == [0, 0]) {
        f[at] = 0;
        f[at + 1] = 0;
        let (s, d) = (f[26..30].try_into().unwrap(), f[30..34].try_into().unwrap());
        let mut c = l4_csum(s, d, f[23], &f[34..]);
        if f[23] == 17 && c == 0 {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn state_of(r: &Rig) -> ConnState {
    r.w.sessions().iter().next().map(|(_, s)| s.state).unwrap()
}

#[test]
fn nat_tcp_forward_reply_and_state_machine() {
    let mut r = modes_rig(WorkerConfig::default(), ClientAddrMode::None);
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP, 80, 0x02, 1000, 0, &[2, 4, 5, 0xb4], &[]);
    let out = r.rx(&syn, 0);
    assert_eq!(out, vec![translated(&syn, MAC11, None, Some((RS11, 8080)))]);
    assert_checksums(&out[0]);
    assert_eq!(state_of(&r), ConnState::TcpSynRecv);
    // The RS's SYN-ACK comes back with the VIP as source, to the client via the gateway.
    let synack = tcp_seg(MAC11, RS11, 8080, CLIENT, 40000, 0x12, 5000, 1001, &[2, 4, 5, 0xb4], &[]);
    let out = r.rx(&synack, 1);
    assert_eq!(out, vec![translated(&synack, GW_MAC, Some((VIP, 80)), None)]);
    assert_checksums(&out[0]);
    let ack = tcp_seg(GW_MAC, CLIENT, 40000, VIP, 80, 0x10, 1001, 5001, &[], b"GET /");
    assert_eq!(r.rx(&ack, 2), vec![translated(&ack, MAC11, None, Some((RS11, 8080)))]);
    assert_eq!(state_of(&r), ConnState::TcpEstablished);
    assert_eq!(r.counts(), vec![("203.0.113.11:8080".parse().unwrap(), (1, 0))]);
    // Client FIN → CLOSE_WAIT, server FIN → TIME_WAIT (IPVS's INPUT/OUTPUT rows).
    r.rx(&tcp_seg(GW_MAC, CLIENT, 40000, VIP, 80, 0x11, 1006, 5001, &[], &[]), 3);
    assert_eq!(state_of(&r), ConnState::TcpCloseWait);
    let fin_back = tcp_seg(MAC11, RS11, 8080, CLIENT, 40000, 0x11, 5001, 1007, &[], &[]);
    assert_eq!(r.rx(&fin_back, 4), vec![translated(&fin_back, GW_MAC, Some((VIP, 80)), None)]);
    assert_eq!(state_of(&r), ConnState::TcpTimeWait);
    let s = r.w.sessions().iter().next().unwrap().1.clone();
    assert_eq!(s.expires_ns, 4 + Timeouts::default().tcp_time_wait_ns);
    assert_eq!(r.counts(), vec![("203.0.113.11:8080".parse().unwrap(), (0, 1))]);
    // A SYN on TIME_WAIT opens a new session on the tuple.
    r.rx(&syn, 5);
    assert_eq!(state_of(&r), ConnState::TcpSynRecv);
    assert_eq!(r.w.counters().sessions_created, 2);
    // A reply from the NAT RS that no session knows: NoSession.
    let stray = tcp_seg(MAC11, RS11, 8080, CLIENT, 40001, 0x10, 1, 1, &[], &[]);
    assert!(r.rx(&stray, 6).is_empty());
    assert_eq!(r.drops(DropReason::NoSession), 1);
}

#[test]
fn nat_udp_with_and_without_checksum() {
    let mut r = modes_rig(WorkerConfig::default(), ClientAddrMode::None);
    for (i, with) in [true, false].into_iter().enumerate() {
        let q = udp_dgram(GW_MAC, CLIENT, 5000 + i as u16, VIP, 53, b"query", with);
        let out = r.rx(&q, 0);
        assert_eq!(out, vec![translated(&q, MAC11, None, Some((RS11, 5353)))]);
        assert_eq!(out[0][40..42] == [0, 0], !with, "a zero UDP checksum stays zero");
        assert_checksums(&out[0]);
        let a = udp_dgram(MAC11, RS11, 5353, CLIENT, 5000 + i as u16, b"answer", with);
        let out = r.rx(&a, 1);
        assert_eq!(out, vec![translated(&a, GW_MAC, Some((VIP, 53)), None)]);
        assert_checksums(&out[0]);
    }
    assert_eq!(r.w.sessions().len(), 2);
}

/// Set up a FULLNAT connection through the handshake; returns (rig, lport, SYN-ACK output).
/// `f` (a TCP frame) with its sequence and/or acknowledgment number replaced (checksums are
/// left to `translated`, which computes them afresh).
fn with_seq_ack(f: &[u8], seq: Option<u32>, ack: Option<u32>) -> Vec<u8> {
    let mut f = f.to_vec();
    if let Some(s) = seq {
        f[38..42].copy_from_slice(&s.to_be_bytes());
    }
    if let Some(a) = ack {
        f[42..46].copy_from_slice(&a.to_be_bytes());
    }
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[38..42].try_into().unwrap())
}

fn ack_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[42..46].try_into().unwrap())
}

/// A FULLNAT handshake: the client's SYN (ISN 1000) leaves with rvs's own ISN, whatever it is
/// (`d` = rvs's ISN − 1000); the real server's SYN-ACK acknowledges that ISN, and reaches the
/// client acknowledging 1001. Returns the rig, the local port, the SYN-ACK as the client gets
/// it and `d`.
fn fullnat_handshake(ca: ClientAddrMode) -> (Rig, u16, Vec<u8>, u32) {
    let mut r = modes_rig(WorkerConfig::default(), ca);
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x02, 1000, 0, &[2, 4, 5, 0xb4], &[]);
    let out = r.rx(&syn, 0);
    assert_eq!(out.len(), 1);
    let lport = u16::from_be_bytes([out[0][34], out[0][35]]);
    assert!(lport >= 1024);
    let d = seq_of(&out[0]).wrapping_sub(1000);
    let want = with_seq_ack(&syn, Some(1000u32.wrapping_add(d)), None);
    assert_eq!(out[0], translated(&want, MAC12, Some((LIP, lport)), Some((RS12, 8080))));
    assert_checksums(&out[0]);
    let synack = tcp_seg(MAC12, RS12, 8080, LIP, lport, 0x12, 5000, 1001u32.wrapping_add(d), &[2, 4, 5, 0xb4], &[]);
    let out = r.rx(&synack, 1);
    assert_eq!(out.len(), 1);
    assert_checksums(&out[0]);
    assert_eq!(ack_of(&out[0]), 1001, "the client sees its own sequence space");
    (r, lport, out.into_iter().next().unwrap(), d)
}

#[test]
fn fullnat_forward_reply_without_client_address() {
    let (mut r, lport, synack_out, d) = fullnat_handshake(ClientAddrMode::None);
    let synack = tcp_seg(MAC12, RS12, 8080, LIP, lport, 0x12, 5000, 1001, &[2, 4, 5, 0xb4], &[]);
    assert_eq!(synack_out, translated(&synack, GW_MAC, Some((VIP_F, 80)), Some((CLIENT, 40000))));
    let s = r.w.sessions().iter().next().unwrap().1.clone();
    assert_eq!(s.laddr, std::net::SocketAddrV4::new(LIP.into(), lport));
    let data = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x18, 1001, 5001, &[], b"hello");
    let want = with_seq_ack(&data, Some(1001u32.wrapping_add(d)), None);
    assert_eq!(r.rx(&data, 2), vec![translated(&want, MAC12, Some((LIP, lport)), Some((RS12, 8080)))]);
    assert_eq!(state_of(&r), ConnState::TcpEstablished);
    // ARP is answered for the local address.
    let arp_lip = "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb0071c8000000000000000000000000000000000000";
    let out = r.rx(&h(arp_lip), 3);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][28..32], &LIP);
    // Expiry gives the port back.
    r.tick(2000 * S);
    assert_eq!(r.w.sessions().len(), 0);
}

#[test]
fn fullnat_toa_on_first_ack_and_mss_clamp() {
    let (mut r, lport, synack_out, d) = fullnat_handshake(ClientAddrMode::Toa);
    // MSS 1460 (05b4) clamped by the TOA length: 1452 (05ac).
    assert_eq!(&synack_out[54..58], &[2, 4, 0x05, 0xac]);
    let ack = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x10, 1001, 5001, &[], &[]);
    let out = r.rx(&ack, 2);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_checksums(f);
    // TCP header grew by the 8-byte option: fe 08, client port, client address.
    assert_eq!(f[46] >> 4, 7);
    assert_eq!(&f[54..62], &[0xfe, 0x08, 0x9c, 0x40, 198, 51, 100, 10]);
    assert_eq!(u16::from_be_bytes([f[16], f[17]]), 20 + 28);
    assert_eq!(&f[26..38], &[203, 0, 113, 200, 203, 0, 113, 12, (lport >> 8) as u8, lport as u8, 0x1f, 0x90]);
    assert_eq!(seq_of(f), 1001u32.wrapping_add(d));
    assert_eq!(r.w.counters().toa_inserted, 1);
    // Only once.
    let data = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x18, 1001, 5001, &[], b"x");
    let want = with_seq_ack(&data, Some(1001u32.wrapping_add(d)), None);
    assert_eq!(r.rx(&data, 3), vec![translated(&want, MAC12, Some((LIP, lport)), Some((RS12, 8080)))]);
    assert_eq!(r.w.counters().toa_inserted, 1);
}

#[test]
fn fullnat_proxy_v2_first_data_retransmission_and_shifts() {
    let (mut r, lport, synack_out, d) = fullnat_handshake(ClientAddrMode::ProxyV2);
    let plus = |x: u32| x.wrapping_add(d);
    assert_eq!(&synack_out[54..58], &[2, 4, 0x05, 0x98], "1460 − 28");
    // The handshake ACK carries no data: nothing inserted, only rvs's sequence space.
    let ack = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x10, 1001, 5001, &[], &[]);
    let want = with_seq_ack(&ack, Some(plus(1001)), None);
    assert_eq!(r.rx(&ack, 2), vec![translated(&want, MAC12, Some((LIP, lport)), Some((RS12, 8080)))]);
    let first = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x18, 1001, 5001, &[], b"hello");
    let out = r.rx(&first, 3);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_checksums(f);
    assert_eq!(seq_of(f), plus(1001), "the header takes the place of the first payload bytes");
    let mut hdr = vec![0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c];
    hdr.extend_from_slice(&CLIENT);
    hdr.extend_from_slice(&VIP_F);
    hdr.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    assert_eq!(&f[54..82], &hdr[..]);
    assert_eq!(&f[82..], b"hello");
    // Retransmission of the first segment: the header again, same seq.
    let out = r.rx(&first, 4);
    assert_eq!(&out[0][54..82], &hdr[..]);
    assert_eq!(seq_of(&out[0]), plus(1001));
    assert_eq!(r.w.counters().proxy_inserted, 2);
    // Later client data: seq + 28.
    let next = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x18, 1006, 5001, &[], b"more");
    let out = r.rx(&next, 5);
    assert_checksums(&out[0]);
    assert_eq!(seq_of(&out[0]), plus(1006 + 28));
    // The RS acknowledges header + data: ack − 28 towards the client.
    let rs_ack = tcp_seg(MAC12, RS12, 8080, LIP, lport, 0x10, 5001, plus(1001 + 28 + 5 + 4), &[], &[]);
    let out = r.rx(&rs_ack, 6);
    assert_checksums(&out[0]);
    assert_eq!(u32::from_be_bytes(out[0][42..46].try_into().unwrap()), 1001 + 5 + 4);
    assert_eq!(&out[0][26..38], &[203, 0, 113, 101, 198, 51, 100, 10, 0, 80, 0x9c, 0x40]);
}

/// A real server keeps a closed connection's tuple in TIME_WAIT and drops a new SYN on it whose
/// timestamp or sequence number is older (PAWS): successive FULLNAT connections on one
/// `LIP:lport → RIP:rport` must look newer to it, whatever the clients send. rvs gives each
/// connection its own ISN (a 4 µs clock) and TSval (a 1 ms clock) and shifts the rest: here two
/// clients whose ISN and TSval go backwards, one second apart, on the same tuple.
#[test]
fn fullnat_connections_on_a_tuple_look_newer_to_the_real_server() {
    const S: u64 = 1_000_000_000;
    let ts = |val: u32, ecr: u32| {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    };
    let ts_of = |f: &[u8]| -> (u32, u32) {
        let o = &f[54..66];
        assert_eq!(&o[..4], &[1, 1, 8, 10], "timestamps option where the client put it");
        (u32::from_be_bytes(o[4..8].try_into().unwrap()), u32::from_be_bytes(o[8..12].try_into().unwrap()))
    };
    let mut seen = Vec::new();
    for (conn, (isn, tsval, now)) in [(900_000u32, 77_000u32, 10 * S), (1000, 5, 11 * S)].into_iter().enumerate() {
        let mut r = modes_rig(WorkerConfig { secret: 42, ..WorkerConfig::default() }, ClientAddrMode::None);
        let sport = 40000 + conn as u16;
        let syn = tcp_seg(GW_MAC, CLIENT, sport, VIP_F, 80, 0x02, isn, 0, &ts(tsval, 0), &[]);
        let out = r.rx(&syn, now);
        assert_checksums(&out[0]);
        let lport = u16::from_be_bytes([out[0][34], out[0][35]]);
        let (rs_isn, (rs_tsval, _)) = (seq_of(&out[0]), ts_of(&out[0]));
        seen.push((lport, rs_isn, rs_tsval));
        // The real server's SYN-ACK acknowledges rvs's ISN and echoes rvs's TSval: the client
        // gets its own back.
        let synack = tcp_seg(MAC12, RS12, 8080, LIP, lport, 0x12, 7, rs_isn.wrapping_add(1), &ts(123, rs_tsval), &[]);
        let out = r.rx(&synack, now + 1);
        assert_checksums(&out[0]);
        assert_eq!((ack_of(&out[0]), ts_of(&out[0])), (isn + 1, (123, tsval)));
        // Client data: sequence number and TSval move by the same amounts as on the SYN.
        let data = tcp_seg(GW_MAC, CLIENT, sport, VIP_F, 80, 0x18, isn + 1, 8, &ts(tsval + 3, 123), b"GET");
        let out = r.rx(&data, now + 2);
        assert_checksums(&out[0]);
        assert_eq!((seq_of(&out[0]), ts_of(&out[0])), (rs_isn.wrapping_add(1), (rs_tsval.wrapping_add(3), 123)));
    }
    // A fresh worker with the same secret walks the same ports: both connections had the tuple.
    let ((p1, isn1, ts1), (p2, isn2, ts2)) = (seen[0], seen[1]);
    assert_eq!(p1, p2);
    // One second later: 250,000 ISN steps of 4 µs and 1000 TSval ticks of 1 ms.
    assert_eq!(isn2.wrapping_sub(isn1), 250_000);
    assert_eq!(ts2.wrapping_sub(ts1), 1000);
}

#[test]
fn fullnat_without_local_address_or_port() {
    let mut services = modes_services(ClientAddrMode::None);
    services[2].laddrs.clear();
    let mut r = Rig {
        w: Worker::new(WorkerConfig::default(), modes_snapshot(1, &services, 1500, Tunables::default())),
        io: TestIo::default(),
    };
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x02, 1000, 0, &[], &[]);
    assert!(r.rx(&syn, 0).is_empty());
    assert_eq!(r.drops(DropReason::NoLocalAddr), 1);
    assert_eq!(r.w.sessions().len(), 0);
}

#[test]
fn two_cores_fullnat_lport_rule_and_reply_redirect() {
    for core in 0..2 {
        let cfg = WorkerConfig { core, n_cores: 2, ..WorkerConfig::default() };
        let mut r = modes_rig(cfg, ClientAddrMode::None);
        let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x02, 1000, 0, &[], &[]);
        let out = r.rx(&syn, 0);
        let lport = u16::from_be_bytes([out[0][34], out[0][35]]);
        assert_eq!(lport as usize % 2, core);
        assert!(r.io.redirects.is_empty(), "FULLNAT forward stays on the receiving worker");
        // A reply to a port of the other worker is handed to it.
        let other = tcp_seg(MAC12, RS12, 8080, LIP, lport + 1, 0x12, 1, 1, &[], &[]);
        assert!(r.rx(&other, 1).is_empty());
        assert_eq!(r.io.redirects.len(), 1);
        assert_eq!(r.io.redirects[0].0, 1 - core);
        assert_eq!(r.w.counters().redirected_out, 1);
        // Its own reply is handled here.
        let mine = tcp_seg(MAC12, RS12, 8080, LIP, lport, 0x12, 1, 1001, &[], &[]);
        assert_eq!(r.rx(&mine, 2).len(), 1);
    }
}

#[test]
fn two_cores_nat_redirect_to_the_client_owner() {
    let owner = |p: u16| rvs_dataplane::worker::owner_of(Ipv4Addr::from(CLIENT), p, 2);
    let port_elsewhere = (40000..41000).find(|&p| owner(p) == 1).unwrap();
    let mut w0 = modes_rig(WorkerConfig { core: 0, n_cores: 2, ..WorkerConfig::default() }, ClientAddrMode::None);
    let mut w1 = modes_rig(WorkerConfig { core: 1, n_cores: 2, ..WorkerConfig::default() }, ClientAddrMode::None);
    let syn = tcp_seg(GW_MAC, CLIENT, port_elsewhere, VIP, 80, 0x02, 1000, 0, &[], &[]);
    assert!(w0.rx(&syn, 0).is_empty());
    let (core, pkt) = w0.io.redirects.pop().unwrap();
    assert_eq!(core, 1);
    assert_eq!(w0.w.sessions().len(), 0);
    w1.w.process_redirected(pkt, 0, &mut w1.io);
    assert_eq!(w1.take(), vec![translated(&syn, MAC11, None, Some((RS11, 8080)))]);
    assert_eq!(w1.w.counters().redirected_in, 1);
    // The reply lands on worker 0 (RSS): handed to worker 1 as well.
    let synack = tcp_seg(MAC11, RS11, 8080, CLIENT, port_elsewhere, 0x12, 5000, 1001, &[], &[]);
    assert!(w0.rx(&synack, 1).is_empty());
    let (core, pkt) = w0.io.redirects.pop().unwrap();
    assert_eq!(core, 1);
    w1.w.process_redirected(pkt, 1, &mut w1.io);
    assert_eq!(w1.take(), vec![translated(&synack, GW_MAC, Some((VIP, 80)), None)]);
    // On its owner a packet is never redirected; DR/TUN never.
    let port_here = (40000..41000).find(|&p| owner(p) == 0).unwrap();
    let syn0 = tcp_seg(GW_MAC, CLIENT, port_here, VIP, 80, 0x02, 1000, 0, &[], &[]);
    assert_eq!(w0.rx(&syn0, 2).len(), 1);
    let tun = tcp_seg(GW_MAC, CLIENT, port_elsewhere, VIP_T, 80, 0x02, 1000, 0, &[], &[]);
    assert_eq!(w0.rx(&tun, 3).len(), 1);
    assert!(w0.io.redirects.is_empty());
}

#[test]
fn two_cores_persistent_service_is_owned_by_the_client_network() {
    // TUN service 203.0.113.102:80 made persistent with a /24 mask, two real servers.
    let mut services = modes_services(ClientAddrMode::None);
    services[3].persistence = Some(Persistence { timeout_s: 300, netmask: ip("255.255.255.0") });
    services[3].reals.push(real("192.0.2.10:80", FwdMode::Tun));
    let snap = modes_snapshot(1, &services, 1500, Tunables::default());
    let net = Ipv4Addr::new(198, 51, 100, 0);
    let owner = rvs_dataplane::worker::owner_of(net, 0, 2);
    let rig = |core| {
        let mut r = Rig {
            w: Worker::new(WorkerConfig { core, n_cores: 2, ..WorkerConfig::default() }, Arc::clone(&snap)),
            io: TestIo::default(),
        };
        r.resolve_all();
        r
    };
    let (mut own, mut other) = (rig(owner), rig(1 - owner));
    // Whatever the client port, a packet of the client network arriving elsewhere is handed over.
    let mut outer_dst = Vec::new();
    for (i, port) in (40000u16..40006).enumerate() {
        let syn = tcp_seg(GW_MAC, CLIENT, port, VIP_T, 80, 0x02, 1000, 0, &[], &[]);
        let out = if i % 2 == 0 {
            assert!(other.rx(&syn, i as u64).is_empty(), "non-owner must not forward");
            let (core, pkt) = other.io.redirects.pop().expect("redirected");
            assert_eq!(core, owner);
            own.w.process_redirected(pkt, i as u64, &mut own.io);
            own.take()
        } else {
            own.rx(&syn, i as u64)
        };
        assert_eq!(out.len(), 1);
        outer_dst.push(out[0][30..34].to_vec());
    }
    assert!(outer_dst.windows(2).all(|w| w[0] == w[1]), "one template, one real server: {outer_dst:?}");
    assert_eq!(other.w.sessions().len(), 0);
    assert_eq!(own.w.templates(), 1);
    // A client of another network may have another owner; the rule is the masked address.
    let far = Ipv4Addr::new(192, 0, 2, 77);
    let far_owner = rvs_dataplane::worker::owner_of(Ipv4Addr::new(192, 0, 2, 0), 0, 2);
    let syn = tcp_seg(GW_MAC, far.octets(), 40000, VIP_T, 80, 0x02, 1000, 0, &[], &[]);
    let r = if far_owner == owner { &mut other } else { &mut own };
    assert!(r.rx(&syn, 9).is_empty());
    assert_eq!(r.io.redirects.pop().map(|(c, _)| c), Some(far_owner));
}

#[test]
fn learn_neigh_releases_held_packets_and_arp_is_shared() {
    let cfg = WorkerConfig { core: 0, n_cores: 2, ..WorkerConfig::default() };
    let mut r = Rig { w: Worker::new(cfg, snapshot()), io: TestIo::default() };
    assert_eq!(r.rx(&h(SYN_IN), 0), vec![h(OUR_ARP_REQ_RS11)]);
    r.w.learn_neigh(0, ip("203.0.113.11"), MAC11, 1, &mut r.io);
    assert_eq!(r.take(), vec![h(SYN_OUT_RS11)]);
    assert!(r.io.learned.is_empty(), "learned from another worker: not echoed back");
    // An ARP reply heard here is shared.
    assert!(r.rx(&h(RS12_ARP_REPLY), 2).is_empty());
    assert_eq!(r.io.learned, vec![(0, ip("203.0.113.12"), MAC12)]);
}

#[test]
fn tun_encapsulation_and_frag_needed() {
    let mut r = modes_rig(WorkerConfig::default(), ClientAddrMode::None);
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_T, 80, 0x02, 1000, 0, &[], &[]);
    let out = r.rx(&syn, 0);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(&f[0..12], &[GW_MAC, PM].concat()[..], "routed to the RS via the gateway");
    // Outer header: IPIP from the port address to the RIP, DF copied, TTL 64.
    assert_eq!(f[14], 0x45);
    assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, 20 + syn.len() - 14);
    assert_eq!((f[20] & 0x40, f[22], f[23]), (0x40, 64, 4));
    assert_eq!(&f[26..34], &[203, 0, 113, 2, 192, 0, 2, 9]);
    assert_eq!(fold(sum16(&f[14..34])), 0xffff);
    // Inner: the original datagram, TTL − 1.
    let mut inner = syn[14..].to_vec();
    inner[8] -= 1;
    let mut fx = vec![0u8; 14];
    fx.extend_from_slice(&inner);
    fix_ip_csum(&mut fx);
    assert_eq!(&f[34..], &fx[14..]);
    // A port MTU of 60: a 60-byte DF datagram + 20 does not fit → ICMP frag needed to the client.
    let mut r = Rig {
        w: Worker::new(
            WorkerConfig::default(),
            modes_snapshot(1, &modes_services(ClientAddrMode::None), 60, Tunables::default()),
        ),
        io: TestIo::default(),
    };
    r.resolve_all();
    let big = tcp_seg(GW_MAC, CLIENT, 40001, VIP_T, 80, 0x02, 1000, 0, &[0; 20], &[]);
    let out = r.rx(&big, 0);
    assert_eq!(r.drops(DropReason::FragNeeded), 1);
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(&e[0..6], &GW_MAC);
    assert_eq!((e[23], e[34], e[35]), (1, 3, 4));
    assert_eq!(u16::from_be_bytes([e[40], e[41]]), 40, "next-hop MTU = 60 − 20");
    assert_eq!(&e[30..34], &CLIENT);
    assert_eq!(r.w.counters().icmp_errors_sent, 1);
}

/// ICMP error frame from `smac`/`src` to `dst` quoting `quoted` (a frame; IP header + 8 bytes).
fn icmp_err(smac: [u8; 6], src: [u8; 4], dst: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    m.extend_from_slice(&quoted[14..14 + 28]);
    let c = !fold(sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    l3_frame(smac, src, dst, 1, 64, &m)
}

fn assert_icmp_ok(f: &[u8]) {
    assert_eq!(fold(sum16(&f[14..34])), 0xffff);
    assert_eq!(fold(sum16(&f[34..])), 0xffff, "ICMP checksum");
    assert_eq!(fold(sum16(&f[42..62])), 0xffff, "quoted IP checksum");
}

#[test]
fn icmp_errors_translated_for_nat_and_fullnat() {
    let mut r = modes_rig(WorkerConfig::default(), ClientAddrMode::None);
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP, 80, 0x02, 1000, 0, &[], &[]);
    let to_rs = r.rx(&syn, 0).remove(0);
    // The RS says "frag needed" about what we sent it (client → RIP:8080), to the client.
    let err = icmp_err(MAC11, RS11, CLIENT, &to_rs);
    let out = r.rx(&err, 1);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_icmp_ok(f);
    assert_eq!(&f[0..6], &GW_MAC);
    assert_eq!(&f[26..34], &[VIP, CLIENT].concat()[..], "outer source becomes the VIP");
    assert_eq!(&f[54..62], &[CLIENT, VIP].concat()[..], "quoted destination back to the VIP");
    assert_eq!(&f[62..66], &[0x9c, 0x40, 0, 80]);
    // A router on the client side about our reply (VIP:80 → client): to the RS, VIP → RIP.
    let reply = tcp_seg(MAC11, RS11, 8080, CLIENT, 40000, 0x12, 1, 1001, &[], &[]);
    let to_client = r.rx(&reply, 2).remove(0);
    let err = icmp_err(GW_MAC, [198, 51, 100, 1], VIP, &to_client);
    let out = r.rx(&err, 3);
    let f = &out[0];
    assert_icmp_ok(f);
    assert_eq!(&f[0..6], &MAC11);
    assert_eq!(&f[30..34], &RS11);
    assert_eq!(&f[54..58], &RS11);
    assert_eq!(&f[62..64], &8080u16.to_be_bytes());
    // FULLNAT, from the RS side (quoting LIP:lport → RIP): to the client, fully translated.
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x02, 1000, 0, &[], &[]);
    let to_rs = r.rx(&syn, 4).remove(0);
    let err = icmp_err(MAC12, RS12, LIP, &to_rs);
    let out = r.rx(&err, 5);
    let f = &out[0];
    assert_icmp_ok(f);
    assert_eq!(&f[26..34], &[VIP_F, CLIENT].concat()[..]);
    assert_eq!(&f[54..62], &[CLIENT, VIP_F].concat()[..]);
    assert_eq!(&f[62..66], &[0x9c, 0x40, 0, 80]);
    assert_eq!(r.w.counters().icmp_errors_translated, 3);
    // About a flow nobody knows.
    let err = icmp_err(MAC12, RS12, LIP, &tcp_seg(GW_MAC, LIP, 999, RS12, 8080, 0x02, 1, 0, &[], &[]));
    assert!(r.rx(&err, 6).is_empty());
    assert_eq!(r.drops(DropReason::IcmpNoSession), 1);
}

#[test]
fn timeouts_follow_the_snapshot() {
    let mut r = modes_rig(WorkerConfig::default(), ClientAddrMode::None);
    let t = Tunables { timeouts: Timeouts { udp_ns: 7 * S, ..Timeouts::default() }, expire_nodest_conn: false };
    r.w.set_snapshot(modes_snapshot(2, &modes_services(ClientAddrMode::None), 1500, t));
    r.rx(&udp_dgram(GW_MAC, CLIENT, 5000, VIP, 53, b"q", false), 0);
    assert_eq!(r.w.sessions().iter().next().unwrap().1.expires_ns, 7 * S);
    r.tick(8 * S);
    assert_eq!(r.w.sessions().len(), 0);
}

fn dr_pair_snapshot(
    generation: u64,
    reals: &[RealServer],
    pers: Option<Persistence>,
    expire_nodest: bool,
) -> Arc<Snapshot> {
    let port = PortInfo { id: 0, name: "p0".into(), mac: PM, addrs: vec![(ip("203.0.113.2"), 24)], mtu: 1500 };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    let svc = Service { persistence: pers, ..svc_of(Proto::Tcp, "203.0.113.100:80", reals.to_vec()) };
    let t = Tunables { expire_nodest_conn: expire_nodest, ..Tunables::default() };
    Arc::new(Snapshot::build(generation, vec![port], &[default], &[svc], t).unwrap())
}

#[test]
fn persistence_sends_a_client_network_to_one_server() {
    let pers = Persistence { timeout_s: 60, netmask: ip("255.255.255.0") };
    let mut r = Rig::new();
    r.w.set_snapshot(dr_pair_snapshot(2, &[rs(11, 80), rs(12, 80)], Some(pers), false));
    r.resolve_all();
    for p in 0..4u16 {
        let out = r.rx(&tcp_frame(41000 + p, 80, 0x02, 64), 0);
        assert_eq!(&out[0][0..6], &MAC11, "flow {p} sticks to the template's server");
    }
    assert_eq!(r.w.templates(), 1);
    // Template gone after its timeout: rr goes on to the next server.
    r.tick(61 * S);
    let out = r.rx(&tcp_frame(42000, 80, 0x02, 64), 61 * S);
    assert_eq!(&out[0][0..6], &MAC12);
    // The template's server drained (weight 0): a new choice.
    r.w.set_snapshot(dr_pair_snapshot(3, &[rs(11, 80), RealServer { weight: 0, ..rs(12, 80) }], Some(pers), false));
    let out = r.rx(&tcp_frame(42001, 80, 0x02, 64), 62 * S);
    assert_eq!(&out[0][0..6], &MAC11);
}

#[test]
fn weight_zero_drains_and_deleted_server_sessions() {
    for expire_nodest in [false, true] {
        let mut r = Rig::new();
        r.w.set_snapshot(dr_pair_snapshot(2, &[rs(11, 80)], None, expire_nodest));
        r.resolve_all();
        let syn = tcp_frame(43000, 80, 0x02, 64);
        assert_eq!(r.rx(&syn, 0), vec![dr_out(&syn, MAC11)]);
        // Weight 0: the existing flow goes on, a new one is refused.
        r.w.set_snapshot(dr_pair_snapshot(3, &[RealServer { weight: 0, ..rs(11, 80) }], None, expire_nodest));
        let ack = tcp_frame(43000, 80, 0x10, 64);
        assert_eq!(r.rx(&ack, 1), vec![dr_out(&ack, MAC11)]);
        assert!(r.rx(&tcp_frame(43001, 80, 0x02, 64), 1).is_empty());
        assert_eq!(r.drops(DropReason::NoRealServer), 1);
        // Server deleted: kept forwarding unless expire_nodest_conn.
        r.w.set_snapshot(dr_pair_snapshot(4, &[rs(12, 80)], None, expire_nodest));
        let out = r.rx(&ack, 2);
        if expire_nodest {
            assert!(out.is_empty());
            assert_eq!(r.drops(DropReason::NoDest), 1);
            assert_eq!(r.w.sessions().len(), 0);
            assert!(r.counts().is_empty());
        } else {
            assert_eq!(out, vec![dr_out(&ack, MAC11)]);
            assert_eq!(r.w.sessions().len(), 1);
        }
    }
}

#[test]
fn upper_threshold_refuses_new_flows() {
    let mut r = Rig::new();
    let capped = RealServer { u_threshold: 1, ..rs(11, 80) };
    r.w.set_snapshot(dr_pair_snapshot(2, &[capped], None, false));
    r.resolve_all();
    assert_eq!(r.rx(&tcp_frame(44000, 80, 0x02, 64), 0).len(), 1);
    assert!(r.rx(&tcp_frame(44001, 80, 0x02, 64), 0).is_empty());
    assert_eq!(r.drops(DropReason::NoRealServer), 1);
}

#[test]
fn nat_table_full_keeps_existing_flows() {
    let mut r = modes_rig(WorkerConfig { max_sessions: 1, ..WorkerConfig::default() }, ClientAddrMode::None);
    let syn = tcp_seg(GW_MAC, CLIENT, 40000, VIP, 80, 0x02, 1000, 0, &[], &[]);
    assert_eq!(r.rx(&syn, 0).len(), 1);
    let syn2 = tcp_seg(GW_MAC, CLIENT, 40001, VIP, 80, 0x02, 1000, 0, &[], &[]);
    assert!(r.rx(&syn2, 0).is_empty());
    assert_eq!(r.drops(DropReason::SessionTableFull), 1);
    let synack = tcp_seg(MAC11, RS11, 8080, CLIENT, 40000, 0x12, 5000, 1001, &[], &[]);
    assert_eq!(r.rx(&synack, 1).len(), 1);
    // FULLNAT: the port goes back when the insert fails.
    let fsyn = tcp_seg(GW_MAC, CLIENT, 40000, VIP_F, 80, 0x02, 1000, 0, &[], &[]);
    assert!(r.rx(&fsyn, 2).is_empty());
    assert_eq!(r.drops(DropReason::SessionTableFull), 2);
}

/// Established packets use the hop cached in their session, but never past a change: a new MAC
/// of the real server, or its entry going stale, is seen by the very next packet.
#[test]
fn cached_hop_follows_neighbour_changes() {
    let mut r = Rig::new();
    r.resolve_all();
    let syn = tcp_frame(43000, 80, 0x02, 64);
    let ack = tcp_frame(43000, 80, 0x10, 64);
    assert_eq!(r.rx(&syn, 1), vec![dr_out(&syn, MAC11)]);
    assert_eq!(r.rx(&ack, 2), vec![dr_out(&ack, MAC11)], "from the cache");
    assert_eq!(r.rx(&ack, 3), vec![dr_out(&ack, MAC11)]);
    // RS .11 moves to another MAC.
    let moved = [0x02, 0, 0, 0, 0, 0x77];
    let mut arp = h(RS11_ARP_REPLY);
    arp[6..12].copy_from_slice(&moved);
    arp[22..28].copy_from_slice(&moved);
    assert!(r.rx(&arp, 4).is_empty());
    assert_eq!(r.rx(&ack, 5), vec![dr_out(&ack, moved)], "the next packet follows the new MAC");
    // A snapshot change keeps the session and its (re-resolved) hop.
    r.w.set_snapshot(snapshot_with(2, &[rs(11, 80), rs(12, 80)], &[rs(12, 53)]));
    assert_eq!(r.rx(&ack, 6), vec![dr_out(&ack, moved)]);
    // Past the reachable time the entry is stale: the packet waits for ARP, not the old MAC.
    let stale = 4 + WorkerConfig::default().neigh.reachable_ns;
    assert_eq!(r.rx(&ack, stale), vec![h(OUR_ARP_REQ_RS11)]);
    assert_eq!(r.rx(&arp, stale + 1), vec![dr_out(&ack, moved)], "released once resolved");
}

/// `process_burst` (lookups of a burst started together) forwards, drops and counts exactly as
/// `process` one frame at a time: every mode, new and established flows, replies, and frames
/// that are dropped, in bursts shorter and longer than the look-ahead.
#[test]
fn burst_processing_equals_one_by_one() {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let bad = {
        let mut v = h(SYN_IN);
        v[25] ^= 1;
        v
    };
    for sport in 1000..1040u16 {
        for (vip, flags) in [(VIP, 0x02), (VIP_F, 0x02), (VIP_T, 0x02), (VIP, 0x10), (VIP_F, 0x10), (VIP_T, 0x10)] {
            frames.push(tcp_seg(
                GW_MAC,
                CLIENT,
                sport,
                vip,
                80,
                flags,
                1000,
                if flags == 0x10 { 5001 } else { 0 },
                &[],
                &[],
            ));
        }
        frames.push(udp_dgram(GW_MAC, CLIENT, sport, VIP, 53, b"q", true));
        // The NAT real server's reply.
        frames.push(tcp_seg(MAC11, RS11, 8080, CLIENT, sport, 0x12, 5000, 1001, &[], &[]));
        if sport % 7 == 0 {
            frames.push(bad.clone());
            frames.push(h(SYN_IN)[..20].to_vec());
            frames.push(h(ECHO_REQ));
            frames.push(h(ARP_REQ_VIP));
        }
    }
    let mut one = modes_rig(WorkerConfig::default(), ClientAddrMode::Toa);
    let mut expected = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        expected.extend(one.rx(f, i as u64));
    }
    for chunk in [1, 5, 32, 45, 200] {
        // Prefetching from the first session on (by default only from 16k).
        let mut b = modes_rig(WorkerConfig { prefetch_from: 0, ..WorkerConfig::default() }, ClientAddrMode::Toa);
        let mut got = Vec::new();
        for (n, part) in frames.chunks(chunk).enumerate() {
            let mut burst: Vec<VecBuf> = part.iter().map(|f| VecBuf::new(f, 0)).collect();
            // A burst runs at the clock of its first frame (timeouts are far longer than that).
            b.w.process_burst(&mut burst, (n * chunk) as u64, &mut b.io);
            assert!(burst.is_empty(), "the burst is consumed");
            got.extend(b.take());
        }
        assert_eq!(got.len(), expected.len(), "bursts of {chunk}");
        assert!(got == expected, "bursts of {chunk}: different output");
        assert_eq!(b.w.counters(), one.w.counters(), "bursts of {chunk}");
        assert_eq!(b.counts(), one.counts(), "bursts of {chunk}");
    }
    assert!(one.w.counters().sessions_created >= 160 && one.w.counters().total_drops() >= 12, "{:?}", one.w.counters());
}

/// A new session starts with the hop the previous new session of its real server found, but
/// only while the neighbour table says nothing changed: a real server that moves to another MAC
/// gets its next new flows at the new MAC.
#[test]
fn new_flows_follow_a_real_server_to_its_new_mac() {
    let mut r = Rig::new();
    r.resolve_all();
    let to = |out: &[Vec<u8>]| -> Vec<[u8; 6]> { out.iter().map(|f| f[0..6].try_into().unwrap()).collect() };
    // rr: flows alternate between .11 and .12.
    assert_eq!(to(&r.rx(&tcp_frame(1000, 80, 0x02, 64), 1)), vec![MAC11]);
    assert_eq!(to(&r.rx(&tcp_frame(1001, 80, 0x02, 64), 2)), vec![MAC12]);
    assert_eq!(to(&r.rx(&tcp_frame(1002, 80, 0x02, 64), 3)), vec![MAC11]);
    assert_eq!(to(&r.rx(&tcp_frame(1003, 80, 0x02, 64), 4)), vec![MAC12]);
    // 203.0.113.11 answers from another MAC (a failover of its NIC).
    let mut moved = h(RS11_ARP_REPLY);
    moved[6..12].copy_from_slice(&MAC13);
    moved[22..28].copy_from_slice(&MAC13);
    assert!(r.rx(&moved, 5).is_empty());
    assert_eq!(to(&r.rx(&tcp_frame(1004, 80, 0x02, 64), 6)), vec![MAC13], "new flow to .11");
    assert_eq!(to(&r.rx(&tcp_frame(1000, 80, 0x10, 64), 7)), vec![MAC13], "established flow to .11");
    assert_eq!(to(&r.rx(&tcp_frame(1005, 80, 0x02, 64), 8)), vec![MAC12]);
}
