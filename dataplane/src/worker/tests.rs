use super::sched::sched_id;
use super::*;
use crate::buf::VecBuf;
use crate::snapshot::PortInfo;
use crate::snapshot::StaticRoute;
use crate::wire::hex;
use rvs_model::{FwdMode, Proto, SchedKind};
use rvs_model::{RealServer, Service};
use std::net::SocketAddrV4;

/// Verdicts are returned through several inlined layers per packet: 8 bytes keep them in a
/// register instead of stack copies.
#[test]
fn verdict_is_one_word() {
    assert_eq!(std::mem::size_of::<Verdict>(), 8);
}

/// Seeds for mutation: frames that reach every stage of the pipeline (see tests/pipeline.rs
/// for what each does).
const SEEDS: &[&str] = &[
    // ARP request for the local address, for the VIP; ARP replies from the gateway and RS .11.
    "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007102000000000000000000000000000000000000",
    "ffffffffffff0200000000fe080600010800060400010200000000fecb007101000000000000cb007164000000000000000000000000000000000000",
    "0200000000010200000000fe080600010800060400020200000000fecb007101020000000001cb007102000000000000000000000000000000000000",
    "02000000000102000000000b0806000108000604000202000000000bcb00710b020000000001cb007102000000000000000000000000000000000000",
    // ICMP echo request to 203.0.113.2.
    "0200000000010200000000fe08004500003c333340003f01a24dc633640acb0071020800f3c812340001101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
    // TCP SYN to the VIP, and the same with TTL 1.
    "0200000000010200000000fe08004500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307",
    "0200000000010200000000fe08004500003c1c4640000106f6d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307",
    // UDP to VIP:53, padded to 60 bytes.
    "0200000000010200000000fe080045000026222240004011b202c633640acb007164cf0800350012a07668656c6c6f207276730a0000000000000000",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct VecIo {
    sent: u64,
    fail_alloc_every: u64,
    allocs: u64,
}
impl Io<VecBuf> for VecIo {
    fn alloc(&mut self) -> Option<VecBuf> {
        self.allocs += 1;
        if self.fail_alloc_every != 0 && self.allocs.checked_rem(self.fail_alloc_every) == Some(0) {
            return None;
        }
        Some(VecBuf::empty())
    }
    fn tx(&mut self, pkt: VecBuf) {
        assert!(pkt.len() >= ethernet::HEADER_LEN, "a transmitted frame has an Ethernet header");
        self.sent += 1;
    }
    fn redirect(&mut self, _core: usize, _pkt: VecBuf) {
        panic!("one core never redirects");
    }
    fn neigh_learned(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6]) {
        panic!("one core never shares neighbours");
    }
}

fn snapshot() -> Arc<Snapshot> {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let port =
        PortInfo { id: 0, name: "p0".into(), mac: [2, 0, 0, 0, 0, 1], addrs: vec![(ip("203.0.113.2"), 24)], mtu: 1500 };
    let rs = |last: u8, p: u16| RealServer {
        addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, last).into(), p),
        fwd: FwdMode::Dr,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    };
    let svc = |proto, port: u16| Service {
        key: ServiceKey { proto, vip: SocketAddr::new(ip("203.0.113.100").into(), port) },
        sched: SchedKind::Rr,
        persistence: None,
        laddrs: Vec::new(),
        client_addr: Default::default(),
        reals: vec![rs(11, port), rs(12, port)],
    };
    let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
    // UDP through NAT, so mutated frames reach the rewrite path too.
    let mut udp = svc(Proto::Udp, 53);
    for r in &mut udp.reals {
        r.fwd = FwdMode::Nat;
    }
    Arc::new(Snapshot::build(1, vec![port], &[default], &[svc(Proto::Tcp, 80), udp], Default::default()).unwrap())
}

