//! EAL initialisation, cleanup, lcore registration and time stamps.

use std::cell::Cell;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicU8, Ordering};

use super::error::{last_errno, DpdkError};
use super::{mbuf, port};
use crate::ffi;

const UNINIT: u8 = 0;
const INITIALISING: u8 = 1;
const RUNNING: u8 = 2;
const CLEANED_UP: u8 = 3;

/// EAL state of the process. DPDK supports one `rte_eal_init` per process.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// `Err` unless EAL is initialised (and not cleaned up).
pub(crate) fn ensure_running(op: impl FnOnce() -> String) -> Result<(), DpdkError> {
    if STATE.load(Ordering::Acquire) == RUNNING {
        Ok(())
    } else {
        Err(DpdkError::check(op(), libc::EPERM, "EAL is not initialised (Eal::init first)"))
    }
}

/// Proof that EAL is initialised. Exactly one exists per process, from [`Eal::init`] until
/// [`Eal::cleanup`]; functions needing EAL take `&Eal`.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// `rte_eal_init` with `args` (without the program name; `"rvsd"` is prepended).
    ///
    /// Fails if EAL was already initialised in this process (DPDK cannot initialise twice,
    /// not even after [`Eal::cleanup`]). Note that EAL pins the calling thread to the main lcore.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let op = || format!("rte_eal_init({args:?})");
        if STATE.compare_exchange(UNINIT, INITIALISING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(DpdkError::check(op(), libc::EALREADY, "EAL was already initialised in this process"));
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        for a in std::iter::once("rvsd").chain(args.iter().map(String::as_str)) {
            match CString::new(a) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    STATE.store(UNINIT, Ordering::Release);
                    return Err(DpdkError::check(op(), libc::EINVAL, format!("argument {a:?} contains a NUL byte")));
                }
            }
        }
        // EAL keeps pointers into argv (and getopt permutes it): leak both for the process
        // lifetime. This happens once.
        let argv: &'static mut [*mut c_char] =
            Vec::leak(owned.into_iter().map(CString::into_raw).chain(std::iter::once(std::ptr::null_mut())).collect());
        let argc = (argv.len() - 1) as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked so
        // they outlive EAL; STATE guarantees this is the only rte_eal_init call.
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = last_errno();
            // DPDK refuses a second attempt itself (EALREADY), so retrying is harmless.
            STATE.store(UNINIT, Ordering::Release);
            return Err(DpdkError::new(op(), errno));
        }
        STATE.store(RUNNING, Ordering::Release);
        Ok(Eal { _private: () })
    }

    /// `rte_eal_cleanup`. Refuses (and keeps EAL running) while any port configured through
    /// this crate is not closed, any [`Mempool`](super::Mempool) or [`Ring`](super::Ring)
    /// handle is alive, or any mbuf of a pool is still in use — using those after cleanup
    /// would touch freed memory.
    ///
    /// On refusal EAL stays initialised but this `Eal` is consumed; call
    /// [`Eal::check_cleanup`] first to find out without giving it up.
    pub fn cleanup(self) -> Result<(), DpdkError> {
        let op = "rte_eal_cleanup";
        let _ctl = port::control_lock();
        Self::blockers(op)?;
        // SAFETY: EAL is running (self exists), no port is open and no pool/ring/mbuf handle
        // remains, so nothing can use DPDK memory after this call.
        let ret = unsafe { ffi::rte_eal_cleanup() };
        STATE.store(CLEANED_UP, Ordering::Release);
        if ret < 0 {
            return Err(DpdkError::from_ret(op, ret));
        }
        Ok(())
    }

    /// `Ok` if [`Eal::cleanup`] would go ahead, else the reason (errno `EBUSY`).
    pub fn check_cleanup(&self) -> Result<(), DpdkError> {
        let _ctl = port::control_lock();
        Self::blockers("rte_eal_cleanup")
    }

    fn blockers(op: &str) -> Result<(), DpdkError> {
        if let Some(p) = port::first_open_port() {
            return Err(DpdkError::check(op, libc::EBUSY, format!("port {p} is not closed")));
        }
        mbuf::check_all_released().map_err(|m| DpdkError::check(op, libc::EBUSY, m))
    }

    /// `rte_eth_dev_get_port_by_name`: the port id of a device name such as
    /// `"net_af_packet0"`, `"net_ring0"` or a PCI address `"0000:03:00.0"`.
    pub fn port_by_name(&self, name: &str) -> Result<u16, DpdkError> {
        let op = || format!("rte_eth_dev_get_port_by_name({name:?})");
        let c = CString::new(name).map_err(|_| DpdkError::check(op(), libc::EINVAL, "name contains a NUL byte"))?;
        let mut port = 0u16;
        // SAFETY: c is a valid C string and port a valid out pointer, for the call's duration.
        let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut port) };
        if ret < 0 {
            return Err(DpdkError::from_ret(op(), ret));
        }
        Ok(port)
    }

    /// Ids of the available (probed, unowned) ethdev ports.
    pub fn ports(&self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut p: u64 = 0;
        loop {
            // SAFETY: EAL is running (self exists); any start id is accepted.
            p = unsafe { ffi::rte_eth_find_next_owned_by(p as u16, ffi::RTE_ETH_DEV_NO_OWNER as u64) };
            if p >= ffi::RTE_MAX_ETHPORTS as u64 {
                return out;
            }
            out.push(p as u16);
            p += 1;
        }
    }
}

