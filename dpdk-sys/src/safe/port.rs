//! Ethernet ports: configuration, start/stop/close, statistics and the RX/TX burst hot path.
//!
//! The wrapper keeps a small state table per port (configured queue counts, started or not)
//! so that the hot path can reject bad port/queue ids — DPDK's fast-path functions do not
//! check them and would index out of bounds or dereference a NULL queue — and so that
//! stop/close wait for bursts already in flight on other threads before tearing queues down.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::eal::{ensure_running, Eal};
use super::error::DpdkError;
use super::mbuf::{Mbuf, Mempool};
use crate::ffi;

/// Most packets one [`rx_burst`] call receives.
pub const MAX_BURST: usize = 64;
/// Most RX (and TX) queues per port this wrapper manages.
pub const MAX_QUEUES: u16 = 64;

const MAX_PORTS: usize = ffi::RTE_MAX_ETHPORTS as usize;

const UNCONFIGURED: u8 = 0;
const STOPPED: u8 = 1;
const STARTED: u8 = 2;

struct PortSlot {
    state: AtomicU8,
    nb_rx: AtomicU16,
    nb_tx: AtomicU16,
    promiscuous: AtomicBool,
    /// Bumped by every stop, (re)configure and close: handles valid only while the port runs
    /// (flow rules) compare it to know whether the port is still in the run they were made in.
    epoch: AtomicU32,
}

/// Bursts in flight on one (port, queue id), RX and TX together. Own cache line: each
/// queue is normally polled by a single worker.
#[repr(align(64))]
struct Inflight(AtomicU32);

#[allow(clippy::declare_interior_mutable_const)] // only used as array initialisers
const SLOT_INIT: PortSlot = PortSlot {
    state: AtomicU8::new(UNCONFIGURED),
    nb_rx: AtomicU16::new(0),
    nb_tx: AtomicU16::new(0),
    promiscuous: AtomicBool::new(false),
    epoch: AtomicU32::new(0),
};
#[allow(clippy::declare_interior_mutable_const)]
const INFLIGHT_INIT: Inflight = Inflight(AtomicU32::new(0));
#[allow(clippy::declare_interior_mutable_const)]
const INFLIGHT_ROW: [Inflight; MAX_QUEUES as usize] = [INFLIGHT_INIT; MAX_QUEUES as usize];

static SLOTS: [PortSlot; MAX_PORTS] = [SLOT_INIT; MAX_PORTS];
static INFLIGHT: [[Inflight; MAX_QUEUES as usize]; MAX_PORTS] = [INFLIGHT_ROW; MAX_PORTS];
/// Serialises control-path operations (configure/start/stop/close/cleanup).
static CONTROL: Mutex<()> = Mutex::new(());

pub(crate) fn control_lock() -> MutexGuard<'static, ()> {
    CONTROL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port configured through this wrapper and not closed yet.
pub(crate) fn first_open_port() -> Option<u16> {
    SLOTS.iter().position(|s| s.state.load(Ordering::Acquire) != UNCONFIGURED).map(|p| p as u16)
}

/// The run epoch of `port` if it is started through this wrapper. Call with
/// [`control_lock`] held so the answer stays true while it is used.
pub(crate) fn started_epoch(port: u16) -> Option<u32> {
    let slot = SLOTS.get(usize::from(port))?;
    (slot.state.load(Ordering::Acquire) == STARTED).then(|| slot.epoch.load(Ordering::Acquire))
}

