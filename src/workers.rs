//! The polling workers: one pinned thread per configured lcore, each owning rx/tx queue `idx` of
//! every port, its own session table and counters. Run to completion over bursts:
//! rx → `Worker::process` (parse, session, schedule, rewrite, neighbour) → tx.
//!
//! With more than one worker, a packet can arrive on a queue whose worker does not own its
//! session (NAT replies, FULLNAT replies without rte_flow steering): the pipeline hands it to
//! the owner through [`Io::redirect`]. Each ordered pair of workers (i → j) has its own
//! single-producer/single-consumer DPDK ring (the [`Fabric`]); redirected packets are staged per
//! destination ([`Outbox`]) and enqueued once per burst. Neighbours learned from an ARP reply,
//! which lands on one queue only, are passed to the other workers through a small lock-free
//! inbox per worker ([`NeighBus`]) — ARP is rare, this is off the per-packet path.
//!
//! Nothing on this path takes a lock or touches a shared atomic per packet. Each loop a worker
//! (a) compares the published snapshot's generation with its own and switches when newer,
//! (b) applies neighbours learned by the others, (c) receives a burst from each port and then
//! from each incoming redirect ring, (d) flushes its tx and redirect buffers, (e) runs its timers,
//! (f) every `STATS_EVERY` copies its counters into its own stats slot.
//!
//! The control thread talks to a worker through its mailbox ([`WorkerMsg`], a bounded lock-free
//! queue per worker polled once per loop, an empty check when idle): "publish your stats now",
//! "dump your sessions", "show/flush your neighbours". Each message carries the sender the
//! worker answers on; the control thread waits for the answers with a deadline, so a stalled
//! worker delays a command, never blocks it.

use crate::pkt::Pkt;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use dpdk_sys::{DpdkError, Eal, Mbuf, Mempool, Ring};
use parking_lot::Mutex;
use rvs_config::model::ServiceKey;
use rvs_dataplane::conn::{SessionFilter, SessionView};
pub use rvs_dataplane::counters::RsStats;
use rvs_dataplane::neigh::NeighView;
use rvs_dataplane::worker::{Io, Worker, WorkerConfig};
use rvs_dataplane::{Counters, DropReason, PacketBuf, Snapshot};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often timers run (ARP retries, session expiry).
const TICK_EVERY: Duration = Duration::from_millis(1);
/// How often a worker publishes its counters for the control plane.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// Mbufs per redirect ring (one ring per ordered pair of workers).
pub const REDIRECT_RING_SIZE: u32 = 4096;
/// Neighbour messages a worker's inbox holds; beyond that new ones are dropped (the worker
/// then resolves the address itself with its own ARP request).
pub const NEIGH_INBOX: usize = 256;

/// Messages a worker's mailbox holds; a request finding it full counts as unanswered.
pub const MAILBOX: usize = 16;

/// What a worker publishes for the control plane (counters, per-RS session counts and traffic).
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub counters: Counters,
    /// (service, RS) → (active, inactive) sessions on this worker.
    pub conns: HashMap<(ServiceKey, SocketAddr), (u32, u32)>,
    /// (service, RS) → traffic through this worker since it started.
    pub rs_stats: HashMap<(ServiceKey, SocketAddr), RsStats>,
}

/// A request from the control thread to one worker, answered on `reply` between bursts.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Publish the stats slot now; answer when done.
    Publish { reply: mpsc::Sender<()> },
    /// Up to `max` sessions matching `filter`, and how many matched in all.
    DumpSessions { filter: SessionFilter, max: usize, reply: mpsc::Sender<(Vec<SessionView>, u64)> },
    /// The neighbour table.
    NeighShow { reply: mpsc::Sender<Vec<NeighView>> },
    /// Forget the neighbours of one port (all: `None`); answers how many went.
    NeighFlush { port: Option<u16>, reply: mpsc::Sender<usize> },
}

/// State shared between the control thread and the workers. The workers only read `snapshot`
/// and `stop`, only write their own `stats` slot, and only pop their own mailbox.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    pub stats: Vec<Mutex<WorkerStats>>,
    /// One per worker, see [`WorkerMsg`].
    pub mailboxes: Vec<ArrayQueue<WorkerMsg>>,
}

