//! The polling workers: one pinned thread per configured lcore, each owning rx/tx queue `idx` of
//! every port, its own session table and counters. Run to completion over bursts:
//! rx → `Worker::process` (parse, session, schedule, rewrite, neighbour) → tx.
//!
//! Nothing on this path takes a lock or touches a shared atomic per packet. Between bursts a
//! worker (a) compares the published snapshot's generation with its own and switches when newer,
//! (b) runs its timers, (c) every `STATS_EVERY` copies its counters into its own stats slot.

use crate::pkt::Pkt;
use arc_swap::ArcSwap;
use dpdk_sys::{Mbuf, Mempool};
use parking_lot::Mutex;
use rvs_config::model::ServiceKey;
use rvs_dataplane::worker::{Io, Worker, WorkerConfig};
use rvs_dataplane::{Counters, DropReason, PacketBuf, Snapshot};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often timers run (ARP retries, session expiry).
const TICK_EVERY: Duration = Duration::from_millis(1);
/// How often a worker publishes its counters for the control plane.
const STATS_EVERY: Duration = Duration::from_millis(100);

/// What a worker publishes for the control plane (counters and per-RS session counts).
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub counters: Counters,
    /// (service, RS) → (active, inactive) sessions on this worker.
    pub conns: HashMap<(ServiceKey, SocketAddr), (u32, u32)>,
}

/// State shared between the control thread and the workers. The workers only read `snapshot`
/// and `stop`, and only write their own `stats` slot.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    pub stats: Vec<Mutex<WorkerStats>>,
}

impl Shared {
    /// Counters of all workers, summed.
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for s in &self.stats {
            total.add(&s.lock().counters);
        }
        total
    }

    /// Sessions per (service, RS), summed over workers.
    pub fn conns(&self) -> HashMap<(ServiceKey, SocketAddr), (u64, u64)> {
        let mut total: HashMap<(ServiceKey, SocketAddr), (u64, u64)> = HashMap::new();
        for s in &self.stats {
            for (k, (a, i)) in &s.lock().conns {
                let e = total.entry(*k).or_default();
                e.0 += u64::from(*a);
                e.1 += u64::from(*i);
            }
        }
        total
    }
}

/// Per-worker settings from the config.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Worker index = the rx/tx queue id it owns on every port.
    pub idx: usize,
    /// CPU to pin to.
    pub cpu: usize,
    pub ports: Vec<u16>,
    pub burst: usize,
    /// Consecutive empty polls before sleeping.
    pub idle_polls: u32,
    /// Sleep after `idle_polls` empty polls; zero means busy-poll.
    pub idle_sleep: Duration,
    pub dataplane: WorkerConfig,
}

/// The worker's view of DPDK: a mempool for new packets and a tx buffer per port.
struct DpdkIo {
    pool: Arc<Mempool>,
    /// Indexed by port id.
    tx: Vec<Vec<Mbuf>>,
}

impl Io<Pkt> for DpdkIo {
    #[inline]
    fn alloc(&mut self) -> Option<Pkt> {
        self.pool.alloc().map(Pkt)
    }
    #[inline]
    fn tx(&mut self, pkt: Pkt) {
        let port = usize::from(pkt.port());
        match self.tx.get_mut(port) {
            Some(q) => q.push(pkt.0),
            // The pipeline only emits on ports of the snapshot, all of which are ours; a frame
            // for any other id is freed here rather than risking a bad queue.
            None => drop(pkt),
        }
    }
}

impl DpdkIo {
    /// Send every buffered packet; what the tx queue refuses is freed and counted.
    fn flush(&mut self, queue: u16, worker: &mut Worker<Pkt>) {
        for (port, q) in self.tx.iter_mut().enumerate() {
            while !q.is_empty() {
                if dpdk_sys::tx_burst(port as u16, queue, q) == 0 {
                    break;
                }
            }
            if !q.is_empty() {
                worker.count_drop(DropReason::TxFull, q.len() as u64);
                q.clear();
            }
        }
    }
}

/// Run one worker until `shared.stop` is set. Called on the worker's own thread.
pub fn run(cfg: LoopConfig, pool: Arc<Mempool>, shared: Arc<Shared>) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cfg.cpu }) {
        tracing::warn!(worker = cfg.idx, cpu = cfg.cpu, "could not pin worker to its CPU");
    }
    let lcore = match dpdk_sys::register_thread() {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(worker = cfg.idx, "rte_thread_register failed, running without mempool cache: {e}");
            None
        }
    };
    tracing::info!(worker = cfg.idx, cpu = cfg.cpu, ?lcore, ports = ?cfg.ports, "worker started");

    let queue = cfg.idx as u16;
    let max_port = cfg.ports.iter().copied().max().map_or(0, usize::from);
    let mut io = DpdkIo { pool, tx: (0..=max_port).map(|_| Vec::with_capacity(cfg.burst * 2)).collect() };
    let mut worker: Worker<Pkt> = Worker::new(cfg.dataplane.clone(), shared.snapshot.load_full());
    let mut rx: Vec<Mbuf> = Vec::with_capacity(cfg.burst);
    let epoch = Instant::now();
    let mut last_tick = epoch;
    let mut last_stats = epoch;
    let mut idle: u32 = 0;

    while !shared.stop.load(Ordering::Relaxed) {
        // Pick up a new snapshot between bursts.
        {
            let snap = shared.snapshot.load();
            if snap.generation != worker.generation() {
                worker.set_snapshot(arc_swap::Guard::into_inner(snap));
            }
        }
        let now = Instant::now();
        let now_ns = now.duration_since(epoch).as_nanos() as u64;
        let mut got = 0usize;
        for &port in &cfg.ports {
            let n = dpdk_sys::rx_burst(port, queue, &mut rx);
            got += n;
            for m in rx.drain(..) {
                worker.process(Pkt(m), now_ns, &mut io);
            }
        }
        if got > 0 {
            io.flush(queue, &mut worker);
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
        }
        if now.duration_since(last_tick) >= TICK_EVERY {
            last_tick = now;
            worker.tick(now_ns, &mut io);
            io.flush(queue, &mut worker);
        }
        if now.duration_since(last_stats) >= STATS_EVERY {
            last_stats = now;
            publish(&worker, &shared.stats[cfg.idx]);
        }
        if got == 0 && idle >= cfg.idle_polls && !cfg.idle_sleep.is_zero() {
            std::thread::sleep(cfg.idle_sleep);
        }
    }
    publish(&worker, &shared.stats[cfg.idx]);
    // Packets still held for ARP are freed with the worker.
    drop(worker);
    if lcore.is_some() {
        dpdk_sys::unregister_thread();
    }
    tracing::info!(worker = cfg.idx, "worker stopped");
}

fn publish(worker: &Worker<Pkt>, slot: &Mutex<WorkerStats>) {
    let conns = worker.conn_counts().map(|(k, rs, c)| ((*k, *rs), c)).collect();
    let mut s = slot.lock();
    s.counters.clone_from(worker.counters());
    s.conns = conns;
}