/// Marks a burst in flight on (port, queue) while the port is started; see [`quiesce`].
struct BurstGuard(&'static AtomicU32);

impl BurstGuard {
    #[inline]
    fn enter(port: u16, queue: u16, rx: bool) -> Option<BurstGuard> {
        let (p, q) = (usize::from(port), usize::from(queue));
        if p >= MAX_PORTS || q >= usize::from(MAX_QUEUES) {
            return None;
        }
        let slot = &SLOTS[p];
        let counter = &INFLIGHT[p][q].0;
        // SeqCst pairs with the SeqCst state store + counter load in quiesce(): either this
        // burst sees the port stopped, or quiesce sees the burst and waits for it.
        counter.fetch_add(1, Ordering::SeqCst);
        let guard = BurstGuard(counter);
        if slot.state.load(Ordering::SeqCst) != STARTED {
            return None;
        }
        let nb = if rx { &slot.nb_rx } else { &slot.nb_tx };
        (queue < nb.load(Ordering::Relaxed)).then_some(guard)
    }
}

impl Drop for BurstGuard {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Move `port` to `state` and wait until no burst is in flight on it.
fn quiesce(port: u16, state: u8) {
    let p = usize::from(port);
    SLOTS[p].state.store(state, Ordering::SeqCst);
    SLOTS[p].epoch.fetch_add(1, Ordering::AcqRel);
    for q in INFLIGHT[p].iter() {
        while q.0.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

fn check_port(op: &dyn Fn() -> String, port: u16) -> Result<(), DpdkError> {
    ensure_running(op)?;
    // SAFETY: EAL is running; any id is accepted.
    if usize::from(port) >= MAX_PORTS || unsafe { ffi::rte_eth_dev_is_valid_port(port) } == 0 {
        return Err(DpdkError::check(op(), libc::ENODEV, format!("no such port {port}")));
    }
    Ok(())
}

fn dev_info(port: u16) -> Result<ffi::rte_eth_dev_info, DpdkError> {
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: port is valid (checked by callers) and info a valid out pointer.
    let ret = unsafe { ffi::rte_eth_dev_info_get(port, &mut info) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_info_get(port {port})"), ret));
    }
    Ok(info)
}

/// How to set a port up; see [`port_configure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// RX queues (1..=[`MAX_QUEUES`] and the device maximum).
    pub n_rx_queues: u16,
    /// TX queues (1..=[`MAX_QUEUES`] and the device maximum).
    pub n_tx_queues: u16,
    /// RX descriptors per queue (adjusted to the device limits).
    pub rx_desc: u16,
    /// TX descriptors per queue (adjusted to the device limits).
    pub tx_desc: u16,
    /// MTU to set, if any.
    pub mtu: Option<u16>,
    /// Spread RX over the queues by RSS on IPv4/IPv6 TCP/UDP when the device supports it.
    pub rss: bool,
    /// Enable promiscuous mode at start (ignored by devices that do not support it).
    pub promiscuous: bool,
}

impl Default for PortConf {
    fn default() -> Self {
        PortConf {
            n_rx_queues: 1,
            n_tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: false,
            promiscuous: true,
        }
    }
}

/// What [`port_configure`] actually set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    /// RSS is on (`mq_mode = RSS`).
    pub rss: bool,
    /// RSS hash functions in use (`RTE_ETH_RSS_*` bits), 0 without RSS.
    pub rss_hf: u64,
    /// The NIC writes the hash into mbufs ([`Mbuf::rss_hash`]).
    pub rss_hash_in_mbuf: bool,
    /// The NIC verifies IPv4 header checksums and flags good ones in the mbuf
    /// ([`Mbuf::rx_ip_cksum_good`]), so the pipeline can skip its own check.
    pub rx_ipv4_cksum: bool,
    /// RX descriptors per queue after adjustment to the device limits.
    pub rx_desc: u16,
    /// TX descriptors per queue after adjustment to the device limits.
    pub tx_desc: u16,
    /// The port's MTU when one was asked for: the requested one, or, when the driver cannot
    /// set an MTU (`ENOTSUP`), the larger one it already has (see [`PortSetup::notes`]).
    pub mtu: Option<u16>,
    /// Human-readable remarks on what was asked for and skipped: RSS off although requested,
    /// an MTU the driver cannot set. Callers log them as warnings.
    pub notes: Vec<String>,
}

/// Static facts about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Port id.
    pub port_id: u16,
    /// Device name (`net_af_packet0`, `0000:03:00.0`, ...).
    pub name: String,
    /// Driver name (`net_af_packet`, `net_ixgbe`, ...).
    pub driver: String,
    /// Device maximum of RX queues.
    pub max_rx_queues: u16,
    /// Device maximum of TX queues.
    pub max_tx_queues: u16,
    /// RSS hash functions the device supports (`flow_type_rss_offloads`).
    pub rss_offloads: u64,
    /// Primary MAC address.
    pub mac: [u8; 6],
    /// NUMA socket of the device (-1 = unknown).
    pub socket: i32,
}

/// Port counters (`rte_eth_stats`). Per-queue vectors cover the configured queues (at most
/// 16, `RTE_ETHDEV_QUEUE_STAT_CNTRS`). Some PMDs (e.g. net_ring) do not count bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// RX packets dropped by the hardware (RX queues full).
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
    /// Packets received per queue.
    pub q_ipackets: Vec<u64>,
    /// Packets sent per queue.
    pub q_opackets: Vec<u64>,
    /// Bytes received per queue.
    pub q_ibytes: Vec<u64>,
    /// Bytes sent per queue.
    pub q_obytes: Vec<u64>,
    /// Receive errors per queue (packets dropped by the queue).
    pub q_errors: Vec<u64>,
}

