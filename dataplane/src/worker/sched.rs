//! Scheduling glue: the per-service scheduler state of this worker ([`SvcSched`], rebuilt as
//! snapshots change), persistence templates, per-(service, real server) statistics slots with
//! their cached hops, and the connection counts the lc/wlc/... schedulers read.

use super::State;
use crate::buf::PacketBuf;
use crate::conn::{ConnState, NO_HOP, NO_STATS_SLOT};
use crate::counters::RsStats;
use crate::sched::{PickCtx, SchedState};
use crate::snapshot::Snapshot;
use hashbrown::HashMap;
use rvs_model::{SchedKind, Service, ServiceKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Scheduler state of one service on this worker, with the server list it was built from.
#[derive(Debug)]
pub(super) struct SvcSched {
    pub(super) kind: SchedKind,
    /// Statistics slot of each real server of `def` (by index), [`SLOT_UNKNOWN`] until its
    /// first session: a new flow finds its slot without hashing (service, real server).
    pub(super) slots: Vec<u32>,
    /// The definition this state was built from (its real servers), shared with the snapshot.
    pub(super) def: Arc<Service>,
    pub(super) state: SchedState,
    /// Some server has an upper threshold: pass connection counts whatever the scheduler.
    pub(super) thresholds: bool,
}

/// The hop towards a real server under a forwarding stamp (0: none yet), kept per statistics
/// slot so that the new sessions of a (service, real server) pair skip the route and neighbour
/// lookups their first packet would otherwise make.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotHop {
    pub(super) stamp: u32,
    pub(super) port_idx: u8,
    pub(super) mac: [u8; 6],
    /// TUN: the outer source address.
    pub(super) tun_src: Option<Ipv4Addr>,
}

/// [`SvcSched::slots`] entry not looked up yet.
pub(super) const SLOT_UNKNOWN: u32 = u32::MAX - 1;

/// The worker's key of a service (its scheduler state): (protocol, VIP, port) packed into one
/// word, so finding it costs one hash step. Services are IPv4 (the snapshot holds no others).
pub(super) fn sched_id(k: &ServiceKey) -> u64 {
    match k.vip {
        SocketAddr::V4(a) => {
            u64::from(k.proto.ip_proto()) << 48 | u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port())
        }
        SocketAddr::V6(_) => u64::MAX,
    }
}

/// Per-(service, real server) (active, inactive) session counts, as ipvsadm shows them and the
/// lc/wlc/... schedulers read them: indexed by the session's statistics slot (no hashing on the
/// packet path), in a map for the sessions of pairs that have no slot.
#[derive(Default)]
pub(super) struct ConnCounts {
    pub(super) by_slot: Vec<(u32, u32)>,
    pub(super) other: HashMap<(ServiceKey, SocketAddr), (u32, u32)>,
}

impl ConnCounts {
    pub(super) fn get(&self, slot: Option<u32>, svc: ServiceKey, rs: SocketAddr) -> (u32, u32) {
        match slot.and_then(|i| self.by_slot.get(i as usize)) {
            Some(c) => *c,
            None => self.other.get(&(svc, rs)).copied().unwrap_or((0, 0)),
        }
    }

    /// Count a session (of statistics slot `slot`) in `state`.
    pub(super) fn add(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, state: ConnState) {
        let c = match self.by_slot.get_mut(slot as usize) {
            Some(c) => c,
            None => self.other.entry((svc, rs)).or_insert((0, 0)),
        };
        if state.is_active() {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }

    /// Uncount a session (of statistics slot `slot`) in `state`.
    pub(super) fn sub(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, state: ConnState) {
        if let Some(c) = self.by_slot.get_mut(slot as usize) {
            dec(c, state);
            return;
        }
        let k = (svc, rs);
        if let Some(c) = self.other.get_mut(&k) {
            dec(c, state);
            if *c == (0, 0) {
                self.other.remove(&k);
            }
        }
    }

    /// A session moved from state `old` to `new`.
    pub(super) fn moved(&mut self, slot: u32, svc: ServiceKey, rs: SocketAddr, old: ConnState, new: ConnState) {
        if old.is_active() != new.is_active() {
            self.sub(slot, svc, rs, old);
            self.add(slot, svc, rs, new);
        }
    }
}

fn dec(c: &mut (u32, u32), state: ConnState) {
    if state.is_active() {
        c.0 = c.0.saturating_sub(1);
    } else {
        c.1 = c.1.saturating_sub(1);
    }
}

/// A statistics slot: the (service, real server) pair and its traffic.
pub(super) type RsSlot = ((ServiceKey, SocketAddr), RsStats);

/// Most (service, real server) statistics slots a worker keeps; sessions of pairs beyond it
/// (only after a great many distinct real servers came and went) are not counted per server.
pub const MAX_RS_STATS: usize = NO_STATS_SLOT as usize;

/// A persistence template (IPVS's): new flows of a client network go to `rs` until `expires_ns`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Template {
    pub(super) rs: SocketAddr,
    pub(super) expires_ns: u64,
}

/// (IP protocol, VIP, VIP port, client address & netmask).
pub(super) type TemplateKey = (u8, Ipv4Addr, u16, u32);

