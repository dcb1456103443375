//! The rvsadm ↔ rvsd protocol: JSON lines over a Unix stream socket.
//!
//! A client writes one [`Request`] object per line and reads one [`Response`] object per line;
//! a connection may carry any number of exchanges. Requests are tagged by `"op"`, responses by
//! `"status"`, e.g. `{"op":"del_service","key":{"proto":"tcp","vip":"203.0.113.100:80"}}` →
//! `{"status":"ok"}`.

/// ipvsadm's five traffic counters of `--stats` (the model's type, serialised with its field names).
pub use rvs_config::model::RsStats;
use rvs_config::model::{RealServer, Service, ServiceKey};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Longest request or response line accepted, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

/// Longest session timeout `--set` accepts, seconds (one year).
pub const MAX_TIMEOUT_S: u32 = rvs_config::model::SessionTimeouts::MAX_S;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    AddService {
        service: Service,
    },
    EditService {
        service: Service,
    },
    DelService {
        key: ServiceKey,
    },
    AddReal {
        key: ServiceKey,
        real: RealServer,
    },
    EditReal {
        key: ServiceKey,
        real: RealServer,
    },
    DelReal {
        key: ServiceKey,
        addr: SocketAddr,
    },
    Clear,
    /// All services, or the one with this key.
    List {
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    LinkShow,
    Version,
    /// DPVS's `--add-laddr -t VIP:PORT -z LIP`: add a FULLNAT local address to a service.
    AddLaddr {
        key: ServiceKey,
        addr: IpAddr,
    },
    /// DPVS's `--del-laddr -t VIP:PORT -z LIP`.
    DelLaddr {
        key: ServiceKey,
        addr: IpAddr,
    },
    /// DPVS's `--get-laddr [-t VIP:PORT]`: the local addresses of one service, or of all
    /// services that have any. Answered with [`Response::Laddrs`].
    GetLaddr {
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    /// ipvsadm's `--set TCP TCPFIN UDP`: session timeouts in seconds, 0 = leave unchanged.
    /// `tcp` is the established-state timeout, `tcpfin` the FIN_WAIT one.
    SetTimeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    /// ipvsadm's `-L --timeout`. Answered with [`Response::Timeouts`].
    GetTimeouts,
    /// IPVS's `expire_nodest_conn` sysctl: drop the sessions of a deleted real server at once.
    SetExpireNodestConn {
        enabled: bool,
    },
    /// Answered with [`Response::ExpireNodestConn`].
    GetExpireNodestConn,
    /// ipvsadm's `-L --stats`: traffic per service and real server since the last `-Z`.
    /// Answered with [`Response::Stats`].
    Stats {
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    /// ipvsadm's `-L --rate`: per-second rates. Answered with [`Response::Rates`].
    Rate {
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    /// ipvsadm's `-Z [-t|-u VIP:PORT]`: zero the statistics of one service or all.
    Zero {
        #[serde(default)]
        key: Option<ServiceKey>,
    },
    /// ipvsadm's `-L -c`: the sessions, at most `max`, filtered by service and/or real server
    /// (real server port 0 = any port). Answered with [`Response::Conns`].
    ListConns {
        #[serde(default)]
        key: Option<ServiceKey>,
        #[serde(default)]
        real: Option<SocketAddr>,
        #[serde(default = "default_max_conns")]
        max: u32,
    },
    /// `rvsadm addr add IP/LEN dev PORT`.
    AddrAdd {
        addr: Ipv4Addr,
        len: u8,
        dev: String,
    },
    /// `rvsadm addr del IP/LEN dev PORT`.
    AddrDel {
        addr: Ipv4Addr,
        len: u8,
        dev: String,
    },
    /// `rvsadm addr show [dev PORT]`. Answered with [`Response::Addrs`].
    AddrShow {
        #[serde(default)]
        dev: Option<String>,
    },
    /// `rvsadm route add PREFIX/LEN [via GW] dev PORT`.
    RouteAdd {
        prefix: Ipv4Addr,
        len: u8,
        #[serde(default)]
        via: Option<Ipv4Addr>,
        dev: String,
    },
    /// `rvsadm route del PREFIX/LEN [via GW] [dev PORT]`.
    RouteDel {
        prefix: Ipv4Addr,
        len: u8,
        #[serde(default)]
        via: Option<Ipv4Addr>,
        #[serde(default)]
        dev: Option<String>,
    },
    /// `rvsadm route show`. Answered with [`Response::Routes`].
    RouteShow,
    /// `rvsadm neigh show [dev PORT]`: every worker's neighbour table, merged. Answered with
    /// [`Response::Neighs`].
    NeighShow {
        #[serde(default)]
        dev: Option<String>,
    },
    /// `rvsadm neigh flush [dev PORT]`: clear the neighbour tables of every worker. Answered
    /// with [`Response::NeighFlushed`].
    NeighFlush {
        #[serde(default)]
        dev: Option<String>,
    },
    /// `rvsadm --reload`: re-read the configuration file (services and tunables).
    Reload,
}

/// Sessions `-L -c` lists when no `--max` is given.
pub const DEFAULT_MAX_CONNS: u32 = 1000;

fn default_max_conns() -> u32 {
    DEFAULT_MAX_CONNS
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error {
        message: String,
    },
    /// A reload was applied; one line per change (empty: the file matched the running state).
    Reloaded {
        changes: Vec<String>,
    },
    Services {
        services: Vec<ServiceStatus>,
    },
    /// Ports, then the dataplane counters summed over workers (name, value). Drop counters
    /// are named `drop_<reason>` (rvsadm shows them only when non-zero).
    Link {
        ports: Vec<PortReport>,
        counters: Vec<(String, u64)>,
    },
    Version {
        version: String,
    },
    /// Local addresses per service, in service order.
    Laddrs {
        services: Vec<ServiceLaddrs>,
    },
    /// Session timeouts in seconds, as `ipvsadm -L --timeout` prints them.
    Timeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    ExpireNodestConn {
        enabled: bool,
    },
    /// Per service (the sum of its real servers) and per real server, since the last zeroing.
    Stats {
        services: Vec<ServiceStats>,
    },
    /// Per-second rates over `interval_ms`, the time between the two samples they come from.
    Rates {
        interval_ms: u64,
        services: Vec<ServiceRates>,
    },
    /// Sessions: at most the requested number, `total` = how many matched on the workers
    /// that answered; `missing_workers` did not answer in time.
    Conns {
        conns: Vec<ConnEntry>,
        total: u64,
        #[serde(default)]
        missing_workers: Vec<u32>,
    },
    Addrs {
        ports: Vec<PortAddrs>,
    },
    Routes {
        routes: Vec<RouteEntry>,
    },
    Neighs {
        neighs: Vec<NeighEntry>,
        #[serde(default)]
        missing_workers: Vec<u32>,
    },
    /// Entries removed (summed over workers).
    NeighFlushed {
        removed: u64,
        #[serde(default)]
        missing_workers: Vec<u32>,
    },
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error { message: message.into() }
    }
}

/// A service with its connection counts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub service: Service,
    /// (active, inactive) connections per real server, same order as `service.reals`.
    pub conns: Vec<(u64, u64)>,
}

/// One service's `--stats`: `total` is the sum of `reals`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    pub key: ServiceKey,
    pub total: RsStats,
    pub reals: Vec<(SocketAddr, RsStats)>,
}