impl PortStats {
    /// Every figure as (name, value): the port totals, then `q<N>_<name>` per queue. What
    /// `rvsadm link show` and the metrics endpoint print.
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("ipackets".to_string(), self.ipackets),
            ("opackets".to_string(), self.opackets),
            ("ibytes".to_string(), self.ibytes),
            ("obytes".to_string(), self.obytes),
            ("imissed".to_string(), self.imissed),
            ("ierrors".to_string(), self.ierrors),
            ("oerrors".to_string(), self.oerrors),
            ("rx_nombuf".to_string(), self.rx_nombuf),
        ];
        let per_queue = [
            ("ipackets", &self.q_ipackets),
            ("ibytes", &self.q_ibytes),
            ("errors", &self.q_errors),
            ("opackets", &self.q_opackets),
            ("obytes", &self.q_obytes),
        ];
        for (name, values) in per_queue {
            v.extend(values.iter().enumerate().map(|(q, x)| (format!("q{q}_{name}"), *x)));
        }
        v
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
}

/// Name, driver, queue limits, RSS capabilities, MAC and socket of `port`.
pub fn port_info(_eal: &Eal, port: u16) -> Result<PortInfo, DpdkError> {
    check_port(&|| format!("port_info(port {port})"), port)?;
    let info = dev_info(port)?;
    let mut name = [0 as std::ffi::c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: name is a buffer of RTE_ETH_NAME_MAX_LEN bytes, as the function requires.
    let ret = unsafe { ffi::rte_eth_dev_get_name_by_port(port, name.as_mut_ptr()) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_dev_get_name_by_port(port {port})"), ret));
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: driver_name points to the driver's static NUL-terminated name.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    };
    let mut mac = ffi::rte_ether_addr::default();
    // SAFETY: port is valid and mac a valid out pointer.
    let ret = unsafe { ffi::rte_eth_macaddr_get(port, &mut mac) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_macaddr_get(port {port})"), ret));
    }
    // SAFETY: port is valid.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
    Ok(PortInfo {
        port_id: port,
        name,
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rss_offloads: info.flow_type_rss_offloads,
        mac: mac.addr_bytes,
        socket,
    })
}

/// `rte_eth_dev_configure` + RX/TX queue setup for every queue (RX buffers from `pool`) +
/// MTU. The port must not be started. If RSS is requested but the device supports none of
/// the IP/TCP/UDP hash functions, the port is configured without RSS and
/// [`PortSetup::rss`] is `false` with a note (then only queue 0 is guaranteed to receive).
pub fn port_configure(_eal: &Eal, port: u16, conf: &PortConf, pool: &Mempool) -> Result<PortSetup, DpdkError> {
    let op = |step: &str| format!("port_configure(port {port}): {step}");
    let _ctl = control_lock();
    check_port(&|| op("check"), port)?;
    let slot = &SLOTS[usize::from(port)];
    if slot.state.load(Ordering::Acquire) == STARTED {
        return Err(DpdkError::check(op("check"), libc::EBUSY, "port is started; stop it first"));
    }
    let info = dev_info(port)?;
    for (what, n, max) in
        [("RX queues", conf.n_rx_queues, info.max_rx_queues), ("TX queues", conf.n_tx_queues, info.max_tx_queues)]
    {
        if n == 0 || n > max.min(MAX_QUEUES) {
            return Err(DpdkError::check(
                op("check"),
                libc::EINVAL,
                format!("{n} {what} requested, the port supports 1..={}", max.min(MAX_QUEUES)),
            ));
        }
    }

    let mut setup = PortSetup {
        rss: false,
        rss_hf: 0,
        rss_hash_in_mbuf: false,
        rx_ipv4_cksum: false,
        rx_desc: conf.rx_desc,
        tx_desc: conf.tx_desc,
        mtu: None,
        notes: Vec::new(),
    };
    let mut eth_conf = ffi::rte_eth_conf::default();
    if conf.rss {
        // SAFETY: pure functions returning constants.
        let (wanted, hash_offload) = unsafe { (ffi::rvs_eth_rss_ip_tcp_udp(), ffi::rvs_eth_rx_offload_rss_hash()) };
        let hf = wanted & info.flow_type_rss_offloads;
        if hf == 0 {
            setup.notes.push(format!(
                "RSS requested but the device supports no IP/TCP/UDP RSS (offloads {:#x}); \
                 RSS off",
                info.flow_type_rss_offloads
            ));
        } else {
            eth_conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            eth_conf.rx_adv_conf.rss_conf.rss_hf = hf;
            setup.rss = true;
            setup.rss_hf = hf;
            if info.rx_offload_capa & hash_offload != 0 {
                eth_conf.rxmode.offloads |= hash_offload;
                setup.rss_hash_in_mbuf = true;
            }
        }
    }

    // SAFETY: pure function returning a constant.
    let ipv4_cksum = unsafe { ffi::rvs_eth_rx_offload_ipv4_cksum() };
    if info.rx_offload_capa & ipv4_cksum != 0 {
        eth_conf.rxmode.offloads |= ipv4_cksum;
        setup.rx_ipv4_cksum = true;
    }

    // Reconfiguring drops the queues: make sure the state table says so first.
    quiesce(port, UNCONFIGURED);
    // SAFETY: port is valid and stopped; eth_conf is a fully initialised rte_eth_conf.
    let ret = unsafe { ffi::rte_eth_dev_configure(port, conf.n_rx_queues, conf.n_tx_queues, &eth_conf) };
    if ret < 0 {
        return Err(DpdkError::from_ret(
            op(&format!(
                "rte_eth_dev_configure(rxq={}, txq={}, rss_hf={:#x})",
                conf.n_rx_queues, conf.n_tx_queues, setup.rss_hf
            )),
            ret,
        ));
    }
    // SAFETY: port is configured; both pointers are valid in/out u16s.
    let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut setup.rx_desc, &mut setup.tx_desc) };
    if ret < 0 {
        return Err(DpdkError::from_ret(op("rte_eth_dev_adjust_nb_rx_tx_desc"), ret));
    }
    if let Some(mtu) = conf.mtu {
        // SAFETY: port is valid and configured.
        let ret = unsafe { ffi::rte_eth_dev_set_mtu(port, mtu) };
        if ret == -libc::ENOTSUP {
            // The driver cannot change its MTU (net_memif, net_ring, net_null, ...): what it has
            // is good enough when it is not smaller than what the caller wants.
            let mut actual = 0u16;
            // SAFETY: port is valid and configured; actual is a valid out pointer.
            let ret = unsafe { ffi::rte_eth_dev_get_mtu(port, &mut actual) };
            if ret < 0 {
                return Err(DpdkError::from_ret(
                    op(&format!("rte_eth_dev_set_mtu({mtu}) is not supported, then rte_eth_dev_get_mtu")),
                    ret,
                ));
            }
            setup.mtu = Some(actual);
            match mtu_fallback(mtu, actual) {
                Ok(note) => setup.notes.push(note),
                Err(msg) => {
                    return Err(DpdkError::check(op(&format!("rte_eth_dev_set_mtu({mtu})")), libc::ENOTSUP, msg))
                }
            }
        } else if ret < 0 {
            return Err(DpdkError::from_ret(op(&format!("rte_eth_dev_set_mtu({mtu})")), ret));
        } else {
            setup.mtu = Some(mtu);
        }
    }
    // SAFETY: port is valid.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
    // SOCKET_ID_ANY (-1) is passed through as the unsigned value DPDK expects.
    let socket = socket as u32;
    for q in 0..conf.n_rx_queues {
        // SAFETY: port configured with n_rx_queues > q; NULL rxconf = device defaults; the
        // pool is a live pktmbuf pool that is never freed before EAL cleanup.
        let ret =
            unsafe { ffi::rte_eth_rx_queue_setup(port, q, setup.rx_desc, socket, std::ptr::null(), pool.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(
                op(&format!("rte_eth_rx_queue_setup(queue {q}, {} descriptors)", setup.rx_desc)),
                ret,
            ));
        }
    }
    for q in 0..conf.n_tx_queues {
        // SAFETY: port configured with n_tx_queues > q; NULL txconf = device defaults.
        let ret = unsafe { ffi::rte_eth_tx_queue_setup(port, q, setup.tx_desc, socket, std::ptr::null()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(
                op(&format!("rte_eth_tx_queue_setup(queue {q}, {} descriptors)", setup.tx_desc)),
                ret,
            ));
        }
    }
    slot.nb_rx.store(conf.n_rx_queues, Ordering::Relaxed);
    slot.nb_tx.store(conf.n_tx_queues, Ordering::Relaxed);
    slot.promiscuous.store(conf.promiscuous, Ordering::Relaxed);
    slot.state.store(STOPPED, Ordering::SeqCst);
    Ok(setup)
}