/// One mutated frame: truncated, bytes flipped or overwritten (mostly in the headers),
/// sometimes with the IP checksum fixed up so the mutation reaches layer 4, or pure noise.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(20) == 0 {
        let n = rng.below(80);
        return (0..n).map(|_| rng.next() as u8).collect();
    }
    let mut f = seeds[rng.below(seeds.len())].clone();
    for _ in 0..rng.below(4) {
        let at = if rng.below(4) == 0 { rng.below(f.len()) } else { rng.below(f.len().min(60)) };
        match rng.below(3) {
            0 => f[at] ^= 1 << rng.below(8),
            1 => f[at] = rng.next() as u8,
            _ => f[at] = [0, 1, 0xff, 0x40, 0x45, 0x4f, 0x50][rng.below(7)],
        }
    }
    if rng.below(2) == 0 && f.len() >= 34 {
        if let Ok(mut ip) = ipv4::Packet::new_checked(&mut f[14..]) {
            ip.fill_checksum();
        }
    }
    if rng.below(6) == 0 {
        f.truncate(rng.below(f.len() + 1));
    }
    if rng.below(8) == 0 {
        for _ in 0..rng.below(30) {
            f.push(rng.next() as u8);
        }
    }
    f
}

#[test]
fn random_and_mutated_frames_never_panic_and_are_all_accounted_for() {
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cfg = WorkerConfig {
        max_sessions: 64,
        neigh: NeighConfig { pending_total: 32, pending_per_entry: 4, ..NeighConfig::default() },
        ..WorkerConfig::default()
    };
    let mut w: Worker<VecBuf> = Worker::new(cfg, snapshot());
    let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
    let mut now = 0u64;
    for i in 0..20_000u32 {
        let f = mutate(&mut rng, &seeds);
        let port = if rng.below(50) == 0 { 1 } else { 0 };
        w.process(VecBuf::new(&f, port), now, &mut io);
        now += rng.below(5_000_000) as u64;
        if i % 64 == 0 {
            w.tick(now, &mut io);
        }
        if i % 5000 == 4999 {
            // Let sessions and neighbours time out now and then.
            now += 1000 * 1_000_000_000;
            w.tick(now, &mut io);
        }
        let c = w.counters();
        assert_eq!(io.sent, c.tx_pkts);
        let held = w.st.neigh.pending_len() as u64;
        let forwarded_or_answered = c.tx_pkts - c.arp_requests;
        assert_eq!(
            c.rx_pkts + c.icmp_errors_sent,
            forwarded_or_answered + held + c.total_drops() + c.arp_rx_consumed,
            "packet {i} ({f:02x?}) unaccounted: {c:?}, held {held}"
        );
        let sessions: u32 = w.conn_counts().map(|(_, _, (a, i))| a + i).sum();
        assert_eq!(sessions as usize, w.sessions().len(), "conn counts follow the table");
    }
    let c = w.counters();
    // The mutations must have reached the interesting paths, or this test proves little.
    for r in [
        DropReason::MalformedEth,
        DropReason::MalformedArp,
        DropReason::MalformedIpv4,
        DropReason::BadIpv4Checksum,
        DropReason::MalformedL4,
        DropReason::NoService,
        DropReason::OtherMac,
        DropReason::UnknownDst,
        DropReason::TtlExceeded,
    ] {
        assert!(c.drops_of(r) > 0, "{r:?} never hit: {c:?}");
    }
    assert!(c.fwd_pkts > 0 && c.arp_replies > 0 && c.icmp_echo_replies > 0 && c.sessions_created > 0, "{c:?}");
}

#[test]
fn failing_allocations_never_panic() {
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
    let mut rng = Rng(42);
    let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
    let mut io = VecIo { sent: 0, fail_alloc_every: 2, allocs: 0 };
    for i in 0..3000u64 {
        let f = mutate(&mut rng, &seeds);
        w.process(VecBuf::with_room(&f, 0, 0, 0), i * 10_000_000, &mut io);
        if i % 16 == 0 {
            w.tick(i * 10_000_000, &mut io);
        }
    }
    assert!(w.counters().drops_of(DropReason::NoBuffer) > 0);
}

