//! The virtual-service model, as ipvsadm shows it: services keyed by protocol and VIP:port, each
//! with a scheduler and a list of real servers, each real server with its forwarding method.
//!
//! This is the one description of "what rvs balances" shared by the TOML config, the control
//! protocol (rvsadm ↔ rvsd) and the snapshots the workers run on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

mod net;
mod stats;
mod timeouts;

pub use net::{parse_real_addr, prefix_mask, same_subnet, BadRealAddr};
pub use stats::RsStats;
pub use timeouts::SessionTimeouts;

/// A word that names no forwarding mode, scheduler or client-address mode (the `FromStr` error
/// of [`FwdMode`], [`SchedKind`] and [`ClientAddrMode`]); holds the word as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    #[error("unknown forwarding mode '{0}' (expected dr, tun, nat or fullnat)")]
    FwdMode(String),
    #[error("unknown scheduler '{0}' (expected one of rr, wrr, lc, wlc, sh, dh, fo, mh)")]
    Sched(String),
    #[error("unknown client-address mode '{0}' (expected toa, proxy-v2 or none)")]
    ClientAddr(String),
}

/// Transport protocol of a virtual service (`-t` / `-u` in ipvsadm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IANA protocol number (RFC 793 / RFC 768).
    pub const fn ip_proto(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    pub fn from_ip_proto(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
    /// Upper-case name as `ipvsadm -L` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// Forwarding method of a real server (`-g`, `-i`, `-m`, `-b` in ipvsadm/DPVS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum FwdMode {
    /// Direct routing: only the destination MAC changes. ipvsadm calls it "Route".
    #[default]
    Dr,
    /// IP-in-IP tunnelling. ipvsadm calls it "Tunnel".
    Tun,
    /// Destination NAT. ipvsadm calls it "Masq".
    Nat,
    /// Source and destination NAT (DPVS's FNAT).
    FullNat,
}

impl FwdMode {
    /// Every forwarding method, in ipvsadm's option order (-g, -i, -m) then -b.
    pub const ALL: [FwdMode; 4] = [FwdMode::Dr, FwdMode::Tun, FwdMode::Nat, FwdMode::FullNat];

    /// The word in the "Forward" column of `ipvsadm -L -n`.
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            FwdMode::Dr => "Route",
            FwdMode::Tun => "Tunnel",
            FwdMode::Nat => "Masq",
            FwdMode::FullNat => "FullNat",
        }
    }
    /// Whether the real-server port may differ from the service port. DR and TUN deliver the
    /// packet with its destination port untouched, so the RS must listen on the service port;
    /// NAT and FULLNAT rewrite it (as IPVS).
    pub const fn maps_ports(self) -> bool {
        matches!(self, FwdMode::Nat | FwdMode::FullNat)
    }
}

impl FromStr for FwdMode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "dr" | "route" | "gatewaying" | "g" => Ok(FwdMode::Dr),
            "tun" | "tunnel" | "ipip" | "i" => Ok(FwdMode::Tun),
            "nat" | "masq" | "masquerading" | "m" => Ok(FwdMode::Nat),
            "fullnat" | "fnat" | "b" => Ok(FwdMode::FullNat),
            _ => Err(UnknownName::FwdMode(s.to_string())),
        }
    }
}

/// Scheduler of a virtual service (`-s` in ipvsadm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum SchedKind {
    Rr,
    #[default]
    Wrr,
    Lc,
    Wlc,
    Sh,
    Dh,
    Fo,
    Mh,
}

impl SchedKind {
    /// Every scheduler, in ipvsadm's documentation order.
    pub const ALL: [SchedKind; 8] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Sh,
        SchedKind::Dh,
        SchedKind::Fo,
        SchedKind::Mh,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Sh => "sh",
            SchedKind::Dh => "dh",
            SchedKind::Fo => "fo",
            SchedKind::Mh => "mh",
        }
    }
}

impl FromStr for SchedKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Ok(match s {
            "rr" => SchedKind::Rr,
            "wrr" => SchedKind::Wrr,
            "lc" => SchedKind::Lc,
            "wlc" => SchedKind::Wlc,
            "sh" => SchedKind::Sh,
            "dh" => SchedKind::Dh,
            "fo" => SchedKind::Fo,
            "mh" => SchedKind::Mh,
            _ => return Err(UnknownName::Sched(s.to_string())),
        })
    }
}

impl fmt::Display for SchedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServiceKey {
    pub proto: Proto,
    pub vip: SocketAddr,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto.name(), self.vip)
    }
}

