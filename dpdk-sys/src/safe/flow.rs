//! `rte_flow` rules that steer FULLNAT replies to the queue of the worker owning the session.
//!
//! FULLNAT gives every session a local port (lport) chosen so that `lport % n_workers` is the
//! worker that owns it. With `n_workers` a power of two that is `lport & (n - 1)`, which a NIC
//! with flow steering can match: one rule per (local address, L4 protocol, worker) sends
//! `ipv4 dst == LIP && l4 dst port & (n-1) == w` to RX queue `w` (DPVS's `sa_pool` approach).
//! The rule itself is built by the C shim (`rvs_flow_lport_*`): the rte_flow item structs
//! embed packed protocol headers that bindgen cannot lay out faithfully.
//!
//! Lifetime: a rule lives from [`FlowRule::create`] until [`FlowRule::destroy`] (or drop),
//! and only while its port keeps running: DPDK 22.11 PMDs without
//! `RTE_ETH_DEV_CAPA_FLOW_RULE_KEEP` drop rules on stop, so the handle is only passed back to
//! DPDK if the port has not been stopped, reconfigured or closed since the rule was made.

use std::ffi::{c_char, CStr};
use std::net::Ipv4Addr;
use std::ptr::NonNull;

use super::error::DpdkError;
use super::port;
use crate::ffi;

/// L4 protocol of a steering rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowL4 {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl FlowL4 {
    fn ipproto(self) -> u8 {
        match self {
            FlowL4::Tcp => 6,
            FlowL4::Udp => 17,
        }
    }
}

/// What a local-port steering rule matches and where it sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LportRule {
    /// Destination IPv4 address (a FULLNAT local address), matched exactly.
    pub dst: Ipv4Addr,
    /// TCP or UDP.
    pub l4: FlowL4,
    /// Mask applied to the destination port (`n_workers - 1`).
    pub port_mask: u16,
    /// Value the masked destination port must have (the worker index).
    pub port_value: u16,
    /// RX queue the matching packets go to.
    pub queue: u16,
}

/// Room for DPDK's explanation of a refused rule.
const MSG_LEN: usize = 256;

fn flow_error(op: String, ret: i32, msg: &[c_char; MSG_LEN]) -> DpdkError {
    // SAFETY: the shim always NUL-terminates msg (snprintf), and it was zeroed before the call.
    let text = unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned();
    let errno = if ret < 0 { -ret } else { libc::EIO };
    if text.is_empty() {
        DpdkError::new(op, errno)
    } else {
        DpdkError::check(op, errno, text)
    }
}

fn check_started(op: &dyn Fn() -> String, p: u16) -> Result<u32, DpdkError> {
    port::started_epoch(p)
        .ok_or_else(|| DpdkError::check(op(), libc::EINVAL, "port is not started through this wrapper"))
}

/// `rte_flow_validate` of `rule` on `port`: would the device accept it? The port must be
/// started. PMDs without flow support (af_packet, tap without a kernel flower, ring, null)
/// answer `ENOSYS`/`ENOTSUP`.
pub fn flow_validate(port_id: u16, rule: &LportRule) -> Result<(), DpdkError> {
    let op = || format!("rte_flow_validate(port {port_id}, {rule:?})");
    let _ctl = port::control_lock();
    check_started(&op, port_id)?;
    let mut msg = [0 as c_char; MSG_LEN];
    // SAFETY: the port is started (checked under the control lock, which stop/close take);
    // msg is a writable buffer of MSG_LEN bytes; the shim builds the rule on its own stack.
    let ret = unsafe {
        ffi::rvs_flow_lport_validate(
            port_id,
            u32::from(rule.dst),
            rule.l4.ipproto(),
            rule.port_mask,
            rule.port_value,
            rule.queue,
            msg.as_mut_ptr(),
            MSG_LEN,
        )
    };
    if ret < 0 {
        return Err(flow_error(op(), ret, &msg));
    }
    Ok(())
}

/// An installed flow rule. Destroy it before stopping its port ([`FlowRule::destroy`]);
/// dropping it does the same and ignores errors.
#[derive(Debug)]
pub struct FlowRule {
    port: u16,
    /// The port's run epoch at creation: the handle is only valid while it is unchanged.
    epoch: u32,
    ptr: Option<NonNull<ffi::rte_flow>>,
    rule: LportRule,
}

// SAFETY: the handle is an opaque pointer only passed to rte_flow_destroy, which DPDK allows
// from any thread (flow API calls are serialised by the control lock here).
unsafe impl Send for FlowRule {}
// SAFETY: no method reads through the pointer with &self.
unsafe impl Sync for FlowRule {}

impl FlowRule {
    /// `rte_flow_create` of `rule` on the started `port`.
    pub fn create(port_id: u16, rule: &LportRule) -> Result<FlowRule, DpdkError> {
        let op = || format!("rte_flow_create(port {port_id}, {rule:?})");
        let _ctl = port::control_lock();
        let epoch = check_started(&op, port_id)?;
        let mut msg = [0 as c_char; MSG_LEN];
        let mut out: *mut ffi::rte_flow = std::ptr::null_mut();
        // SAFETY: as in flow_validate; out is a valid out pointer the shim sets on success.
        let ret = unsafe {
            ffi::rvs_flow_lport_create(
                port_id,
                u32::from(rule.dst),
                rule.l4.ipproto(),
                rule.port_mask,
                rule.port_value,
                rule.queue,
                &mut out,
                msg.as_mut_ptr(),
                MSG_LEN,
            )
        };
        if ret < 0 {
            return Err(flow_error(op(), ret, &msg));
        }
        let ptr =
            NonNull::new(out).ok_or_else(|| DpdkError::check(op(), libc::EIO, "rte_flow_create returned no handle"))?;
        Ok(FlowRule { port: port_id, epoch, ptr: Some(ptr), rule: *rule })
    }

    /// The port the rule is on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the rule matches.
    pub fn rule(&self) -> &LportRule {
        &self.rule
    }

    /// `rte_flow_destroy`. If the port was stopped, reconfigured or closed since the rule was
    /// made, DPDK already released it and this only forgets the handle.
    pub fn destroy(mut self) -> Result<(), DpdkError> {
        self.destroy_inner()
    }

    fn destroy_inner(&mut self) -> Result<(), DpdkError> {
        let Some(ptr) = self.ptr.take() else {
            return Ok(());
        };
        let _ctl = port::control_lock();
        if port::started_epoch(self.port) != Some(self.epoch) {
            return Ok(());
        }
        let mut msg = [0 as c_char; MSG_LEN];
        // SAFETY: the port has run without interruption since the rule was created (same
        // epoch, under the control lock), so ptr is a live rule of this port, destroyed once
        // (taken out of self.ptr).
        let ret = unsafe { ffi::rvs_flow_destroy(self.port, ptr.as_ptr(), msg.as_mut_ptr(), MSG_LEN) };
        if ret < 0 {
            let port = self.port;
            let rule = self.rule;
            return Err(flow_error(format!("rte_flow_destroy(port {port}, {rule:?})"), ret, &msg));
        }
        Ok(())
    }
}

impl Drop for FlowRule {
    fn drop(&mut self) {
        let _ = self.destroy_inner();
    }
}
