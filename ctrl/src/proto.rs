//! The rvsadm ↔ rvsd protocol: JSON lines over a Unix stream socket.
//!
//! A client writes one [`Request`] object per line and reads one [`Response`] object per line;
//! a connection may carry any number of exchanges. Requests are tagged by `"op"`, responses by
//! `"status"`, e.g. `{"op":"del_service","key":{"proto":"tcp","vip":"203.0.113.100:80"}}` →
//! `{"status":"ok"}`.

use rvs_config::model::{RealServer, Service, ServiceKey};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Longest request or response line accepted, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

/// Longest session timeout `--set` accepts, seconds (one year).
pub const MAX_TIMEOUT_S: u32 = 31_536_000;

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
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error {
        message: String,
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
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
        }
    }
}

/// A service with its connection counts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub service: Service,
    /// (active, inactive) connections per real server, same order as `service.reals`.
    pub conns: Vec<(u64, u64)>,
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
        ServiceKey {
            proto: Proto::Tcp,
            vip: "203.0.113.100:80".parse().unwrap(),
        }
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
            Request::AddService {
                service: svc.clone(),
            },
            Request::EditService { service: svc },
            Request::DelService { key: key() },
            Request::AddReal {
                key: key(),
                real: real(),
            },
            Request::EditReal {
                key: key(),
                real: real(),
            },
            Request::DelReal {
                key: key(),
                addr: "203.0.113.11:80".parse().unwrap(),
            },
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
        ];
        for r in all {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r, "{line}");
        }
    }

    #[test]
    fn wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Clear).unwrap(),
            r#"{"op":"clear"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::DelService { key: key() }).unwrap(),
            r#"{"op":"del_service","key":{"proto":"tcp","vip":"203.0.113.100:80"}}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"list"}"#).unwrap(),
            Request::List { key: None }
        );
        // Hand-written request with defaults (fwd dr, weight 1).
        let r: Request = serde_json::from_str(
            r#"{"op":"add_real","key":{"proto":"udp","vip":"203.0.113.100:53"},"real":{"addr":"203.0.113.11:53"}}"#,
        )
        .unwrap();
        let Request::AddReal { real, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!((real.fwd, real.weight), (FwdMode::Dr, 1));
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::SetTimeouts { tcp: 900, tcpfin: 120, udp: 0 }).unwrap(),
            r#"{"op":"set_timeouts","tcp":900,"tcpfin":120,"udp":0}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::AddLaddr { key: key(), addr: "203.0.113.3".parse().unwrap() })
                .unwrap(),
            r#"{"op":"add_laddr","key":{"proto":"tcp","vip":"203.0.113.100:80"},"addr":"203.0.113.3"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::SetExpireNodestConn { enabled: true }).unwrap(),
            r#"{"op":"set_expire_nodest_conn","enabled":true}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"get_laddr"}"#).unwrap(),
            Request::GetLaddr { key: None }
        );
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
        assert_eq!(
            serde_json::to_string(&Response::Ok).unwrap(),
            r#"{"status":"ok"}"#
        );
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
            Response::Version {
                version: "0.1.0".into(),
            },
            Response::Laddrs {
                services: vec![ServiceLaddrs {
                    key: key(),
                    laddrs: vec!["203.0.113.3".parse().unwrap(), "203.0.113.4".parse().unwrap()],
                }],
            },
            Response::Timeouts { tcp: 900, tcpfin: 120, udp: 300 },
            Response::ExpireNodestConn { enabled: false },
        ];
        for r in all {
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(
                serde_json::from_str::<Response>(&line).unwrap(),
                r,
                "{line}"
            );
        }
    }
}
