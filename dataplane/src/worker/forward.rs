//! Forwarding: packets of known sessions ([`State::established`]) and the first packet of a new
//! flow to a VIP ([`State::new_flow`]). Both end in the session's mode ([`crate::mode`]) for the
//! rewrite, and cache the hop the packet took in the session.
//!
//! The session of a packet is found once (by L4 dispatch) and then read and written through
//! one reference; the table itself is touched again only in the rare cases that change it
//! (removal, a shortened expiry).

use super::sched::{RsSlot, SlotHop};
use super::{Io, State, Verdict, ETH};
use crate::buf::PacketBuf;
use crate::conn::{Dir, Session, SessionId, NO_HOP};
use crate::counters::DropReason;
use crate::mode::{self, ModeCx, OpenCx, Plan, Refusal};
use crate::segment::Segment;
use crate::snapshot::Snapshot;
use crate::wire::ipv4;
use rvs_model::{Proto, Service};

impl<B: PacketBuf> State<B> {
    /// Remove a session with its bookkeeping (connection counts; a FULLNAT local port is free
    /// again as its reply key goes).
    pub(super) fn remove_session(&mut self, id: SessionId) {
        if let Some(old) = self.conns.remove(id) {
            self.conn_counts.sub(old.stats_slot(), old.svc(), old.rs_addr(), old.state);
        }
        self.counters.sessions_active = self.conns.len() as u64;
    }

    /// A packet of a known session. `None`: the session was closed and a SYN reopens the tuple
    /// (IPVS's conn_reuse_mode): the caller schedules it afresh.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn established(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        id: SessionId,
        dir: Dir,
        seg: &mut Segment,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Option<Verdict> {
        let gen = snap.generation as u16;
        let s = self.conns.get_mut(id)?;
        if s.gen != gen {
            // The configuration changed since this session last looked: is its RS still there?
            if snap.tunables.expire_nodest_conn && !rs_configured(snap, s) {
                self.remove_session(id);
                return Some(Verdict::Drop(DropReason::NoDest));
            }
            s.gen = gen;
        }
        if dir == Dir::Orig && seg.syn_only() && s.state.reusable(s.fwd) {
            self.remove_session(id);
            return None;
        }
        if seg.ttl <= 1 {
            return Some(self.ttl_exceeded(snap, pkt, seg.ip_hl(), seg.ip_total(), now, io));
        }
        let stamp = self.stamp.at(snap.generation, self.neigh.epoch(now));
        // The hop cached under the current stamp, else the route lookup (and, once the packet
        // is rewritten, the neighbour lookup, cached for the next packets).
        let cached = s
            .cached_hop(dir, stamp)
            .and_then(|(i, mac)| Some((mode::cached_plan(s, snap.ports.get(usize::from(i))?), i, mac)));
        let (plan, hit) = match cached {
            Some((pl, i, mac)) => (pl, Some((i, mac))),
            None => match mode::plan(snap, s, dir) {
                Ok(pl) => (pl, None),
                Err(r) => return Some(Verdict::Drop(r)),
            },
        };
        let touched = s.advance(dir, seg.flags, now, &self.cfg.timeouts);
        if touched.old.is_active() != touched.new.is_active() {
            self.conn_counts.moved(s.stats_slot(), s.svc(), s.rs_addr(), touched.old, touched.new);
        }
        let mut cx = ModeCx {
            counters: &mut self.counters,
            tun_ident: &mut self.tun_ident,
            clock_ns: self.cfg.seed.wrapping_add(now),
            secret: self.cfg.secret,
        };
        let v = match forward_session(&mut cx, &mut self.rs_stats, pkt, seg, s, dir, &plan) {
            Ok(()) => match hit {
                Some((port_idx, mac)) => Verdict::Hop { port_idx, mac },
                None => cache_hop(snap, &self.neigh, s, dir, stamp, &plan, now),
            },
            Err(Refusal::Drop(r)) => Verdict::Drop(r),
            Err(Refusal::FragNeeded { mtu }) => {
                self.send_frag_needed(snap, pkt, mtu, now, io);
                Verdict::Drop(DropReason::FragNeeded)
            }
        };
        if touched.shortened {
            self.conns.refile(id);
        }
        Some(v)
    }

