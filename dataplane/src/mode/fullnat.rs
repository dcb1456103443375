//! FULLNAT (`-b`, DPVS's FNAT): source and destination NAT. The client's packet leaves from a
//! local address and port of rvs (`LIP:lport`, taken per session from [`LocalPorts`]) to
//! `RIP:rport`, so the real server may be anywhere routable and replies to rvs; the reply goes
//! back to the client from `VIP:vport`.
//!
//! The real server sees `LIP` as the peer. A TCP service tells it the client's address (the
//! service's [`ClientAddrMode`]) with a TOA option in the first ACK, or a PROXY v2 header in
//! front of the first data byte, which shifts the sequence space of the rest of the connection
//! ([`crate::clientaddr`]).
//!
//! Local ports are unique per `LIP:lport → RIP:rport` and walked so that reuse comes as late as
//! possible ([`crate::laddr`]). Short connections still bring a port back towards the same real
//! server while the real server may hold the previous connection on that tuple in TIME_WAIT
//! (60 s on Linux), and a SYN whose sequence number or timestamp is older than that
//! connection's is dropped there (PAWS, RFC 7323 §5; Linux's `tcp_timewait_state_process`).
//! So the real server never sees the client's initial sequence number and timestamps: rvs
//! gives every connection its own, from a clock (4 µs per sequence step as RFC 6528, 1 ms per
//! timestamp tick as Linux) plus a secret offset per (local address, real server) tuple
//! (RFC 6528), and shifts the rest of the connection by the difference ([`clientaddr::seq`]).
//! Successive connections on a tuple therefore always look newer to the real server, as
//! successive connections from one client do.
//!
//! Where things happen, in order: [`FullNat::open`] (local port), [`FullNat::forward`] with
//! `Dir::Orig` ([`tcp_out`]: initial sequence number and timestamps, client address, shifts;
//! then the addresses) and `Dir::Reply` ([`tcp_back`]: MSS, acknowledgments and timestamp
//! echoes; then the addresses). The session goes with its reply key, and the port with it.

use super::{client_and_vip, routed, Forwarding, IcmpAt, ModeCx, OpenCx, Opened, Plan, Refusal};
use crate::buf::PacketBuf;
use crate::clientaddr::{self, seq};
use crate::conn::{ca_flags, Dir, FlowKey, Session};
use crate::counters::DropReason;
use crate::laddr::{mix, LaddrError};
use crate::rewrite;
use crate::segment::Segment;
use crate::snapshot::Snapshot;
use crate::wire::tcp;
use rvs_model::{ClientAddrMode, Service};
use std::net::SocketAddrV4;

/// The FULLNAT mode.
pub struct FullNat;

impl Forwarding for FullNat {
    const SEES_REPLIES: bool = true;

    /// The real server answers rvs's local address: `RIP:rport → LIP:lport`.
    #[inline(always)]
    fn reply_dst(s: &Session) -> Option<SocketAddrV4> {
        Some(s.laddr)
    }

    /// A local address and port of the service's (on this worker's share of the ports) that no
    /// session holds towards `rs`, and for TCP the service's client-address mode.
    fn open(svc: &Service, rs: SocketAddrV4, seg: &Segment, cx: &mut OpenCx) -> Result<Opened, DropReason> {
        let (conns, proto) = (cx.conns, seg.key.proto);
        let held = |l: SocketAddrV4| {
            let reply = FlowKey { proto, src: *rs.ip(), dst: *l.ip(), sport: rs.port(), dport: l.port() };
            conns.lookup(&reply).is_some()
        };
        let a = cx.lports.alloc(&svc.laddrs, rs, cx.now_ns, cx.rs_time_wait_ns, held).map_err(|e| match e {
            LaddrError::NoLocalAddr => DropReason::NoLocalAddr,
            LaddrError::NoLocalPort => DropReason::NoLocalPort,
        })?;
        if a.reused_early {
            cx.counters.lport_reused_early += 1;
        }
        let laddr = a.laddr;
        let ca_flags = match svc.client_addr {
            _ if !seg.is_tcp() => 0,
            ClientAddrMode::Toa => ca_flags::MODE_TOA,
            ClientAddrMode::ProxyV2 => ca_flags::MODE_PROXY,
            ClientAddrMode::None => 0,
        };
        Ok(Opened { laddr, ca_flags })
    }

    fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
        routed(snap, s, dir)
    }

    /// Client → RS: rvs's sequence numbers and timestamps, the client address for the real
    /// server, then `client → VIP` becomes `LIP:lport → RIP:rport`. RS → client (the FULLNAT
    /// reply): MSS, acknowledgments and timestamp echoes put back, then `RIP:rport → LIP:lport`
    /// becomes `VIP:vport → client`.
    #[inline]
    fn forward<B: PacketBuf>(
        pkt: &mut B,
        seg: &mut Segment,
        s: &mut Session,
        dir: Dir,
        _: &Plan,
        cx: &mut ModeCx,
    ) -> Result<(), Refusal> {
        let (client, vip) = client_and_vip(s);
        match dir {
            Dir::Orig => {
                if seg.is_tcp() {
                    tcp_out(pkt, seg, s, cx)?;
                }
                // Insertions moved the payload, not the headers: the addresses are where they were.
                rewrite::segment(pkt.data_mut(), seg, Some(s.laddr), Some(s.rs));
            }
            Dir::Reply => {
                if seg.is_tcp() {
                    tcp_back(pkt, seg, s);
                }
                rewrite::segment(pkt.data_mut(), seg, Some(vip), Some(client));
            }
        }
        Ok(())
    }

    /// From the client side (about `client → VIP`): to the real server from the local address,
    /// quoting `LIP:lport → RIP:rport`. From the real-server side (about a reply): to the client
    /// from the VIP, quoting `VIP → client` with the client's own sequence number (Linux ignores
    /// an error whose quoted sequence number it never sent: path MTU discovery depends on it).
    fn icmp_error<B: PacketBuf>(
        pkt: &mut B,
        at: IcmpAt,
        s: &Session,
        dir: Dir,
        _: &Plan,
        _: &mut ModeCx,
    ) -> Result<(), DropReason> {
        let (client, vip) = client_and_vip(s);
        let (rs, laddr) = (s.rs, s.laddr);
        if let Some(l3) = at.datagram(pkt.data_mut()) {
            match dir {
                Dir::Orig => {
                    rewrite::rewrite_icmp_error(l3, at.hl, Some(*laddr.ip()), Some(*rs.ip()), Some(rs), Some(laddr))
                }
                Dir::Reply => {
                    if s.ca_flags & (ca_flags::SEQ_SHIFT | ca_flags::PROXY_DONE) != 0 {
                        rewrite::quoted_tcp_seq(l3, at.hl, s.seq_delta.wrapping_neg());
                    }
                    rewrite::rewrite_icmp_error(l3, at.hl, Some(*vip.ip()), Some(*client.ip()), Some(client), Some(vip))
                }
            }
        }
        Ok(())
    }
}

/// Sequence numbers of rvs's clock advance one per 4 µs (RFC 6528's M, RFC 793's ISN clock):
/// half the sequence space lasts 2.4 hours, and a connection that sent fewer bytes than 4 µs
/// ticks passed until its tuple's next one starts below that one. (Linux's clock runs at 64 ns;
/// with timestamps, which Linux clients send, the TSval check decides first anyway.)
const NS_PER_SEQ: u64 = 4_000;
/// Timestamps of rvs's clock tick once a millisecond (Linux's TSval clock).
const NS_PER_TS: u64 = 1_000_000;

/// rvs's initial sequence number and timestamp for the tuple `laddr → rs` at `clock_ns`: a
/// secret offset per tuple (RFC 6528's F(), here a keyed mix) plus the clock, so that every new
/// connection on a tuple starts after the previous one's.
pub fn isn_and_ts(secret: u64, laddr: SocketAddrV4, rs: SocketAddrV4, clock_ns: u64) -> (u32, u32) {
    let tuple = u64::from(u32::from(*laddr.ip())) << 32
        | u64::from(u32::from(*rs.ip())) ^ (u64::from(laddr.port()) << 16 | u64::from(rs.port())) << 40;
    let off = mix(tuple ^ mix(secret));
    let isn = (off as u32).wrapping_add((clock_ns / NS_PER_SEQ) as u32);
    let ts = ((off >> 32) as u32).wrapping_add((clock_ns / NS_PER_TS) as u32);
    (isn, ts)
}

