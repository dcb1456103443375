//! The benchmark's traffic: the test network, 60-byte frames built in advance, and the checks
//! applied to the frames the pipeline sends.
//!
//! Everything here is pure (no DPDK), so it is unit-tested beside the code.

use rvs_config::model::FwdMode;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The benchmark's network. Only documentation addresses (RFC 5737): clients in 192.0.2.0/24
/// behind a gateway, gateway/real servers/VIP on the port's 203.0.113.0/24, FULLNAT local
/// addresses in 198.51.100.0/24. Frames never leave the process (net_ring loops tx to rx).
pub mod net {
    use std::net::Ipv4Addr;

    pub const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    pub const PORT_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    pub const GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
    pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
    /// The clients' /24 (behind the gateway).
    pub const CLIENT_NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);
    /// The FULLNAT local addresses' /24.
    pub const LADDR_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
    pub const TCP_PORT: u16 = 80;
    pub const UDP_PORT: u16 = 53;
    /// Real servers 203.0.113.11 ..= 203.0.113.(10 + N_RS).
    pub const N_RS: u8 = 8;
    /// Clients per /24 used for flows (192.0.2.1 ..= 192.0.2.250).
    pub const CLIENTS: u32 = 250;
    pub const FIRST_CLIENT_PORT: u32 = 1024;
    /// Distinct (client address, client port) tuples available.
    pub const MAX_FLOWS: u64 = CLIENTS as u64 * (65536 - FIRST_CLIENT_PORT as u64);
    /// Ports per FULLNAT local address (LocalPorts hands out 1024..=65535).
    pub const LPORTS_PER_LADDR: usize = 64_512;

    pub fn rs(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 11 + i)
    }
    pub fn is_rs(a: Ipv4Addr) -> bool {
        let o = a.octets();
        o[..3] == [203, 0, 113] && (11..11 + N_RS).contains(&o[3])
    }
    /// A real server's MAC (derived from its address, so a frame can be checked alone).
    pub fn rs_mac(a: Ipv4Addr) -> [u8; 6] {
        [2, 0, 0, 0, 1, a.octets()[3]]
    }
    pub fn is_client(a: Ipv4Addr) -> bool {
        a.octets()[..3] == CLIENT_NET.octets()[..3]
    }
    pub fn laddr(i: usize) -> Ipv4Addr {
        let [a, b, c, _] = LADDR_NET.octets();
        Ipv4Addr::new(a, b, c, 1 + i as u8)
    }
    pub fn is_laddr(a: Ipv4Addr) -> bool {
        a.octets()[..3] == LADDR_NET.octets()[..3]
    }
    /// FULLNAT local addresses needed for `sessions` concurrent sessions (one worker).
    pub fn laddrs_for(sessions: usize) -> usize {
        (sessions / LPORTS_PER_LADDR + 1).clamp(1, 250)
    }
}

/// A frame as built in advance: the 60 bytes of a minimum Ethernet frame (64 on the wire with
/// the FCS the NIC adds).
pub type Frame = [u8; FRAME_LEN];
pub const FRAME_LEN: usize = 60;
/// The Ethernet frame check sequence the NIC appends on the wire.
pub const FCS_LEN: usize = 4;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const IPIP: u8 = 4;
/// TCP flags (RFC 9293 §3.1).
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

/// The client tuple of flow `i` (distinct for every `i < net::MAX_FLOWS`).
pub fn client_of(i: u64) -> SocketAddrV4 {
    assert!(i < net::MAX_FLOWS, "flow index {i} beyond the tuple space");
    let host = (i % u64::from(net::CLIENTS)) as u8 + 1;
    let port = (i / u64::from(net::CLIENTS)) as u32 + net::FIRST_CLIENT_PORT;
    let [a, b, c, _] = net::CLIENT_NET.octets();
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, host), port as u16)
}

/// Even flows are TCP, odd ones UDP.
pub fn proto_of(i: u64) -> u8 {
    if i & 1 == 0 {
        TCP
    } else {
        UDP
    }
}

/// Internet checksum (RFC 1071) of `data`, folded, starting from `sum`.
pub fn csum(data: &[u8], mut sum: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(proto)
        + len as u32
}

