//! Per-worker counters. Each worker owns its `Counters` (plain integers, no atomics); rvsd copies
//! them out between bursts and the control plane sums the copies on read.

macro_rules! drop_reasons {
    ($($(#[$m:meta])* $v:ident => $name:literal,)*) => {
        /// Why the dataplane dropped a packet. Every drop has one, and each has a counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$m])* $v,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            pub const COUNT: usize = DropReason::ALL.len();
            /// Stable snake_case name (used by rvsadm, JSON and metrics).
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// Frame shorter than an Ethernet header, or an unknown EtherType.
    MalformedEth => "malformed_eth",
    /// ARP packet too short or not Ethernet/IPv4.
    MalformedArp => "malformed_arp",
    /// IPv4 header truncated, bad version, bad IHL or total length.
    MalformedIpv4 => "malformed_ipv4",
    /// IPv4 header checksum wrong.
    BadIpv4Checksum => "bad_ipv4_checksum",
    /// TCP or UDP header truncated or with a bad data offset.
    MalformedL4 => "malformed_l4",
    /// ICMP message truncated or with a bad checksum.
    MalformedIcmp => "malformed_icmp",
    /// TTL would reach 0 on forwarding.
    TtlExceeded => "ttl_exceeded",
    /// IPv4 fragments to a VIP (not balanced yet).
    Fragment => "fragment",
    /// Frame received on a port the running configuration does not have (a port being
    /// reconfigured).
    UnknownPort => "unknown_port",
    /// Frame to a MAC address that is neither the port's nor broadcast/multicast (a switch
    /// flooding unknown unicast, or a promiscuous port): look at the L2 segment.
    OtherMac => "other_mac",
    /// IPv4 to an address that is none of rvs's (not an interface address, VIP or local
    /// address) and no session's reply: rvs does not route; look at who sends it here.
    UnknownDst => "unknown_dst",
    /// ARP not for one of our addresses (learned from, then dropped).
    ArpNotForUs => "arp_not_for_us",
    /// Addressed to a VIP but no service matches protocol and port.
    NoService => "no_service",
    /// Service has no real server able to take a new flow.
    NoRealServer => "no_real_server",
    /// Non-SYN TCP segment with no session (not a new connection).
    NoSession => "no_session",
    /// Session table is full; new flows are refused.
    SessionTableFull => "session_table_full",
    /// No route to the destination or the real server.
    NoRoute => "no_route",
    /// Too many packets already waiting for ARP resolution of a next hop.
    NeighPendingOverflow => "neigh_pending_overflow",
    /// Next hop did not answer ARP in time; the packets waiting on it were dropped.
    NeighUnreachable => "neigh_unreachable",
    /// Addressed to us but not a protocol we answer (only ARP and ICMP echo are).
    LocalUnhandled => "local_unhandled",
    /// IPv6 (not forwarded yet).
    Ipv6 => "ipv6",
    /// Not enough headroom/tailroom or no buffer to build a packet.
    NoBuffer => "no_buffer",
    /// The tx queue was full.
    TxFull => "tx_full",
    /// Handing a packet to another core failed (its ring was full).
    RedirectFull => "redirect_full",
    /// FULLNAT service without a local address.
    NoLocalAddr => "no_local_addr",
    /// FULLNAT: every port of every local address of the service is in use on this worker.
    NoLocalPort => "no_local_port",
    /// TUN: the encapsulated packet would exceed the egress MTU and DF is set (an ICMP
    /// "fragmentation needed" went back to the source).
    FragNeeded => "frag_needed",
    /// TUN: the encapsulated packet would exceed the egress MTU, DF clear (rvs does not fragment).
    TunTooBig => "tun_too_big",
    /// The session's real server (or service) was deleted and `expire_nodest_conn` is set.
    NoDest => "no_dest",
    /// An ICMP error about a flow we have no session for (or not translatable).
    IcmpNoSession => "icmp_no_session",
}

/// Counters of one worker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
    /// Packets forwarded to real servers (any mode).
    pub fwd_pkts: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_echo_replies: u64,
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub sessions_active: u64,
    /// Packets handed to the worker owning their session.
    pub redirected_out: u64,
    /// Packets received from other workers (not in `rx_pkts`: the receiving worker counted them).
    pub redirected_in: u64,
    /// FULLNAT: TOA options inserted.
    pub toa_inserted: u64,
    /// FULLNAT: TOA not inserted (no room in the TCP options or the buffer).
    pub toa_skipped: u64,
    /// FULLNAT: local ports handed out again towards the same real server within its TIME_WAIT
    /// window (a lower bound). Safe for TCP (the real server sees newer sequence numbers and
    /// timestamps), but a sign that the local addresses are few for the connection rate.
    pub lport_reused_early: u64,
    /// FULLNAT: PROXY v2 headers inserted (retransmissions included).
    pub proxy_inserted: u64,
    /// ICMP errors about a session forwarded to the other side (translated for NAT/FULLNAT).
    pub icmp_errors_translated: u64,
    /// Received frames used up without output or drop (ARP replies to us).
    pub arp_rx_consumed: u64,
    /// ICMP errors built by this worker (time exceeded, fragmentation needed).
    pub icmp_errors_sent: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Add another worker's counters into these.
    pub fn add(&mut self, o: &Counters) {
        self.rx_pkts += o.rx_pkts;
        self.rx_bytes += o.rx_bytes;
        self.tx_pkts += o.tx_pkts;
        self.tx_bytes += o.tx_bytes;
        self.fwd_pkts += o.fwd_pkts;
        self.arp_replies += o.arp_replies;
        self.arp_requests += o.arp_requests;
        self.icmp_echo_replies += o.icmp_echo_replies;
        self.sessions_created += o.sessions_created;
        self.sessions_expired += o.sessions_expired;
        self.sessions_active += o.sessions_active;
        self.redirected_out += o.redirected_out;
        self.redirected_in += o.redirected_in;
        self.toa_inserted += o.toa_inserted;
        self.toa_skipped += o.toa_skipped;
        self.lport_reused_early += o.lport_reused_early;
        self.proxy_inserted += o.proxy_inserted;
        self.icmp_errors_translated += o.icmp_errors_translated;
        self.arp_rx_consumed += o.arp_rx_consumed;
        self.icmp_errors_sent += o.icmp_errors_sent;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += *b;
        }
    }
    /// Every counter as (name, value), drops as `drop_<reason>`, in a fixed order: what
    /// `rvsadm link show` and the metrics print.
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("rx_pkts".to_string(), self.rx_pkts),
            ("rx_bytes".to_string(), self.rx_bytes),
            ("tx_pkts".to_string(), self.tx_pkts),
            ("tx_bytes".to_string(), self.tx_bytes),
            ("fwd_pkts".to_string(), self.fwd_pkts),
            ("arp_replies".to_string(), self.arp_replies),
            ("arp_requests".to_string(), self.arp_requests),
            ("icmp_echo_replies".to_string(), self.icmp_echo_replies),
            ("sessions_created".to_string(), self.sessions_created),
            ("sessions_expired".to_string(), self.sessions_expired),
            ("sessions_active".to_string(), self.sessions_active),
            ("redirected_out".to_string(), self.redirected_out),
            ("redirected_in".to_string(), self.redirected_in),
            ("toa_inserted".to_string(), self.toa_inserted),
            ("toa_skipped".to_string(), self.toa_skipped),
            ("lport_reused_early".to_string(), self.lport_reused_early),
            ("proxy_inserted".to_string(), self.proxy_inserted),
            ("icmp_errors_translated".to_string(), self.icmp_errors_translated),
            ("arp_rx_consumed".to_string(), self.arp_rx_consumed),
            ("icmp_errors_sent".to_string(), self.icmp_errors_sent),
        ];
        v.extend(DropReason::ALL.iter().map(|r| (format!("drop_{}", r.name()), self.drops_of(*r))));
        v
    }
}

/// Traffic of one (service, real server) on one worker: plain integers owned by the worker; the
/// control plane sums the published copies. The type is the model's, shared with the control
/// protocol and the metrics.
pub use rvs_model::RsStats;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_summing() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        let mut a = Counters::default();
        a.drop(DropReason::NoRoute);
        a.rx_pkts = 3;
        let mut b = Counters::default();
        b.drop(DropReason::NoRoute);
        b.drop(DropReason::MalformedIpv4);
        b.add(&a);
        assert_eq!(b.drops_of(DropReason::NoRoute), 2);
        assert_eq!(b.total_drops(), 3);
        assert_eq!(b.rx_pkts, 3);
        let pairs = b.pairs();
        assert!(pairs.contains(&("drop_no_route".to_string(), 2)));
        assert!(pairs.contains(&("rx_pkts".to_string(), 3)));
    }
}
