//! Per-worker session table: bounded, no locks, expiry amortised over bursts by a timer wheel.
//! OWNER: tables helper. API is fixed (other modules code against it); bodies to be written.

use rvs_config::model::{FwdMode, ServiceKey};
use std::net::{Ipv4Addr, SocketAddr};

/// The 5-tuple of a packet as it arrives (client → VIP for the forward direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Connection state, as IPVS names them. DR and TUN only see the client→server direction, so
/// their TCP sessions move on that direction's flags alone (IPVS's "input only" table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpClose,
    Udp,
}

impl ConnState {
    /// Name as `ipvsadm -L -c` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::TcpSynRecv => "SYN_RECV",
            ConnState::TcpEstablished => "ESTABLISHED",
            ConnState::TcpFinWait => "FIN_WAIT",
            ConnState::TcpClose => "CLOSE",
            ConnState::Udp => "UDP",
        }
    }
    /// ipvsadm's ActiveConn counts ESTABLISHED; every other state is InActConn.
    pub const fn is_active(self) -> bool {
        matches!(self, ConnState::TcpEstablished)
    }
}

/// Timeouts per state, nanoseconds. Defaults are IPVS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_recv_ns: u64,
    pub tcp_established_ns: u64,
    pub tcp_fin_wait_ns: u64,
    pub tcp_close_ns: u64,
    pub udp_ns: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Timeouts {
            tcp_syn_recv_ns: 60 * S,
            tcp_established_ns: 900 * S,
            tcp_fin_wait_ns: 120 * S,
            tcp_close_ns: 10 * S,
            udp_ns: 300 * S,
        }
    }
}

impl Timeouts {
    pub fn of(&self, s: ConnState) -> u64 {
        match s {
            ConnState::TcpSynRecv => self.tcp_syn_recv_ns,
            ConnState::TcpEstablished => self.tcp_established_ns,
            ConnState::TcpFinWait => self.tcp_fin_wait_ns,
            ConnState::TcpClose => self.tcp_close_ns,
            ConnState::Udp => self.udp_ns,
        }
    }
}

/// TCP flags relevant to the state machine (RFC 793 bit values).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub svc: ServiceKey,
    /// RIP:port the flow goes to.
    pub rs: SocketAddr,
    pub fwd: FwdMode,
    pub state: ConnState,
    pub created_ns: u64,
    /// When the session expires unless touched again.
    pub expires_ns: u64,
    pub pkts: u64,
    pub bytes: u64,
}

/// The table is at capacity; the new flow is refused (existing flows are untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

pub struct ConnTable {}

impl ConnTable {
    /// A table that holds at most `capacity` sessions.
    pub fn new(_capacity: usize, _timeouts: Timeouts) -> Self {
        todo!()
    }
    pub fn timeouts(&self) -> &Timeouts {
        todo!()
    }
    /// Applies to the next state change or touch of each session.
    pub fn set_timeouts(&mut self, _t: Timeouts) {
        todo!()
    }
    pub fn get(&self, _key: &FlowKey) -> Option<&Session> {
        todo!()
    }
    pub fn get_mut(&mut self, _key: &FlowKey) -> Option<&mut Session> {
        todo!()
    }
    /// Insert a new session (state and expiry already set by the caller, e.g. with `new_session`).
    pub fn insert(&mut self, _key: FlowKey, _s: Session) -> Result<&mut Session, TableFull> {
        todo!()
    }
    pub fn remove(&mut self, _key: &FlowKey) -> Option<Session> {
        todo!()
    }
    /// A fresh session for the first packet of a flow (TCP with these flags, or UDP).
    pub fn new_session(&self, _svc: ServiceKey, _rs: SocketAddr, _fwd: FwdMode, _proto: u8, _tcp_flags: u8, _now_ns: u64, _len: usize) -> Session {
        todo!()
    }
    /// Account a packet of an existing flow: counters, TCP state from `tcp_flags` (input-only
    /// table: SYN→SYN_RECV, ACK after SYN_RECV→ESTABLISHED, FIN→FIN_WAIT, RST→CLOSE), expiry
    /// from the new state's timeout. Returns (old state, new state).
    pub fn touch(&mut self, _key: &FlowKey, _tcp_flags: u8, _now_ns: u64, _len: usize) -> Option<(ConnState, ConnState)> {
        todo!()
    }
    /// Remove sessions whose expiry has passed, examining at most `budget` timer entries; call
    /// once per burst. `on_expire` sees each removed session. Returns how many were removed.
    pub fn expire(&mut self, _now_ns: u64, _budget: usize, _on_expire: impl FnMut(&FlowKey, &Session)) -> usize {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        todo!()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Session)> + '_ {
        std::iter::empty()
    }
}
