//! Which worker owns a packet's session (the rules are in the module documentation of
//! [`super`]): computed from the packet alone, the same on every worker.

use super::State;
use crate::buf::PacketBuf;
use crate::conn::FlowKey;
use crate::rewrite;
use crate::snapshot::{Owner, Snapshot};
use std::net::Ipv4Addr;

/// The NAT owner hash: a fixed multiplicative mix of client address and port (the same on
/// every worker and every run).
#[inline]
pub fn owner_of(ip: Ipv4Addr, port: u16, n_cores: usize) -> usize {
    let h = (u32::from(ip) ^ (port as u32).rotate_left(16)).wrapping_mul(0x9E37_79B1) >> 16;
    h as usize % n_cores.max(1)
}

/// `ip` with its host bits (under `mask`) cleared: the client network of a persistence template.
#[inline]
pub(super) fn masked(ip: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & u32::from(mask))
}

impl<B: PacketBuf> State<B> {
    /// The worker that owns this packet's session, when it is not this one (see the module
    /// documentation). `None` with one worker and for handed-over packets.
    pub(super) fn owner_elsewhere(&self, snap: &Snapshot, key: &FlowKey) -> Option<usize> {
        let n = self.cfg.n_cores;
        if n <= 1 || self.redirected {
            return None;
        }
        let me = self.cfg.core;
        let other = |o: usize| (o != me).then_some(o);
        if !snap.laddrs.is_empty() && snap.laddrs.contains(&key.dst) {
            return other(key.dport as usize % n);
        }
        if !snap.persistent.is_empty() {
            if let Some(mask) = snap.persistent.get(&(key.proto, key.dst, key.dport)) {
                return other(owner_of(masked(key.src, *mask), 0, n));
            }
        }
        if snap.nat_reals.is_empty() {
            return None;
        }
        let o = owner_of(key.src, key.sport, n);
        if o != me && snap.nat_services.contains(&(key.proto, key.dst, key.dport)) {
            return Some(o);
        }
        match snap.nat_reals.get(&(key.proto, key.src, key.sport)) {
            Some(Owner::ClientTuple) => other(owner_of(key.dst, key.dport, n)),
            Some(Owner::ClientNet(mask)) => other(owner_of(masked(key.dst, *mask), 0, n)),
            None => None,
        }
    }

    /// Owner of the session an ICMP error quotes, when it is another worker: NAT from either
    /// side (by the client), FULLNAT from the real-server side (by the local port). Errors from
    /// the client side of FULLNAT/DR/TUN flows land where RSS puts them (not steerable).
    pub(super) fn icmp_owner_elsewhere(&self, snap: &Snapshot, q: &rewrite::Quoted) -> Option<usize> {
        let n = self.cfg.n_cores;
        if n <= 1 || self.redirected {
            return None;
        }
        let me = self.cfg.core;
        let o = if snap.laddrs.contains(q.src.ip()) {
            q.src.port() as usize % n
        } else if let Some(rule) = snap.nat_reals.get(&(q.proto, *q.dst.ip(), q.dst.port())) {
            match rule {
                Owner::ClientTuple => owner_of(*q.src.ip(), q.src.port(), n),
                Owner::ClientNet(mask) => owner_of(masked(*q.src.ip(), *mask), 0, n),
            }
        } else if let Some(mask) = snap.persistent.get(&(q.proto, *q.src.ip(), q.src.port())) {
            owner_of(masked(*q.dst.ip(), *mask), 0, n)
        } else if snap.nat_services.contains(&(q.proto, *q.src.ip(), q.src.port())) {
            owner_of(*q.dst.ip(), q.dst.port(), n)
        } else {
            return None;
        };
        (o != me).then_some(o)
    }
}
