//! rvs-bench: drives rvsd's worker pipeline (`Worker<rvs::pkt::Pkt>` over DPDK mbufs) with
//! traffic built in advance and reports Mpps, ns and cycles per packet, connections per second,
//! bytes per session (counted by the global allocator), per-burst latency, each next to a bare
//! MAC-swap forwarder over the same mbufs and port. `--short` only checks correctness.
//! See docs/performance.md for what the loop includes.
#![forbid(unsafe_code)]

use arc_swap::ArcSwap;
use clap::{Parser, ValueEnum};
use dpdk_sys::{Eal, Mbuf, Mempool, PortConf};
use hdrhistogram::Histogram;
use rvs::pkt::Pkt;
use rvs_benches::{build, client_of, net, parse_count, proto_of, tuple, verify, Frame, Rng, ACK, FRAME_LEN, SYN, TCP};
use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_config::services::ServiceTable;
use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::worker::{Io, Worker, WorkerConfig};
use rvs_dataplane::Snapshot;
use serde_json::json;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts every heap allocation, so bytes per session are measured, not computed.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BURST: usize = 32;
const TICK_NS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Dr,
    Nat,
    Fullnat,
    Tun,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    Established,
    New,
    Mix,
    Churn,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Huge {
    /// Hugepages when /dev/hugepages is mounted with free pages, else --no-huge.
    Auto,
    On,
    Off,
}

#[derive(Parser, Debug)]
#[command(name = "rvs-bench", about = "Benchmark rvsd's worker pipeline over DPDK mbufs")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "all")]
    workload: WorkloadArg,
    /// Sessions (flows) per case, with k/M suffixes.
    #[arg(long, default_value = "1k", value_parser = parse_count)]
    sessions: usize,
    /// Measured seconds per case (the bare forwarder gets half).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds-long run that only asserts correctness (no figures are judged).
    #[arg(long)]
    short: bool,
    /// Full run: every mode and workload at 1k and 1M sessions, established at 10M when it fits
    /// in memory, and the control-plane benchmark.
    #[arg(long)]
    all: bool,
    /// Also run the control-plane benchmark (always with --all).
    #[arg(long)]
    control: bool,
    /// Services for the control-plane benchmark.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, value_enum, default_value = "auto")]
    huge: Huge,
    /// Skip cases whose estimated memory exceeds this many GiB.
    #[arg(long, default_value_t = 16.0)]
    max_gib: f64,
    #[arg(long)]
    json: Option<String>,
    #[arg(long)]
    markdown: Option<String>,
    /// Hand-written profile notes (callgrind evidence) copied into the markdown.
    #[arg(long, default_value = "benches/PROFILE.md")]
    profile_notes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Established,
    New,
    Mix,
    Churn,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Established => "established",
            Workload::New => "new",
            Workload::Mix => "mix",
            Workload::Churn => "churn",
        }
    }
}

fn mode_name(m: FwdMode) -> &'static str {
    rvs_config::services::fwd_label(m).0
}

/// The worker's environment: the bench's mempool, its tx buffer, and a count of anything a
/// single worker must never do (redirect, share a neighbour).
struct BenchIo {
    pool: Arc<Mempool>,
    tx: Vec<Mbuf>,
    unexpected: u64,
}

impl Io<Pkt> for BenchIo {
    #[inline]
    fn alloc(&mut self) -> Option<Pkt> {
        self.pool.alloc().map(Pkt)
    }
    #[inline]
    fn tx(&mut self, pkt: Pkt) {
        self.tx.push(pkt.0);
    }
    fn redirect(&mut self, _core: usize, pkt: Pkt) {
        self.unexpected += 1;
        drop(pkt);
    }
    fn neigh_learned(&mut self, _port: u16, _ip: Ipv4Addr, _mac: [u8; 6]) {
        self.unexpected += 1;
    }
}

/// What one run of bursts measured.
struct Acc {
    pkts: u64,
    out: u64,
    cycles_total: u64,
    cycles_pipeline: u64,
    verified: u64,
    tx_full: u64,
    errors: Vec<String>,
    hist: Histogram<u64>,
    allocs: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            pkts: 0,
            out: 0,
            cycles_total: 0,
            cycles_pipeline: 0,
            verified: 0,
            tx_full: 0,
            errors: Vec::new(),
            hist: Histogram::new_with_bounds(1, 60 * S, 3).expect("valid histogram bounds"),
            allocs: 0,
        }
    }
    fn error(&mut self, e: String) {
        if self.errors.len() < 8 {
            self.errors.push(e);
        }
    }
}

/// Figures of a measured run.
#[derive(Debug, Clone, Default)]
struct Figures {
    pkts: u64,
    secs: f64,
    mpps: f64,
    ns_pkt: f64,
    cycles_pkt: f64,
    pipe_ns_pkt: f64,
    pipe_cycles_pkt: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// Heap allocations per packet inside the measured loop (should be 0).
    allocs_pkt: f64,
}

impl Figures {
    fn of(acc: &Acc, hz: u64) -> Figures {
        let secs = acc.cycles_total as f64 / hz as f64;
        let p = acc.pkts.max(1) as f64;
        Figures {
            pkts: acc.pkts,
            secs,
            mpps: acc.pkts as f64 / secs.max(1e-12) / 1e6,
            ns_pkt: secs * 1e9 / p,
            cycles_pkt: acc.cycles_total as f64 / p,
            pipe_ns_pkt: acc.cycles_pipeline as f64 / hz as f64 * 1e9 / p,
            pipe_cycles_pkt: acc.cycles_pipeline as f64 / p,
            p50: acc.hist.value_at_quantile(0.5),
            p99: acc.hist.value_at_quantile(0.99),
            p999: acc.hist.value_at_quantile(0.999),
            max: acc.hist.max(),
            allocs_pkt: acc.allocs as f64 / p,
        }
    }
    fn json(&self) -> serde_json::Value {
        json!({"pkts": self.pkts, "secs": self.secs, "mpps": self.mpps, "ns_per_pkt": self.ns_pkt,
            "cycles_per_pkt": self.cycles_pkt, "pipeline_ns_per_pkt": self.pipe_ns_pkt,
            "pipeline_cycles_per_pkt": self.pipe_cycles_pkt,
            "burst_ns": {"p50": self.p50, "p99": self.p99, "p99_9": self.p999, "max": self.max},
            "heap_allocs_per_pkt": self.allocs_pkt})
    }
}

/// Everything set up once: EAL, one mempool, the net_ring port.
struct Bench {
    pool: Arc<Mempool>,
    port: u16,
    hz: u64,
    tsc0: u64,
    eal_args: Vec<String>,
}

/// Drives bursts through a forwarder: the pipeline (`Some(worker)`) or the bare MAC swap.
struct Driver<'a> {
    b: &'a Bench,
    rx: Vec<Mbuf>,
    /// The received burst as the worker takes it (rvsd's loop does the same).
    pkts: Vec<Pkt>,
    out: Vec<Mbuf>,
    io: BenchIo,
    /// Added to the clock: jumps time forward to expire sessions between passes.
    offset_ns: u64,
    last_tick_ns: u64,
    verify_every: u64,
    mode: FwdMode,
}