impl Shared {
    /// State for `n_workers` workers starting on `snap`.
    pub fn new(snap: Snapshot, n_workers: usize) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snap),
            stop: AtomicBool::new(false),
            stats: (0..n_workers).map(|_| Mutex::new(WorkerStats::default())).collect(),
            mailboxes: (0..n_workers).map(|_| ArrayQueue::new(MAILBOX)).collect(),
        }
    }

    /// Traffic per (service, real server), summed over the workers' last published figures;
    /// cumulative since start (never zeroed: `rvsadm -Z` is a baseline kept by the control
    /// handler), so it suits Prometheus counters.
    pub fn service_stats(&self) -> HashMap<(ServiceKey, SocketAddr), RsStats> {
        let mut total: HashMap<(ServiceKey, SocketAddr), RsStats> = HashMap::new();
        for s in &self.stats {
            for (k, v) in &s.lock().rs_stats {
                total.entry(*k).or_default().add(v);
            }
        }
        total
    }

    /// Send each worker the message `make` builds and collect the answers, waiting until
    /// `wait` has passed for the slowest. `None` for a worker that did not answer in time (or
    /// whose mailbox was full).
    pub fn ask<T>(&self, wait: Duration, make: impl Fn(mpsc::Sender<T>) -> WorkerMsg) -> Vec<Option<T>> {
        let deadline = Instant::now() + wait;
        let rxs: Vec<Option<mpsc::Receiver<T>>> = self
            .mailboxes
            .iter()
            .map(|q| {
                let (tx, rx) = mpsc::channel();
                q.push(make(tx)).ok().map(|()| rx)
            })
            .collect();
        rxs.into_iter()
            .map(|rx| rx.and_then(|rx| rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()))
            .collect()
    }

    /// Have every worker publish its stats now, waiting at most `wait`; a worker that does not
    /// answer in time keeps its last published figures (at most `STATS_EVERY` old).
    pub fn refresh(&self, wait: Duration) -> usize {
        self.ask(wait, |reply| WorkerMsg::Publish { reply }).iter().filter(|a| a.is_none()).count()
    }

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

/// A neighbour one worker learned, for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighMsg {
    pub port: u16,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// One bounded lock-free inbox of neighbour messages per worker.
#[derive(Debug)]
pub struct NeighBus {
    inboxes: Vec<ArrayQueue<NeighMsg>>,
}

impl NeighBus {
    /// Inboxes for `n` workers with room for `cap` messages each.
    pub fn new(n: usize, cap: usize) -> NeighBus {
        NeighBus { inboxes: (0..n).map(|_| ArrayQueue::new(cap.max(1))).collect() }
    }

    /// Give `msg` to every worker but `from`. Returns how many inboxes were full (those
    /// workers do not get it).
    pub fn publish(&self, from: usize, msg: NeighMsg) -> usize {
        self.inboxes.iter().enumerate().filter(|(i, q)| *i != from && q.push(msg).is_err()).count()
    }

    /// The next message for worker `me`.
    pub fn pop(&self, me: usize) -> Option<NeighMsg> {
        self.inboxes.get(me)?.pop()
    }
}

/// Redirected packets of one worker, staged per destination worker until the end of the burst.
#[derive(Debug)]
pub struct Outbox<M> {
    per_dst: Vec<Vec<M>>,
    /// Packets for a worker that does not exist (a dataplane bug): dropped at once, counted at
    /// the next flush.
    invalid: u64,
    pending: usize,
}

impl<M> Outbox<M> {
    /// Buffers for `n` destinations, each with `burst` reserved.
    pub fn new(n: usize, burst: usize) -> Outbox<M> {
        Outbox { per_dst: (0..n).map(|_| Vec::with_capacity(burst)).collect(), invalid: 0, pending: 0 }
    }

    #[inline]
    pub fn push(&mut self, dst: usize, m: M) {
        match self.per_dst.get_mut(dst) {
            Some(v) => {
                v.push(m);
                self.pending += 1;
            }
            None => {
                drop(m);
                self.invalid += 1;
            }
        }
    }

    /// Nothing staged and nothing to count.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.invalid == 0
    }

    /// Offer each destination's packets to `send(dst, pkts)`, which removes from the front of
    /// `pkts` what it accepted and returns how many. What is left is dropped. Returns the number
    /// of packets dropped (refused plus invalid destinations).
    pub fn flush(&mut self, mut send: impl FnMut(usize, &mut Vec<M>) -> usize) -> u64 {
        let mut dropped = std::mem::take(&mut self.invalid);
        if self.pending > 0 {
            for (dst, v) in self.per_dst.iter_mut().enumerate() {
                if v.is_empty() {
                    continue;
                }
                send(dst, v);
                dropped += v.len() as u64;
                v.clear();
            }
            self.pending = 0;
        }
        dropped
    }
}

