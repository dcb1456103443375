//! The cases: forwarding modes × workloads × session counts. For each, the flows and frames
//! (built in advance), the snapshot of the bench's services, and what the case measures and
//! checks ([`run_case`]): the pipeline next to the bare forwarder, connections per second, heap
//! bytes per session, and that every packet is accounted for.

use crate::driver::{Bench, Driver};
use crate::frames::{build, client_frame, net, proto_of, Frame, ACK, FRAME_LEN, TCP};
use crate::stats::{Acc, Figures};
use crate::util::Rng;
use crate::{GLOBAL, NS_PER_S};
use rvs::pkt::Pkt;
use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_config::services::ServiceTable;
use rvs_config::ModelError;
use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::worker::{Worker, WorkerConfig};
use rvs_dataplane::Snapshot;
use serde_json::json;
use stats_alloc::Region;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use thiserror::Error;

/// One output frame in this many is checked in a timed run (all of them with `--short`).
pub const VERIFY_EVERY: u64 = 257;
/// The bare forwarder and the pipeline alternate in this many slices per timed case.
pub const SLICES: u32 = 4;
/// Seconds per case with `--short`.
pub const SHORT_SECONDS: f64 = 0.05;
/// Churn: every timeout.
pub const CHURN_TIMEOUT_NS: u64 = 20 * 1_000_000;
/// Churn: the least number of fresh tuples it cycles through.
pub const CHURN_MIN_TUPLES: usize = 65_536;
/// Mix: established-flow packets per SYN of a new flow.
pub const MIX_EST_PER_NEW: usize = 4;
/// Mix: the SYN_RECV (and SYN_SENT) timeout of its new flows.
pub const MIX_SYN_TIMEOUT_NS: u64 = NS_PER_S;
/// Mix: how far the clock jumps between passes (expires the new flows, not the established).
pub const MIX_JUMP_NS: u64 = 2 * NS_PER_S;
/// New: how far the clock jumps between passes (expires every session).
pub const NEW_JUMP_NS: u64 = 1000 * NS_PER_S;
/// Sessions of table capacity above what a case keeps open at once.
const CAPACITY_SLACK: usize = 1024;
/// Session counts of a full run (`--all`), every mode and workload.
pub const FULL_SIZES: [usize; 2] = [1_000, 1_000_000];
/// Established: the largest size of a full run, only when the measured memory says it fits.
pub const HUGE_SESSIONS: usize = 10_000_000;

/// The forwarding modes, in report order.
pub const MODES: [FwdMode; 4] = [FwdMode::Dr, FwdMode::Nat, FwdMode::FullNat, FwdMode::Tun];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Established,
    New,
    Mix,
    Churn,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 4] = [Workload::Established, Workload::New, Workload::Mix, Workload::Churn];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Established => "established",
            Workload::New => "new",
            Workload::Mix => "mix",
            Workload::Churn => "churn",
        }
    }
}

/// The mode as ipvsadm and the report name it (`DR`, `NAT`, `FULLNAT`, `TUN`).
pub fn mode_name(m: FwdMode) -> &'static str {
    rvs_config::services::fwd_label(m).0
}

/// A snapshot of the bench's services could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Service(#[from] ModelError),
    #[error("{0}")]
    Build(#[from] rvs_dataplane::SnapshotError),
}

/// The bench's snapshot: one port (203.0.113.2/24), clients behind the gateway, TCP VIP:80 and
/// UDP VIP:53 with N_RS real servers of `mode` (rr), FULLNAT local addresses, plus `extra`.
/// `prev`: the snapshot being replaced, whose unchanged services are shared (rvsd's path).
pub fn snapshot(
    b: &Bench,
    prev: Option<&Snapshot>,
    gen: u64,
    mode: FwdMode,
    laddrs: usize,
    tunables: Tunables,
    extra: &[Service],
) -> Result<Arc<Snapshot>, SnapshotError> {
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
        table.add_service(svc)?;
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
    let clients = StaticRoute { prefix: net::CLIENT_NET, len: 24, port: b.port, via: Some(net::GW) };
    Snapshot::build_from(prev, gen, vec![port], &[clients], &all, tunables).map(Arc::new).map_err(SnapshotError::Build)
}