impl<'a> Driver<'a> {
    fn new(b: &'a Bench, mode: FwdMode, verify_every: u64) -> Driver<'a> {
        Driver {
            b,
            rx: Vec::with_capacity(BURST),
            pkts: Vec::with_capacity(BURST),
            out: Vec::with_capacity(dpdk_sys::MAX_BURST),
            io: BenchIo { pool: Arc::clone(&b.pool), tx: Vec::with_capacity(BURST * 4), unexpected: 0 },
            offset_ns: 0,
            last_tick_ns: 0,
            verify_every: verify_every.max(1),
            mode,
        }
    }

    fn now_ns(&self, tsc: u64) -> u64 {
        ((tsc - self.b.tsc0) as u128 * u128::from(S) / u128::from(self.b.hz)) as u64 + self.offset_ns
    }

    /// The worker's clock now.
    fn now(&self) -> u64 {
        self.now_ns(dpdk_sys::tsc())
    }

    /// One burst: fresh mbufs with copies of the frames (the stand-in for a NIC's rx), the
    /// forwarder, tx on the net_ring port and draining what it looped back (the stand-in for tx
    /// completion), the worker's timers every millisecond as rvsd runs them.
    fn burst(
        &mut self,
        mut worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        idxs: &[u32],
        acc: &mut Acc,
        capture: Option<&mut Vec<(u8, SocketAddrV4, SocketAddrV4)>>,
    ) {
        let allocs0 = GLOBAL.stats().allocations;
        let t0 = dpdk_sys::tsc();
        if !self.b.pool.alloc_bulk(&mut self.rx, idxs.len()) {
            acc.error("mempool exhausted".into());
            return;
        }
        for (m, &i) in self.rx.iter_mut().zip(idxs) {
            if let Some(d) = m.append(FRAME_LEN) {
                d.copy_from_slice(&frames[i as usize]);
            }
            m.set_port(self.b.port);
        }
        let t1 = dpdk_sys::tsc();
        let now = self.now_ns(t1);
        match worker.as_deref_mut() {
            Some(w) => {
                self.pkts.extend(self.rx.drain(..).map(Pkt));
                w.process_burst(&mut self.pkts, now, &mut self.io);
            }
            None => {
                for mut m in self.rx.drain(..) {
                    let d = m.data_mut();
                    let mut dst = [0u8; 6];
                    dst.copy_from_slice(&d[0..6]);
                    d.copy_within(6..12, 0);
                    d[6..12].copy_from_slice(&dst);
                    self.io.tx.push(m);
                }
            }
        }
        let t2 = dpdk_sys::tsc();
        acc.pkts += idxs.len() as u64;
        let check = worker.is_some();
        self.flush(acc, check, capture);
        if let Some(w) = worker {
            if now >= self.last_tick_ns + TICK_NS {
                self.last_tick_ns = now;
                w.tick(now, &mut self.io);
                self.flush(acc, check, None);
            }
        }
        let t3 = dpdk_sys::tsc();
        acc.cycles_total += t3 - t0;
        acc.cycles_pipeline += t2 - t1;
        acc.hist.saturating_record(((t3 - t0) as u128 * u128::from(S) / u128::from(self.b.hz)) as u64);
        acc.allocs += (GLOBAL.stats().allocations - allocs0) as u64;
    }

    /// tx_burst what the forwarder queued, then drain the loop-back and free (checking a sample).
    fn flush(&mut self, acc: &mut Acc, check: bool, mut capture: Option<&mut Vec<(u8, SocketAddrV4, SocketAddrV4)>>) {
        while !self.io.tx.is_empty() {
            if dpdk_sys::tx_burst(self.b.port, 0, &mut self.io.tx) == 0 {
                break;
            }
        }
        if !self.io.tx.is_empty() {
            acc.tx_full += self.io.tx.len() as u64;
            self.io.tx.clear();
        }
        while dpdk_sys::rx_burst(self.b.port, 0, &mut self.out) > 0 {
            for m in self.out.drain(..) {
                acc.out += 1;
                if check && acc.out % self.verify_every == 0 {
                    acc.verified += 1;
                    if let Err(e) = verify(self.mode, m.data()) {
                        acc.error(format!("output frame {}: {e}", acc.out));
                    }
                }
                if let Some(c) = capture.as_deref_mut() {
                    if let Some(t) = tuple(m.data()) {
                        c.push(t);
                    }
                }
            }
        }
    }

    /// Bursts over `seq` in order, until its end or `deadline` (tsc).
    fn pass(
        &mut self,
        worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        seq: &[u32],
        acc: &mut Acc,
        capture: Option<&mut Vec<(u8, SocketAddrV4, SocketAddrV4)>>,
        deadline: Option<u64>,
    ) -> bool {
        self.pass_from(worker, frames, seq, 0, acc, capture, deadline).0
    }

    /// Bursts over `seq` from position `from`, until its end (`(true, 0)`) or `deadline`
    /// (`(false, where to resume)`).
    #[allow(clippy::too_many_arguments)]
    fn pass_from(
        &mut self,
        mut worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        seq: &[u32],
        from: usize,
        acc: &mut Acc,
        mut capture: Option<&mut Vec<(u8, SocketAddrV4, SocketAddrV4)>>,
        deadline: Option<u64>,
    ) -> (bool, usize) {
        let mut i = from.min(seq.len());
        while i < seq.len() {
            let end = (i + BURST).min(seq.len());
            self.burst(worker.as_deref_mut(), frames, &seq[i..end], acc, capture.as_deref_mut());
            i = end;
            if i < seq.len() && deadline.is_some_and(|d| dpdk_sys::tsc() >= d) {
                return (false, i);
            }
        }
        (true, 0)
    }

    /// Tell the worker every neighbour, as if it had heard their ARP replies.
    fn learn(&mut self, w: &mut Worker<Pkt>) {
        let now = self.now();
        w.learn_neigh(self.b.port, net::GW, net::GW_MAC, now, &mut self.io);
        for i in 0..net::N_RS {
            w.learn_neigh(self.b.port, net::rs(i), net::rs_mac(net::rs(i)), now, &mut self.io);
        }
    }

    /// Jump the clock `by` and run the worker's timers until at most `keep` sessions are left.
    fn expire_to(&mut self, w: &mut Worker<Pkt>, by: u64, keep: usize, acc: &mut Acc) {
        self.offset_ns += by;
        let mut guard = 0u64;
        while w.sessions().len() > keep && guard < 50_000_000 {
            let now = self.now();
            w.tick(now, &mut self.io);
            guard += 1;
        }
        self.flush(acc, true, None);
        self.last_tick_ns = self.now();
        self.learn(w);
    }
}

/// The bench's snapshot: one port (203.0.113.2/24), clients behind the gateway, TCP VIP:80 and
/// UDP VIP:53 with N_RS real servers of `mode` (rr), FULLNAT local addresses, plus `extra`.
/// `prev`: the snapshot being replaced, whose unchanged services are shared (rvsd's path).
fn snapshot(
    b: &Bench,
    prev: Option<&Snapshot>,
    gen: u64,
    mode: FwdMode,
    laddrs: usize,
    tunables: Tunables,
    extra: &[Service],
) -> Result<Arc<Snapshot>, String> {
    let mut table = ServiceTable::new();
    for (proto, port) in [(Proto::Tcp, net::TCP_PORT), (Proto::Udp, net::UDP_PORT)] {
        let key = ServiceKey { proto, vip: SocketAddr::new(net::VIP.into(), port) };
        let mut svc = Service::new(key, SchedKind::Rr);
        if mode == FwdMode::FullNat {
            svc.laddrs = (0..laddrs).map(|i| IpAddr::V4(net::laddr(i))).collect();
        }
        svc.reals = (0..net::N_RS)
            .map(|i| RealServer {
                addr: SocketAddr::new(net::rs(i).into(), port),
                fwd: mode,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect();
        table.add_service(svc).map_err(|e| e.to_string())?;
    }
    // `extra` comes validated from the caller's own ServiceTable.
    let mut all = table.to_services();
    all.extend_from_slice(extra);
    let port = PortInfo {
        id: b.port,
        name: "net_ring0".into(),
        mac: net::PORT_MAC,
        addrs: vec![(net::PORT_ADDR, 24)],
        mtu: 1500,
    };
    let clients = StaticRoute { prefix: Ipv4Addr::new(192, 0, 2, 0), len: 24, port: b.port, via: Some(net::GW) };
    Snapshot::build_from(prev, gen, vec![port], &[clients], &all, tunables).map(Arc::new).map_err(|e| e.to_string())
}

fn vip_of(proto: u8) -> SocketAddrV4 {
    SocketAddrV4::new(net::VIP, if proto == TCP { net::TCP_PORT } else { net::UDP_PORT })
}

/// First packet (TCP SYN, or UDP) and a later one (TCP ACK, or UDP) of flow `i`.
fn client_frame(i: u64, later: bool) -> Frame {
    let p = proto_of(i);
    let flags = if p != TCP {
        0
    } else if later {
        ACK
    } else {
        SYN
    };
    build(p, client_of(i), vip_of(p), flags, net::GW_MAC, net::PORT_MAC)
}

fn shuffled(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut v);
    v
}

/// Result of one (mode, workload, sessions) case.
struct CaseResult {
    mode: FwdMode,
    workload: Workload,
    sessions: usize,
    fig: Figures,
    base: Figures,
    conns_per_s: Option<f64>,
    bytes_per_session: Option<f64>,
    heap_bytes: Option<i64>,
    created: u64,
    expired: u64,
    live_end: usize,
    rx: u64,
    tx: u64,
    drops: u64,
    verified: u64,
    errors: Vec<String>,
    notes: Vec<String>,
}

impl CaseResult {
    fn ok(&self) -> bool {
        self.errors.is_empty()
    }
    fn json(&self) -> serde_json::Value {
        json!({"mode": mode_name(self.mode), "workload": self.workload.name(), "sessions": self.sessions,
            "figures": self.fig.json(), "baseline": self.base.json(),
            "ratio_mpps_to_baseline": self.fig.mpps / self.base.mpps.max(1e-12),
            "conns_per_s": self.conns_per_s, "bytes_per_session": self.bytes_per_session,
            "session_heap_bytes": self.heap_bytes, "sessions_created": self.created,
            "sessions_expired": self.expired, "sessions_live_at_end": self.live_end,
            "rx": self.rx, "tx": self.tx, "drops": self.drops, "frames_verified": self.verified,
            "ok": self.ok(), "errors": self.errors, "notes": self.notes})
    }
}

/// How long a case measures.
#[derive(Clone, Copy)]
struct Timing {
    seconds: f64,
    short: bool,
}

impl Timing {
    fn deadline(&self, b: &Bench, frac: f64) -> u64 {
        dpdk_sys::tsc() + (self.seconds * frac * b.hz as f64) as u64
    }
}

fn run_case(b: &Bench, mode: FwdMode, wl: Workload, n: usize, t: Timing) -> CaseResult {
    let mut rng = Rng(0x5eed ^ n as u64 ^ (wl as u64) << 32);
    let verify_every = if t.short { 1 } else { 257 };
    let mut d = Driver::new(b, mode, verify_every);
    let mut warm = Acc::new();
    let mut notes = Vec::new();
    // Timeouts: defaults, except the workloads that exercise expiry.
    let mut tunables = Tunables::default();
    let churn_timeout = 20 * 1_000_000;
    match wl {
        Workload::Mix => {
            tunables.timeouts.tcp_syn_recv_ns = S;
            tunables.timeouts.tcp_syn_sent_ns = S;
        }
        Workload::Churn => {
            let c = churn_timeout;
            tunables.timeouts = Timeouts {
                tcp_syn_sent_ns: c,
                tcp_syn_recv_ns: c,
                tcp_established_ns: c,
                tcp_fin_wait_ns: c,
                tcp_time_wait_ns: c,
                tcp_close_ns: c,
                tcp_close_wait_ns: c,
                tcp_last_ack_ns: c,
                tcp_listen_ns: c,
                tcp_synack_ns: c,
                udp_ns: c,
            };
        }
        _ => {}
    }
    // Flow index spaces: established flows 0..n; fresh TCP tuples (new, mix, churn) above.
    let fresh_base = (n as u64 + 1) & !1;
    let n_fresh = match wl {
        Workload::Established => 0,
        Workload::New => n,
        Workload::Mix => (n / 4).max(64),
        Workload::Churn => n.max(65_536),
    };
    let concurrent = match wl {
        Workload::Established | Workload::Mix => n + n_fresh,
        Workload::New | Workload::Churn => n_fresh,
    };
    let laddrs = net::laddrs_for(concurrent + 1024);
    // Mix opens its established flows under the default timeouts (opening 1M flows takes longer
    // than its 1 s SYN_RECV timeout) and switches afterwards, as an `rvsadm --set` would.
    let open_tunables = if wl == Workload::Mix { Tunables::default() } else { tunables };
    let snap = match snapshot(b, None, 1, mode, laddrs, open_tunables, &[]) {
        Ok(s) => s,
        Err(e) => return failed(mode, wl, n, format!("snapshot: {e}")),
    };
    // --short checks the path a large table takes (lookups prefetched burst by burst) on its few
    // sessions; timed runs keep the worker's default threshold, as rvsd does.
    let prefetch_from = if t.short { 0 } else { WorkerConfig::default().prefetch_from };
    let cfg = WorkerConfig {
        max_sessions: concurrent + 1024,
        timeouts: open_tunables.timeouts,
        seed: 1,
        prefetch_from,
        ..WorkerConfig::default()
    };
    // Heap of a worker without sessions (capacity 0: nothing reserved for sessions), to subtract
    // from the heap of the worker holding the N sessions.
    let empty_heap = {
        let region = Region::new(GLOBAL);
        let mut w0: Worker<Pkt> = Worker::new(WorkerConfig { max_sessions: 0, ..cfg.clone() }, Arc::clone(&snap));
        d.learn(&mut w0);
        let ch = region.change();
        drop(w0);
        ch.bytes_allocated as i64 - ch.bytes_deallocated as i64
    };
    // Frames of the established flows and the capture buffer, allocated before the worker so
    // the heap measured from here on is the worker's.
    let opens = matches!(wl, Workload::Established | Workload::Mix);
    let two_way = matches!(mode, FwdMode::Nat | FwdMode::FullNat);
    let (open, mut est_frames, order, tcp_order, mut cap) = if opens {
        let open: Vec<Frame> = (0..n as u64).map(|i| client_frame(i, false)).collect();
        let mut est: Vec<Frame> = Vec::with_capacity(if two_way { 2 * n } else { n });
        est.extend((0..n as u64).map(|i| client_frame(i, true)));
        let order = shuffled(n, &mut rng);
        let tcp_order: Vec<u32> = order.iter().copied().filter(|&i| proto_of(u64::from(i)) == TCP).collect();
        (open, est, order, tcp_order, Vec::with_capacity(if two_way { n + 64 } else { 0 }))
    } else {
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new())
    };
    let region = Region::new(GLOBAL);
    let mut w: Worker<Pkt> = Worker::new(cfg, snap);
    // As rvsd's worker thread does.
    let huge_ranges = rvs::workers::advise_tables(&w);
    notes.push(format!("session slab and index: {huge_ranges} of 2 ranges advised to transparent huge pages"));
    d.learn(&mut w);

    // Established flows (established, mix): open them, measuring the heap they take.
    let mut heap = None;
    let mut bps = None;
    if opens {
        d.pass(Some(&mut w), &open, &order, &mut warm, if two_way { Some(&mut cap) } else { None }, None);
        d.pass(Some(&mut w), &est_frames, &tcp_order, &mut warm, None, None);
        let ch = region.change();
        // The heap of the worker with its N sessions, less that of a worker without sessions.
        let grown = ch.bytes_allocated as i64 - ch.bytes_deallocated as i64 - empty_heap;
        heap = Some(grown);
        bps = Some(grown as f64 / n.max(1) as f64);
        drop(open);
        if two_way {
            // The real servers' replies, addressed as the pipeline's output says.
            for (p, src, dst) in &cap {
                est_frames.push(build(
                    *p,
                    *dst,
                    *src,
                    if *p == TCP { ACK } else { 0 },
                    net::rs_mac(*dst.ip()),
                    net::PORT_MAC,
                ));
            }
            if cap.len() != n {
                warm.error(format!("captured {} of {n} first outputs", cap.len()));
            }
        }
    }
    if open_tunables != tunables {
        match snapshot(b, None, 2, mode, laddrs, tunables, &[]) {
            Ok(s) => w.set_snapshot(s),
            Err(e) => warm.error(format!("snapshot 2: {e}")),
        }
    }
    let est_live = w.sessions().len();
    if opens && est_live != n {
        warm.error(format!("{est_live} sessions after opening {n} flows"));
    }

    // The measured frame set and its order.
    let (frames, seq): (Vec<Frame>, Vec<u32>) = match wl {
        Workload::Established => {
            let seq = shuffled(est_frames.len(), &mut rng);
            (est_frames, seq)
        }
        Workload::New | Workload::Churn => {
            let mut f = Vec::with_capacity(2 * n_fresh);
            for k in 0..n_fresh as u64 {
                let i = fresh_base + 2 * k;
                f.push(client_frame(i, false));
                f.push(client_frame(i, true));
            }
            let mut seq = Vec::with_capacity(2 * n_fresh);
            for k in shuffled(n_fresh, &mut rng) {
                seq.push(2 * k);
                seq.push(2 * k + 1);
            }
            (f, seq)
        }
        Workload::Mix => {
            let n_est = est_frames.len();
            let mut f = est_frames;
            for k in 0..n_fresh as u64 {
                f.push(client_frame(fresh_base + 2 * k, false));
            }
            let est_order = shuffled(n_est, &mut rng);
            let fresh_order = shuffled(n_fresh, &mut rng);
            // 4 packets of established flows, then 1 SYN of a new flow: 20 % new flows.
            let mut seq = Vec::with_capacity(n_est + n_fresh);
            let mut fi = fresh_order.iter().cycle();
            for (j, e) in est_order.iter().enumerate() {
                seq.push(*e);
                if j % 4 == 3 {
                    seq.push(n_est as u32 + *fi.next().expect("non-empty"));
                }
            }
            (f, seq)
        }
    };

    // The bare forwarder (same frames, order, mbufs and port) and the pipeline, interleaved in
    // slices so that load from other processes hits both alike; each resumes where it stopped.
    let mut base = Acc::new();
    let c0 = w.counters().clone();
    let mut acc = Acc::new();
    let slices = if t.short { 1 } else { 4 };
    let (mut base_pos, mut pos, mut passes) = (0usize, 0usize, 0u32);
    for _ in 0..slices {
        let deadline = t.deadline(b, 0.5 / f64::from(slices));
        loop {
            let (done, at) = d.pass_from(None, &frames, &seq, base_pos, &mut base, None, Some(deadline));
            base_pos = at;
            if !done || t.short || dpdk_sys::tsc() >= deadline {
                break;
            }
        }
        let deadline = t.deadline(b, 1.0 / f64::from(slices));
        loop {
            let (done, at) = d.pass_from(Some(&mut w), &frames, &seq, pos, &mut acc, None, Some(deadline));
            pos = at;
            if done {
                passes += 1;
                // Between passes (not timed): make the fresh tuples fresh again.
                match wl {
                    Workload::New => d.expire_to(&mut w, 1000 * S, 0, &mut acc),
                    Workload::Mix => d.expire_to(&mut w, 2 * S, est_live, &mut acc),
                    _ => {}
                }
            }
            if !done || t.short || dpdk_sys::tsc() >= deadline {
                break;
            }
        }
    }
    let c1 = w.counters().clone();
    let fig = Figures::of(&acc, b.hz);
    let created = c1.sessions_created - c0.sessions_created;
    let expired = c1.sessions_expired - c0.sessions_expired;
    let conns_per_s = match wl {
        Workload::Established => None,
        _ => Some(created as f64 / fig.secs.max(1e-12)),
    };
    if wl == Workload::Churn {
        notes.push(format!(
            "timeouts {} ms; {} sessions expired during the run; {} live at the end",
            churn_timeout / 1_000_000,
            expired,
            w.sessions().len()
        ));
    }
    notes.push(format!("{passes} complete pass(es) over {} frames", seq.len()));

    // Correctness: every packet accounted for, nothing dropped, sampled frames right.
    let c = w.counters();
    let mut errors = warm.errors.clone();
    errors.extend(acc.errors.iter().cloned());
    let fed = warm.pkts + acc.pkts;
    let drained = warm.out + acc.out;
    if c.rx_pkts != fed {
        errors.push(format!("worker counted rx {} of {fed} fed", c.rx_pkts));
    }
    if c.tx_pkts + c.total_drops() != c.rx_pkts {
        errors.push(format!("tx {} + drops {} != rx {}", c.tx_pkts, c.total_drops(), c.rx_pkts));
    }
    if c.total_drops() > 0 {
        let named: Vec<String> = c
            .pairs()
            .into_iter()
            .filter(|(k, v)| k.starts_with("drop_") && *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        errors.push(format!("drops of valid traffic: {}", named.join(" ")));
    }
    if drained != c.tx_pkts || warm.tx_full + acc.tx_full > 0 {
        errors.push(format!(
            "{drained} frames came back of {} sent ({} tx full)",
            c.tx_pkts,
            warm.tx_full + acc.tx_full
        ));
    }
    if c.arp_requests > 0 || d.io.unexpected > 0 {
        errors.push(format!("{} ARP requests, {} redirects/neighbour shares", c.arp_requests, d.io.unexpected));
    }
    if base.out != base.pkts {
        errors.push(format!("bare forwarder: {} of {} came back", base.out, base.pkts));
    }
    let verified = warm.verified + acc.verified;
    if verified == 0 {
        errors.push("no output frame was verified".into());
    }
    let r = CaseResult {
        mode,
        workload: wl,
        sessions: n,
        fig,
        base: Figures::of(&base, b.hz),
        conns_per_s,
        bytes_per_session: bps,
        heap_bytes: heap,
        created,
        expired,
        live_end: w.sessions().len(),
        rx: c.rx_pkts,
        tx: c.tx_pkts,
        drops: c.total_drops(),
        verified,
        errors,
        notes,
    };
    drop(w);
    drop(d);
    r
}

fn failed(mode: FwdMode, wl: Workload, n: usize, e: String) -> CaseResult {
    CaseResult {
        mode,
        workload: wl,
        sessions: n,
        fig: Figures::default(),
        base: Figures::default(),
        conns_per_s: None,
        bytes_per_session: None,
        heap_bytes: None,
        created: 0,
        expired: 0,
        live_end: 0,
        rx: 0,
        tx: 0,
        drops: 0,
        verified: 0,
        errors: vec![e],
        notes: Vec::new(),
    }
}

/// Gaps between two bursts longer than this are attributed one by one (the issue's target).
const LONG_GAP_NS: u64 = 100_000;
/// Long gaps kept one by one (the rest are only counted), reserved before the loop.
const LONG_GAPS_KEPT: usize = 4096;
/// /proc/stat counts CPU time in USER_HZ ticks, 100 per second on Linux (proc(5)).
const USER_HZ_MS: f64 = 10.0;

/// The calling thread's scheduling counters: context switches (`/proc/thread-self/status`),
/// time spent runnable but waiting for a CPU (`schedstat`, ns) and page faults (`stat`).
#[derive(Debug, Clone, Copy, Default)]
struct ThreadStats {
    voluntary: u64,
    nonvoluntary: u64,
    run_wait_ns: Option<u64>,
    faults: Option<u64>,
}

impl ThreadStats {
    /// `self - earlier`.
    fn since(&self, earlier: &ThreadStats) -> ThreadStats {
        ThreadStats {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            nonvoluntary: self.nonvoluntary.saturating_sub(earlier.nonvoluntary),
            run_wait_ns: self.run_wait_ns.zip(earlier.run_wait_ns).map(|(a, z)| a.saturating_sub(z)),
            faults: self.faults.zip(earlier.faults).map(|(a, z)| a.saturating_sub(z)),
        }
    }
}

/// Reads the counters of the thread that opened it: `/proc/thread-self` resolves to that
/// thread when opened; the files are kept open and re-read from offset 0 (procfs regenerates
/// them), so a reading costs a seek and a read per file, no open.
struct ThreadReader {
    status: Option<std::fs::File>,
    schedstat: Option<std::fs::File>,
    stat: Option<std::fs::File>,
    buf: String,
}

impl ThreadReader {
    fn open() -> ThreadReader {
        let f = |name: &str| std::fs::File::open(format!("/proc/thread-self/{name}")).ok();
        ThreadReader {
            status: f("status"),
            schedstat: f("schedstat"),
            stat: f("stat"),
            buf: String::with_capacity(4096),
        }
    }

    fn reread(file: Option<&mut std::fs::File>, buf: &mut String) -> Option<()> {
        use std::io::{Read, Seek, SeekFrom};
        let f = file?;
        f.seek(SeekFrom::Start(0)).ok()?;
        buf.clear();
        f.read_to_string(buf).ok()?;
        Some(())
    }

    fn read(&mut self) -> Option<ThreadStats> {
        Self::reread(self.status.as_mut(), &mut self.buf)?;
        let field = |buf: &str, name: &str| buf.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
        let voluntary = field(&self.buf, "voluntary_ctxt_switches:")?;
        let nonvoluntary = field(&self.buf, "nonvoluntary_ctxt_switches:")?;
        // schedstat: "<ns on a CPU> <ns waiting on a run queue> <timeslices>".
        let run_wait_ns = Self::reread(self.schedstat.as_mut(), &mut self.buf)
            .and_then(|()| self.buf.split_whitespace().nth(1)?.parse().ok());
        // stat: "pid (comm) state ..." then minflt and majflt are the 10th and 12th fields (proc(5)).
        let faults = Self::reread(self.stat.as_mut(), &mut self.buf).and_then(|()| {
            let rest: Vec<&str> = self.buf.rsplit_once(')')?.1.split_whitespace().collect();
            Some(rest.get(7)?.parse::<u64>().ok()? + rest.get(9)?.parse::<u64>().ok()?)
        });
        Some(ThreadStats { voluntary, nonvoluntary, run_wait_ns, faults })
    }
}

/// Time one CPU spent in interrupts, softirqs and stolen by the hypervisor, in USER_HZ ticks
/// (the `cpuN` line of /proc/stat: user nice system idle iowait irq softirq steal ...).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    irq: u64,
    softirq: u64,
    steal: u64,
}

fn cpu_ticks(cpu: usize) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{cpu}");
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
    Some(CpuTicks { irq: *v.get(5)?, softirq: *v.get(6)?, steal: *v.get(7)? })
}