/// Everything the workers share for talking to each other: the redirect rings of all ordered
/// pairs and the neighbour inboxes. Created at start-up, dropped after the workers have joined
/// (dropping a ring frees the mbufs still in it), before the ports close and EAL is cleaned up.
#[derive(Debug)]
pub struct Fabric {
    n: usize,
    /// Ring i → j at `i * n + j`; `None` on the diagonal.
    rings: Vec<Option<Ring>>,
    pub neigh: NeighBus,
}

impl Fabric {
    /// Rings of `ring_size` mbufs for every ordered pair of `n` workers (none for one worker).
    pub fn new(eal: &Eal, n: usize, ring_size: u32) -> Result<Fabric, DpdkError> {
        let mut rings = Vec::with_capacity(n * n);
        for from in 0..n {
            for to in 0..n {
                rings.push(if from == to {
                    None
                } else {
                    // Names are process-wide; one Fabric per process.
                    Some(Ring::new(eal, &format!("rvs_rd_{from}_{to}"), ring_size, true, true)?)
                });
            }
        }
        Ok(Fabric { n, rings, neigh: NeighBus::new(n, NEIGH_INBOX) })
    }

    /// The ring worker `from` enqueues on for worker `to`.
    #[inline]
    pub fn ring(&self, from: usize, to: usize) -> Option<&Ring> {
        if from >= self.n || to >= self.n {
            return None;
        }
        self.rings[from * self.n + to].as_ref()
    }

    pub fn workers(&self) -> usize {
        self.n
    }
}

/// The worker's view of DPDK: a mempool for new packets, a tx buffer per port, and the
/// redirect/neighbour fabric to the other workers.
struct DpdkIo {
    pool: Arc<Mempool>,
    /// Indexed by port id.
    tx: Vec<Vec<Mbuf>>,
    me: usize,
    fabric: Arc<Fabric>,
    redirects: Outbox<Mbuf>,
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
    #[inline]
    fn redirect(&mut self, core: usize, pkt: Pkt) {
        self.redirects.push(core, pkt.0);
    }
    fn neigh_learned(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) {
        let full = self.fabric.neigh.publish(self.me, NeighMsg { port, ip, mac });
        if full > 0 {
            tracing::debug!(worker = self.me, %ip, full, "neighbour inbox full, not shared with every worker");
        }
    }
}

impl DpdkIo {
    /// Send every buffered packet; what the tx queue refuses is freed and counted. Then hand the
    /// staged redirects to their rings; what does not fit is freed and counted.
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
        if !self.redirects.is_empty() {
            let (me, fabric) = (self.me, &self.fabric);
            let dropped = self.redirects.flush(|dst, v| fabric.ring(me, dst).map_or(0, |r| r.enqueue_burst(v)));
            if dropped > 0 {
                worker.count_drop(DropReason::RedirectFull, dropped);
            }
        }
    }
}