/// A 60-byte Ethernet/IPv4/TCP (flags as given, padded) or UDP (18 bytes of payload) frame with
/// valid IPv4 and L4 checksums, TTL 64.
pub fn build(
    proto: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    tcp_flags: u8,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
) -> Frame {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&eth_src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let l4_len = if proto == TCP { 20 } else { 8 + 18 };
    let total = 20 + l4_len;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(src.port() ^ dst.port()).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = csum(ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let l4 = &mut f[34..34 + l4_len];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    if proto == TCP {
        l4[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
        if tcp_flags & ACK != 0 {
            l4[8..12].copy_from_slice(&0x2000_0001u32.to_be_bytes());
        }
        l4[12] = 5 << 4;
        l4[13] = tcp_flags;
        l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4[8..].copy_from_slice(b"rvs-bench payload\n");
    }
    let c = csum(l4, pseudo(*src.ip(), *dst.ip(), proto, l4_len));
    let at = if proto == TCP { 16 } else { 6 };
    let c = if proto == UDP && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// Addresses and ports of an IPv4 frame: (protocol, src, dst).
pub fn tuple(frame: &[u8]) -> Option<(u8, SocketAddrV4, SocketAddrV4)> {
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let l4 = ip.get(ihl..ihl + 4)?;
    let a = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let src = SocketAddrV4::new(a(&ip[12..16]), u16::from_be_bytes([l4[0], l4[1]]));
    let dst = SocketAddrV4::new(a(&ip[16..20]), u16::from_be_bytes([l4[2], l4[3]]));
    Some((ip[9], src, dst))
}

/// Which way a checked output frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutDir {
    /// Towards a real server.
    ToRs,
    /// Towards the client (NAT/FULLNAT replies).
    ToClient,
}

/// Check one IPv4 datagram (at `ip`): header checksum, total length within the buffer, TTL, and
/// (for TCP/UDP) the L4 checksum. Returns (header length, total length).
fn check_ipv4(ip: &[u8], ttl: u8, what: &str) -> Result<(usize, usize), String> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(format!("{what}: not IPv4"));
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if hl < 20 || total < hl || total > ip.len() {
        return Err(format!("{what}: header length {hl} / total length {total} / buffer {}", ip.len()));
    }
    if csum(&ip[..hl], 0) != 0 {
        return Err(format!("{what}: bad IPv4 header checksum"));
    }
    if ip[8] != ttl {
        return Err(format!("{what}: TTL {} (expected {ttl})", ip[8]));
    }
    let proto = ip[9];
    if proto == TCP || proto == UDP {
        let l4 = &ip[hl..total];
        let a = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let skip_udp0 = proto == UDP && l4.len() >= 8 && l4[6..8] == [0, 0];
        if !skip_udp0 && csum(l4, pseudo(a(&ip[12..16]), a(&ip[16..20]), proto, l4.len())) != 0 {
            return Err(format!("{what}: bad {} checksum", if proto == TCP { "TCP" } else { "UDP" }));
        }
    }
    Ok((hl, total))
}

fn svc_port(proto: u8) -> u16 {
    if proto == TCP {
        net::TCP_PORT
    } else {
        net::UDP_PORT
    }
}

/// Check a frame the pipeline sent in forwarding mode `mode`: Ethernet addresses, IPv4 (and
/// inner IPv4 for TUN) header checksum, TTL decremented once, L4 checksum, and the addresses and
/// ports the mode must produce.
pub fn verify(mode: FwdMode, frame: &[u8]) -> Result<OutDir, String> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return Err(format!("not an IPv4 frame ({} bytes)", frame.len()));
    }
    if frame[6..12] != net::PORT_MAC {
        return Err(format!("source MAC {:02x?} is not the port's", &frame[6..12]));
    }
    let eth_dst: [u8; 6] = frame[0..6].try_into().expect("6 bytes");
    let ip = &frame[14..];
    if mode == FwdMode::Tun {
        let (hl, _) = check_ipv4(ip, 64, "outer")?;
        let (proto, outer_src, outer_dst) =
            (ip[9], Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        if proto != IPIP || outer_src != net::PORT_ADDR || !net::is_rs(outer_dst) || eth_dst != net::rs_mac(outer_dst) {
            return Err(format!("TUN outer header: proto {proto} {outer_src} -> {outer_dst}, dst MAC {eth_dst:02x?}"));
        }
        let inner = &ip[hl..];
        check_ipv4(inner, 63, "inner")?;
        let (p, src, dst) = tuple(&frame[hl..]).ok_or("inner tuple")?;
        if *dst.ip() != net::VIP || dst.port() != svc_port(p) || !net::is_client(*src.ip()) {
            return Err(format!("TUN inner {src} -> {dst}"));
        }
        return Ok(OutDir::ToRs);
    }
    check_ipv4(ip, 63, "ip")?;
    let (p, src, dst) = tuple(frame).ok_or("tuple")?;
    let sp = svc_port(p);
    let to_rs = match mode {
        FwdMode::Dr => {
            if *dst.ip() != net::VIP || dst.port() != sp || !net::is_client(*src.ip()) {
                return Err(format!("DR must keep the IP header: {src} -> {dst}"));
            }
            let last = eth_dst[5];
            if eth_dst[..5] != [2, 0, 0, 0, 1] || !net::is_rs(Ipv4Addr::new(203, 0, 113, last)) {
                return Err(format!("DR dst MAC {eth_dst:02x?} is no real server's"));
            }
            return Ok(OutDir::ToRs);
        }
        _ => net::is_rs(*dst.ip()),
    };
    if to_rs {
        let src_ok = if mode == FwdMode::FullNat { net::is_laddr(*src.ip()) } else { net::is_client(*src.ip()) };
        if dst.port() != sp || !src_ok || eth_dst != net::rs_mac(*dst.ip()) {
            return Err(format!("{mode:?} to RS: {src} -> {dst}, dst MAC {eth_dst:02x?}"));
        }
        Ok(OutDir::ToRs)
    } else {
        if *src.ip() != net::VIP || src.port() != sp || !net::is_client(*dst.ip()) || eth_dst != net::GW_MAC {
            return Err(format!("{mode:?} reply: {src} -> {dst}, dst MAC {eth_dst:02x?}"));
        }
        Ok(OutDir::ToClient)
    }
}