    /// The first packet of a flow to a VIP: service, scheduler (or persistence template), plan,
    /// what the mode takes (FULLNAT's local port), session, then forward.
    pub(super) fn new_flow(
        &mut self,
        snap: &Snapshot,
        svc: &Service,
        pkt: &mut B,
        seg: &mut Segment,
        now: u64,
        io: &mut impl Io<B>,
    ) -> Verdict {
        if seg.is_tcp() && !seg.syn_only() {
            return Verdict::Drop(DropReason::NoSession);
        }
        if seg.ttl <= 1 {
            return self.ttl_exceeded(snap, pkt, seg.ip_hl(), seg.ip_total(), now, io);
        }
        let k = seg.key;
        let Some((rs_idx, rs)) =
            self.choose(svc, k.src, k.sport, k.dst, now).and_then(|i| Some((i, svc.reals.get(i)?)))
        else {
            return Verdict::Drop(DropReason::NoRealServer);
        };
        let std::net::SocketAddr::V4(rs_addr) = rs.addr else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let mut ocx = OpenCx {
            lports: &mut self.lports,
            conns: &self.conns,
            counters: &mut self.counters,
            now_ns: now,
            rs_time_wait_ns: self.cfg.rs_time_wait_ns,
        };
        let opened = match mode::open(rs.fwd, svc, rs_addr, seg, &mut ocx) {
            Ok(o) => o,
            Err(r) => return Verdict::Drop(r),
        };
        let mut sess = self.conns.new_session(k, rs_addr, rs.fwd, opened.laddr, seg.flags, now);
        sess.gen = snap.generation as u16;
        sess.ca_flags = opened.ca_flags;
        let slot = self.rs_slot(svc, rs_idx);
        sess.stats = u16::try_from(slot).unwrap_or(u16::MAX);
        // The hop towards this real server that its previous new session found under the same
        // forwarding stamp (route and neighbour tables unchanged since): no route or neighbour
        // lookup for this one, and the session starts with its hop cached.
        let stamp = self.stamp.at(snap.generation, self.neigh.epoch(now));
        let known = self
            .slot_hops
            .get(slot as usize)
            .filter(|h| h.stamp == stamp)
            .and_then(|h| Some((*h, snap.ports.get(usize::from(h.port_idx))?)));
        let planned = match known {
            Some((h, pi)) => {
                sess.cache_hop(Dir::Orig, stamp, h.port_idx, h.mac);
                if let Some(src) = h.tun_src {
                    sess.cache_tun_src(src);
                }
                Ok(mode::cached_plan(&sess, pi))
            }
            None => mode::plan(snap, &sess, Dir::Orig),
        };
        let plan = match planned {
            Ok(pl) => pl,
            Err(r) => return Verdict::Drop(r),
        };
        // A stale session holding the reply tuple (a NAT client reusing its port towards another
        // VIP on the same RS) goes, with its bookkeeping.
        if let Some(rk) = sess.reply_key() {
            if let Some((old, _)) = self.conns.lookup(&rk) {
                self.remove_session(old);
            }
        }
        let state = sess.state;
        // Neither key is held: the forward key missed in `l4_input` (or its closed session was
        // removed there) and the reply key's holder went just above.
        let Ok(id) = self.conns.insert_new(sess) else {
            return Verdict::Drop(DropReason::SessionTableFull);
        };
        self.conn_counts.add(slot, svc.key, rs.addr, state);
        if let Some((_, st)) = self.rs_stats.get_mut(slot as usize) {
            st.conns += 1;
        }
        self.counters.sessions_created += 1;
        self.counters.sessions_active = self.conns.len() as u64;
        let Some(s) = self.conns.get_mut(id) else {
            return Verdict::Drop(DropReason::NoSession);
        };
        let mut cx = ModeCx {
            counters: &mut self.counters,
            tun_ident: &mut self.tun_ident,
            clock_ns: self.cfg.seed.wrapping_add(now),
            secret: self.cfg.secret,
        };
        match forward_session(&mut cx, &mut self.rs_stats, pkt, seg, s, Dir::Orig, &plan) {
            Ok(()) => {}
            Err(Refusal::Drop(r)) => return Verdict::Drop(r),
            Err(Refusal::FragNeeded { mtu }) => {
                self.send_frag_needed(snap, pkt, mtu, now, io);
                return Verdict::Drop(DropReason::FragNeeded);
            }
        }
        if let Some((h, _)) = known {
            return Verdict::Hop { port_idx: h.port_idx, mac: h.mac };
        }
        let v = cache_hop(snap, &self.neigh, s, Dir::Orig, stamp, &plan, now);
        if let (Verdict::Hop { port_idx, mac }, Some(h)) = (v, self.slot_hops.get_mut(slot as usize)) {
            *h = SlotHop { stamp, port_idx, mac, tun_src: plan.tun.map(|(src, _)| src) };
        }
        v
    }
}