/// A buffer whose NIC claims (or not) to have verified the IPv4 header checksum.
struct OffloadBuf(VecBuf, bool);
impl PacketBuf for OffloadBuf {
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        self.0.prepend(n)
    }
    fn adj(&mut self, n: usize) -> bool {
        self.0.adj(n)
    }
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        self.0.append(n)
    }
    fn trim(&mut self, n: usize) -> bool {
        self.0.trim(n)
    }
    fn port(&self) -> u16 {
        self.0.port()
    }
    fn set_port(&mut self, port: u16) {
        self.0.set_port(port)
    }
    fn l3_csum_verified(&self) -> bool {
        self.1
    }
}
#[derive(Default)]
struct OffloadIo(Vec<OffloadBuf>);
impl Io<OffloadBuf> for OffloadIo {
    fn alloc(&mut self) -> Option<OffloadBuf> {
        Some(OffloadBuf(VecBuf::empty(), false))
    }
    fn tx(&mut self, pkt: OffloadBuf) {
        self.0.push(pkt);
    }
    fn redirect(&mut self, _core: usize, _pkt: OffloadBuf) {
        panic!("one core never redirects");
    }
    fn neigh_learned(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6]) {}
}

/// The software IPv4 header checksum check is skipped only when the buffer says the NIC did
/// it: a corrupted checksum is then trusted (as the NIC's verdict is), otherwise dropped.
#[test]
fn nic_verified_ip_checksum_skips_software_check() {
    let mut w: Worker<OffloadBuf> = Worker::new(WorkerConfig::default(), snapshot());
    let mut io = OffloadIo::default();
    // UDP to VIP:53 (SEEDS' last frame) with its IPv4 header checksum broken.
    let mut f = hex(SEEDS[SEEDS.len() - 1]);
    f[ETH + 10] ^= 0xff;
    w.process(OffloadBuf(VecBuf::new(&f, 0), false), 0, &mut io);
    assert_eq!(w.counters().drops_of(DropReason::BadIpv4Checksum), 1);
    assert_eq!(w.counters().sessions_created, 0);
    w.process(OffloadBuf(VecBuf::new(&f, 0), true), 1, &mut io);
    assert_eq!(w.counters().drops_of(DropReason::BadIpv4Checksum), 1, "not checked again");
    assert_eq!(w.counters().sessions_created, 1, "went on to the service");
}

#[test]
fn snapshot_change_keeps_or_updates_scheduler_state() {
    let first = snapshot();
    let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&first));
    assert_eq!(w.st.sched.len(), 2);
    // A rebuild sharing the unchanged services (`build_from`) keeps their `Arc`s; a changed
    // service gets a new definition and its state follows it.
    let mut svcs: Vec<Service> = first.services.values().map(|s| (**s).clone()).collect();
    svcs.sort_by_key(|s| s.key);
    svcs[0].reals[0].weight = 5;
    let next =
        Arc::new(Snapshot::build_from(Some(&first), 2, first.ports.clone(), &[], &svcs, Default::default()).unwrap());
    let (changed, same) = (svcs[0].key, svcs[1].key);
    let v4 = |k: ServiceKey| (k.proto, k.vip.ip().to_string().parse::<Ipv4Addr>().unwrap(), k.vip.port());
    assert!(Arc::ptr_eq(&first.services[&v4(same)], &next.services[&v4(same)]), "unchanged service shared");
    assert!(!Arc::ptr_eq(&first.services[&v4(changed)], &next.services[&v4(changed)]));
    w.set_snapshot(Arc::clone(&next));
    assert_eq!(w.st.sched.len(), 2);
    assert!(Arc::ptr_eq(&w.st.sched[&sched_id(&changed)].def, &next.services[&v4(changed)]));
    assert_eq!(w.st.sched[&sched_id(&changed)].def.reals[0].weight, 5);
    // An equal definition from an unrelated build is adopted without a rebuild.
    let again = Arc::new(Snapshot::build(3, first.ports.clone(), &[], &svcs, Default::default()).unwrap());
    w.set_snapshot(Arc::clone(&again));
    assert!(Arc::ptr_eq(&w.st.sched[&sched_id(&same)].def, &again.services[&v4(same)]));
    // A service removed from a snapshot of the same size minus one is dropped.
    let one = Arc::new(Snapshot::build(4, first.ports.clone(), &[], &svcs[..1], Default::default()).unwrap());
    w.set_snapshot(one);
    assert_eq!(w.st.sched.len(), 1);
    assert!(w.st.sched.contains_key(&sched_id(&changed)));
    w.set_snapshot(Arc::new(Snapshot::empty()));
    assert!(w.st.sched.is_empty(), "services gone with the snapshot");
    assert_eq!(w.generation(), 0);
}