/// One gap above LONG_GAP_NS and what happened in it.
#[derive(Debug, Clone, Copy)]
struct LongGap {
    us: f64,
    /// The worker switched snapshots in this iteration.
    switch: bool,
    /// The worker's `tick` ran in this iteration.
    tick: bool,
    /// Involuntary / voluntary context switches of the worker thread, its time waiting on a
    /// run queue (µs) and its page faults since the previous reading (at the previous long gap,
    /// or at the loop start).
    nonvoluntary: u64,
    voluntary: u64,
    run_wait_us: Option<f64>,
    faults: Option<u64>,
}

impl LongGap {
    fn explained(&self) -> bool {
        self.switch || self.tick || self.nonvoluntary > 0
    }
    /// Preempted for (nearly) all of the gap: switched out involuntarily, and the gap minus the
    /// time the thread waited on a run queue is at most LONG_GAP_NS (without schedstat: the
    /// involuntary switch alone).
    fn preempted(&self) -> bool {
        let covered = match self.run_wait_us {
            Some(w) => self.us - w <= LONG_GAP_NS as f64 / 1e3,
            None => true,
        };
        self.nonvoluntary > 0 && covered
    }
}

/// What a worker thread measured while forwarding DR traffic in a loop, with or without
/// snapshots being published.
#[derive(Debug, Clone, Default)]
struct WorkerRun {
    /// The CPU the worker was pinned to.
    cpu: Option<usize>,
    bursts: u64,
    loop_ms: f64,
    /// `set_snapshot` per switch, µs.
    switch_us: Vec<f64>,
    max_gap_us: f64,
    max_gap_switch_us: f64,
    p999_gap_us: f64,
    /// Gaps above LONG_GAP_NS: how many, and the first LONG_GAPS_KEPT of them.
    long: u64,
    long_gaps: Vec<LongGap>,
    /// The worker thread's counters over the loop (read before and after it).
    ctx: Option<ThreadStats>,
    /// Interrupt, softirq and steal time of the worker's CPU over the loop, ms.
    irq_ms: Option<f64>,
    softirq_ms: Option<f64>,
    steal_ms: Option<f64>,
    errors: Vec<String>,
}