/// The numbers 0..n in an order fixed by `rng`.
pub fn shuffled(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut v);
    v
}

/// Result of one (mode, workload, sessions) case.
#[derive(Debug)]
pub struct CaseResult {
    pub mode: FwdMode,
    pub workload: Workload,
    pub sessions: usize,
    pub fig: Figures,
    pub base: Figures,
    pub conns_per_s: Option<f64>,
    pub bytes_per_session: Option<f64>,
    pub heap_bytes: Option<i64>,
    pub created: u64,
    pub expired: u64,
    pub live_end: usize,
    pub rx: u64,
    pub tx: u64,
    pub drops: u64,
    pub verified: u64,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

impl CaseResult {
    /// No correctness check failed.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
    pub fn json(&self) -> serde_json::Value {
        json!({"mode": mode_name(self.mode), "workload": self.workload.name(), "sessions": self.sessions,
            "figures": self.fig.json(), "baseline": self.base.json(),
            "ratio_mpps_to_baseline": self.fig.ratio_to(&self.base),
            "conns_per_s": self.conns_per_s, "bytes_per_session": self.bytes_per_session,
            "session_heap_bytes": self.heap_bytes, "sessions_created": self.created,
            "sessions_expired": self.expired, "sessions_live_at_end": self.live_end,
            "rx": self.rx, "tx": self.tx, "drops": self.drops, "frames_verified": self.verified,
            "ok": self.ok(), "errors": self.errors, "notes": self.notes})
    }
}

/// How long a case measures.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Measured seconds per case (the bare forwarder gets half).
    pub seconds: f64,
    /// Correctness only: one slice, every output frame checked.
    pub short: bool,
}

impl Timing {
    /// The TSC `frac` of the case's seconds from now.
    pub fn deadline(&self, b: &Bench, frac: f64) -> u64 {
        dpdk_sys::tsc() + (self.seconds * frac * b.hz as f64) as u64
    }
}

/// Run one case: open its flows, then measure the bare forwarder and the pipeline over the
/// same frames, and check that every packet is accounted for.
pub fn run_case(b: &Bench, mode: FwdMode, wl: Workload, n: usize, t: Timing) -> CaseResult {
    let mut rng = Rng(0x5eed ^ n as u64 ^ (wl as u64) << 32);
    let verify_every = if t.short { 1 } else { VERIFY_EVERY };
    let mut d = Driver::new(b, mode, verify_every);
    let mut warm = Acc::new();
    let mut notes = Vec::new();
    // Timeouts: defaults, except the workloads that exercise expiry.
    let mut tunables = Tunables::default();
    match wl {
        Workload::Mix => {
            tunables.timeouts.tcp_syn_recv_ns = MIX_SYN_TIMEOUT_NS;
            tunables.timeouts.tcp_syn_sent_ns = MIX_SYN_TIMEOUT_NS;
        }
        Workload::Churn => {
            let c = CHURN_TIMEOUT_NS;
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
        Workload::Churn => n.max(CHURN_MIN_TUPLES),
    };
    let concurrent = match wl {
        Workload::Established | Workload::Mix => n + n_fresh,
        Workload::New | Workload::Churn => n_fresh,
    };
    let laddrs = net::laddrs_for(concurrent + CAPACITY_SLACK);
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
        max_sessions: concurrent + CAPACITY_SLACK,
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
    notes.push(format!(
        "session slab and index: {huge_ranges} of {} ranges advised to transparent huge pages",
        w.table_memory().len()
    ));
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
            let seq = pairs_sequence(&shuffled(n_fresh, &mut rng));
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
            let seq = mix_sequence(&est_order, &fresh_order, n_est as u32);
            (f, seq)
        }
    };

    // The bare forwarder (same frames, order, mbufs and port) and the pipeline, interleaved in
    // slices so that load from other processes hits both alike; each resumes where it stopped.
    let mut base = Acc::new();
    let c0 = w.counters().clone();
    let mut acc = Acc::new();
    let slices = if t.short { 1 } else { SLICES };
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
                    Workload::New => d.expire_to(&mut w, NEW_JUMP_NS, 0, &mut acc),
                    Workload::Mix => d.expire_to(&mut w, MIX_JUMP_NS, est_live, &mut acc),
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
            CHURN_TIMEOUT_NS / 1_000_000,
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