/// Client-affinity ("persistent service", `-p TIMEOUT [-M NETMASK]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Persistence {
    pub timeout_s: u32,
    pub netmask: Ipv4Addr,
}

impl Persistence {
    /// ipvsadm's timeout when `-p` is given without one, seconds.
    pub const DEFAULT_TIMEOUT_S: u32 = 300;
    /// Longest persistence timeout accepted: one year, seconds.
    pub const MAX_TIMEOUT_S: u32 = 31_536_000;

    /// `-p` with ipvsadm's defaults: 300 s, per client address (/32).
    pub const fn default_ipvsadm() -> Persistence {
        Persistence { timeout_s: Self::DEFAULT_TIMEOUT_S, netmask: Ipv4Addr::BROADCAST }
    }
}

/// Whether `m` is a contiguous IPv4 netmask (ones then zeros; 0.0.0.0 and /32 included).
pub fn is_contiguous_netmask(m: Ipv4Addr) -> bool {
    let bits = u32::from(m);
    bits.leading_ones() + bits.trailing_zeros() == 32
}

/// One real server of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RealServer {
    /// RIP:port. For DR and TUN the port must equal the service port (as in IPVS).
    pub addr: SocketAddr,
    #[cfg_attr(feature = "serde", serde(default))]
    pub fwd: FwdMode,
    /// 0 drains: no new flows, existing flows continue. ipvsadm's default is 1.
    #[cfg_attr(feature = "serde", serde(default = "default_weight"))]
    pub weight: u32,
    /// Upper connection threshold (`-x`), 0 = none.
    #[cfg_attr(feature = "serde", serde(default))]
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    #[cfg_attr(feature = "serde", serde(default))]
    pub l_threshold: u32,
}

#[cfg(feature = "serde")]
fn default_weight() -> u32 {
    1
}

/// How a FULLNAT service tells the real server who the client is (the RS sees a local address of
/// rvs as the source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ClientAddrMode {
    /// TCP option 254 carrying client IP and port, on the first ACK (DPVS/Alibaba TOA).
    #[default]
    Toa,
    /// PROXY protocol v2 header before the first payload byte (haproxy spec, section 2.2).
    #[cfg_attr(feature = "serde", serde(alias = "proxy-v2"))]
    ProxyV2,
    /// Nothing: the RS only sees the local address.
    None,
}

impl ClientAddrMode {
    /// The word rvsadm prints and accepts (`--client-addr toa|proxy-v2|none`).
    pub const fn name(self) -> &'static str {
        match self {
            ClientAddrMode::Toa => "toa",
            ClientAddrMode::ProxyV2 => "proxy-v2",
            ClientAddrMode::None => "none",
        }
    }
}

impl fmt::Display for ClientAddrMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClientAddrMode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "toa" => Ok(ClientAddrMode::Toa),
            "proxy" | "proxy2" | "proxyv2" | "proxy_v2" | "proxy-v2" | "v2" => Ok(ClientAddrMode::ProxyV2),
            "none" | "off" => Ok(ClientAddrMode::None),
            _ => Err(UnknownName::ClientAddr(s.to_string())),
        }
    }
}

/// A virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Service {
    pub key: ServiceKey,
    #[cfg_attr(feature = "serde", serde(default))]
    pub sched: SchedKind,
    #[cfg_attr(feature = "serde", serde(default))]
    pub persistence: Option<Persistence>,
    /// FULLNAT local addresses (DPVS's "laddr"): the sources rvs uses towards the real servers.
    #[cfg_attr(feature = "serde", serde(default))]
    pub laddrs: Vec<IpAddr>,
    /// FULLNAT only: how the client address reaches the real server.
    #[cfg_attr(feature = "serde", serde(default))]
    pub client_addr: ClientAddrMode,
    #[cfg_attr(feature = "serde", serde(default))]
    pub reals: Vec<RealServer>,
}

impl Service {
    /// A service with no real servers, no persistence, no local addresses, TOA for FULLNAT.
    pub fn new(key: ServiceKey, sched: SchedKind) -> Service {
        Service {
            key,
            sched,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: ClientAddrMode::Toa,
            reals: Vec::new(),
        }
    }
    /// Whether any real server is forwarded by FULLNAT (then laddrs and client_addr matter).
    pub fn has_fullnat(&self) -> bool {
        self.reals.iter().any(|r| r.fwd == FwdMode::FullNat)
    }
}

/// Helper: the IP of a socket address as IPv4, when it is one.
pub fn ipv4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}