/// Services on ports 1..=n of one VIP, schedulers cycling through rr, wrr, mh, lc.
fn sched_services(n: u16) -> Vec<Service> {
    let kinds = [SchedKind::Rr, SchedKind::Wrr, SchedKind::Mh, SchedKind::Lc];
    (1..=n)
        .map(|p| {
            let vip = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 100).into(), p);
            let mut s = Service::new(ServiceKey { proto: Proto::Udp, vip }, kinds[usize::from(p) % kinds.len()]);
            s.reals = (11..15u8)
                .map(|i| RealServer {
                    addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, i).into(), p),
                    fwd: FwdMode::Dr,
                    weight: u32::from(i - 10),
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect();
            s
        })
        .collect()
}

fn build_next(prev: &Snapshot, gen: u64, svcs: &[Service]) -> Arc<Snapshot> {
    Arc::new(Snapshot::build_from(Some(prev), gen, prev.ports.clone(), &[], svcs, Default::default()).unwrap())
}

/// The picks of `a` and `b` for the same 24 new flows of every service in `svcs` (whether or
/// not the workers know it), which must agree; returns them.
fn same_picks(a: &mut Worker<VecBuf>, b: &mut Worker<VecBuf>, svcs: &[Service]) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for svc in svcs {
        for i in 0..24u8 {
            let client = Ipv4Addr::new(198, 51, 100, i);
            let vip = Ipv4Addr::new(203, 0, 113, 100);
            let (pa, pb) = (
                a.st.pick(svc, client, 40_000 + u16::from(i), vip),
                b.st.pick(svc, client, 40_000 + u16::from(i), vip),
            );
            assert_eq!(pa, pb, "service {} flow {i}", svc.key);
            out.push(pa);
        }
    }
    let keys = |w: &Worker<VecBuf>| {
        let mut k: Vec<ServiceKey> = w.st.sched.values().map(|s| s.def.key).collect();
        k.sort();
        k
    };
    assert_eq!(keys(a), keys(b));
    out
}

#[test]
fn change_list_switch_equals_a_fresh_worker_and_a_full_walk() {
    let first = snapshot();
    let svcs = sched_services(8);
    let g = build_next(&first, 2, &svcs);
    // g+1: port 2 (mh) gets new weights, port 3 (lc) loses a real server, port 4 changes
    // scheduler (rr to wrr), port 5 is removed, port 9 is added.
    let mut next: Vec<Service> = svcs.iter().filter(|s| s.key.vip.port() != 5).cloned().collect();
    next[1].reals[0].weight = 9;
    next[2].reals.pop();
    next[3].sched = SchedKind::Wrr;
    next.extend(sched_services(9).pop());
    let g1 = build_next(&g, 3, &next);
    let mut listed: Vec<u16> = g1.changes.as_ref().unwrap().keys.iter().map(|k| k.vip.port()).collect();
    listed.sort_unstable();
    assert_eq!(listed, vec![2, 3, 4, 5, 9]);

    let mut a: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
    a.set_snapshot(Arc::clone(&g1));
    // The same switch by the full walk (the change list taken away).
    let mut walk_snap = (*g1).clone();
    walk_snap.changes = None;
    let mut c: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
    c.set_snapshot(Arc::new(walk_snap));
    let mut fresh: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g1));
    assert_eq!(a.generation(), 3);
    assert_eq!(a.st.sched.len(), 8);
    assert!(!a.st.sched.contains_key(&sched_id(&svcs[4].key)), "removed service has no scheduler");
    // Every service of either generation, including the removed one (no pick) and the added.
    let mut all = svcs.clone();
    all.extend(sched_services(9).pop());
    let defs: Vec<Service> =
        all.iter().map(|s| next.iter().find(|n| n.key == s.key).cloned().unwrap_or_else(|| s.clone())).collect();
    let picks = same_picks(&mut a, &mut fresh, &defs);
    assert_eq!(&picks[4 * 24..5 * 24], &[None; 24][..], "port 5 is gone");
    assert!(picks[8 * 24..].iter().all(|p| p.is_some()), "port 9 is scheduled");
    for s in &defs {
        if let Some(ss) = a.st.sched.get(&sched_id(&s.key)) {
            assert_eq!(*ss.def, *s);
            assert_eq!(ss.kind, s.sched);
        }
    }
    let mut a2: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
    a2.set_snapshot(Arc::clone(&g1));
    same_picks(&mut a2, &mut c, &defs);
    // A new flow to the removed service's VIP:port is dropped as NoService.
    let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
    let frame = udp_frame("198.51.100.7:4000".parse().unwrap(), "203.0.113.100:5".parse().unwrap(), b"x");
    a.process(VecBuf::new(&frame, 0), 1_000, &mut io);
    assert_eq!(a.counters().drops_of(DropReason::NoService), 1);
}