/// Bring the scheduler state of `svc` up to its definition in `snap`: nothing when it is the
/// same (shared `Arc` or equal), `update` when only its real servers changed, else a new state.
pub(super) fn update(sched: &mut HashMap<u64, SvcSched>, svc: &Arc<Service>, snap: &Snapshot) {
    match sched.get_mut(&sched_id(&svc.key)) {
        Some(s) if Arc::ptr_eq(&s.def, svc) => {}
        Some(s) if *s.def == **svc => s.def = Arc::clone(svc),
        Some(s) if s.kind == svc.sched => {
            if s.def.reals != svc.reals {
                s.state.update_with_table(&svc.reals, snap.maglev.get(&svc.key).cloned());
            }
            s.thresholds = svc.reals.iter().any(|r| r.u_threshold > 0);
            if s.def.reals.iter().map(|r| r.addr).ne(svc.reals.iter().map(|r| r.addr)) {
                s.slots = vec![SLOT_UNKNOWN; svc.reals.len()];
            }
            s.def = Arc::clone(svc);
        }
        _ => {
            let entry = SvcSched {
                kind: svc.sched,
                slots: vec![SLOT_UNKNOWN; svc.reals.len()],
                def: Arc::clone(svc),
                state: new_sched(svc, snap),
                thresholds: svc.reals.iter().any(|r| r.u_threshold > 0),
            };
            sched.insert(sched_id(&svc.key), entry);
        }
    }
}

fn new_sched(svc: &Service, snap: &Snapshot) -> SchedState {
    SchedState::new_with_table(svc.sched, &svc.reals, snap.maglev.get(&svc.key).cloned())
}

/// Schedulers that look at connection counts (all but the rotating and hashing ones).
fn needs_conns(k: SchedKind) -> bool {
    !matches!(k, SchedKind::Rr | SchedKind::Wrr | SchedKind::Sh | SchedKind::Dh | SchedKind::Mh)
}

impl<B: PacketBuf> State<B> {
    /// A real server for a new flow: the persistence template's while it lives and the server
    /// is still in the service with a weight, else the scheduler's (recorded as the template).
    pub(super) fn choose(
        &mut self,
        svc: &Service,
        client: Ipv4Addr,
        client_port: u16,
        vip: Ipv4Addr,
        now: u64,
    ) -> Option<usize> {
        let Some(pers) = svc.persistence else {
            return self.pick(svc, client, client_port, vip);
        };
        let tk: TemplateKey =
            (svc.key.proto.ip_proto(), vip, svc.key.vip.port(), u32::from(client) & u32::from(pers.netmask));
        let life = u64::from(pers.timeout_s).saturating_mul(1_000_000_000);
        if let Some(t) = self.templates.get_mut(&tk) {
            if t.expires_ns > now {
                if let Some(i) = svc.reals.iter().position(|r| r.addr == t.rs && r.weight > 0) {
                    t.expires_ns = now.saturating_add(life);
                    return Some(i);
                }
            }
        }
        let i = self.pick(svc, client, client_port, vip)?;
        let rs = svc.reals.get(i)?.addr;
        if self.templates.len() < self.cfg.max_sessions || self.templates.contains_key(&tk) {
            self.templates.insert(tk, Template { rs, expires_ns: now.saturating_add(life) });
        }
        Some(i)
    }

    /// Ask the service's scheduler for a real server (index into `svc.reals`).
    pub(super) fn pick(&mut self, svc: &Service, client: Ipv4Addr, client_port: u16, dest: Ipv4Addr) -> Option<usize> {
        let ss = self.sched.get_mut(&sched_id(&svc.key))?;
        let state = &mut ss.state;
        let conns: &[(u32, u32)] = if needs_conns(ss.kind) || ss.thresholds {
            self.scratch.clear();
            for (i, r) in svc.reals.iter().enumerate() {
                let slot = match ss.slots.get(i) {
                    Some(&s) if s != SLOT_UNKNOWN && ss.def.reals.get(i).is_some_and(|d| d.addr == r.addr) => Some(s),
                    _ => self.rs_slots.get(&(svc.key, r.addr)).copied(),
                };
                self.scratch.push(self.conn_counts.get(slot, svc.key, r.addr));
            }
            &self.scratch
        } else {
            &[]
        };
        let ctx = PickCtx { client, client_port, dest, conns };
        if std::ptr::eq(&*ss.def, svc) {
            // The snapshot's own definition, which `update_sched` gave the state.
            state.pick_current(&svc.reals, &ctx)
        } else {
            state.pick(&svc.reals, &ctx)
        }
    }

    /// The statistics slot of real server `i` of `svc`: remembered in the service's scheduler
    /// state after the first session, else [`State::stats_slot`].
    pub(super) fn rs_slot(&mut self, svc: &Service, i: usize) -> u32 {
        let id = sched_id(&svc.key);
        let Some(rs) = svc.reals.get(i) else { return NO_STATS_SLOT };
        let same = |ss: &SvcSched| ss.def.reals.get(i).is_some_and(|d| d.addr == rs.addr);
        if let Some(&slot) = self.sched.get(&id).filter(|ss| same(ss)).and_then(|ss| ss.slots.get(i)) {
            if slot != SLOT_UNKNOWN {
                return slot;
            }
        }
        let slot = self.stats_slot(svc.key, rs.addr);
        if let Some(x) = self.sched.get_mut(&id).filter(|ss| same(ss)).and_then(|ss| ss.slots.get_mut(i)) {
            *x = slot;
        }
        slot
    }

    /// The statistics slot of (service, real server): one hash lookup.
    fn stats_slot(&mut self, svc: ServiceKey, rs: SocketAddr) -> u32 {
        if let Some(&i) = self.rs_slots.get(&(svc, rs)) {
            return i;
        }
        if self.rs_stats.len() >= MAX_RS_STATS {
            return NO_STATS_SLOT;
        }
        let i = self.rs_stats.len() as u32;
        self.rs_stats.push(((svc, rs), RsStats::default()));
        self.conn_counts.by_slot.push((0, 0));
        self.slot_hops.push(SlotHop { stamp: 0, port_idx: NO_HOP, mac: [0; 6], tun_src: None });
        self.rs_slots.insert((svc, rs), i);
        i
    }
}