impl WorkerRun {
    fn count(&self, f: impl Fn(&LongGap) -> bool) -> usize {
        self.long_gaps.iter().filter(|g| f(g)).count()
    }
    fn max_of(&self, f: impl Fn(&LongGap) -> bool) -> f64 {
        self.long_gaps.iter().filter(|g| f(g)).map(|g| g.us).fold(0.0, f64::max)
    }
    /// Total length of the attributed long gaps, and the worker's run-queue wait counted at them, ms.
    fn long_ms(&self) -> f64 {
        self.long_gaps.iter().map(|g| g.us).sum::<f64>() / 1e3
    }
    fn long_wait_ms(&self) -> Option<f64> {
        self.long_gaps.iter().map(|g| g.run_wait_us).sum::<Option<f64>>().map(|w| w / 1e3)
    }
    /// Every long gap was seen one by one (none only counted).
    fn complete(&self) -> bool {
        self.long as usize == self.long_gaps.len()
    }
    fn json(&self) -> serde_json::Value {
        let mut worst = self.long_gaps.clone();
        worst.sort_by(|a, b| b.us.total_cmp(&a.us));
        worst.truncate(20);
        json!({"cpu": self.cpu, "bursts": self.bursts, "loop_ms": self.loop_ms,
            "max_gap_us": self.max_gap_us, "max_gap_at_switch_us": self.max_gap_switch_us, "p99_9_gap_us": self.p999_gap_us,
            "gaps_over_100us": {"count": self.long, "recorded": self.long_gaps.len(),
                "with_switch": self.count(|g| g.switch), "with_tick": self.count(|g| g.tick),
                "with_nonvoluntary_ctxt_switch": self.count(|g| g.nonvoluntary > 0),
                "with_voluntary_ctxt_switch": self.count(|g| g.voluntary > 0),
                "unexplained": self.count(|g| !g.explained()), "max_unexplained_us": self.max_of(|g| !g.explained()),
                "unexplained_with_page_faults": self.count(|g| !g.explained() && g.faults.unwrap_or(0) > 0),
                "total_ms": self.long_ms(), "run_queue_wait_ms": self.long_wait_ms(),
                "covered_by_run_queue_wait": self.count(|g| g.preempted()), "max_not_covered_us": self.max_of(|g| !g.preempted()),
                "without_nonvoluntary_ctxt_switch": self.count(|g| g.nonvoluntary == 0),
                "max_without_nonvoluntary_ctxt_switch_us": self.max_of(|g| g.nonvoluntary == 0),
                "longest": worst.iter().map(|g| json!({"us": g.us, "switch": g.switch, "tick": g.tick, "nonvoluntary_ctxt_switches": g.nonvoluntary, "voluntary_ctxt_switches": g.voluntary, "run_queue_wait_us": g.run_wait_us, "page_faults": g.faults})).collect::<Vec<_>>()},
            "voluntary_ctxt_switches": self.ctx.map(|c| c.voluntary), "nonvoluntary_ctxt_switches": self.ctx.map(|c| c.nonvoluntary),
            "run_queue_wait_ms": self.ctx.and_then(|c| c.run_wait_ns).map(|n| n as f64 / 1e6), "page_faults": self.ctx.and_then(|c| c.faults),
            "cpu_irq_ms": self.irq_ms, "cpu_softirq_ms": self.softirq_ms, "cpu_steal_ms": self.steal_ms,
            "errors": self.errors})
    }
}

/// Control plane: snapshots of `n_svc` services × 10 real servers, and the gaps between two
/// bursts of a worker thread forwarding while a control thread publishes them, next to the
/// same worker loop for as long without publications (`baseline`).
struct ControlResult {
    services: usize,
    /// Validating the services into a ServiceTable (`add_service` each).
    table_ms: f64,
    /// The first snapshot of them (`to_services` + `Snapshot::build`).
    first_build_ms: f64,
    build_ms: Vec<f64>,
    /// The CPU the control (publishing) thread was pinned to.
    control_cpu: Option<usize>,
    run: WorkerRun,
    baseline: WorkerRun,
    errors: Vec<String>,
}

impl ControlResult {
    /// The worker-gap target: no gap above 100 µs at a switch, none unexplained, and every
    /// other one a preemption of the worker thread by the OS (see `LongGap::preempted`).
    fn gap_target_met(&self) -> bool {
        let r = &self.run;
        r.complete()
            && r.max_gap_switch_us <= 100.0
            && r.count(|g| !g.explained()) == 0
            && r.count(|g| !g.preempted()) == 0
    }
}

fn services(n: usize, tweak: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let vip = Ipv4Addr::new(203, 0, 113, 150 + (i / 1000) as u8);
            let port = 1000 + (i % 1000) as u16;
            let mut s =
                Service::new(ServiceKey { proto: Proto::Tcp, vip: SocketAddr::new(vip.into(), port) }, SchedKind::Wrr);
            s.reals = (0..10u8)
                .map(|j| RealServer {
                    addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, 21 + j).into(), port),
                    fwd: FwdMode::Dr,
                    weight: if i == tweak % n.max(1) && j == 0 { 2 } else { 1 },
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect();
            s
        })
        .collect()
}