/// The frame order of new and churn: flow `k`'s two frames (at 2k, 2k + 1: SYN, then ACK) back
/// to back, flows in the order `flows`.
pub fn pairs_sequence(flows: &[u32]) -> Vec<u32> {
    flows.iter().flat_map(|&k| [2 * k, 2 * k + 1]).collect()
}

/// The frame order of mix: MIX_EST_PER_NEW packets of established flows (`est_order`), then the
/// SYN of a new flow (`fresh_order`, its frames from `fresh_at` on, reused round-robin): 1 packet
/// in MIX_EST_PER_NEW + 1 is a new flow.
pub fn mix_sequence(est_order: &[u32], fresh_order: &[u32], fresh_at: u32) -> Vec<u32> {
    let mut seq = Vec::with_capacity(est_order.len() + est_order.len() / MIX_EST_PER_NEW);
    let mut fresh = fresh_order.iter().cycle();
    for (j, &e) in est_order.iter().enumerate() {
        seq.push(e);
        if j % MIX_EST_PER_NEW == MIX_EST_PER_NEW - 1 {
            seq.push(fresh_at + fresh.next().expect("mix has fresh flows"));
        }
    }
    seq
}

/// Estimated memory (GiB) of an established case of `n` sessions: measured bytes per session
/// plus the frames built in advance (one per flow, two with the replies of NAT/FULLNAT, and the
/// flow's first packet while opening) and the 4-byte order of each.
pub fn estimate_gib(n: usize, bytes_per_session: f64, mode: FwdMode) -> f64 {
    let frames = if matches!(mode, FwdMode::Nat | FwdMode::FullNat) { 3.0 } else { 2.0 } * FRAME_LEN as f64;
    n as f64 * (bytes_per_session + frames + 8.0) / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_estimate_of_the_largest_case() {
        // 10M sessions of 100 B, DR: (100 + 2*60 + 8) B each = 2.28e9 B = 2.1234 GiB.
        let g = estimate_gib(10_000_000, 100.0, FwdMode::Dr);
        assert!((g - 2_280_000_000.0 / 1_073_741_824.0).abs() < 1e-9, "{g}");
        // NAT keeps the replies too: (100 + 3*60 + 8) B.
        let g = estimate_gib(10_000_000, 100.0, FwdMode::Nat);
        assert!((g - 2_880_000_000.0 / 1_073_741_824.0).abs() < 1e-9, "{g}");
    }

    #[test]
    fn workloads_and_modes_are_named_as_the_report_and_ci_expect() {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names, ["established", "new", "mix", "churn"]);
        let modes: Vec<&str> = MODES.iter().map(|m| mode_name(*m)).collect();
        assert_eq!(modes, ["DR", "NAT", "FULLNAT", "TUN"]);
    }

    #[test]
    fn frame_orders_of_new_and_mix() {
        assert_eq!(pairs_sequence(&[2, 0, 1]), [4, 5, 0, 1, 2, 3]);
        // 10 established packets, new-flow frames from 100 on, 2 new flows reused in turn.
        let est: Vec<u32> = (0..10).collect();
        assert_eq!(mix_sequence(&est, &[1, 0], 100), [0, 1, 2, 3, 101, 4, 5, 6, 7, 100, 8, 9]);
    }

    #[test]
    fn shuffled_is_a_permutation() {
        let mut v = shuffled(1000, &mut Rng(7));
        v.sort_unstable();
        assert!(v.iter().copied().eq(0..1000u32));
    }
}

/// The `--mode` argument of the bench binaries: one forwarding mode, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Dr,
    Nat,
    Fullnat,
    Tun,
    All,
}

impl ModeArg {
    /// The modes it stands for, in [`MODES`] order.
    pub fn modes(self) -> Vec<FwdMode> {
        match self {
            ModeArg::Dr => vec![FwdMode::Dr],
            ModeArg::Nat => vec![FwdMode::Nat],
            ModeArg::Fullnat => vec![FwdMode::FullNat],
            ModeArg::Tun => vec![FwdMode::Tun],
            ModeArg::All => MODES.to_vec(),
        }
    }
}