/// ipvsadm's five rates, per second.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateRow {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// One service's `--rate`: `total` is the rate of the service's summed counters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceRates {
    pub key: ServiceKey,
    pub total: RateRow,
    pub reals: Vec<(SocketAddr, RateRow)>,
}

/// One session of `-L -c`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// "TCP" or "UDP".
    pub proto: String,
    /// Seconds until it expires unless renewed.
    pub expire_s: u64,
    /// IPVS state name (ESTABLISHED, SYN_RECV, ..., UDP).
    pub state: String,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// FULLNAT local address:port.
    #[serde(default)]
    pub lip: Option<SocketAddr>,
    pub rip: SocketAddr,
    /// ipvsadm's forwarding name (Route, Masq, Tunnel, FullNat).
    pub fwd: String,
    /// Worker that owns it.
    pub worker: u32,
}

/// One port's addresses (`addr show`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PortAddrs {
    pub name: String,
    pub port_id: u16,
    pub mac: String,
    pub mtu: u16,
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// One route (`route show`): `kind` "connected" (from a port address; `src` is that address)
/// or "static".
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: Ipv4Addr,
    pub len: u8,
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
    pub dev: String,
    pub kind: String,
    #[serde(default)]
    pub src: Option<Ipv4Addr>,
}

/// One neighbour (`neigh show`), merged over workers: `state` "reachable" when some worker has
/// its MAC, else "incomplete"; `workers` = the workers holding an entry for it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NeighEntry {
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub mac: Option<String>,
    pub dev: String,
    pub state: String,
    pub workers: Vec<u32>,
    /// Packets held waiting for it, over all workers.
    pub pending: u64,
}

