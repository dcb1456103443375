//! DPDK errors: the failing operation, the errno and `rte_strerror`'s text.

use std::ffi::CStr;

use crate::ffi;

/// A failed DPDK call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message} (errno {errno})")]
pub struct DpdkError {
    /// What failed, with its arguments, e.g. `rte_eth_dev_configure(port 0)`.
    pub op: String,
    /// Positive errno value (DPDK's own codes such as `E_RTE_NO_CONFIG` are above 1000).
    pub errno: i32,
    /// `rte_strerror(errno)`, or a description of a check done by this wrapper.
    pub message: String,
}

impl DpdkError {
    /// An error for `op` with a positive errno; the message comes from `rte_strerror`.
    pub fn new(op: impl Into<String>, errno: i32) -> Self {
        let errno = errno.abs();
        DpdkError { op: op.into(), errno, message: strerror(errno) }
    }

    /// An error detected by this wrapper rather than reported by DPDK.
    pub(crate) fn check(op: impl Into<String>, errno: i32, message: impl Into<String>) -> Self {
        DpdkError { op: op.into(), errno, message: message.into() }
    }

    /// An error for a call that signalled failure through `rte_errno` (NULL or -1 return).
    pub(crate) fn from_rte_errno(op: impl Into<String>) -> Self {
        Self::new(op, last_errno())
    }

    /// An error for a call that returned `-errno`.
    pub(crate) fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        Self::new(op, ret)
    }
}

/// The calling thread's `rte_errno` (read through the C shim: it is thread-local).
pub(crate) fn last_errno() -> i32 {
    // SAFETY: the shim only reads the calling thread's TLS variable; valid at any time.
    unsafe { ffi::rvs_rte_errno() }
}

/// `rte_strerror(errno)` as an owned string. Works without EAL.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a NUL-terminated string, either static
    // or in a thread-local buffer that stays valid until the next call on this thread; it is
    // copied out immediately.
    unsafe {
        let p = ffi::rte_strerror(errno);
        if p.is_null() {
            return format!("unknown error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_names_standard_and_dpdk_codes() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        // E_RTE_NO_CONFIG = __ELASTERROR + 2, with __ELASTERROR = 1000.
        assert_eq!(strerror(1002), "Missing rte_config structure");
    }

    #[test]
    fn display_names_op_message_and_errno() {
        let e = DpdkError::new("rte_eth_dev_configure(port 3)", -libc::EINVAL);
        assert_eq!(e.errno, libc::EINVAL);
        assert_eq!(e.to_string(), "rte_eth_dev_configure(port 3): Invalid argument (errno 22)");
    }

    #[test]
    fn rte_errno_is_per_thread() {
        // SAFETY: writes the calling thread's TLS rte_errno; no EAL needed.
        unsafe { ffi::rvs_rte_errno_set(libc::EEXIST) };
        assert_eq!(last_errno(), libc::EEXIST);
        let other = std::thread::spawn(last_errno).join().unwrap();
        assert_eq!(other, 0);
        let e = DpdkError::from_rte_errno("rte_ring_create(\"x\")");
        assert_eq!(e.errno, libc::EEXIST);
        assert_eq!(e.message, "File exists");
    }
}
