//! Per-worker session table: bounded, no locks, expiry amortised over bursts by a timer wheel.

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

/// Default wheel tick: 1/16 s. Expiry is at most one tick late.
pub const WHEEL_TICK_NS: u64 = 62_500_000;
/// Default wheel size: 1024 ticks of 1/16 s, a 64 s horizon. Sessions expiring later sit in the
/// farthest slot and are looked at again when it comes round (an ESTABLISHED session's 900 s
/// costs about 14 such looks over its life).
pub const WHEEL_SLOTS: usize = 1024;

/// A session with its place on the timer wheel.
#[derive(Debug)]
struct Entry {
    s: Session,
    /// Absolute wheel tick the session's one wheel record was filed for (slot = tick % slots).
    due_tick: u64,
    /// Index of that record inside its slot.
    pos: u32,
}

/// The session table: a hash map (ahash) bounded by `capacity`, and a hashed timer wheel for
/// expiry.
///
/// Wheel bookkeeping is exact: every session has exactly one record (its key) on the wheel, and
/// the session knows where (`due_tick`, `pos`). `remove` takes the record out with a
/// `swap_remove` and fixes the position of the record moved into the hole, so the wheel never
/// holds stale keys and its memory is one key per session. `touch` only moves `expires_ns`
/// later without touching the wheel (the common case); when the wheel reaches a record whose
/// session expires later, the record is filed again for the new expiry ("lazy rescheduling").
/// An expiry moved earlier (e.g. RST on an ESTABLISHED flow) moves the record right away, so a
/// session is never removed more than one tick after its `expires_ns`.
pub struct ConnTable {
    map: hashbrown::HashMap<FlowKey, Entry>,
    capacity: usize,
    timeouts: Timeouts,
    wheel: Vec<Vec<FlowKey>>,
    tick_ns: u64,
    /// Next tick to process. Ticks before it are done.
    cursor: u64,
}

/// The wheel tick a record for `expires_ns` goes to: its own tick, but not before the cursor
/// (already late) and not beyond the horizon (looked at again then).
fn target_tick(expires_ns: u64, tick_ns: u64, cursor: u64, slots: usize) -> u64 {
    (expires_ns / tick_ns).clamp(cursor, cursor + slots as u64 - 1)
}

/// Initial state of a flow from its first packet. The worker creates TCP sessions on SYN only;
/// the other cases follow IPVS's flag precedence (RST, SYN, FIN, then anything else).
fn initial_state(proto: u8, flags: u8) -> ConnState {
    use tcp_flags::*;
    if proto != 6 {
        // UDP, and any other datagram protocol a later release may balance.
        return ConnState::Udp;
    }
    if flags & RST != 0 {
        ConnState::TcpClose
    } else if flags & SYN != 0 {
        ConnState::TcpSynRecv
    } else if flags & FIN != 0 {
        ConnState::TcpFinWait
    } else {
        ConnState::TcpEstablished
    }
}

/// The input-only transition (client → server flags only), checked in IPVS's order: RST, SYN,
/// FIN, ACK.
fn next_state(old: ConnState, flags: u8) -> ConnState {
    use tcp_flags::*;
    use ConnState::*;
    match old {
        Udp => Udp,
        _ if flags & RST != 0 => TcpClose,
        // A SYN on a closing flow is a new connection reusing the tuple: the worker removes and
        // re-inserts it; here the state stays.
        _ if flags & SYN != 0 => old,
        TcpClose => TcpClose,
        _ if flags & FIN != 0 => TcpFinWait,
        TcpSynRecv if flags & ACK != 0 => TcpEstablished,
        _ => old,
    }
}