/// Client → RS, TCP: on the connection's SYN, rvs's initial sequence number and timestamp;
/// then the client address (TOA on the first ACK after the handshake, or the PROXY v2 header
/// before the first data byte, again on a retransmission of that segment); then the shifts of
/// sequence number and TSval, in one edit.
fn tcp_out<B: PacketBuf>(pkt: &mut B, seg: &mut Segment, s: &mut Session, cx: &mut ModeCx) -> Result<(), DropReason> {
    if s.ca_flags & ca_flags::SEQ_SHIFT == 0 && seg.syn_only() {
        let (isn, ts) = isn_and_ts(cx.secret, s.laddr, s.rs, cx.clock_ns);
        s.seq_delta = isn.wrapping_sub(seg.seq);
        s.ca_flags |= ca_flags::SEQ_SHIFT;
        if let Some(tsval) = seq::tsval(pkt, seg) {
            s.ts_delta = ts.wrapping_sub(tsval);
            s.ca_flags |= ca_flags::TS_SHIFT;
        }
    }
    let shift = client_addr_out(pkt, seg, s, cx)?;
    if s.ca_flags & (ca_flags::SEQ_SHIFT | ca_flags::TS_SHIFT | ca_flags::PROXY_DONE) != 0 {
        let ts = if s.ca_flags & ca_flags::TS_SHIFT != 0 { s.ts_delta } else { 0 };
        // Only fails on headers already validated here.
        let _ = seq::shift_out(pkt, seg, shift, ts);
    }
    Ok(())
}

/// The client address, TOA or PROXY v2 (see [`tcp_out`]). Returns the sequence shift of this
/// segment: `seq_delta`, but for a segment that carries the PROXY v2 header the shift without
/// it (the header takes the place of the first payload bytes).
fn client_addr_out<B: PacketBuf>(
    pkt: &mut B,
    seg: &mut Segment,
    s: &mut Session,
    cx: &mut ModeCx,
) -> Result<u32, DropReason> {
    use tcp::flags::{ACK, RST, SYN};
    let (client, vip) = client_and_vip(s);
    let cf = s.ca_flags;
    if cf & ca_flags::MODE_TOA != 0 {
        if cf & ca_flags::TOA_DONE == 0 && seg.flags & ACK != 0 && seg.flags & (SYN | RST) == 0 {
            match clientaddr::toa::insert(pkt, seg, client) {
                Ok(()) => cx.counters.toa_inserted += 1,
                Err(_) => cx.counters.toa_skipped += 1,
            }
            s.ca_flags |= ca_flags::TOA_DONE;
        }
        return Ok(s.seq_delta);
    }
    if cf & ca_flags::MODE_PROXY == 0 || seg.flags & SYN != 0 {
        return Ok(s.seq_delta);
    }
    let (seq, payload) = (seg.seq, seg.payload_len());
    if cf & ca_flags::PROXY_DONE == 0 {
        if payload == 0 {
            return Ok(s.seq_delta);
        }
        let n = clientaddr::proxy_v2::insert(pkt, seg, client, vip).map_err(|_| DropReason::NoBuffer)?;
        cx.counters.proxy_inserted += 1;
        let shift = s.seq_delta;
        s.ca_flags |= ca_flags::PROXY_DONE;
        s.seq_delta = s.seq_delta.wrapping_add(n as u32);
        s.proxy_seq = seq;
        Ok(shift)
    } else if seq == s.proxy_seq && payload > 0 {
        // The first data segment again (a retransmission): the header goes with it again.
        let n = clientaddr::proxy_v2::insert(pkt, seg, client, vip).map_err(|_| DropReason::NoBuffer)?;
        cx.counters.proxy_inserted += 1;
        Ok(s.seq_delta.wrapping_sub(n as u32))
    } else {
        Ok(s.seq_delta)
    }
}

/// RS → client, TCP: the MSS of the SYN-ACK lowered by what the client-address mode adds to
/// client segments; acknowledgments (and SACK edges) shifted back by the sequence shift, the
/// timestamp echo by the timestamp shift.
fn tcp_back<B: PacketBuf>(pkt: &mut B, seg: &Segment, s: &Session) {
    let (cf, delta) = (s.ca_flags, s.seq_delta);
    if seg.flags & tcp::flags::SYN != 0 {
        let by = if cf & ca_flags::MODE_TOA != 0 {
            clientaddr::toa::TOA_LEN
        } else if cf & ca_flags::MODE_PROXY != 0 {
            clientaddr::proxy_v2::HEADER_LEN_V4
        } else {
            0
        };
        if by > 0 {
            let _ = clientaddr::mss::clamp(pkt, seg, by as u16);
        }
    }
    if cf & (ca_flags::SEQ_SHIFT | ca_flags::TS_SHIFT | ca_flags::PROXY_DONE) != 0 {
        let ts = if cf & ca_flags::TS_SHIFT != 0 { s.ts_delta } else { 0 };
        let _ = seq::shift_back(pkt, seg, delta, ts);
    }
}