thread_local! {
    /// The lcore id this thread got from [`register_thread`], if any.
    static REGISTERED: Cell<Option<u32>> = const { Cell::new(None) };
}

/// `rte_thread_register`: give the calling (non-EAL) thread an lcore id, so that mempool
/// per-lcore caches and `rte_lcore_id()` work in it. Pin the thread before calling: DPDK
/// records the thread's CPU set. Idempotent; on an EAL thread returns its lcore id.
/// Call [`unregister_thread`] before the thread exits, or the lcore id is never reused.
pub fn register_thread() -> Result<u32, DpdkError> {
    let op = "rte_thread_register";
    if let Some(id) = REGISTERED.with(Cell::get) {
        return Ok(id);
    }
    let current = lcore_id();
    if current != ffi::LCORE_ID_ANY {
        return Ok(current);
    }
    ensure_running(|| op.to_string())?;
    // SAFETY: EAL is initialised; registration only touches this thread's TLS and the lcore
    // table (under EAL's lock).
    let ret = unsafe { ffi::rte_thread_register() };
    if ret < 0 {
        return Err(DpdkError::from_rte_errno(op));
    }
    let id = lcore_id();
    REGISTERED.with(|r| r.set(Some(id)));
    Ok(id)
}

/// `rte_thread_unregister` for a thread registered with [`register_thread`]; no-op otherwise
/// (EAL's own lcores are never released).
pub fn unregister_thread() {
    if REGISTERED.with(Cell::take).is_some() {
        // SAFETY: this thread was registered by register_thread (so EAL is initialised);
        // unregistering releases only its own lcore id.
        unsafe { ffi::rte_thread_unregister() };
    }
}

/// `rte_lcore_id()`: the calling thread's lcore id, `u32::MAX` (LCORE_ID_ANY) if none.
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads the calling thread's TLS lcore id; valid with or without EAL.
    unsafe { ffi::rte_lcore_id() }
}

/// `rte_socket_id()`: the NUMA socket of the calling thread (`-1` = any, e.g. unregistered).
#[inline]
pub fn socket_id() -> i32 {
    // SAFETY: reads the calling thread's TLS socket id; valid with or without EAL.
    unsafe { ffi::rte_socket_id() as i32 }
}

/// `rte_rdtsc()`: the CPU time-stamp counter.
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: executes rdtsc; no memory is touched.
    unsafe { ffi::rte_rdtsc() }
}

/// `rte_get_tsc_hz()`: TSC ticks per second (0 before [`Eal::init`]).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a global EAL sets at init; it is 0 before that.
    unsafe { ffi::rte_get_tsc_hz() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_eal_calls_fail_cleanly() {
        // These unit tests never initialise EAL (tests/eal.rs does, in its own process).
        assert_eq!(lcore_id(), ffi::LCORE_ID_ANY);
        assert_eq!(socket_id(), -1);
        assert!(tsc() > 0);
        let e = register_thread().unwrap_err();
        assert_eq!(e.errno, libc::EPERM);
        assert!(e.to_string().contains("rte_thread_register"), "{e}");
        unregister_thread(); // never registered: no-op
    }
}