/// A driver that cannot set the MTU (`rte_eth_dev_set_mtu` answers `ENOTSUP`) has `actual`:
/// fine (with a note to log) when it is at least the `wanted` one, else the reason to refuse the
/// port — frames of the wanted size would not fit.
pub(crate) fn mtu_fallback(wanted: u16, actual: u16) -> Result<String, String> {
    if actual >= wanted {
        Ok(format!(
            "the driver cannot set the MTU (rte_eth_dev_set_mtu: not supported); its MTU {actual} is kept, \
             the configured {wanted} fits"
        ))
    } else {
        Err(format!(
            "the driver cannot set the MTU (not supported) and its MTU {actual} is smaller than the configured \
             {wanted}: configure mtu <= {actual} for this port"
        ))
    }
}

/// `rte_eth_dev_start` (+ promiscuous mode if configured). The port must be configured by
/// [`port_configure`]. Starting a started port is a no-op.
pub fn port_start(port: u16) -> Result<(), DpdkError> {
    let op = |step: &str| format!("port_start(port {port}): {step}");
    let _ctl = control_lock();
    check_port(&|| op("check"), port)?;
    let slot = &SLOTS[usize::from(port)];
    match slot.state.load(Ordering::Acquire) {
        STARTED => return Ok(()),
        STOPPED => {}
        _ => {
            return Err(DpdkError::check(op("check"), libc::EINVAL, "port is not configured"));
        }
    }
    // SAFETY: port is valid and configured with all queues set up.
    let ret = unsafe { ffi::rte_eth_dev_start(port) };
    if ret < 0 {
        return Err(DpdkError::from_ret(op("rte_eth_dev_start"), ret));
    }
    if slot.promiscuous.load(Ordering::Relaxed) {
        // SAFETY: port is valid and started.
        let ret = unsafe { ffi::rte_eth_promiscuous_enable(port) };
        // Devices without the notion (virtual ones) answer ENOTSUP: nothing to enable.
        if ret < 0 && ret != -libc::ENOTSUP {
            // SAFETY: port is valid and started; stop it again so the state stays STOPPED.
            unsafe { ffi::rte_eth_dev_stop(port) };
            return Err(DpdkError::from_ret(op("rte_eth_promiscuous_enable"), ret));
        }
    }
    slot.state.store(STARTED, Ordering::SeqCst);
    Ok(())
}

