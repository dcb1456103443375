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
//! Where things happen, in order: [`FullNat::open`] (local port), [`FullNat::forward`] with
//! `Dir::Orig` ([`client_addr_out`], then the addresses) and `Dir::Reply`
//! ([`client_addr_back`], then the addresses), [`FullNat::close`] (the port goes back).

use super::{client_and_vip, routed, Forwarding, IcmpAt, ModeCx, Opened, Plan, Refusal};
use crate::buf::PacketBuf;
use crate::clientaddr;
use crate::conn::{ca_flags, Dir, Session};
use crate::counters::{Counters, DropReason};
use crate::laddr::{LaddrError, LocalPorts};
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

    /// A local address and port of the service's (on this worker's share of the ports), and
    /// for TCP the service's client-address mode.
    fn open(svc: &Service, seg: &Segment, lports: &mut LocalPorts) -> Result<Opened, DropReason> {
        let laddr = lports.alloc(&svc.laddrs).map_err(|e| match e {
            LaddrError::NoLocalAddr => DropReason::NoLocalAddr,
            LaddrError::NoLocalPort => DropReason::NoLocalPort,
        })?;
        let ca_flags = match svc.client_addr {
            _ if !seg.is_tcp() => 0,
            ClientAddrMode::Toa => ca_flags::MODE_TOA,
            ClientAddrMode::ProxyV2 => ca_flags::MODE_PROXY,
            ClientAddrMode::None => 0,
        };
        Ok(Opened { laddr, ca_flags })
    }

    fn close(laddr: SocketAddrV4, lports: &mut LocalPorts) {
        lports.free(laddr);
    }

    fn plan(snap: &Snapshot, s: &Session, dir: Dir) -> Result<Plan, DropReason> {
        routed(snap, s, dir)
    }

    /// Client → RS: the client address for the real server, then `client → VIP` becomes
    /// `LIP:lport → RIP:rport`. RS → client (the FULLNAT reply): MSS and acknowledgments put
    /// back, then `RIP:rport → LIP:lport` becomes `VIP:vport → client`.
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
                client_addr_out(pkt, seg, s, cx.counters)?;
                // Insertions moved the payload, not the headers: the addresses are where they were.
                rewrite::segment(pkt.data_mut(), seg, Some(s.laddr), Some(s.rs));
            }
            Dir::Reply => {
                client_addr_back(pkt, seg, s);
                rewrite::segment(pkt.data_mut(), seg, Some(vip), Some(client));
            }
        }
        Ok(())
    }

    /// From the client side (about `client → VIP`): to the real server from the local address,
    /// quoting `LIP:lport → RIP:rport`. From the real-server side (about a reply): to the client
    /// from the VIP, quoting `VIP → client`.
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
                    rewrite::rewrite_icmp_error(l3, at.hl, Some(*vip.ip()), Some(*client.ip()), Some(client), Some(vip))
                }
            }
        }
        Ok(())
    }
}

/// Client → RS: TOA on the first ACK after the handshake, or the PROXY v2 header before the
/// first data byte (again on a retransmission of that segment) and the sequence shift of
/// everything after it.
fn client_addr_out<B: PacketBuf>(
    pkt: &mut B,
    seg: &mut Segment,
    s: &mut Session,
    counters: &mut Counters,
) -> Result<(), DropReason> {
    use tcp::flags::{ACK, RST, SYN};
    let (client, vip) = client_and_vip(s);
    let cf = s.ca_flags;
    if cf & ca_flags::MODE_TOA != 0 {
        if cf & ca_flags::TOA_DONE == 0 && seg.flags & ACK != 0 && seg.flags & (SYN | RST) == 0 {
            match clientaddr::toa::insert(pkt, seg, client) {
                Ok(()) => counters.toa_inserted += 1,
                Err(_) => counters.toa_skipped += 1,
            }
            s.ca_flags |= ca_flags::TOA_DONE;
        }
        return Ok(());
    }
    if cf & ca_flags::MODE_PROXY == 0 || seg.flags & SYN != 0 {
        return Ok(());
    }
    let (seq, payload) = (seg.seq, seg.payload_len());
    if cf & ca_flags::PROXY_DONE == 0 {
        if payload == 0 {
            return Ok(());
        }
        let n = clientaddr::proxy_v2::insert(pkt, seg, client, vip).map_err(|_| DropReason::NoBuffer)?;
        counters.proxy_inserted += 1;
        s.ca_flags |= ca_flags::PROXY_DONE;
        s.seq_delta = n as u32;
        s.proxy_seq = seq;
    } else if seq == s.proxy_seq && payload > 0 {
        // The first data segment again (a retransmission): the header goes with it again.
        clientaddr::proxy_v2::insert(pkt, seg, client, vip).map_err(|_| DropReason::NoBuffer)?;
        counters.proxy_inserted += 1;
    } else {
        // Only fails on headers already validated here.
        let _ = clientaddr::seq::shift_seq(pkt, seg, s.seq_delta);
    }
    Ok(())
}

/// RS → client: the MSS of the SYN-ACK lowered by what the client-address mode adds to client
/// segments; acknowledgments shifted back over the PROXY v2 header.
fn client_addr_back<B: PacketBuf>(pkt: &mut B, seg: &Segment, s: &Session) {
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
    if cf & ca_flags::PROXY_DONE != 0 && seg.flags & tcp::flags::ACK != 0 {
        let _ = clientaddr::seq::shift_ack(pkt, seg, delta);
    }
}