impl ConnTable {
    /// A table that holds at most `capacity` sessions.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        Self::with_wheel(capacity, timeouts, WHEEL_TICK_NS, WHEEL_SLOTS)
    }

    /// As `new`, with a timer wheel of `slots` ticks of `tick_ns` (expiry is at most one tick
    /// late; sessions beyond `slots × tick_ns` are re-examined once per horizon). Values below
    /// 1 ns / 2 slots are raised to those.
    pub fn with_wheel(capacity: usize, timeouts: Timeouts, tick_ns: u64, slots: usize) -> Self {
        let slots = slots.max(2);
        ConnTable {
            // Room for a first burst up front; beyond that the map grows as flows arrive.
            map: hashbrown::HashMap::with_capacity(capacity.min(1 << 16)),
            capacity,
            timeouts,
            wheel: (0..slots).map(|_| Vec::new()).collect(),
            tick_ns: tick_ns.max(1),
            cursor: 0,
        }
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
    /// Applies to the next state change or touch of each session.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }
    pub fn get(&self, key: &FlowKey) -> Option<&Session> {
        self.map.get(key).map(|e| &e.s)
    }
    /// Counters and fields may be changed freely. Moving `expires_ns` earlier through this
    /// reference takes effect only when the wheel reaches the session's current record (use
    /// `touch`, or `insert` again, to shorten a life precisely); moving it later is fine.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Session> {
        self.map.get_mut(key).map(|e| &mut e.s)
    }

    /// Put `key` on the wheel for `tick`; returns its position in the slot.
    fn file(&mut self, key: FlowKey, tick: u64) -> u32 {
        let n = self.wheel.len() as u64;
        let slot = &mut self.wheel[(tick % n) as usize];
        slot.push(key);
        (slot.len() - 1) as u32
    }

    /// Take the record at (`tick`, `pos`) off the wheel, fixing the session whose record fills
    /// the hole.
    fn unfile(&mut self, tick: u64, pos: u32) {
        let n = self.wheel.len() as u64;
        let slot = &mut self.wheel[(tick % n) as usize];
        let pos = pos as usize;
        if pos >= slot.len() {
            debug_assert!(false, "conn wheel record out of place");
            return;
        }
        slot.swap_remove(pos);
        if let Some(moved) = slot.get(pos).copied() {
            if let Some(e) = self.map.get_mut(&moved) {
                e.pos = pos as u32;
            }
        }
    }

    /// Insert a new session (state and expiry already set by the caller, e.g. with `new_session`).
    /// An existing session of the same key is replaced (this works when the table is full).
    pub fn insert(&mut self, key: FlowKey, s: Session) -> Result<&mut Session, TableFull> {
        if let Some(old) = self.map.remove(&key) {
            self.unfile(old.due_tick, old.pos);
        } else if self.map.len() >= self.capacity {
            return Err(TableFull);
        }
        let tick = target_tick(s.expires_ns, self.tick_ns, self.cursor, self.wheel.len());
        let pos = self.file(key, tick);
        Ok(&mut self.map.entry(key).insert(Entry { s, due_tick: tick, pos }).into_mut().s)
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<Session> {
        let e = self.map.remove(key)?;
        self.unfile(e.due_tick, e.pos);
        Some(e.s)
    }

    /// A fresh session for the first packet of a flow (TCP with these flags, or UDP).
    ///
    /// TCP: SYN → SYN_RECV (how the worker opens flows); RST → CLOSE, FIN → FIN_WAIT, anything
    /// else → ESTABLISHED (flows picked up mid-stream). Any protocol other than TCP is `Udp`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_session(&self, svc: ServiceKey, rs: SocketAddr, fwd: FwdMode, proto: u8, tcp_flags: u8, now_ns: u64, len: usize) -> Session {
        let state = initial_state(proto, tcp_flags);
        Session {
            svc,
            rs,
            fwd,
            state,
            created_ns: now_ns,
            expires_ns: now_ns.saturating_add(self.timeouts.of(state)),
            pkts: 1,
            bytes: len as u64,
        }
    }

    /// Account a packet of an existing flow: counters, TCP state from `tcp_flags` (input-only
    /// table: SYN→SYN_RECV, ACK after SYN_RECV→ESTABLISHED, FIN→FIN_WAIT, RST→CLOSE), expiry
    /// from the new state's timeout. Returns (old state, new state).
    ///
    /// A SYN on a CLOSE or FIN_WAIT session leaves it as it is: the worker treats that as a new
    /// connection and replaces the session (remove, schedule, insert).
    pub fn touch(&mut self, key: &FlowKey, tcp_flags: u8, now_ns: u64, len: usize) -> Option<(ConnState, ConnState)> {
        let e = self.map.get_mut(key)?;
        let old = e.s.state;
        let new = next_state(old, tcp_flags);
        e.s.state = new;
        e.s.pkts += 1;
        e.s.bytes += len as u64;
        e.s.expires_ns = now_ns.saturating_add(self.timeouts.of(new));
        let tick = target_tick(e.s.expires_ns, self.tick_ns, self.cursor, self.wheel.len());
        if tick < e.due_tick {
            // Life shortened below the record's tick: move the record now.
            let (old_tick, old_pos) = (e.due_tick, e.pos);
            self.unfile(old_tick, old_pos);
            let pos = self.file(*key, tick);
            if let Some(e) = self.map.get_mut(key) {
                e.due_tick = tick;
                e.pos = pos;
            }
        }
        Some((old, new))
    }

    /// Remove sessions whose expiry has passed, examining at most `budget` timer entries; call
    /// once per burst. `on_expire` sees each removed session. Returns how many were removed.
    ///
    /// Only wheel ticks entirely in the past are processed, so a session goes at most one tick
    /// after its `expires_ns`. A call that runs out of budget resumes where it stopped.
    pub fn expire(&mut self, now_ns: u64, budget: usize, mut on_expire: impl FnMut(&FlowKey, &Session)) -> usize {
        let slots = self.wheel.len();
        // Ticks before `due_limit` end at or before `now_ns`.
        let due_limit = now_ns / self.tick_ns;
        if self.map.is_empty() {
            self.cursor = self.cursor.max(due_limit);
            return 0;
        }
        if due_limit > self.cursor + slots as u64 {
            // More than a revolution behind (first call, or a stall): every slot is due. Moving
            // the cursor to one revolution before `due_limit` only reinterprets each record as
            // due at a later tick that is still due, and bounds the walk over empty slots.
            self.cursor = due_limit - slots as u64;
        }
        let mut examined = 0usize;
        let mut removed = 0usize;
        while self.cursor < due_limit {
            let si = (self.cursor % slots as u64) as usize;
            // Pop from the end: records still in the slot keep their positions if we stop.
            while let Some(&key) = self.wheel[si].last() {
                if examined >= budget {
                    return removed;
                }
                examined += 1;
                self.wheel[si].pop();
                let Some(e) = self.map.get_mut(&key) else {
                    debug_assert!(false, "conn wheel record without session");
                    continue;
                };
                if e.s.expires_ns <= now_ns {
                    if let Some(e) = self.map.remove(&key) {
                        on_expire(&key, &e.s);
                        removed += 1;
                    }
                } else {
                    // Touched since filed: expires_ns > now_ns, so its tick is at least
                    // `due_limit` > cursor and the record never lands back in this slot.
                    let tick = target_tick(e.s.expires_ns, self.tick_ns, self.cursor, slots);
                    debug_assert!(tick > self.cursor);
                    let slot = &mut self.wheel[(tick % slots as u64) as usize];
                    slot.push(key);
                    e.due_tick = tick;
                    e.pos = (slot.len() - 1) as u32;
                }
            }
            // Give back the memory of an exceptional burst.
            let keep = 2 * (self.map.len() / slots) + 64;
            let slot = &mut self.wheel[si];
            if slot.capacity() > 4 * keep {
                slot.shrink_to(keep);
            }
            self.cursor += 1;
            if self.map.is_empty() {
                self.cursor = due_limit;
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Session)> + '_ {
        self.map.iter().map(|(k, e)| (k, &e.s))
    }

    /// Test aid: every session has exactly one wheel record, where it says it is.
    #[cfg(test)]
    fn check_wheel(&self) {
        let n = self.wheel.len() as u64;
        let records: usize = self.wheel.iter().map(Vec::len).sum();
        assert_eq!(records, self.map.len(), "wheel records vs sessions");
        for (k, e) in &self.map {
            assert_eq!(self.wheel[(e.due_tick % n) as usize].get(e.pos as usize), Some(k), "record of {k:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;
    use rvs_config::model::Proto;

    const S: u64 = 1_000_000_000;
    const T: u64 = WHEEL_TICK_NS;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            proto: 6,
            src: Ipv4Addr::new(198, 51, 100, (i % 250) as u8),
            dst: Ipv4Addr::new(192, 0, 2, 10),
            sport: 1024 + (i / 250) as u16,
            dport: 80,
        }
    }
    fn svc() -> ServiceKey {
        ServiceKey { proto: Proto::Tcp, vip: "192.0.2.10:80".parse().unwrap() }
    }
    fn rs() -> SocketAddr {
        "203.0.113.5:80".parse().unwrap()
    }
    fn syn(t: &ConnTable, now: u64) -> Session {
        t.new_session(svc(), rs(), FwdMode::Dr, 6, SYN, now, 60)
    }
    /// Drive `expire` tick by tick from `from` to `to`; returns when each key went.
    fn run(t: &mut ConnTable, from: u64, to: u64, step: u64) -> Vec<(FlowKey, u64)> {
        let mut gone = Vec::new();
        let mut now = from;
        while now <= to {
            t.expire(now, usize::MAX, |k, _| gone.push((*k, now)));
            t.check_wheel();
            now += step;
        }
        gone
    }

    #[test]
    fn new_session_states() {
        let t = ConnTable::new(10, Timeouts::default());
        let d = Timeouts::default();
        let s = t.new_session(svc(), rs(), FwdMode::Dr, 6, SYN, 5, 74);
        assert_eq!((s.state, s.created_ns, s.expires_ns, s.pkts, s.bytes), (ConnState::TcpSynRecv, 5, 5 + d.tcp_syn_recv_ns, 1, 74));
        assert_eq!(t.new_session(svc(), rs(), FwdMode::Dr, 6, RST | ACK, 0, 1).state, ConnState::TcpClose);
        assert_eq!(t.new_session(svc(), rs(), FwdMode::Dr, 6, FIN | ACK, 0, 1).state, ConnState::TcpFinWait);
        assert_eq!(t.new_session(svc(), rs(), FwdMode::Dr, 6, ACK, 0, 1).state, ConnState::TcpEstablished);
        let u = t.new_session(svc(), rs(), FwdMode::Dr, 17, SYN, 7, 100);
        assert_eq!((u.state, u.expires_ns), (ConnState::Udp, 7 + d.udp_ns));
    }

    #[test]
    fn tcp_transitions_input_only() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.insert(k, syn(&t, 0)).unwrap();
        use ConnState::*;
        // Retransmitted SYN keeps SYN_RECV.
        assert_eq!(t.touch(&k, SYN, 1, 60), Some((TcpSynRecv, TcpSynRecv)));
        assert_eq!(t.touch(&k, ACK, 2, 52), Some((TcpSynRecv, TcpEstablished)));
        assert_eq!(t.touch(&k, ACK | 0x08, 3, 1000), Some((TcpEstablished, TcpEstablished)));
        assert_eq!(t.touch(&k, SYN, 4, 60), Some((TcpEstablished, TcpEstablished)));
        assert_eq!(t.touch(&k, FIN | ACK, 5, 52), Some((TcpEstablished, TcpFinWait)));
        assert_eq!(t.touch(&k, ACK, 6, 52), Some((TcpFinWait, TcpFinWait)));
        assert_eq!(t.touch(&k, SYN, 7, 60), Some((TcpFinWait, TcpFinWait)));
        assert_eq!(t.touch(&k, RST, 8, 40), Some((TcpFinWait, TcpClose)));
        assert_eq!(t.touch(&k, FIN, 9, 40), Some((TcpClose, TcpClose)));
        assert_eq!(t.touch(&k, ACK, 10, 40), Some((TcpClose, TcpClose)));
        assert_eq!(t.touch(&k, SYN, 11, 40), Some((TcpClose, TcpClose)));
        let s = t.get(&k).unwrap();
        assert_eq!((s.pkts, s.bytes), (12, 60 + 60 + 52 + 1000 + 60 + 52 + 52 + 60 + 40 + 40 + 40 + 40));
        assert_eq!(s.expires_ns, 11 + Timeouts::default().tcp_close_ns);
        // RST straight from SYN_RECV and ESTABLISHED; FIN from SYN_RECV.
        let k2 = key(2);
        t.insert(k2, syn(&t, 0)).unwrap();
        assert_eq!(t.touch(&k2, FIN, 1, 40), Some((TcpSynRecv, TcpFinWait)));
        let k3 = key(3);
        t.insert(k3, syn(&t, 0)).unwrap();
        assert_eq!(t.touch(&k3, RST | ACK, 1, 40), Some((TcpSynRecv, TcpClose)));
        // Absent key.
        assert_eq!(t.touch(&key(99), ACK, 1, 40), None);
    }

    #[test]
    fn udp_stays_udp() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = FlowKey { proto: 17, ..key(1) };
        let s = t.new_session(svc(), rs(), FwdMode::Dr, 17, 0, 0, 100);
        t.insert(k, s).unwrap();
        for f in [0, SYN, FIN, RST, ACK] {
            assert_eq!(t.touch(&k, f, 1, 10), Some((ConnState::Udp, ConnState::Udp)));
        }
        assert_eq!(t.get(&k).unwrap().expires_ns, 1 + Timeouts::default().udp_ns);
    }

    #[test]
    fn capacity_limit_keeps_existing_flows_working() {
        let mut t = ConnTable::new(3, Timeouts::default());
        assert_eq!(t.capacity(), 3);
        for i in 0..3 {
            t.insert(key(i), syn(&t, 0)).unwrap();
        }
        let before = t.get(&key(0)).cloned();
        assert_eq!(t.insert(key(3), syn(&t, 5)).err(), Some(TableFull));
        assert_eq!(t.len(), 3);
        assert!(t.get(&key(3)).is_none());
        assert_eq!(t.get(&key(0)).cloned(), before);
        // Existing flows still update and can be replaced while full.
        assert!(t.touch(&key(0), ACK, 1, 10).is_some());
        let mut s = syn(&t, 9);
        s.pkts = 42;
        assert_eq!(t.insert(key(1), s).unwrap().pkts, 42);
        assert_eq!(t.len(), 3);
        t.check_wheel();
        // Room again after a removal.
        assert!(t.remove(&key(2)).is_some());
        assert!(t.insert(key(3), syn(&t, 5)).is_ok());
        t.check_wheel();
        // Zero capacity refuses everything.
        let mut z = ConnTable::new(0, Timeouts::default());
        assert_eq!(z.insert(key(0), syn(&t, 0)).err(), Some(TableFull));
    }

    #[test]
    fn each_state_expires_after_its_timeout() {
        let d = Timeouts::default();
        let cases = [
            (SYN, d.tcp_syn_recv_ns),
            (ACK, d.tcp_established_ns),
            (FIN, d.tcp_fin_wait_ns),
            (RST, d.tcp_close_ns),
        ];
        for (flags, timeout) in cases {
            let mut t = ConnTable::new(10, d);
            let t0 = 1000 * S + 123;
            let s = t.new_session(svc(), rs(), FwdMode::Dr, 6, flags, t0, 60);
            t.insert(key(7), s).unwrap();
            let gone = run(&mut t, t0, t0 + timeout + 2 * S, T / 2);
            assert_eq!(gone.len(), 1, "flags {flags:#x}");
            let at = gone[0].1;
            assert!(at >= t0 + timeout && at <= t0 + timeout + T, "flags {flags:#x}: expired at +{}", at - t0);
            assert!(t.is_empty());
        }
        // UDP, checked with one-second steps.
        let mut t = ConnTable::new(10, d);
        let s = t.new_session(svc(), rs(), FwdMode::Dr, 17, 0, 0, 60);
        t.insert(key(8), s).unwrap();
        let gone = run(&mut t, 0, 400 * S, S);
        // 300 s is a tick boundary: that tick is over at the next step.
        assert_eq!(gone, vec![(key(8), 301 * S)]);
    }

    #[test]
    fn touch_extends_life() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.insert(k, t.new_session(svc(), rs(), FwdMode::Dr, 17, 0, 0, 60)).unwrap();
        assert!(run(&mut t, 0, 200 * S, S).is_empty());
        t.touch(&k, 0, 200 * S, 60);
        assert!(run(&mut t, 201 * S, 499 * S, S).is_empty());
        assert!(t.get(&k).is_some());
        assert_eq!(run(&mut t, 500 * S, 510 * S, S), vec![(k, 501 * S)]);
    }

    #[test]
    fn touch_shortening_life_moves_the_record() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.insert(k, syn(&t, 0)).unwrap();
        t.touch(&k, ACK, 1, 60); // ESTABLISHED, 900 s: filed at the horizon
        t.touch(&k, RST, 2 * S, 40); // CLOSE, 10 s
        t.check_wheel();
        let gone = run(&mut t, 2 * S, 30 * S, T);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1 >= 12 * S && gone[0].1 <= 12 * S + T, "at {}", gone[0].1);
    }

    #[test]
    fn budget_is_respected_and_work_resumes() {
        let mut t = ConnTable::new(20_000, Timeouts::default());
        for i in 0..10_000 {
            t.insert(key(i), syn(&t, 0)).unwrap();
        }
        let now = 61 * S;
        let mut seen = hashbrown::HashSet::new();
        let mut calls = 0;
        loop {
            let n = t.expire(now, 1000, |k, s| {
                assert_eq!(s.state, ConnState::TcpSynRecv);
                assert!(seen.insert(*k), "expired twice");
            });
            assert!(n <= 1000);
            calls += 1;
            t.check_wheel();
            if n == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 10_000);
        assert!(t.is_empty());
        assert_eq!(calls, 11);
        // Budget zero does nothing.
        t.insert(key(1), syn(&t, 0)).unwrap();
        assert_eq!(t.expire(200 * S, 0, |_, _| panic!("budget 0")), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(200 * S, 1, |_, _| {}), 1);
    }

    #[test]
    fn budget_counts_rescheduled_records_too() {
        let mut t = ConnTable::new(100, Timeouts::default());
        for i in 0..10 {
            t.insert(key(i), syn(&t, 0)).unwrap();
        }
        // All touched: at 61 s none is due, but each record must be examined and moved.
        for i in 0..10 {
            t.touch(&key(i), ACK, 30 * S, 10);
        }
        assert_eq!(t.expire(61 * S, 4, |_, _| panic!("none due")), 0);
        t.check_wheel();
        assert_eq!(t.expire(61 * S, 100, |_, _| panic!("none due")), 0);
        t.check_wheel();
        assert_eq!(t.len(), 10);
        assert_eq!(t.expire(930 * S + T, usize::MAX, |_, _| {}), 10);
    }

    #[test]
    fn remove_then_expire_does_not_resurrect() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let (a, b) = (key(1), key(2));
        t.insert(a, syn(&t, 0)).unwrap();
        t.insert(b, syn(&t, 0)).unwrap();
        assert_eq!(t.remove(&a).map(|s| s.state), Some(ConnState::TcpSynRecv));
        assert_eq!(t.remove(&a), None);
        t.check_wheel();
        let gone = run(&mut t, 0, 70 * S, S);
        assert_eq!(gone.iter().map(|g| g.0).collect::<Vec<_>>(), vec![b]);
        assert!(t.get(&a).is_none());

        // Remove and re-insert the same key (a flow rescheduled) with a later life: it goes
        // once, at the new time.
        let mut t = ConnTable::new(10, Timeouts::default());
        t.insert(a, syn(&t, 0)).unwrap();
        t.remove(&a);
        t.insert(a, syn(&t, 30 * S)).unwrap();
        t.check_wheel();
        let gone = run(&mut t, 0, 100 * S, S);
        assert_eq!(gone, vec![(a, 91 * S)]);
        // Replace by insert without remove: same.
        t.insert(a, syn(&t, 0)).unwrap();
        t.insert(a, syn(&t, 20 * S)).unwrap();
        t.check_wheel();
        assert_eq!(t.len(), 1);
        let gone = run(&mut t, 100 * S, 200 * S, S);
        // Already past due when inserted: filed for the current tick, gone once it is over.
        assert_eq!(gone, vec![(a, 101 * S)]);
    }

    #[test]
    fn repeated_reschedule_does_not_grow_the_wheel() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let a = key(1);
        for i in 0..100_000u64 {
            t.remove(&a);
            t.insert(a, syn(&t, i)).unwrap();
        }
        t.check_wheel();
        let records: usize = t.wheel.iter().map(Vec::len).sum();
        assert_eq!(records, 1);
    }

    #[test]
    fn far_future_clock_and_stalls() {
        // A clock that starts far from zero (ns since boot) must not make the first call walk
        // millions of empty ticks or misplace records.
        let mut t = ConnTable::new(10, Timeouts::default());
        let t0 = 5_000_000 * S;
        t.insert(key(1), syn(&t, t0)).unwrap();
        assert_eq!(t.expire(t0, usize::MAX, |_, _| {}), 0);
        assert_eq!(t.expire(t0 + 59 * S, usize::MAX, |_, _| {}), 0);
        assert_eq!(t.expire(t0 + 60 * S + T, usize::MAX, |_, _| {}), 1);
        // A stall of many horizons with live and dead sessions mixed.
        let t1 = t0 + 100 * S;
        t.insert(key(2), syn(&t, t1)).unwrap();
        let mut u = t.new_session(svc(), rs(), FwdMode::Dr, 17, 0, t1, 1);
        u.expires_ns = t1 + 10_000 * S;
        t.insert(key(3), u).unwrap();
        let mut gone = Vec::new();
        assert_eq!(t.expire(t1 + 5000 * S, usize::MAX, |k, _| gone.push(*k)), 1);
        assert_eq!(gone, vec![key(2)]);
        t.check_wheel();
        assert!(t.get(&key(3)).is_some());
        assert_eq!(t.expire(t1 + 10_000 * S + T, usize::MAX, |_, _| {}), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn set_timeouts_applies_on_next_touch() {
        let mut t = ConnTable::new(10, Timeouts::default());
        let k = key(1);
        t.insert(k, syn(&t, 0)).unwrap();
        let mut to = *t.timeouts();
        to.tcp_established_ns = 5 * S;
        t.set_timeouts(to);
        assert_eq!(t.timeouts().tcp_established_ns, 5 * S);
        assert_eq!(t.get(&k).unwrap().expires_ns, 60 * S);
        t.touch(&k, ACK, S, 10);
        assert_eq!(t.get(&k).unwrap().expires_ns, 6 * S);
        let gone = run(&mut t, S, 10 * S, T);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1 <= 6 * S + T);
    }

    #[test]
    fn iteration_and_get_mut() {
        let mut t = ConnTable::new(100, Timeouts::default());
        for i in 0..50 {
            t.insert(key(i), syn(&t, i as u64)).unwrap();
        }
        t.get_mut(&key(3)).unwrap().bytes = 7;
        let mut seen: Vec<u64> = t.iter().map(|(k, s)| {
            assert_eq!(s.created_ns, (k.sport as u64 - 1024) * 250 + k.src.octets()[3] as u64);
            s.created_ns
        }).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<u64>>());
        assert_eq!(t.get(&key(3)).unwrap().bytes, 7);
        assert!(!t.is_empty());
        assert_eq!(t.len(), 50);
    }

    #[test]
    fn model_check_against_naive_table() {
        // Random operations; after each full expire, exactly the sessions whose expiry is at
        // least one tick in the past are gone, and none whose expiry is in the future.
        let tick = 1000;
        let mut t = ConnTable::with_wheel(64, Timeouts {
            tcp_syn_recv_ns: 30_000,
            tcp_established_ns: 200_000,
            tcp_fin_wait_ns: 20_000,
            tcp_close_ns: 5_000,
            udp_ns: 50_000,
        }, tick, 16);
        let mut model: hashbrown::HashMap<FlowKey, u64> = hashbrown::HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 700;
            let k = key((x >> 32) as u32 % 80);
            match (x >> 16) % 6 {
                0 | 1 => {
                    let r = t.insert(k, t.new_session(svc(), rs(), FwdMode::Dr, 6, SYN, now, 1));
                    if r.is_ok() {
                        model.insert(k, now + 30_000);
                    } else {
                        assert_eq!(model.len(), 64);
                        assert!(!model.contains_key(&k));
                    }
                }
                2 => {
                    let flags = [ACK, FIN, RST, SYN][((x >> 40) % 4) as usize];
                    if t.touch(&k, flags, now, 1).is_some() {
                        model.insert(k, t.get(&k).unwrap().expires_ns);
                    } else {
                        assert!(!model.contains_key(&k));
                    }
                }
                3 => assert_eq!(t.remove(&k).is_some(), model.remove(&k).is_some()),
                _ => {
                    let budget = if (x >> 50) & 1 == 0 { usize::MAX } else { 3 };
                    t.expire(now, budget, |k, s| {
                        assert!(s.expires_ns <= now);
                        assert_eq!(model.remove(k), Some(s.expires_ns));
                    });
                    if budget == usize::MAX {
                        for (k, &e) in &model {
                            assert!(e + tick > now, "{k:?} expiring at {e} still there at {now}");
                        }
                    }
                }
            }
            assert_eq!(t.len(), model.len());
            t.check_wheel();
        }
    }

    #[test]
    fn memory_per_session() {
        // Hash bucket (key + entry + 1 control byte) plus one 14-byte wheel record; see the
        // module report for the estimate with load factor.
        let bucket = std::mem::size_of::<(FlowKey, Entry)>() + 1;
        let record = std::mem::size_of::<FlowKey>();
        println!("session: {} bytes, bucket {bucket}, wheel record {record}", std::mem::size_of::<Session>());
        assert_eq!(record, 14);
        assert!(bucket + record <= 160, "bucket {bucket} + record {record}");
    }
}
