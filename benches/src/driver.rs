//! The driver: EAL, one mempool and one `net_ring0` port set up once ([`setup`]), and the loop
//! that feeds bursts of prepared frames through a forwarder on real mbufs ([`Driver`]): rvsd's
//! worker pipeline, or the bare MAC-swap forwarder that is its baseline. Output frames come back
//! through the ring, are counted and (a sample of them) checked.

use crate::frames::{net, tuple, verify, Frame, FRAME_LEN};
use crate::stats::Acc;
use crate::{GLOBAL, NS_PER_S};
use dpdk_sys::{DpdkError, Eal, Mbuf, Mempool, PortConf};
use rvs::pkt::Pkt;
use rvs_config::model::FwdMode;
use rvs_dataplane::worker::{Io, Worker};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// Packets per burst, as rvsd's rx loop takes them.
pub const BURST: usize = 32;
/// The worker's timers run this often (ns), as in rvsd's loop.
pub const TICK_NS: u64 = 1_000_000;
/// Mbufs in the bench's mempool, and its per-lcore cache.
const POOL_MBUFS: u32 = 8191;
const POOL_CACHE: u32 = 256;

/// The tuple of a captured output frame: (protocol, src, dst).
pub type Captured = (u8, SocketAddrV4, SocketAddrV4);

/// The worker's environment: the bench's mempool, its tx buffer, and a count of anything a
/// single worker must never do (redirect, share a neighbour).
pub struct BenchIo {
    pool: Arc<Mempool>,
    tx: Vec<Mbuf>,
    /// Redirects and neighbour shares: a single worker must never make them.
    pub unexpected: u64,
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

/// Everything set up once: EAL, one mempool, the net_ring port.
pub struct Bench {
    pub pool: Arc<Mempool>,
    pub port: u16,
    /// TSC frequency.
    pub hz: u64,
    /// TSC at setup: the worker's clock starts there.
    pub tsc0: u64,
    pub eal_args: Vec<String>,
}

/// Drives bursts through a forwarder: the pipeline (`Some(worker)`) or the bare MAC swap.
pub struct Driver<'a> {
    b: &'a Bench,
    rx: Vec<Mbuf>,
    /// The received burst as the worker takes it (rvsd's loop does the same).
    pkts: Vec<Pkt>,
    out: Vec<Mbuf>,
    pub io: BenchIo,
    /// Added to the clock: jumps time forward to expire sessions between passes.
    offset_ns: u64,
    pub last_tick_ns: u64,
    verify_every: u64,
    mode: FwdMode,
}

impl<'a> Driver<'a> {
    /// A driver of `b`'s port for forwarding mode `mode`, checking one output frame in `verify_every`.
    pub fn new(b: &'a Bench, mode: FwdMode, verify_every: u64) -> Driver<'a> {
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
        ((tsc - self.b.tsc0) as u128 * u128::from(NS_PER_S) / u128::from(self.b.hz)) as u64 + self.offset_ns
    }

    /// The worker's clock now.
    pub fn now(&self) -> u64 {
        self.now_ns(dpdk_sys::tsc())
    }

    /// One burst: fresh mbufs with copies of the frames (the stand-in for a NIC's rx), the
    /// forwarder, tx on the net_ring port and draining what it looped back (the stand-in for tx
    /// completion), the worker's timers every millisecond as rvsd runs them.
    pub fn burst(
        &mut self,
        mut worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        idxs: &[u32],
        acc: &mut Acc,
        capture: Option<&mut Vec<Captured>>,
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
        acc.hist.saturating_record(((t3 - t0) as u128 * u128::from(NS_PER_S) / u128::from(self.b.hz)) as u64);
        acc.allocs += (GLOBAL.stats().allocations - allocs0) as u64;
    }

    /// tx_burst what the forwarder queued, then drain the loop-back and free (checking a sample).
    pub fn flush(&mut self, acc: &mut Acc, check: bool, mut capture: Option<&mut Vec<Captured>>) {
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
                if check && acc.out.is_multiple_of(self.verify_every) {
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
    pub fn pass(
        &mut self,
        worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        seq: &[u32],
        acc: &mut Acc,
        capture: Option<&mut Vec<Captured>>,
        deadline: Option<u64>,
    ) -> bool {
        self.pass_from(worker, frames, seq, 0, acc, capture, deadline).0
    }

    /// Bursts over `seq` from position `from`, until its end (`(true, 0)`) or `deadline`
    /// (`(false, where to resume)`).
    #[allow(clippy::too_many_arguments)]
    pub fn pass_from(
        &mut self,
        mut worker: Option<&mut Worker<Pkt>>,
        frames: &[Frame],
        seq: &[u32],
        from: usize,
        acc: &mut Acc,
        mut capture: Option<&mut Vec<Captured>>,
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
    pub fn learn(&mut self, w: &mut Worker<Pkt>) {
        let now = self.now();
        w.learn_neigh(self.b.port, net::GW, net::GW_MAC, now, &mut self.io);
        for i in 0..net::N_RS {
            w.learn_neigh(self.b.port, net::rs(i), net::rs_mac(net::rs(i)), now, &mut self.io);
        }
    }

    /// Jump the clock `by` and run the worker's timers until at most `keep` sessions are left.
    pub fn expire_to(&mut self, w: &mut Worker<Pkt>, by: u64, keep: usize, acc: &mut Acc) {
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

/// EAL's arguments: one lcore, the `net_ring0` vdev, no PCI; hugepages (in memory) or not.
pub fn eal_args(huge: bool) -> Vec<String> {
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

/// Initialise EAL (with hugepages or not), the mempool and the started `net_ring0` port.
pub fn setup(huge: bool) -> Result<(Eal, Bench), DpdkError> {
    let args = eal_args(huge);
    let eal = Eal::init(&args)?;
    let pool = Mempool::new(&eal, "bench_pool", POOL_MBUFS, POOL_CACHE, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1)?;
    let port = eal.port_by_name("net_ring0")?;
    dpdk_sys::port_configure(&eal, port, &PortConf { promiscuous: false, ..PortConf::default() }, &pool)?;
    dpdk_sys::port_start(port)?;
    let hz = dpdk_sys::tsc_hz();
    Ok((eal, Bench { pool: Arc::new(pool), port, hz, tsc0: dpdk_sys::tsc(), eal_args: args }))
}

/// Stop and close the port, then `rte_eal_cleanup`.
pub fn teardown(eal: Eal, b: Bench) -> Result<(), DpdkError> {
    let _ = dpdk_sys::port_stop(b.port);
    let _ = dpdk_sys::port_close(b.port);
    drop(b);
    eal.cleanup()
}