#[test]
fn skipped_generation_falls_back_to_the_full_walk() {
    let first = snapshot();
    let svcs = sched_services(8);
    let g = build_next(&first, 2, &svcs);
    // g+1 removes port 5; g+2 (built from g+1) only edits port 2: its list does not say
    // port 5 is gone, so a worker still on g must not use it.
    let g1_svcs: Vec<Service> = svcs.iter().filter(|s| s.key.vip.port() != 5).cloned().collect();
    let g1 = build_next(&g, 3, &g1_svcs);
    let mut g2_svcs = g1_svcs.clone();
    g2_svcs[1].reals[0].weight = 9;
    let g2 = build_next(&g1, 4, &g2_svcs);
    assert_eq!(g2.changes.as_ref().map(|c| c.keys.len()), Some(1));
    let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g));
    w.set_snapshot(Arc::clone(&g2));
    let mut fresh: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g2));
    assert_eq!(w.generation(), 4);
    assert!(!w.st.sched.contains_key(&sched_id(&svcs[4].key)), "removed in the skipped generation");
    let picks = same_picks(&mut w, &mut fresh, &svcs);
    assert_eq!(&picks[4 * 24..5 * 24], &[None; 24][..]);
    assert_eq!(*w.st.sched[&sched_id(&svcs[1].key)].def, g2_svcs[1]);
    // A worker started on a snapshot never takes a list relative to another one, even of
    // the same generation.
    let other = Arc::new(Snapshot::build(3, first.ports.clone(), &[], &svcs, Default::default()).unwrap());
    let mut x: Worker<VecBuf> = Worker::new(WorkerConfig::default(), other);
    x.set_snapshot(Arc::clone(&g2));
    let mut fresh2: Worker<VecBuf> = Worker::new(WorkerConfig::default(), Arc::clone(&g2));
    same_picks(&mut x, &mut fresh2, &svcs);
}

/// A UDP datagram in an Ethernet frame to our port MAC, IP checksum filled, UDP checksum 0.
fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = hex("0200000000010200000000fe0800");
    let total = 20 + 8 + payload.len();
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    ipv4::Packet::new_unchecked(&mut f[ETH..]).fill_checksum();
    f
}

fn stats_of(w: &Worker<VecBuf>, svc: &str, proto: Proto, rs: SocketAddr) -> RsStats {
    let key = ServiceKey { proto, vip: svc.parse().unwrap() };
    w.rs_stats().filter(|(k, _)| **k == (key, rs)).map(|(_, v)| *v).next().unwrap_or_default()
}