/// Run one worker until `shared.stop` is set. Called on the worker's own thread.
pub fn run(cfg: LoopConfig, pool: Arc<Mempool>, shared: Arc<Shared>, fabric: Arc<Fabric>) {
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
    let n_workers = fabric.workers();
    let me = cfg.idx;
    let mut io = DpdkIo {
        pool,
        tx: (0..=max_port).map(|_| Vec::with_capacity(cfg.burst * 2)).collect(),
        me,
        fabric: Arc::clone(&fabric),
        redirects: Outbox::new(n_workers, cfg.burst),
    };
    let mut worker: Worker<Pkt> = Worker::new(cfg.dataplane.clone(), shared.snapshot.load_full());
    let huge = advise_tables(&worker);
    tracing::debug!(worker = cfg.idx, ranges = huge, "session slab and index advised to transparent huge pages");
    let mut rx: Vec<Mbuf> = Vec::with_capacity(cfg.burst);
    let mut burst: Vec<Pkt> = Vec::with_capacity(cfg.burst);
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
        // Neighbours the other workers learned (and the packets held here waiting for them).
        while let Some(msg) = fabric.neigh.pop(me) {
            got += 1;
            tracing::debug!(worker = me, ip = %msg.ip, port = msg.port, "neighbour learned by another worker");
            worker.learn_neigh(msg.port, msg.ip, msg.mac, now_ns, &mut io);
        }
        // Requests of the control thread.
        if let Some(mailbox) = shared.mailboxes.get(me) {
            while let Some(msg) = mailbox.pop() {
                handle_msg(&mut worker, msg, &shared.stats[cfg.idx], now_ns);
            }
        }
        for &port in &cfg.ports {
            let n = dpdk_sys::rx_burst(port, queue, &mut rx);
            got += n;
            burst.extend(rx.drain(..).map(Pkt));
            worker.process_burst(&mut burst, now_ns, &mut io);
        }
        // Packets of sessions this worker owns that arrived on another worker's queue.
        for from in (0..n_workers).filter(|&w| w != me) {
            if let Some(ring) = fabric.ring(from, me) {
                let n = ring.dequeue_burst(&mut rx, cfg.burst);
                got += n;
                for m in rx.drain(..) {
                    worker.process_redirected(Pkt(m), now_ns, &mut io);
                }
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
    io.flush(queue, &mut worker);
    publish(&worker, &shared.stats[cfg.idx]);
    let c = worker.counters();
    let (redirected_out, redirected_in) = (c.redirected_out, c.redirected_in);
    let redirect_full = c.drops[DropReason::RedirectFull as usize];
    // Packets still held for ARP are freed with the worker; those staged for other workers
    // went into the rings (freed with the Fabric).
    drop(worker);
    drop(io);
    if lcore.is_some() {
        dpdk_sys::unregister_thread();
    }
    tracing::info!(worker = cfg.idx, redirected_out, redirected_in, redirect_full, "worker stopped");
}

/// Ask for transparent huge pages under the worker's session slab and index (reserved up front
/// for the table's capacity, touched as sessions arrive): every packet reads them at random, and
/// on 4 KiB pages nearly every such read also misses the TLB. Returns how many of the ranges the
/// kernel accepted (none when THP is off: `/sys/kernel/mm/transparent_hugepage/enabled`).
pub fn advise_tables<B: PacketBuf>(worker: &Worker<B>) -> usize {
    worker.table_memory().into_iter().filter(|&(addr, len)| dpdk_sys::advise_hugepages(addr, len)).count()
}

/// Copy the worker's figures into its slot (built first, so the lock is held for a move).
fn publish<B: PacketBuf>(worker: &Worker<B>, slot: &Mutex<WorkerStats>) {
    let conns = worker.conn_counts().map(|(k, rs, c)| ((*k, *rs), c)).collect();
    let rs_stats = worker.rs_stats().map(|(k, v)| (*k, *v)).collect();
    let mut s = slot.lock();
    s.counters.clone_from(worker.counters());
    s.conns = conns;
    s.rs_stats = rs_stats;
}

/// Answer one control request between bursts. An answer nobody waits for any more (the control
/// thread gave up) is dropped.
fn handle_msg<B: PacketBuf>(worker: &mut Worker<B>, msg: WorkerMsg, slot: &Mutex<WorkerStats>, now_ns: u64) {
    match msg {
        WorkerMsg::Publish { reply } => {
            publish(worker, slot);
            let _ = reply.send(());
        }
        WorkerMsg::DumpSessions { filter, max, reply } => {
            let _ = reply.send(worker.dump_sessions(&filter, max, now_ns));
        }
        WorkerMsg::NeighShow { reply } => {
            let _ = reply.send(worker.neigh_entries());
        }
        WorkerMsg::NeighFlush { port, reply } => {
            let n = worker.flush_neigh(port, now_ns);
            let _ = reply.send(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service};
    use rvs_dataplane::snapshot::{PortInfo, StaticRoute};
    use rvs_dataplane::VecBuf;
    use std::collections::VecDeque;

    fn msg(last: u8) -> NeighMsg {
        NeighMsg { port: 0, ip: Ipv4Addr::new(203, 0, 113, last), mac: [2, 0, 0, 0, 0, last] }
    }

    #[test]
    fn neighbour_messages_reach_every_other_worker_once() {
        let bus = NeighBus::new(3, 2);
        assert_eq!(bus.publish(1, msg(11)), 0);
        assert_eq!(bus.pop(1), None, "the publisher does not hear itself");
        assert_eq!(bus.pop(0), Some(msg(11)));
        assert_eq!(bus.pop(0), None);
        assert_eq!(bus.pop(2), Some(msg(11)));
        assert_eq!(bus.pop(7), None, "no such worker");
        // Bounded: worker 0 and 2 hold two each; the third message is refused for both.
        assert_eq!(bus.publish(1, msg(12)), 0);
        assert_eq!(bus.publish(1, msg(13)), 0);
        assert_eq!(bus.publish(1, msg(14)), 2);
        assert_eq!(bus.pop(0), Some(msg(12)));
        assert_eq!(bus.pop(0), Some(msg(13)));
        assert_eq!(bus.pop(0), None);
    }

    /// A bounded FIFO standing in for a DPDK ring.
    struct FakeRing {
        q: VecDeque<u32>,
        cap: usize,
    }

    impl FakeRing {
        fn enqueue_burst(&mut self, v: &mut Vec<u32>) -> usize {
            let k = v.len().min(self.cap - self.q.len());
            self.q.extend(v.drain(..k));
            k
        }
    }

    #[test]
    fn outbox_flushes_per_destination_and_counts_what_does_not_fit() {
        let mut ob: Outbox<u32> = Outbox::new(3, 4);
        assert!(ob.is_empty());
        let mut rings: Vec<FakeRing> = (0..3).map(|_| FakeRing { q: VecDeque::new(), cap: 3 }).collect();
        for i in 0..5 {
            ob.push(1, i);
        }
        ob.push(2, 100);
        ob.push(9, 900); // no such worker: dropped, counted at the flush
        assert!(!ob.is_empty());
        let dropped = ob.flush(|dst, v| rings[dst].enqueue_burst(v));
        assert_eq!(dropped, 2 + 1, "two did not fit the ring to worker 1, one had no destination");
        assert!(ob.is_empty());
        assert_eq!(rings[1].q, [0, 1, 2], "FIFO, the front of the burst goes first");
        assert_eq!(rings[2].q, [100]);
        assert!(rings[0].q.is_empty());
        // Nothing staged: the sender is not even asked.
        assert_eq!(ob.flush(|_, _| panic!("nothing to send")), 0);
    }

    // Frames of dataplane/tests/pipeline.rs (port 0 = 02:00:00:00:00:01, 203.0.113.2/24; TCP
    // 203.0.113.100:80 rr over the DR real server 203.0.113.11).
    const SYN_IN: &str = "0200000000010200000000fe08004500003c1c4640004006b7d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307";
    const SYN_OUT_RS11: &str = "02000000000b02000000000108004500003c1c4640003f06b8d3c633640acb0071649c4000503e2a5b7100000000a002faf079e80000020405b40402080a0a1b2c3d0000000001030307";
    const RS11_ARP_REPLY: &str = "02000000000102000000000b0806000108000604000202000000000bcb00710b020000000001cb007102000000000000000000000000000000000000";

    fn h(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The test twin of `DpdkIo`: the same Outbox and NeighBus, Vecs instead of queues.
    struct TestIo<'a> {
        me: usize,
        bus: &'a NeighBus,
        out: Vec<VecBuf>,
        redirects: Outbox<VecBuf>,
    }

    impl Io<VecBuf> for TestIo<'_> {
        fn alloc(&mut self) -> Option<VecBuf> {
            Some(VecBuf::empty())
        }
        fn tx(&mut self, pkt: VecBuf) {
            self.out.push(pkt);
        }
        fn redirect(&mut self, core: usize, pkt: VecBuf) {
            self.redirects.push(core, pkt);
        }
        fn neigh_learned(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) {
            self.bus.publish(self.me, NeighMsg { port, ip, mac });
        }
    }

    #[test]
    fn mailbox_requests_are_answered_between_bursts_and_unanswered_ones_time_out() {
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let port = PortInfo {
            id: 0,
            name: "p0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![(ip("203.0.113.2"), 24)],
            mtu: 1500,
        };
        let key = ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() };
        let mut svc = Service::new(key, SchedKind::Rr);
        svc.reals.push(RealServer {
            addr: "203.0.113.11:80".parse().unwrap(),
            fwd: FwdMode::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        });
        let snap = Snapshot::build(1, vec![port], &[], &[svc], Default::default()).unwrap();
        let shared = Arc::new(Shared::new(snap, 2));
        let mut w = Worker::<VecBuf>::new(WorkerConfig::default(), shared.snapshot.load_full());
        let bus = NeighBus::new(1, 4);
        let mut io = TestIo { me: 0, bus: &bus, out: Vec::new(), redirects: Outbox::new(1, 8) };
        w.process(VecBuf::new(&h(SYN_IN), 0), 1_000, &mut io);
        assert!(shared.service_stats().is_empty(), "nothing published yet");

        // Worker 0 runs its loop on a thread; worker 1 never answers.
        let sh = Arc::clone(&shared);
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let mut served = 0;
            while served < 3 && start.elapsed() < Duration::from_secs(5) {
                while let Some(m) = sh.mailboxes[0].pop() {
                    handle_msg(&mut w, m, &sh.stats[0], 2_000);
                    served += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            w
        });
        let missing = shared.refresh(Duration::from_millis(300));
        assert_eq!(missing, 1, "worker 1 did not answer");
        let st = shared.service_stats();
        assert_eq!(
            st.get(&(key, "203.0.113.11:80".parse().unwrap())).map(|s| (s.conns, s.inpkts, s.inbytes)),
            Some((1, 1, 60))
        );
        let dumps = shared.ask(Duration::from_millis(300), |reply| WorkerMsg::DumpSessions {
            filter: SessionFilter::default(),
            max: 10,
            reply,
        });
        assert_eq!(dumps.len(), 2);
        assert!(dumps[1].is_none());
        let (views, total) = dumps[0].clone().unwrap();
        assert_eq!((views.len(), total), (1, 1));
        assert_eq!(views[0].rip, "203.0.113.11:80".parse().unwrap());
        let neighs = shared.ask(Duration::from_millis(300), |reply| WorkerMsg::NeighShow { reply });
        assert_eq!(neighs[0].as_ref().map(|v| v.len()), Some(1), "the RS being resolved");
        let w = t.join().unwrap();
        assert_eq!(w.sessions().len(), 1);
        // A full mailbox is an unanswered worker, not a block.
        while shared.mailboxes[1].pop().is_some() {}
        for _ in 0..MAILBOX {
            let (tx, _rx) = mpsc::channel();
            shared.mailboxes[1].push(WorkerMsg::Publish { reply: tx }).unwrap();
        }
        let t0 = Instant::now();
        assert_eq!(shared.refresh(Duration::from_millis(20)), 2);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn arp_learned_on_one_worker_releases_packets_held_on_another() {
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let port = PortInfo {
            id: 0,
            name: "p0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![(ip("203.0.113.2"), 24)],
            mtu: 1500,
        };
        let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
        let key = ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() };
        let mut svc = Service::new(key, SchedKind::Rr);
        svc.reals.push(RealServer {
            addr: "203.0.113.11:80".parse().unwrap(),
            fwd: FwdMode::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        });
        let snap = Arc::new(Snapshot::build(1, vec![port], &[default], &[svc], Default::default()).unwrap());
        let bus = NeighBus::new(2, NEIGH_INBOX);
        let mk = |core| {
            let cfg = WorkerConfig { core, n_cores: 2, ..WorkerConfig::default() };
            (
                Worker::<VecBuf>::new(cfg, Arc::clone(&snap)),
                TestIo { me: core, bus: &bus, out: Vec::new(), redirects: Outbox::new(2, 8) },
            )
        };
        let (mut w0, mut io0) = mk(0);
        let (mut w1, mut io1) = mk(1);

        // Worker 1 gets the SYN: it holds it and asks for the RS's MAC.
        w1.process(VecBuf::new(&h(SYN_IN), 0), 1_000, &mut io1);
        assert_eq!(io1.out.len(), 1, "an ARP request for 203.0.113.11");
        assert_eq!(&io1.out[0].data()[12..14], &[0x08, 0x06]);
        io1.out.clear();

        // The reply lands on worker 0's queue: it learns and shares the neighbour.
        w0.process(VecBuf::new(&h(RS11_ARP_REPLY), 0), 2_000, &mut io0);
        assert!(io0.out.is_empty());
        assert_eq!(bus.pop(0), None);

        // Between bursts worker 1 drains its inbox, as `run` does: the SYN goes out.
        let mut n = 0;
        while let Some(m) = bus.pop(1) {
            n += 1;
            assert_eq!(m, NeighMsg { port: 0, ip: ip("203.0.113.11"), mac: [2, 0, 0, 0, 0, 0x0b] });
            w1.learn_neigh(m.port, m.ip, m.mac, 3_000, &mut io1);
        }
        assert_eq!(n, 1);
        assert_eq!(io1.out.len(), 1);
        assert_eq!(io1.out[0].to_vec(), h(SYN_OUT_RS11));
        assert_eq!(w1.counters().drops[DropReason::NeighUnreachable as usize], 0);
        assert!(io0.redirects.is_empty() && io1.redirects.is_empty(), "DR never redirects");
    }
}