/// `rte_eth_dev_stop`, after waiting for bursts in flight on other threads. From then on
/// [`rx_burst`]/[`tx_burst`] on the port return 0. Stopping a stopped port is a no-op.
pub fn port_stop(port: u16) -> Result<(), DpdkError> {
    let _ctl = control_lock();
    stop_locked(port)
}

fn stop_locked(port: u16) -> Result<(), DpdkError> {
    let op = |step: &str| format!("port_stop(port {port}): {step}");
    check_port(&|| op("check"), port)?;
    if SLOTS[usize::from(port)].state.load(Ordering::Acquire) != STARTED {
        return Ok(());
    }
    quiesce(port, STOPPED);
    // SAFETY: port is valid and started; no burst is in flight or can start (state STOPPED).
    let ret = unsafe { ffi::rte_eth_dev_stop(port) };
    if ret < 0 {
        return Err(DpdkError::from_ret(op("rte_eth_dev_stop"), ret));
    }
    Ok(())
}

/// `rte_eth_dev_close` (stopping first if needed). Frees the queues (and the mbufs in them);
/// virtual devices disappear and their port id becomes invalid.
pub fn port_close(port: u16) -> Result<(), DpdkError> {
    let op = |step: &str| format!("port_close(port {port}): {step}");
    let _ctl = control_lock();
    stop_locked(port)?;
    quiesce(port, UNCONFIGURED);
    let slot = &SLOTS[usize::from(port)];
    slot.nb_rx.store(0, Ordering::Relaxed);
    slot.nb_tx.store(0, Ordering::Relaxed);
    // SAFETY: port is valid and stopped; no burst can run on it any more.
    let ret = unsafe { ffi::rte_eth_dev_close(port) };
    if ret < 0 {
        return Err(DpdkError::from_ret(op("rte_eth_dev_close"), ret));
    }
    Ok(())
}