#[test]
fn per_real_server_stats_count_both_directions_of_nat_and_client_side_of_dr() {
    let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
    let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
    let client: SocketAddrV4 = "198.51.100.10:40000".parse().unwrap();
    let vip53: SocketAddrV4 = "203.0.113.100:53".parse().unwrap();
    // NAT (UDP 53): two datagrams in (33 and 35 bytes of IP), one reply out.
    w.process(VecBuf::new(&udp_frame(client, vip53, b"hello"), 0), 1_000, &mut io);
    w.process(VecBuf::new(&udp_frame(client, vip53, b"hello!!"), 0), 2_000, &mut io);
    let (views, n) = w.dump_sessions(&SessionFilter::default(), 10, 2_000);
    assert_eq!(n, 1);
    let rs = views[0].rip;
    assert_eq!((views[0].fwd, views[0].client, views[0].vip), (FwdMode::Nat, client, vip53));
    w.process(VecBuf::new(&udp_frame(rs, client, b"answer-long"), 0), 3_000, &mut io);
    let st = stats_of(&w, "203.0.113.100:53", Proto::Udp, SocketAddr::V4(rs));
    assert_eq!(st, RsStats { conns: 1, inpkts: 2, outpkts: 1, inbytes: 33 + 35, outbytes: 28 + 11 });
    assert_eq!(w.counters().fwd_pkts, 3);

    // DR (TCP 80): the SYN makes a session on .11 and counts in; no out direction exists.
    w.process(VecBuf::new(&hex(SEEDS[5]), 0), 4_000, &mut io);
    let dr = stats_of(&w, "203.0.113.100:80", Proto::Tcp, "203.0.113.11:80".parse().unwrap());
    assert_eq!(dr, RsStats { conns: 1, inpkts: 1, outpkts: 0, inbytes: 60, outbytes: 0 });
    // A dropped packet (TTL 1 on a new flow) counts nowhere.
    w.process(VecBuf::new(&hex(SEEDS[6]), 0), 5_000, &mut io);
    assert_eq!(stats_of(&w, "203.0.113.100:80", Proto::Tcp, "203.0.113.12:80".parse().unwrap()), RsStats::default());
    // Expiry does not reset the figures (cumulative, as IPVS's).
    w.tick(u64::MAX / 2, &mut io);
    assert_eq!(w.sessions().len(), 0);
    assert_eq!(stats_of(&w, "203.0.113.100:53", Proto::Udp, SocketAddr::V4(rs)).inpkts, 2);
    // The session dump filters by service.
    w.process(VecBuf::new(&udp_frame(client, vip53, b"x"), 0), u64::MAX / 2 + 1, &mut io);
    let f = SessionFilter {
        service: Some(ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }),
        real: None,
    };
    assert_eq!(w.dump_sessions(&f, 10, 0).1, 0);
    assert_eq!(w.dump_sessions(&SessionFilter::default(), 10, 0).1, 1);
}

#[test]
fn neighbour_flush_all_or_one_port() {
    let mut w: Worker<VecBuf> = Worker::new(WorkerConfig::default(), snapshot());
    let mut io = VecIo { sent: 0, fail_alloc_every: 0, allocs: 0 };
    // ARP replies from the gateway .1 and the RS .11 (both on port 0), after a SYN asked for .11.
    w.process(VecBuf::new(&hex(SEEDS[5]), 0), 1_000, &mut io);
    w.process(VecBuf::new(&hex(SEEDS[3]), 0), 2_000, &mut io);
    assert_eq!(w.neigh_entries().iter().filter(|e| e.mac.is_some()).count(), 1);
    assert_eq!(w.flush_neigh(Some(7), 3_000), 0, "nothing on port 7");
    assert_eq!(w.neigh_entries().len(), 1, "other ports' entries are kept");
    assert_eq!(w.flush_neigh(Some(0), 3_000), 1);
    assert!(w.neigh_entries().is_empty());
    // An unresolved entry's held packet is dropped and counted.
    w.process(VecBuf::new(&hex(SEEDS[5]), 0), 4_000_000_000_000, &mut io);
    assert_eq!(w.neigh_entries().len(), 1);
    let before = w.counters().drops_of(DropReason::NeighUnreachable);
    assert_eq!(w.flush_neigh(None, 4_000_000_000_001), 1);
    assert_eq!(w.counters().drops_of(DropReason::NeighUnreachable), before + 1);
}