/// The FULLNAT local addresses of one service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceLaddrs {
    pub key: ServiceKey,
    pub laddrs: Vec<IpAddr>,
}

/// One DPDK port as `rvsadm link show` prints it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PortReport {
    pub name: String,
    pub port_id: u16,
    pub driver: String,
    pub mac: String,
    pub link_up: bool,
    /// (name, value), e.g. ("rx_packets", 12).
    pub stats: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::model::{FwdMode, Proto, SchedKind};

    fn key() -> ServiceKey {
        ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }
    }
    fn real() -> RealServer {
        RealServer {
            addr: "203.0.113.11:80".parse().unwrap(),
            fwd: FwdMode::Dr,
            weight: 3,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn requests_round_trip() {
        let svc = Service {
            key: key(),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: vec![real()],
        };
        let all = vec![
            Request::AddService { service: svc.clone() },
            Request::EditService { service: svc },
            Request::DelService { key: key() },
            Request::AddReal { key: key(), real: real() },
            Request::EditReal { key: key(), real: real() },
            Request::DelReal { key: key(), addr: "203.0.113.11:80".parse().unwrap() },
            Request::Clear,
            Request::List { key: None },
            Request::List { key: Some(key()) },
            Request::LinkShow,
            Request::Version,
            Request::AddLaddr { key: key(), addr: "203.0.113.3".parse().unwrap() },
            Request::DelLaddr { key: key(), addr: "203.0.113.3".parse().unwrap() },
            Request::GetLaddr { key: None },
            Request::GetLaddr { key: Some(key()) },
            Request::SetTimeouts { tcp: 900, tcpfin: 0, udp: 300 },
            Request::GetTimeouts,
            Request::SetExpireNodestConn { enabled: true },
            Request::GetExpireNodestConn,
            Request::Stats { key: None },
            Request::Stats { key: Some(key()) },
            Request::Rate { key: Some(key()) },
            Request::Zero { key: None },
            Request::Zero { key: Some(key()) },
            Request::ListConns { key: Some(key()), real: Some("203.0.113.11:0".parse().unwrap()), max: 5 },
            Request::ListConns { key: None, real: None, max: DEFAULT_MAX_CONNS },
            Request::AddrAdd { addr: "203.0.113.5".parse().unwrap(), len: 24, dev: "lan".into() },
            Request::AddrDel { addr: "203.0.113.5".parse().unwrap(), len: 24, dev: "lan".into() },
            Request::AddrShow { dev: None },
            Request::AddrShow { dev: Some("lan".into()) },
            Request::RouteAdd {
                prefix: "198.51.100.0".parse().unwrap(),
                len: 24,
                via: Some("203.0.113.1".parse().unwrap()),
                dev: "lan".into(),
            },
            Request::RouteAdd { prefix: "198.51.100.0".parse().unwrap(), len: 24, via: None, dev: "lan".into() },
            Request::RouteDel { prefix: "198.51.100.0".parse().unwrap(), len: 24, via: None, dev: None },
            Request::RouteShow,
            Request::NeighShow { dev: Some("lan".into()) },
            Request::NeighFlush { dev: None },
            Request::Reload,
        ];
        for r in all {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r, "{line}");
        }
    }

    #[test]
    fn wire_format() {
        assert_eq!(serde_json::to_string(&Request::Clear).unwrap(), r#"{"op":"clear"}"#);
        assert_eq!(
            serde_json::to_string(&Request::DelService { key: key() }).unwrap(),
            r#"{"op":"del_service","key":{"proto":"tcp","vip":"203.0.113.100:80"}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"list"}"#).unwrap(), Request::List { key: None });
        // Hand-written request with defaults (fwd dr, weight 1).
        let r: Request = serde_json::from_str(
            r#"{"op":"add_real","key":{"proto":"udp","vip":"203.0.113.100:53"},"real":{"addr":"203.0.113.11:53"}}"#,
        )
        .unwrap();
        let Request::AddReal { real, .. } = r else { panic!("{r:?}") };
        assert_eq!((real.fwd, real.weight), (FwdMode::Dr, 1));
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::SetTimeouts { tcp: 900, tcpfin: 120, udp: 0 }).unwrap(),
            r#"{"op":"set_timeouts","tcp":900,"tcpfin":120,"udp":0}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::AddLaddr { key: key(), addr: "203.0.113.3".parse().unwrap() }).unwrap(),
            r#"{"op":"add_laddr","key":{"proto":"tcp","vip":"203.0.113.100:80"},"addr":"203.0.113.3"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::SetExpireNodestConn { enabled: true }).unwrap(),
            r#"{"op":"set_expire_nodest_conn","enabled":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"get_laddr"}"#).unwrap(), Request::GetLaddr { key: None });
        assert_eq!(
            serde_json::to_string(&Response::Timeouts { tcp: 900, tcpfin: 120, udp: 300 }).unwrap(),
            r#"{"status":"timeouts","tcp":900,"tcpfin":120,"udp":300}"#
        );
        // A service written by hand: laddrs and client_addr (either spelling) default sensibly.
        let r: Request = serde_json::from_str(
            r#"{"op":"add_service","service":{"key":{"proto":"tcp","vip":"203.0.113.100:80"},"laddrs":["203.0.113.3"],"client_addr":"proxy-v2"}}"#,
        )
        .unwrap();
        let Request::AddService { service } = r else { panic!("{r:?}") };
        assert_eq!(service.client_addr, rvs_config::model::ClientAddrMode::ProxyV2);
        assert_eq!(service.laddrs, ["203.0.113.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(serde_json::to_string(&Request::Reload).unwrap(), r#"{"op":"reload"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"list_conns"}"#).unwrap(),
            Request::ListConns { key: None, real: None, max: DEFAULT_MAX_CONNS },
            "-L -c defaults to 1000 entries"
        );
        assert_eq!(
            serde_json::to_string(&Request::RouteAdd {
                prefix: "0.0.0.0".parse().unwrap(),
                len: 0,
                via: Some("203.0.113.1".parse().unwrap()),
                dev: "lan".into()
            })
            .unwrap(),
            r#"{"op":"route_add","prefix":"0.0.0.0","len":0,"via":"203.0.113.1","dev":"lan"}"#
        );
        assert_eq!(serde_json::to_string(&Request::Zero { key: None }).unwrap(), r#"{"op":"zero","key":null}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"zero"}"#).unwrap(), Request::Zero { key: None });
        assert_eq!(
            serde_json::to_string(&Response::NeighFlushed { removed: 2, missing_workers: vec![] }).unwrap(),
            r#"{"status":"neigh_flushed","removed":2,"missing_workers":[]}"#
        );
        assert_eq!(serde_json::to_string(&Response::Ok).unwrap(), r#"{"status":"ok"}"#);
    }

    #[test]
    fn responses_round_trip() {
        let all = vec![
            Response::Ok,
            Response::error("no such service"),
            Response::Services {
                services: vec![ServiceStatus {
                    service: Service {
                        key: key(),
                        sched: SchedKind::Wrr,
                        persistence: None,
                        laddrs: Vec::new(),
                        client_addr: Default::default(),
                        reals: vec![real()],
                    },
                    conns: vec![(4, 5)],
                }],
            },
            Response::Link {
                ports: vec![PortReport {
                    name: "eth0".into(),
                    port_id: 0,
                    driver: "net_af_packet".into(),
                    mac: "02:00:00:00:00:01".into(),
                    link_up: true,
                    stats: vec![("rx_packets".into(), 10)],
                }],
                counters: vec![("rx".into(), 10), ("drop_bad_ip".into(), 0)],
            },
            Response::Version { version: "0.1.0".into() },
            Response::Laddrs {
                services: vec![ServiceLaddrs {
                    key: key(),
                    laddrs: vec!["203.0.113.3".parse().unwrap(), "203.0.113.4".parse().unwrap()],
                }],
            },
            Response::Timeouts { tcp: 900, tcpfin: 120, udp: 300 },
            Response::ExpireNodestConn { enabled: false },
            Response::Stats {
                services: vec![ServiceStats {
                    key: key(),
                    total: RsStats { conns: 1, inpkts: 2, outpkts: 3, inbytes: 4, outbytes: 5 },
                    reals: vec![(
                        "203.0.113.11:80".parse().unwrap(),
                        RsStats { conns: 1, inpkts: 2, outpkts: 3, inbytes: 4, outbytes: 5 },
                    )],
                }],
            },
            Response::Rates {
                interval_ms: 1000,
                services: vec![ServiceRates {
                    key: key(),
                    total: RateRow { cps: 1, inpps: 2, outpps: 3, inbps: 4, outbps: 5 },
                    reals: vec![("203.0.113.11:80".parse().unwrap(), RateRow::default())],
                }],
            },
            Response::Conns {
                conns: vec![ConnEntry {
                    proto: "TCP".into(),
                    expire_s: 899,
                    state: "ESTABLISHED".into(),
                    client: "198.51.100.10:40000".parse().unwrap(),
                    vip: "203.0.113.100:80".parse().unwrap(),
                    lip: Some("203.0.113.3:5000".parse().unwrap()),
                    rip: "203.0.113.11:80".parse().unwrap(),
                    fwd: "FullNat".into(),
                    worker: 1,
                }],
                total: 7,
                missing_workers: vec![0],
            },
            Response::Addrs {
                ports: vec![PortAddrs {
                    name: "lan".into(),
                    port_id: 0,
                    mac: "02:00:00:00:00:01".into(),
                    mtu: 1500,
                    addrs: vec![("203.0.113.2".parse().unwrap(), 24)],
                }],
            },
            Response::Routes {
                routes: vec![RouteEntry {
                    prefix: "0.0.0.0".parse().unwrap(),
                    len: 0,
                    via: Some("203.0.113.1".parse().unwrap()),
                    dev: "lan".into(),
                    kind: "static".into(),
                    src: None,
                }],
            },
            Response::Neighs {
                neighs: vec![NeighEntry {
                    ip: "203.0.113.11".parse().unwrap(),
                    mac: Some("02:00:00:00:00:0b".into()),
                    dev: "lan".into(),
                    state: "reachable".into(),
                    workers: vec![0, 1],
                    pending: 0,
                }],
                missing_workers: vec![],
            },
            Response::NeighFlushed { removed: 3, missing_workers: vec![] },
        ];
        for r in all {
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r, "{line}");
        }
    }
}