/// `rte_eth_stats_get`.
pub fn port_stats(port: u16) -> Result<PortStats, DpdkError> {
    check_port(&|| format!("port_stats(port {port})"), port)?;
    let mut s = ffi::rte_eth_stats::default();
    // SAFETY: port is valid and s a valid out pointer.
    let ret = unsafe { ffi::rte_eth_stats_get(port, &mut s) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_eth_stats_get(port {port})"), ret));
    }
    let slot = &SLOTS[usize::from(port)];
    let nrx = usize::from(slot.nb_rx.load(Ordering::Relaxed)).min(s.q_ipackets.len());
    let ntx = usize::from(slot.nb_tx.load(Ordering::Relaxed)).min(s.q_opackets.len());
    Ok(PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
        q_ipackets: s.q_ipackets[..nrx].to_vec(),
        q_opackets: s.q_opackets[..ntx].to_vec(),
        q_ibytes: s.q_ibytes[..nrx].to_vec(),
        q_obytes: s.q_obytes[..ntx].to_vec(),
        q_errors: s.q_errors[..nrx].to_vec(),
    })
}

/// `rte_eth_stats_reset` (errors ignored: not every PMD supports it).
pub fn port_stats_reset(port: u16) {
    if check_port(&String::new, port).is_ok() {
        // SAFETY: port is valid.
        unsafe { ffi::rte_eth_stats_reset(port) };
    }
}

/// `rte_eth_link_get_nowait`; down with speed 0 on any error.
pub fn port_link(port: u16) -> LinkStatus {
    let down = LinkStatus { up: false, speed_mbps: 0 };
    if check_port(&String::new, port).is_err() {
        return down;
    }
    let mut link = ffi::rte_eth_link::default();
    // SAFETY: port is valid and link a valid out pointer.
    if unsafe { ffi::rte_eth_link_get_nowait(port, &mut link) } < 0 {
        return down;
    }
    let up = u32::from(link.link_status()) == ffi::RTE_ETH_LINK_UP;
    let speed = if link.link_speed == ffi::RTE_ETH_SPEED_NUM_UNKNOWN { 0 } else { link.link_speed };
    LinkStatus { up, speed_mbps: speed }
}