/// Forward a packet of session `s` going `dir` along `plan`: rvs is an IP hop (TTL checked by
/// the caller), then the mode's rewrite, then the real server's traffic figures.
#[inline(always)]
fn forward_session<B: PacketBuf>(
    cx: &mut ModeCx,
    rs_stats: &mut [RsSlot],
    pkt: &mut B,
    seg: &mut Segment,
    s: &mut Session,
    dir: Dir,
    plan: &Plan,
) -> Result<(), Refusal> {
    // The datagram as it arrived: what the statistics count, whatever the mode adds.
    let len = seg.ip_total() as u64;
    if let Some(l3) = pkt.data_mut().get_mut(ETH..) {
        ipv4::Packet::new_unchecked(l3).decrement_ttl();
    }
    mode::forward(pkt, seg, s, dir, plan, cx)?;
    if let Some((_, st)) = rs_stats.get_mut(s.stats as usize) {
        match dir {
            Dir::Orig => {
                st.inpkts += 1;
                st.inbytes += len;
            }
            Dir::Reply => {
                st.outpkts += 1;
                st.outbytes += len;
            }
        }
    }
    cx.counters.fwd_pkts += 1;
    Ok(())
}

/// Remember in session `s` the hop a packet takes along `plan` when its neighbour is resolved,
/// and send it there; otherwise leave it to `send_via` (ARP, holding).
#[inline]
fn cache_hop<B>(
    snap: &Snapshot,
    neigh: &crate::neigh::NeighTable<B>,
    s: &mut Session,
    dir: Dir,
    stamp: u32,
    plan: &Plan,
    now: u64,
) -> Verdict {
    let (port, nh) = (plan.port, plan.nh);
    let idx = snap.ports.iter().position(|p| p.id == port).and_then(|i| u8::try_from(i).ok()).filter(|&i| i != NO_HOP);
    let (Some(port_idx), Some(mac)) = (idx, neigh.lookup(nh, now)) else {
        return Verdict::Output { port, nh };
    };
    s.cache_hop(dir, stamp, port_idx, mac);
    if let Some((src, _)) = plan.tun {
        s.cache_tun_src(src);
    }
    Verdict::Hop { port_idx, mac }
}

/// Whether the session's real server is still in its service.
fn rs_configured(snap: &Snapshot, s: &Session) -> bool {
    let Some(proto) = Proto::from_ip_proto(s.key.proto) else { return false };
    snap.service(proto, s.key.dst, s.key.dport).is_some_and(|svc| svc.reals.iter().any(|r| r.addr == s.rs_addr()))
}