/// The VIP:port of the service for `proto` (TCP :80, UDP :53).
pub fn vip_of(proto: u8) -> SocketAddrV4 {
    SocketAddrV4::new(net::VIP, svc_port(proto))
}

/// First packet (TCP SYN, or UDP) and a later one (TCP ACK, or UDP) of flow `i`.
pub fn client_frame(i: u64, later: bool) -> Frame {
    let p = proto_of(i);
    let flags = if p != TCP {
        0
    } else if later {
        ACK
    } else {
        SYN
    };
    build(p, client_of(i), vip_of(p), flags, net::GW_MAC, net::PORT_MAC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn built_frames_have_valid_checksums_and_tuples() {
        for proto in [TCP, UDP] {
            let f = build(proto, sa("192.0.2.7:4000"), sa("203.0.113.100:80"), SYN, net::GW_MAC, net::PORT_MAC);
            let (hl, total) = check_ipv4(&f[14..], 64, "t").unwrap();
            assert_eq!(hl, 20);
            assert_eq!(total, if proto == TCP { 40 } else { 46 });
            assert_eq!(tuple(&f), Some((proto, sa("192.0.2.7:4000"), sa("203.0.113.100:80"))));
        }
    }

    #[test]
    fn verify_catches_wrong_frames() {
        // A DR output: dst MAC of RS .11, TTL 63, IP header unchanged.
        let mut f =
            build(TCP, sa("192.0.2.7:4000"), sa("203.0.113.100:80"), ACK, net::PORT_MAC, net::rs_mac(net::rs(0)));
        f[22] = 63;
        f[24..26].copy_from_slice(&[0, 0]);
        let c = csum(&f[14..34], 0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(verify(FwdMode::Dr, &f), Ok(OutDir::ToRs));
        assert!(verify(FwdMode::Nat, &f).is_err(), "NAT must rewrite the destination");
        let mut bad = f;
        bad[30] ^= 1; // dst address changed without checksum update
        assert!(verify(FwdMode::Dr, &bad).unwrap_err().contains("checksum"));
        let mut bad = f;
        bad[0..6].copy_from_slice(&net::GW_MAC);
        assert!(verify(FwdMode::Dr, &bad).is_err());
        let mut bad = f;
        bad[22] = 64; // TTL not decremented
        let c = {
            bad[24..26].copy_from_slice(&[0, 0]);
            csum(&bad[14..34], 0)
        };
        bad[24..26].copy_from_slice(&c.to_be_bytes());
        assert!(verify(FwdMode::Dr, &bad).unwrap_err().contains("TTL"));
    }

    #[test]
    fn flows_are_distinct() {
        assert_ne!(client_of(0), client_of(250));
        assert_ne!(client_of(1), client_of(0));
        assert_eq!(client_of(250).port(), 1025);
    }

    #[test]
    fn client_frames_open_then_continue_a_flow() {
        // Flow 0 is TCP to VIP:80: a SYN first, an ACK later; flow 1 is UDP to VIP:53.
        let syn = client_frame(0, false);
        let ack = client_frame(0, true);
        assert_eq!(tuple(&syn), Some((TCP, sa("192.0.2.1:1024"), sa("203.0.113.100:80"))));
        assert_eq!((syn[47], ack[47]), (SYN, ACK));
        assert_eq!(tuple(&client_frame(1, false)), Some((UDP, sa("192.0.2.2:1024"), sa("203.0.113.100:53"))));
        assert_eq!(client_frame(1, false), client_frame(1, true));
    }
}