/// Receive up to `out.capacity() - out.len()` packets (at most [`MAX_BURST`]) from
/// `port`/`queue`, appending them to `out`. Returns how many. No allocation: reserve capacity
/// once. Returns 0 for a port that is not started or a queue that is not configured.
///
/// A queue must be polled by one thread at a time (DPDK RX queues are not thread-safe); rvsd
/// gives each worker its own queue ids.
#[inline]
pub fn rx_burst(port: u16, queue: u16, out: &mut Vec<Mbuf>) -> usize {
    let room = (out.capacity() - out.len()).min(MAX_BURST);
    if room == 0 {
        return 0;
    }
    let Some(_guard) = BurstGuard::enter(port, queue, true) else {
        return 0;
    };
    let len = out.len();
    // SAFETY: the port is started with `queue` set up (guard), and stop/close wait for the
    // guard. `out` has `room` spare slots; Mbuf is a transparent NonNull<rte_mbuf>, so they
    // form an array of `*mut rte_mbuf`. The PMD writes n <= room valid mbufs it hands over
    // to us, and only those n slots become part of the Vec.
    unsafe {
        let dst = out.as_mut_ptr().add(len).cast::<*mut ffi::rte_mbuf>();
        let n = ffi::rte_eth_rx_burst(port, queue, dst, room as u16);
        out.set_len(len + usize::from(n));
        usize::from(n)
    }
}

/// Send packets from the front of `pkts` on `port`/`queue`. The ones sent are removed from
/// `pkts` (the driver owns them now); the unsent stay, in order, for the caller to retry or
/// drop. Returns how many were sent (0 for a port not started or a queue not configured).
///
/// A queue must be used by one thread at a time (DPDK TX queues are not thread-safe).
#[inline]
pub fn tx_burst(port: u16, queue: u16, pkts: &mut Vec<Mbuf>) -> usize {
    if pkts.is_empty() {
        return 0;
    }
    let Some(_guard) = BurstGuard::enter(port, queue, false) else {
        return 0;
    };
    let n = pkts.len().min(usize::from(u16::MAX));
    // SAFETY: the port is started with `queue` set up (guard). pkts[..n] is an array of valid
    // owned mbuf pointers (transparent Mbuf). The PMD takes ownership of the first `sent`;
    // those slots are then overwritten by shifting the rest down without dropping them.
    unsafe {
        let base = pkts.as_mut_ptr();
        let sent = usize::from(ffi::rte_eth_tx_burst(port, queue, base.cast(), n as u16));
        remove_front_without_drop(pkts, sent);
        sent
    }
}

/// Drop the first `k` elements of `v` from the Vec without running their destructors
/// (their mbufs were handed to DPDK).
///
/// # Safety
/// `k <= v.len()`, and ownership of the first `k` mbufs must already have been transferred.
pub(crate) unsafe fn remove_front_without_drop(v: &mut Vec<Mbuf>, k: usize) {
    debug_assert!(k <= v.len());
    if k == 0 {
        return;
    }
    let rest = v.len() - k;
    // SAFETY: k <= len (caller), so both ranges are inside the Vec's initialised part; copy
    // handles the overlap; after set_len the moved-from tail slots are outside the Vec.
    unsafe {
        let base = v.as_mut_ptr();
        std::ptr::copy(base.add(k), base, rest);
        v.set_len(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_on_unknown_or_stopped_ports_are_empty() {
        let mut v: Vec<Mbuf> = Vec::with_capacity(8);
        assert_eq!(rx_burst(0, 0, &mut v), 0);
        assert_eq!(rx_burst(u16::MAX, u16::MAX, &mut v), 0);
        assert_eq!(tx_burst(u16::MAX, 0, &mut v), 0);
        assert!(v.is_empty());
        // No burst left anything in flight.
        assert!(INFLIGHT.iter().flatten().all(|c| c.0.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn an_mtu_the_driver_cannot_set_is_fine_when_it_already_fits() {
        let note = mtu_fallback(1500, 1500).unwrap();
        assert!(note.contains("MTU 1500 is kept"), "{note}");
        assert!(mtu_fallback(1400, 1500).is_ok());
        let e = mtu_fallback(9000, 1500).unwrap_err();
        assert!(e.contains("its MTU 1500 is smaller than the configured 9000"), "{e}");
    }

    #[test]
    fn control_calls_without_eal_fail() {
        let e = port_start(0).unwrap_err();
        assert_eq!(e.errno, libc::EPERM);
        assert!(port_stats(0).is_err());
        assert_eq!(port_link(0), LinkStatus { up: false, speed_mbps: 0 });
        assert_eq!(first_open_port(), None);
    }
}