/// A worker thread's loop as rvsd runs it (snapshot check, burst), pinned to `cpu`, until
/// `stop` or `until` (ns of loop time). Measures the gap between the ends of two bursts; for a
/// gap above LONG_GAP_NS it notes afterwards whether a switch and a `tick` happened in that
/// iteration and reads the thread's context switches (the only syscalls inside the loop, on
/// that slow path; the clock restarts after them so they are not counted in the next gap).
fn worker_loop(
    b: &Bench,
    shared: &ArcSwap<Snapshot>,
    stop: &AtomicBool,
    cpu: Option<core_affinity::CoreId>,
    until: Option<u64>,
) -> WorkerRun {
    let pinned = cpu.filter(|c| core_affinity::set_for_current(*c)).map(|c| c.id);
    let reg = dpdk_sys::register_thread().is_ok();
    let mut d = Driver::new(b, FwdMode::Dr, 1024);
    let mut w: Worker<Pkt> =
        Worker::new(WorkerConfig { max_sessions: 4096, ..WorkerConfig::default() }, shared.load_full());
    d.learn(&mut w);
    let frames: Vec<Frame> =
        (0..1000u64).map(|i| client_frame(i, false)).chain((0..1000u64).map(|i| client_frame(i, true))).collect();
    let open: Vec<u32> = (0..1000).collect();
    let seq: Vec<u32> = (1000..2000).collect();
    let mut acc = Acc::new();
    d.pass(Some(&mut w), &frames, &open, &mut acc, None, None);
    let mut gaps = Histogram::<u64>::new_with_bounds(1, 60 * S, 3).expect("bounds");
    let mut switch_us = Vec::with_capacity(1024);
    let mut long_gaps: Vec<LongGap> = Vec::with_capacity(LONG_GAPS_KEPT);
    let mut long = 0u64;
    let mut max_switch_gap = 0u64;
    let mut bursts = 0u64;
    let mut k = 0usize;
    let mut ctx_reader = ThreadReader::open();
    let cpu0 = pinned.and_then(cpu_ticks);
    let ctx0 = ctx_reader.read();
    let mut ctx_prev = ctx0;
    let start_tsc = dpdk_sys::tsc();
    let end_tsc =
        until.map_or(u64::MAX, |ns| start_tsc.saturating_add((ns as u128 * u128::from(b.hz) / u128::from(S)) as u64));
    let mut last = start_tsc;
    let mut now = start_tsc;
    while !stop.load(Ordering::Relaxed) && now < end_tsc {
        let t0 = dpdk_sys::tsc();
        let mut switched = false;
        {
            let s = shared.load();
            if s.generation != w.generation() {
                w.set_snapshot(arc_swap::Guard::into_inner(s));
                switched = true;
                switch_us.push((dpdk_sys::tsc() - t0) as f64 / b.hz as f64 * 1e6);
            }
        }
        let tick_before = d.last_tick_ns;
        let start = k % 1000;
        d.burst(Some(&mut w), &frames, &seq[start..start + BURST.min(1000 - start)], &mut acc, None);
        k += BURST;
        now = dpdk_sys::tsc();
        let gap = ((now - last) as u128 * u128::from(S) / u128::from(b.hz)) as u64;
        gaps.saturating_record(gap);
        if switched {
            max_switch_gap = max_switch_gap.max(gap);
        }
        last = now;
        bursts += 1;
        if gap > LONG_GAP_NS {
            // Slow path, after the fact: what took this iteration's time.
            long += 1;
            if long_gaps.len() < LONG_GAPS_KEPT {
                let ctx = ctx_reader.read();
                let delta = ctx.zip(ctx_prev).map(|(c, p)| c.since(&p)).unwrap_or_default();
                ctx_prev = ctx;
                long_gaps.push(LongGap {
                    us: gap as f64 / 1e3,
                    switch: switched,
                    tick: d.last_tick_ns != tick_before,
                    nonvoluntary: delta.nonvoluntary,
                    voluntary: delta.voluntary,
                    run_wait_us: delta.run_wait_ns.map(|n| n as f64 / 1e3),
                    faults: delta.faults,
                });
                last = dpdk_sys::tsc();
                now = last;
            }
        }
    }
    let loop_ms = (now - start_tsc) as f64 / b.hz as f64 * 1e3;
    let ctx1 = ctx_reader.read();
    let cpu1 = pinned.and_then(cpu_ticks);
    let mut errors = acc.errors.clone();
    if w.counters().total_drops() > 0 {
        errors.push(format!("worker dropped {} packets while snapshots changed", w.counters().total_drops()));
    }
    if pinned.is_none() {
        errors.push("worker thread could not be pinned to a CPU".into());
    }
    drop(w);
    drop(d);
    if reg {
        dpdk_sys::unregister_thread();
    }
    let ticks_ms = |f: fn(&CpuTicks) -> u64| match (cpu0, cpu1) {
        (Some(a), Some(z)) => Some((f(&z) - f(&a)) as f64 * USER_HZ_MS),
        _ => None,
    };
    WorkerRun {
        cpu: pinned,
        bursts,
        loop_ms,
        switch_us,
        max_gap_us: gaps.max() as f64 / 1e3,
        max_gap_switch_us: max_switch_gap as f64 / 1e3,
        p999_gap_us: gaps.value_at_quantile(0.999) as f64 / 1e3,
        long,
        long_gaps,
        ctx: ctx1.zip(ctx0).map(|(z, a)| z.since(&a)),
        irq_ms: ticks_ms(|t| t.irq),
        softirq_ms: ticks_ms(|t| t.softirq),
        steal_ms: ticks_ms(|t| t.steal),
        errors,
    }
}

/// The machine's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-1,4`).
fn online_cpus() -> Vec<core_affinity::CoreId> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut ids = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|x| x.parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => ids.push(a),
            (Some(Ok(a)), Some(Ok(z))) if a <= z => ids.extend(a..=z),
            _ => return core_affinity::get_core_ids().unwrap_or_default(),
        }
    }
    ids.into_iter().map(|id| core_affinity::CoreId { id }).collect()
}

fn control_plane(b: &Bench, n_svc: usize, publications: usize) -> ControlResult {
    let mut errors = Vec::new();
    // Time to apply: validate into a ServiceTable, then compile the snapshot.
    let t = Instant::now();
    let mut table = ServiceTable::new();
    for s in services(n_svc, 0) {
        if let Err(e) = table.add_service(s) {
            errors.push(format!("service table: {e}"));
            break;
        }
    }
    let table_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let first = snapshot(b, None, 1, FwdMode::Dr, 1, Tunables::default(), &table.to_services());
    let first_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let shared = ArcSwap::from(match first {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("snapshot: {e}"));
            return ControlResult {
                services: n_svc,
                table_ms,
                first_build_ms,
                build_ms: vec![],
                control_cpu: None,
                run: WorkerRun::default(),
                baseline: WorkerRun::default(),
                errors,
            };
        }
    });
    // The worker on the last CPU (as before), the control thread on another one. The CPUs come
    // from sysfs, not from `core_affinity::get_core_ids` (this thread's affinity mask): EAL's
    // `-l 0` pinned the main thread, and with it every thread it spawns, to CPU 0.
    let cpus = online_cpus();
    let worker_cpu = cpus.last().copied();
    let control_cpu = cpus.iter().copied().find(|c| Some(c.id) != worker_cpu.map(|w| w.id));
    if control_cpu.is_none() {
        errors.push(format!("no CPU for the control thread other than the worker's ({} CPUs)", cpus.len()));
    }
    let stop = AtomicBool::new(false);
    let (run, (build_ms, control_pinned, cerr)) = std::thread::scope(|sc| {
        let worker = sc.spawn(|| worker_loop(b, &shared, &stop, worker_cpu, None));
        let control = sc.spawn(|| {
            let pinned = control_cpu.filter(|c| core_affinity::set_for_current(*c)).map(|c| c.id);
            let mut build_ms = Vec::new();
            let mut errs = Vec::new();
            std::thread::sleep(Duration::from_millis(100));
            let mut retired: Vec<Arc<Snapshot>> = Vec::new();
            for g in 2..2 + publications as u64 {
                // One change, as `rvsadm -e` makes it: edit a real server, compile, publish.
                let t = Instant::now();
                let i = (g as usize * 7919) % n_svc.max(1);
                if let Some(svc) = table.list().get(i).map(|s| (*s).clone()) {
                    let mut r = svc.reals[0];
                    r.weight = 1 + (g % 5) as u32;
                    if let Err(e) = table.edit_real(&svc.key, r) {
                        errs.push(format!("edit_real: {e}"));
                    }
                }
                // As rvsd's control thread: build from the current snapshot (unchanged services
                // shared) and keep the replaced one alive here, so the worker only drops a reference.
                let prev = shared.load_full();
                match snapshot(b, Some(&prev), g, FwdMode::Dr, 1, Tunables::default(), &table.to_services()) {
                    Ok(s) => {
                        shared.store(s);
                        retired.push(prev);
                        if retired.len() > 2 {
                            retired.remove(0);
                        }
                        build_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(e) => errs.push(format!("snapshot {g}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(50));
            (build_ms, pinned, errs)
        });
        let c = control.join().expect("control thread");
        stop.store(true, Ordering::Relaxed);
        (worker.join().expect("worker thread"), c)
    });
    errors.extend(cerr);
    errors.extend(run.errors.iter().cloned());
    if control_cpu.is_some() && control_pinned.is_none() {
        errors.push("control thread could not be pinned to a CPU".into());
    }
    if run.switch_us.len() != publications {
        errors.push(format!("worker switched {} times for {publications} publications", run.switch_us.len()));
    }
    // The same loop, as long, with nothing published (the control thread idle).
    let stop = AtomicBool::new(false);
    let baseline = std::thread::scope(|sc| {
        sc.spawn(|| worker_loop(b, &shared, &stop, worker_cpu, Some((run.loop_ms * 1e6) as u64)))
            .join()
            .expect("baseline worker thread")
    });
    errors.extend(baseline.errors.iter().map(|e| format!("baseline: {e}")));
    if !baseline.switch_us.is_empty() {
        errors.push(format!("baseline: worker switched {} times with nothing published", baseline.switch_us.len()));
    }
    ControlResult {
        services: n_svc,
        table_ms,
        first_build_ms,
        build_ms,
        control_cpu: control_pinned,
        run,
        baseline,
        errors,
    }
}

fn hugepages_free() -> bool {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" /dev/hugepages ") && l.contains("hugetlbfs")));
    let free = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    mounted && free >= 256
}

fn eal_args(huge: bool) -> Vec<String> {
    let mut a: Vec<String> = if huge {
        ["--in-memory", "--huge-dir", "/dev/hugepages", "-m", "512"].iter().map(|s| s.to_string()).collect()
    } else {
        ["--no-huge", "-m", "2048", "--no-shconf"].iter().map(|s| s.to_string()).collect()
    };
    a.extend(
        ["--no-pci", "--no-telemetry", "-l", "0", "--vdev", "net_ring0", "--log-level", "lib.eal:error"]
            .iter()
            .map(|s| s.to_string()),
    );
    a
}

fn setup(huge: bool) -> Result<(Eal, Bench), String> {
    let args = eal_args(huge);
    let eal = Eal::init(&args).map_err(|e| e.to_string())?;
    let pool =
        Mempool::new(&eal, "bench_pool", 8191, 256, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1).map_err(|e| e.to_string())?;
    let port = eal.port_by_name("net_ring0").map_err(|e| e.to_string())?;
    dpdk_sys::port_configure(&eal, port, &PortConf { promiscuous: false, ..PortConf::default() }, &pool)
        .map_err(|e| e.to_string())?;
    dpdk_sys::port_start(port).map_err(|e| e.to_string())?;
    let hz = dpdk_sys::tsc_hz();
    Ok((eal, Bench { pool: Arc::new(pool), port, hz, tsc0: dpdk_sys::tsc(), eal_args: args }))
}

fn available_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let modes: Vec<FwdMode> = match args.mode {
        ModeArg::Dr => vec![FwdMode::Dr],
        ModeArg::Nat => vec![FwdMode::Nat],
        ModeArg::Fullnat => vec![FwdMode::FullNat],
        ModeArg::Tun => vec![FwdMode::Tun],
        ModeArg::All => vec![FwdMode::Dr, FwdMode::Nat, FwdMode::FullNat, FwdMode::Tun],
    };
    let workloads: Vec<Workload> = match args.workload {
        WorkloadArg::Established => vec![Workload::Established],
        WorkloadArg::New => vec![Workload::New],
        WorkloadArg::Mix => vec![Workload::Mix],
        WorkloadArg::Churn => vec![Workload::Churn],
        WorkloadArg::All => vec![Workload::Established, Workload::New, Workload::Mix, Workload::Churn],
    };
    let sizes: Vec<usize> = if args.all { vec![1_000, 1_000_000] } else { vec![args.sessions] };
    let huge = match args.huge {
        Huge::On => true,
        Huge::Off => false,
        Huge::Auto => hugepages_free(),
    };
    let (eal, b) = match setup(huge) {
        Ok(x) => x,
        Err(e) if huge && args.huge == Huge::Auto => {
            eprintln!("rvs-bench: EAL with hugepages failed ({e}); rerun with --huge off");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("rvs-bench: setup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = Timing { seconds: if args.short { 0.05 } else { args.seconds }, short: args.short };
    let started = Instant::now();
    let mut results = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for &wl in &workloads {
        for &mode in &modes {
            for &n in &sizes {
                let r = run_case(&b, mode, wl, n, t);
                print_case(&r);
                results.push(r);
            }
        }
    }
    // 10M sessions: established only, when the measured bytes per session say it fits.
    if args.all && workloads.contains(&Workload::Established) {
        let n = 10_000_000usize;
        for &mode in &modes {
            let bps = results
                .iter()
                .filter(|r| r.mode == mode && r.workload == Workload::Established && r.sessions == 1_000_000)
                .find_map(|r| r.bytes_per_session)
                .unwrap_or(400.0);
            let frames = if matches!(mode, FwdMode::Nat | FwdMode::FullNat) { 3.0 } else { 2.0 } * FRAME_LEN as f64;
            let est = n as f64 * (bps + frames + 8.0) / (1u64 << 30) as f64;
            let limit = args.max_gib.min(available_gib() * 0.8);
            if est > limit {
                skipped.push(format!("{} established at 10M sessions skipped: estimated {est:.1} GiB (measured {bps:.0} B/session at 1M plus frames) > {limit:.1} GiB", mode_name(mode)));
                continue;
            }
            let r =
                run_case(&b, mode, Workload::Established, n, Timing { seconds: t.seconds.min(2.0), short: t.short });
            print_case(&r);
            results.push(r);
        }
    }
    let control = if args.all || args.control {
        let c = control_plane(&b, args.services, if args.short { 2 } else { 10 });
        println!(
            "control plane: {} services x 10 RS: table {:.1} ms, first snapshot {:.1} ms, per-change publications {:?} ms (control thread on CPU {:?}), worker set_snapshot {:?} us{}",
            c.services,
            c.table_ms,
            c.first_build_ms,
            c.build_ms.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>(),
            c.control_cpu,
            c.run.switch_us.iter().map(|x| x.round()).collect::<Vec<_>>(),
            if c.errors.is_empty() { String::new() } else { format!(" ERRORS: {:?}", c.errors) }
        );
        for (what, r) in [("publishing", &c.run), ("no publications", &c.baseline)] {
            println!(
                "  {what}: worker CPU {:?}, {} bursts in {:.0} ms, max gap {:.1} us (at a switch {:.1} us, p99.9 {:.1} us); gaps > 100 us: {} = {:.2} ms, run-queue wait in them {:?} ms (switch {}, tick {}, new nonvoluntary csw {}, new voluntary csw {}, unexplained {} max {:.1} us); thread over the loop {:?}; CPU irq/softirq/steal ms {:?}/{:?}/{:?}",
                r.cpu, r.bursts, r.loop_ms, r.max_gap_us, r.max_gap_switch_us, r.p999_gap_us, r.long, r.long_ms(), r.long_wait_ms(),
                r.count(|g| g.switch), r.count(|g| g.tick), r.count(|g| g.nonvoluntary > 0), r.count(|g| g.voluntary > 0), r.count(|g| !g.explained()), r.max_of(|g| !g.explained()),
                r.ctx, r.irq_ms, r.softirq_ms, r.steal_ms
            );
        }
        Some(c)
    } else {
        None
    };
    for s in &skipped {
        println!("note: {s}");
    }
    let failures: usize =
        results.iter().filter(|r| !r.ok()).count() + control.as_ref().map_or(0, |c| usize::from(!c.errors.is_empty()));
    println!(
        "rvs-bench: {} case(s), {} failed correctness, {:.1} s{}",
        results.len() + usize::from(control.is_some()),
        failures,
        started.elapsed().as_secs_f64(),
        if args.short { " (short: correctness only)" } else { "" }
    );
    let info = MachineInfo::collect(&b, huge);
    if let Some(path) = &args.json {
        let v = json!({"machine": info.json(), "short": args.short, "seconds": t.seconds,
            "size_of_session": std::mem::size_of::<rvs_dataplane::conn::Session>(),
            "cases": results.iter().map(CaseResult::json).collect::<Vec<_>>(),
            "control_plane": control.as_ref().map(|c| json!({"services": c.services, "table_ms": c.table_ms, "first_snapshot_ms": c.first_build_ms,
                "snapshot_build_ms": c.build_ms, "control_cpu": c.control_cpu, "set_snapshot_us": c.run.switch_us,
                "max_gap_us": c.run.max_gap_us, "max_gap_at_switch_us": c.run.max_gap_switch_us, "p99_9_gap_us": c.run.p999_gap_us, "bursts": c.run.bursts,
                "publishing": c.run.json(), "baseline_no_publications": c.baseline.json(), "gap_target_met": c.gap_target_met(), "errors": c.errors})),
            "skipped": skipped, "failures": failures});
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default()) {
            eprintln!("rvs-bench: writing {path}: {e}");
        }
    }
    if let Some(path) = &args.markdown {
        let notes = std::fs::read_to_string(&args.profile_notes).ok();
        let md = markdown(&info, &results, control.as_ref(), &skipped, notes.as_deref(), t);
        if let Err(e) = std::fs::write(path, md) {
            eprintln!("rvs-bench: writing {path}: {e}");
        }
    }
    drop(results);
    let _ = dpdk_sys::port_stop(b.port);
    let _ = dpdk_sys::port_close(b.port);
    drop(b);
    if let Err(e) = eal.cleanup() {
        eprintln!("rvs-bench: rte_eal_cleanup: {e}");
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_case(r: &CaseResult) {
    let f = &r.fig;
    println!(
        "{:<8} {:<11} {:>9} sessions: {:>6.2} Mpps {:>7.1} ns/pkt {:>7.0} cyc/pkt (pipeline {:>6.1} ns) burst p50/p99/p99.9/max {}/{}/{}/{} ns | bare {:>6.2} Mpps ratio {:.2}{}{} | rx {} tx {} drops {} verified {} {}",
        mode_name(r.mode),
        r.workload.name(),
        r.sessions,
        f.mpps,
        f.ns_pkt,
        f.cycles_pkt,
        f.pipe_ns_pkt,
        f.p50,
        f.p99,
        f.p999,
        f.max,
        r.base.mpps,
        f.mpps / r.base.mpps.max(1e-12),
        r.conns_per_s.map_or(String::new(), |c| format!(" | {:.2} Mconn/s", c / 1e6)),
        r.bytes_per_session.map_or(String::new(), |x| format!(" | {x:.0} B/session")),
        r.rx,
        r.tx,
        r.drops,
        r.verified,
        if r.ok() { "OK".to_string() } else { format!("FAILED: {:?}", r.errors) }
    );
}

struct MachineInfo {
    cpu: String,
    cpus: usize,
    mem_gib: f64,
    kernel: String,
    dpdk: String,
    date: String,
    tsc_hz: u64,
    huge: bool,
    eal_args: Vec<String>,
    load: String,
    /// `/sys/kernel/mm/transparent_hugepage/enabled` (the workers' session tables are advised).
    thp: String,
}

fn cmd(prog: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(prog).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

impl MachineInfo {
    fn collect(b: &Bench, huge: bool) -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        MachineInfo {
            cpu,
            cpus,
            mem_gib,
            kernel: cmd("uname", &["-sr"]).unwrap_or_default(),
            dpdk: cmd("pkg-config", &["--modversion", "libdpdk"]).unwrap_or_else(|| "unknown".into()),
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            tsc_hz: b.hz,
            huge,
            eal_args: b.eal_args.clone(),
            load: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
            thp: std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
    fn json(&self) -> serde_json::Value {
        json!({"cpu": self.cpu, "cpus": self.cpus, "mem_gib": self.mem_gib, "kernel": self.kernel, "dpdk": self.dpdk,
            "date": self.date, "tsc_hz": self.tsc_hz, "hugepages": self.huge, "eal_args": self.eal_args, "loadavg_at_end": self.load, "transparent_hugepage": self.thp})
    }
}

fn fmt_n(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

/// Measured statements about one worker loop's gaps, for the markdown.
fn gap_sentences(r: &WorkerRun) -> String {
    let mut m = format!(
        "{} bursts in {:.0} ms (worker on CPU {}); longest gap between two bursts {:.1} µs, at a switch {:.1} µs, p99.9 {:.1} µs. ",
        r.bursts,
        r.loop_ms,
        r.cpu.map_or("?".into(), |c| c.to_string()),
        r.max_gap_us,
        r.max_gap_switch_us,
        r.p999_gap_us
    );
    let unexplained = r.count(|g| !g.explained());
    let _ = write!(
        m,
        "{} gaps above 100 µs{}, {:.1} ms in all{}: {} in an iteration with a snapshot switch, {} with the worker's `tick`, {} with a new involuntary context switch of the worker thread ({} with a new voluntary one), {} with none of these (unexplained{}). ",
        r.long,
        if r.complete() { String::new() } else { format!(" (the first {} attributed)", r.long_gaps.len()) },
        r.long_ms(),
        r.long_wait_ms().map_or(String::new(), |w| format!(", during which the worker thread waited {w:.1} ms on a run queue (`schedstat`: runnable, another task on its CPU)")),
        r.count(|g| g.switch),
        r.count(|g| g.tick),
        r.count(|g| g.nonvoluntary > 0),
        r.count(|g| g.voluntary > 0),
        unexplained,
        if unexplained > 0 { format!(", longest {:.1} µs; {} of them with a page fault of the thread", r.max_of(|g| !g.explained()), r.count(|g| !g.explained() && g.faults.unwrap_or(0) > 0)) } else { String::new() }
    );
    match r.ctx {
        Some(c) => {
            let _ = write!(
                m,
                "Over the loop the worker thread had {} voluntary and {} involuntary context switches, waited {} on a run queue and took {} page faults",
                c.voluntary,
                c.nonvoluntary,
                c.run_wait_ns.map_or("?".into(), |n| format!("{:.1} ms", n as f64 / 1e6)),
                c.faults.map_or("?".into(), |f| f.to_string())
            );
        }
        None => {
            let _ = write!(m, "The worker thread's context switches could not be read");
        }
    }
    match (r.irq_ms, r.softirq_ms, r.steal_ms) {
        (Some(i), Some(s), Some(t)) => {
            let _ = write!(m, "; its CPU spent {i:.0} ms in interrupts, {s:.0} ms in softirqs and had {t:.0} ms stolen by the hypervisor (/proc/stat, 10 ms resolution).");
        }
        _ => {
            let _ = write!(m, "; its CPU's times could not be read.");
        }
    }
    m
}

/// Whether the long gaps while publishing are all preemptions of the worker thread, measured.
fn preemption_sentence(r: &WorkerRun) -> String {
    let nv = r.count(|g| g.nonvoluntary > 0) as u64;
    let covered = r.count(|g| g.preempted());
    if r.long == 0 {
        return "No gap above 100 µs while publishing.".into();
    }
    if !r.complete() {
        return format!("Only the first {} of {} gaps above 100 µs were attributed.", r.long_gaps.len(), r.long);
    }
    let mut m = if nv == r.long {
        format!("All {} gaps above 100 µs while publishing coincide with an involuntary context switch of the worker thread (preemption by the OS, not rvs code)", r.long)
    } else {
        format!("{} of {} gaps above 100 µs while publishing coincide with an involuntary context switch of the worker thread; {} (longest {:.1} µs) do not", nv, r.long, r.long - nv, r.max_of(|g| g.nonvoluntary == 0))
    };
    if r.long_gaps.iter().all(|g| g.run_wait_us.is_some()) {
        let rest = |g: &LongGap| g.us - if g.nonvoluntary > 0 { g.run_wait_us.unwrap_or(0.0) } else { 0.0 };
        let _ = write!(
            m,
            ". The thread's run-queue wait (runnable while another task ran on its CPU) covers the gap to within 100 µs in {covered} of the {} gaps; the largest remainder (gap minus that wait) is {:.1} µs",
            r.long,
            r.long_gaps.iter().map(rest).fold(0.0, f64::max)
        );
        let running = |g: &LongGap| rest(g) > g.us / 2.0;
        let n_running = r.count(running);
        if n_running > 0 {
            let _ = write!(
                m,
                ". In {n_running} gaps (longest {:.1} µs) the thread waited less than half of the gap: it stayed on its CPU as far as the guest kernel counts (no page fault in {} of them), time these counters do not break down (they count neither interrupt handling nor time the hypervisor did not run the vCPU)",
                r.max_of(running),
                r.count(|g| running(g) && g.faults == Some(0))
            );
        }
    }
    m.push('.');
    m
}

fn markdown(
    info: &MachineInfo,
    results: &[CaseResult],
    control: Option<&ControlResult>,
    skipped: &[String],
    notes: Option<&str>,
    t: Timing,
) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Performance\n");
    let _ = writeln!(m, "Generated by `rvs-bench` (crate `rvs-benches`, `benches/src/bin/rvs-bench.rs`). Regenerate with ONE command:\n");
    let _ = writeln!(m, "```sh\ncargo run --release -p rvs-benches --bin rvs-bench -- --all --markdown docs/performance.md --json target/bench.json\n```\n");
    let _ = writeln!(m, "CI runs only the correctness side (`cargo test -p rvs-benches`: `--short` for every mode and workload, no timing asserts).\n");
    let _ = writeln!(m, "## Machine\n");
    let _ = writeln!(m, "| | |\n|---|---|");
    let _ = writeln!(m, "| CPU | {} ({} logical CPUs), TSC {:.3} GHz |", info.cpu, info.cpus, info.tsc_hz as f64 / 1e9);
    let _ = writeln!(m, "| memory | {:.1} GiB |", info.mem_gib);
    let _ = writeln!(m, "| kernel | {} |", info.kernel);
    let _ = writeln!(m, "| DPDK | {} |", info.dpdk);
    let _ = writeln!(m, "| transparent huge pages | `{}` (each worker's session slab and index are `madvise(MADV_HUGEPAGE)`d, as rvsd does) |", info.thp);
    let _ = writeln!(m, "| date | {} |", info.date);
    let _ = writeln!(
        m,
        "| EAL | `{}` ({}) |",
        info.eal_args.join(" "),
        if info.huge { "2 MiB hugepages" } else { "no hugepages: 4 KiB pages, more TLB misses" }
    );
    let _ = writeln!(m, "| load average at the end | {} |", info.load);
    let _ = writeln!(m, "| seconds per case | {} (bare forwarder: half) |\n", t.seconds);
    // The bench itself keeps one CPU busy: a 1-minute load much above 1 means other jobs ran.
    let load1: f64 = info.load.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    if load1 > 1.5 {
        let _ = writeln!(m, "**The machine was shared**: other jobs ran on its {} CPUs during the run (load average above), so wall-clock figures are noisy and pessimistic; the ratios to the bare forwarder, measured in the same case right before, are the steadier numbers. The machine is a VM (`{}`), without performance counters.\n", info.cpus, info.cpu);
    } else {
        let _ = writeln!(m, "The bench ran alone (a load average near 1 is the bench itself). The machine is a VM (`{}`), without performance counters, and its memory latency, not the instruction count, dominates from 1M sessions on (see the profile below).\n", info.cpu);
    }
    let _ = writeln!(m, "## What is measured\n");
    let _ = writeln!(m, "One thread, one worker (`rvs_dataplane::worker::Worker<rvs::pkt::Pkt>`, the pipeline rvsd runs, over real DPDK mbufs), one `net_ring0` port (a bare `--vdev net_ring0`: its tx queue loops back to its rx queue). Frames are 60 bytes (64 on a wire with the FCS): TCP (padded) and UDP of N distinct flows (clients 192.0.2.1-250 × ports), in a random order fixed per case, built in advance. The snapshot has a TCP (:80) and a UDP (:53) service on 203.0.113.100 with 8 real servers of the mode on the port's connected network, rr; FULLNAT with enough local addresses (198.51.100.x) for the sessions; neighbours (gateway, real servers) are given to the worker with `Worker::learn_neigh` first, so no ARP. Per burst of 32 the timed loop does:\n");
    let _ = writeln!(m, "1. `rte_pktmbuf_alloc_bulk` 32 mbufs and copy the prepared frames into them (stands in for the NIC's rx: the copy is part of the rx cost here);");
    let _ = writeln!(m, "2. `worker.process_burst(&mut burst, now, &mut io)` on the 32, as rvsd's loop calls it (from 16k sessions on it prefetches the burst's index buckets and sessions first; the **pipeline** columns time only this step);");
    let _ = writeln!(m, "3. `rte_eth_tx_burst` of the output on the net_ring port, then `rte_eth_rx_burst` of the looped-back frames and free them (stands in for tx completion); 1 output frame in 257 is checked (all of them with `--short`);");
    let _ = writeln!(m, "4. every 1 ms `worker.tick(now)` as rvsd's loop does (session expiry, ARP timers).\n");
    let _ = writeln!(m, "The **bare forwarder** runs the same loop over the same frames, order, mbufs and port with a MAC swap instead of step 2 and 4, interleaved with the pipeline in 4 slices per case (so that load from other processes hits both); `ratio` = pipeline Mpps / bare Mpps. Not included: a real NIC (PCIe, descriptor rings, DMA), rvsd's per-loop snapshot check and stats publication, RSS and multi-core redirects. Mpps per core = packets / time of the timed loop. Burst latency = time of one iteration (steps 1-4) per burst of 32, in ns (HdrHistogram). Bytes per session = heap growth (counted by a global counting allocator, `stats_alloc`) while the N sessions are opened, divided by N: it includes the session slab (80-byte entries, grown in 64k-entry chunks), the session index (64-byte buckets of ten 6-byte slots, sized up front for two keys per session of the table's capacity, here N plus a little), the timer wheel and the growth slack of those containers at that N (bytes requested from the allocator: reserved capacity counts whether or not its pages were touched; for scale, `size_of::<Session>()` is {} bytes). At 1k it is dominated by what the table reserves up front; the 1M and 10M figures are the meaningful ones.\n", std::mem::size_of::<rvs_dataplane::conn::Session>());
    let _ = writeln!(m, "Workloads: **established** = N flows opened first (SYN, then ACK; UDP twice), then repeated passes over one packet per flow (for NAT/FULLNAT also one reply per flow from the real server, so half the packets are replies); **new** = TCP connections on fresh tuples: SYN (scheduled, session created, forwarded) then the flow's ACK, connections/s = sessions created / time; between passes (not timed) the clock jumps 1000 s and `tick` expires everything; **mix** = established flows with 1 packet in 5 a SYN of a new flow (their SYN_RECV timeout is 1 s; between passes the clock jumps 2 s to expire them); **churn** = new TCP connections over a pool of max(N, 64k) tuples with every timeout at 20 ms, real clock, so sessions expire through `tick` while traffic runs.\n");
    let _ = writeln!(m, "Correctness, checked in every case (the run fails otherwise): worker rx = frames fed; tx + drops = rx; zero drops; every transmitted frame came back from the ring; no ARP request, no redirect; sampled output frames have the port's source MAC, the real server's (or gateway's) destination MAC, valid IPv4 header and TCP/UDP checksums, TTL decremented, and the addresses/ports of the mode (DR: IP header untouched; NAT: dst RIP:port, replies from VIP; FULLNAT: src a local address; TUN: IPIP outer header from the port address to the RIP, inner header valid).\n");
    for wl in [Workload::Established, Workload::New, Workload::Mix, Workload::Churn] {
        let rows: Vec<&CaseResult> = results.iter().filter(|r| r.workload == wl).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(m, "## {}\n", wl.name());
        let _ = writeln!(m, "| mode | sessions | Mpps | ns/pkt | cycles/pkt | pipeline ns/pkt | burst p50 / p99 / p99.9 / max (ns) | bare Mpps | ratio | ns/pkt over bare | conns/s | bytes/session | check |");
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|");
        for r in rows {
            let f = &r.fig;
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} | {:.1} | {:.0} | {:.1} | {} / {} / {} / {} | {:.2} | {:.2} | {:+.1} | {} | {} | {} |",
                mode_name(r.mode),
                fmt_n(r.sessions),
                f.mpps,
                f.ns_pkt,
                f.cycles_pkt,
                f.pipe_ns_pkt,
                f.p50,
                f.p99,
                f.p999,
                f.max,
                r.base.mpps,
                f.mpps / r.base.mpps.max(1e-12),
                f.ns_pkt - r.base.ns_pkt,
                r.conns_per_s.map_or("-".into(), |c| format!("{:.2} M", c / 1e6)),
                r.bytes_per_session.map_or("-".into(), |b| format!("{b:.0}")),
                if r.ok() { format!("ok ({} verified)", r.verified) } else { format!("FAILED: {}", r.errors.join("; ")) }
            );
        }
        let churn_notes: Vec<String> = results
            .iter()
            .filter(|r| r.workload == wl && wl == Workload::Churn)
            .map(|r| format!("- {} {}: {}", mode_name(r.mode), fmt_n(r.sessions), r.notes.join("; ")))
            .collect();
        if !churn_notes.is_empty() {
            let _ = writeln!(m, "\n{}", churn_notes.join("\n"));
        }
        let _ = writeln!(m);
    }
    if !skipped.is_empty() {
        let _ = writeln!(m, "Skipped:\n");
        for s in skipped {
            let _ = writeln!(m, "- {s}");
        }
        let _ = writeln!(m);
    }
    if let Some(c) = control {
        let _ = writeln!(m, "## Control plane\n");
        let max_build = c.build_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(m, "{} services × 10 real servers (DR, wrr). Applying them: validating into a `ServiceTable` (`add_service` each) {:.1} ms, then the first snapshot (`to_services` + `Snapshot::build`) {:.1} ms. Then {} single changes (`edit_real` of one weight + `to_services` + `Snapshot::build` + arc-swap store) by a control thread on CPU {} while a worker thread forwards DR traffic: {} ms each (max {:.1} ms). The worker (`set_snapshot` when the generation changes, between bursts, as rvsd does) took {} µs per switch.{}\n",
            c.services, c.table_ms, c.first_build_ms, c.build_ms.len(),
            c.control_cpu.map_or("(not pinned)".into(), |x| x.to_string()),
            c.build_ms.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "), max_build,
            c.run.switch_us.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "),
            if c.errors.is_empty() { String::new() } else { format!(" ERRORS: {}", c.errors.join("; ")) });
        let _ = writeln!(m, "Gaps: the time between the ends of two bursts of the worker (snapshot check + burst). For each gap above 100 µs the worker notes afterwards whether it switched snapshots and ran `tick` in that iteration, and reads its `/proc/thread-self/status` (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`), `schedstat` (time runnable but waiting on a run queue) and `stat` (page faults): a context switch, wait or fault counts for the gap if it happened since the previous reading (at the previous gap above 100 µs, or at the loop start), so one that made no long gap is counted at the next long gap. These readings are the only syscalls in the loop; the clock restarts after them.\n");
        let _ = writeln!(m, "- While publishing: {}", gap_sentences(&c.run));
        let _ = writeln!(
            m,
            "- The same loop as long with nothing published (control thread idle): {}",
            gap_sentences(&c.baseline)
        );
        let _ = writeln!(m, "- {}\n", preemption_sentence(&c.run));
    }
    // Targets.
    let _ = writeln!(m, "## Targets (one worker, 64-byte packets)\n");
    let _ = writeln!(m, "| target | measured | |\n|---|---|---|");
    let find = |mode: FwdMode, wl: Workload, n: usize| {
        results.iter().find(|r| r.mode == mode && r.workload == wl && r.sessions == n)
    };
    for (mode, tgt) in [(FwdMode::Dr, 15.0), (FwdMode::Nat, 10.0), (FwdMode::FullNat, 10.0), (FwdMode::Tun, 10.0)] {
        match find(mode, Workload::Established, 1_000_000) {
            Some(r) => {
                let small = find(mode, Workload::Established, 1_000)
                    .map_or(String::new(), |k| format!("; with 1k sessions {:.2} Mpps", k.fig.mpps));
                let _ = writeln!(m, "| established, 1M sessions, {} ≥ {tgt} Mpps | {:.2} Mpps (pipeline alone {:.1} ns/pkt = {:.1} Mpps; bare forwarder {:.2} Mpps{small}) | {} |", mode_name(mode), r.fig.mpps, r.fig.pipe_ns_pkt, 1e3 / r.fig.pipe_ns_pkt.max(1e-9), r.base.mpps, met(r.fig.mpps >= tgt));
            }
            None => {
                let _ = writeln!(m, "| established, 1M sessions, {} ≥ {tgt} Mpps | not run | - |", mode_name(mode));
            }
        }
    }
    // The target names no table size: both sizes are shown, and met only where it holds.
    let rates: Vec<(usize, f64)> = [1_000, 1_000_000]
        .iter()
        .filter_map(|&n| find(FwdMode::FullNat, Workload::New, n).map(|r| (n, r.conns_per_s.unwrap_or(0.0))))
        .collect();
    if rates.is_empty() {
        let _ = writeln!(m, "| new connections FULLNAT ≥ 1.5 M/s per core | not run | - |");
    } else {
        let text = rates
            .iter()
            .map(|(n, c)| format!("{:.2} M/s with {} sessions", c / 1e6, fmt_n(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let ok: Vec<usize> = rates.iter().filter(|(_, c)| *c >= 1.5e6).map(|(n, _)| *n).collect();
        let verdict = if ok.len() == rates.len() {
            met(true).to_string()
        } else if ok.is_empty() {
            met(false).to_string()
        } else {
            format!("**met with {} sessions only**", ok.iter().map(|n| fmt_n(*n)).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(m, "| new connections FULLNAT ≥ 1.5 M/s per core | {text} | {verdict} |");
    }
    // Bytes per session at the large sizes (at 1k the table's initial reservation dominates).
    let bps: Vec<(FwdMode, usize, f64)> = results
        .iter()
        .filter(|r| r.workload == Workload::Established && r.sessions >= 1_000_000)
        .filter_map(|r| r.bytes_per_session.map(|b| (r.mode, r.sessions, b)))
        .collect();
    if !bps.is_empty() {
        let worst = bps.iter().map(|x| x.2).fold(0.0, f64::max);
        let _ = writeln!(
            m,
            "| ≤ 160 bytes per session (both directions) | {} | {} |",
            bps.iter()
                .map(|(mo, n, b)| format!("{} {b:.0} B at {}", mode_name(*mo), fmt_n(*n)))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst <= 160.0)
        );
    }
    let ten: Vec<&CaseResult> = results.iter().filter(|r| r.sessions == 10_000_000 && r.heap_bytes.is_some()).collect();
    if ten.is_empty() {
        let ext = bps.iter().map(|x| x.2).fold(0.0, f64::max) * 1e7 / (1u64 << 30) as f64;
        let _ = writeln!(
            m,
            "| 10M sessions < 2 GiB | not run; extrapolated from the largest run: {ext:.2} GiB | {} (extrapolated) |",
            met(ext < 2.0)
        );
    } else {
        let worst = ten.iter().map(|r| r.heap_bytes.unwrap_or(0)).max().unwrap_or(0) as f64 / (1u64 << 30) as f64;
        let _ = writeln!(
            m,
            "| 10M sessions < 2 GiB | {} | {} |",
            ten.iter()
                .map(|r| format!(
                    "{} {:.2} GiB",
                    mode_name(r.mode),
                    r.heap_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64
                ))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst < 2.0)
        );
    }
    if let Some(c) = control {
        let max_build = c.build_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(m, "| control plane: 10,000 services applied < 1 s | {:.0} ms (table {:.0} ms + snapshot {:.0} ms); one change republished in max {:.0} ms | {} |", c.table_ms + c.first_build_ms, c.table_ms, c.first_build_ms, max_build, met(c.table_ms + c.first_build_ms < 1000.0 && c.services >= 10_000));
        let r = &c.run;
        let _ = writeln!(m, "| no worker gap > 100 µs while publishing | {:.1} µs max ({:.1} µs at a switch; set_snapshot max {:.0} µs); {} gaps > 100 µs: {} with an involuntary context switch, {} unexplained; without publications: {:.1} µs max, {} gaps > 100 µs ({} with an involuntary context switch). {} | {} |",
            r.max_gap_us, r.max_gap_switch_us, r.switch_us.iter().copied().fold(0.0, f64::max), r.long, r.count(|g| g.nonvoluntary > 0), r.count(|g| !g.explained()),
            c.baseline.max_gap_us, c.baseline.long, c.baseline.count(|g| g.nonvoluntary > 0), preemption_sentence(r), met(c.gap_target_met()));
    }
    let _ = writeln!(m);
    if let Some(n) = notes {
        let _ = writeln!(m, "{}", n.trim_end());
    }
    m
}
