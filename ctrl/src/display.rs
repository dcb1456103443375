//! Text output of rvsadm: `-L -n` in ipvsadm's layout, `-S`, `-G` (local addresses),
//! `-L --timeout`, and `link show`.

use crate::ipvsadm::save_lines;
use crate::proto::{PortReport, ServiceLaddrs, ServiceStatus};
use rvs_config::model::{ClientAddrMode, Service};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// Prefix of drop counters in [`crate::proto::Response::Link`].
pub const DROP_PREFIX: &str = "drop_";

/// `ipvsadm -L -n`, with ipvsadm's column widths (its `"  -> %-28s %-7s %-6d %-10u %-10u"`),
/// and rvs's version line in place of "IP Virtual Server version ...".
///
/// FULLNAT additions: the service line ends with `client-addr MODE` when the service uses
/// FULLNAT (a FULLNAT real server or a local address) or a non-default mode, and each local
/// address follows the real servers as a line `  -> laddr LIP`.
pub fn format_list(services: &[ServiceStatus]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rvs {} (ipvsadm-compatible listing)",
        env!("CARGO_PKG_VERSION")
    );
    o.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    o.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for st in services {
        let s = &st.service;
        let _ = write!(o, "{}  {} {}", s.key.proto.name(), s.key.vip, s.sched);
        if let Some(p) = &s.persistence {
            let _ = write!(o, " persistent {}", p.timeout_s);
            if p.netmask != Ipv4Addr::BROADCAST {
                let _ = write!(o, " mask {}", p.netmask);
            }
        }
        if shows_client_addr(s) {
            let _ = write!(o, " client-addr {}", s.client_addr);
        }
        o.push('\n');
        for (i, r) in s.reals.iter().enumerate() {
            let (active, inactive) = st.conns.get(i).copied().unwrap_or((0, 0));
            let _ = writeln!(
                o,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                r.addr.to_string(),
                r.fwd.ipvsadm_name(),
                r.weight,
                active,
                inactive
            );
        }
        for l in &s.laddrs {
            let _ = writeln!(o, "  -> laddr {l}");
        }
    }
    o
}

fn shows_client_addr(s: &Service) -> bool {
    s.has_fullnat() || !s.laddrs.is_empty() || s.client_addr != ClientAddrMode::default()
}

/// `rvsadm -G` / `laddr show`, in the spirit of DPVS's `ipvsadm --get-laddr`: one line per
/// local address, the service and its count on the first.
pub fn format_laddrs(services: &[ServiceLaddrs]) -> String {
    let mut o = String::new();
    o.push_str("Prot VIP:VPORT              TOTAL LADDR\n");
    for s in services {
        let vip = s.key.vip.to_string();
        let mut first = true;
        if s.laddrs.is_empty() {
            let _ = writeln!(o, "{:<4} {vip:<22} 0", s.key.proto.name());
        }
        for l in &s.laddrs {
            if first {
                let _ = writeln!(o, "{:<4} {vip:<22} {:<5} {l}", s.key.proto.name(), s.laddrs.len());
                first = false;
            } else {
                let _ = writeln!(o, "{:<4} {:<22} {:<5} {l}", "", "", "");
            }
        }
    }
    o
}

/// `ipvsadm -L --timeout`.
pub fn format_timeouts(tcp: u32, tcpfin: u32, udp: u32) -> String {
    format!("Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n")
}

/// `ipvsadm -S -n`: one command per line.
pub fn format_save(services: &[ServiceStatus]) -> String {
    let mut o = String::new();
    for st in services {
        for l in save_lines(&st.service) {
            o.push_str(&l);
            o.push('\n');
        }
    }
    o
}

/// `rvsadm link show`: each port with its stats, the dataplane counters, then the drops that
/// are not zero.
pub fn format_link(ports: &[PortReport], counters: &[(String, u64)]) -> String {
    let mut o = String::new();
    for p in ports {
        let _ = writeln!(
            o,
            "{}: {}  driver {}  mac {}  link {}",
            p.port_id,
            p.name,
            p.driver,
            p.mac,
            if p.link_up { "up" } else { "down" }
        );
        write_pairs(&mut o, p.stats.iter());
    }
    type Pairs<'a> = Vec<&'a (String, u64)>;
    let (drops, plain): (Pairs, Pairs) = counters
        .iter()
        .partition(|(n, _)| n.starts_with(DROP_PREFIX));
    o.push_str("dataplane:\n");
    write_pairs(&mut o, plain.into_iter());
    let nonzero: Vec<(String, u64)> = drops
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(n, v)| (n[DROP_PREFIX.len()..].to_string(), *v))
        .collect();
    if nonzero.is_empty() {
        o.push_str("drops: none\n");
    } else {
        let total: u64 = nonzero.iter().map(|(_, v)| *v).fold(0, u64::saturating_add);
        let _ = writeln!(o, "drops: {total}");
        write_pairs(&mut o, nonzero.iter());
    }
    o
}

fn write_pairs<'a>(o: &mut String, pairs: impl Iterator<Item = &'a (String, u64)>) {
    let pairs: Vec<&(String, u64)> = pairs.collect();
    let w = pairs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (n, v) in pairs {
        let _ = writeln!(o, "    {n:<w$} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::model::{FwdMode, Persistence, Proto, RealServer, SchedKind, ServiceKey};

    fn status() -> Vec<ServiceStatus> {
        let real = |a: &str, w| RealServer {
            addr: a.parse().unwrap(),
            fwd: FwdMode::Dr,
            weight: w,
            u_threshold: 0,
            l_threshold: 0,
        };
        vec![
            ServiceStatus {
                service: Service {
                    key: ServiceKey {
                        proto: Proto::Tcp,
                        vip: "203.0.113.100:80".parse().unwrap(),
                    },
                    sched: SchedKind::Rr,
                    persistence: None,
                    laddrs: Vec::new(),
                    client_addr: Default::default(),
                    reals: vec![real("203.0.113.11:80", 1), real("203.0.113.12:80", 20)],
                },
                conns: vec![(0, 0), (12345, 7)],
            },
            ServiceStatus {
                service: Service {
                    key: ServiceKey {
                        proto: Proto::Udp,
                        vip: "203.0.113.100:53".parse().unwrap(),
                    },
                    sched: SchedKind::Wrr,
                    persistence: Some(Persistence {
                        timeout_s: 50,
                        netmask: Ipv4Addr::new(255, 255, 255, 0),
                    }),
                    laddrs: Vec::new(),
                    client_addr: Default::default(),
                    reals: vec![],
                },
                conns: vec![],
            },
        ]
    }

    #[test]
    fn list_matches_ipvsadm_layout() {
        let want = format!(
            "rvs {} (ipvsadm-compatible listing)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  203.0.113.100:80 rr\n\
             \x20 -> 203.0.113.11:80              Route   1      0          0         \n\
             \x20 -> 203.0.113.12:80              Route   20     12345      7         \n\
             UDP  203.0.113.100:53 wrr persistent 50 mask 255.255.255.0\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(format_list(&status()), want);
    }

    #[test]
    fn save_output() {
        assert_eq!(
            format_save(&status()),
            "-A -t 203.0.113.100:80 -s rr\n\
             -a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1\n\
             -a -t 203.0.113.100:80 -r 203.0.113.12:80 -g -w 20\n\
             -A -u 203.0.113.100:53 -s wrr -p 50 -M 255.255.255.0\n"
        );
    }

    fn fullnat_status() -> Vec<ServiceStatus> {
        let mut st = status();
        let s = &mut st[0].service;
        s.reals[1].fwd = FwdMode::FullNat;
        s.reals[1].addr = "198.51.100.12:8080".parse().unwrap();
        s.reals.push(RealServer { fwd: FwdMode::Nat, ..s.reals[0] });
        s.reals[2].addr = "198.51.100.13:8081".parse().unwrap();
        s.reals[0].fwd = FwdMode::Tun;
        s.laddrs = vec!["203.0.113.3".parse().unwrap(), "203.0.113.4".parse().unwrap()];
        s.persistence = Some(Persistence { timeout_s: 300, netmask: Ipv4Addr::BROADCAST });
        st[0].conns.push((1, 2));
        st
    }

    #[test]
    fn list_shows_modes_persistence_and_laddrs() {
        let out = format_list(&fullnat_status());
        let body: Vec<&str> = out.lines().skip(3).collect();
        assert_eq!(
            body,
            [
                "TCP  203.0.113.100:80 rr persistent 300 client-addr toa",
                "  -> 203.0.113.11:80              Tunnel  1      0          0         ",
                "  -> 198.51.100.12:8080           FullNat 20     12345      7         ",
                "  -> 198.51.100.13:8081           Masq    1      1          2         ",
                "  -> laddr 203.0.113.3",
                "  -> laddr 203.0.113.4",
                "UDP  203.0.113.100:53 wrr persistent 50 mask 255.255.255.0",
            ]
        );
        // A non-default mode shows even before any FULLNAT real server.
        let mut st = status();
        st[1].service.client_addr = ClientAddrMode::ProxyV2;
        assert!(format_list(&st).contains("UDP  203.0.113.100:53 wrr persistent 50 mask 255.255.255.0 client-addr proxy-v2\n"));
    }

    #[test]
    fn save_has_everything() {
        let mut st = fullnat_status();
        st[0].service.client_addr = ClientAddrMode::None;
        st[0].service.reals[1].u_threshold = 100;
        st[0].service.reals[1].l_threshold = 50;
        assert_eq!(
            format_save(&st),
            "-A -t 203.0.113.100:80 -s rr -p 300 --client-addr none\n\
             --add-laddr -t 203.0.113.100:80 -z 203.0.113.3\n\
             --add-laddr -t 203.0.113.100:80 -z 203.0.113.4\n\
             -a -t 203.0.113.100:80 -r 203.0.113.11:80 -i -w 1\n\
             -a -t 203.0.113.100:80 -r 198.51.100.12:8080 -b -w 20 -x 100 -y 50\n\
             -a -t 203.0.113.100:80 -r 198.51.100.13:8081 -m -w 1\n\
             -A -u 203.0.113.100:53 -s wrr -p 50 -M 255.255.255.0\n"
        );
    }

    #[test]
    fn laddrs_and_timeouts() {
        let key = |p, v: &str| ServiceKey { proto: p, vip: v.parse().unwrap() };
        let out = format_laddrs(&[
            ServiceLaddrs {
                key: key(Proto::Tcp, "203.0.113.100:80"),
                laddrs: vec!["203.0.113.3".parse().unwrap(), "203.0.113.4".parse().unwrap()],
            },
            ServiceLaddrs { key: key(Proto::Udp, "203.0.113.100:53"), laddrs: vec![] },
        ]);
        assert_eq!(
            out,
            "Prot VIP:VPORT              TOTAL LADDR\n\
             TCP  203.0.113.100:80       2     203.0.113.3\n\
             \x20                                 203.0.113.4\n\
             UDP  203.0.113.100:53       0\n"
        );
        assert_eq!(format_timeouts(900, 120, 300), "Timeout (tcp tcpfin udp): 900 120 300\n");
    }

    #[test]
    fn link_shows_only_nonzero_drops() {
        let ports = vec![PortReport {
            name: "eth0".into(),
            port_id: 0,
            driver: "net_af_packet".into(),
            mac: "02:00:00:00:00:01".into(),
            link_up: true,
            stats: vec![("rx_packets".into(), 10), ("tx_packets".into(), 5)],
        }];
        let counters = vec![
            ("rx_pkts".to_string(), 10),
            ("drop_no_service".into(), 3),
            ("drop_ttl_exceeded".into(), 0),
        ];
        let out = format_link(&ports, &counters);
        assert_eq!(
            out,
            "0: eth0  driver net_af_packet  mac 02:00:00:00:00:01  link up\n    rx_packets 10\n    tx_packets 5\n\
             dataplane:\n    rx_pkts 10\ndrops: 3\n    no_service 3\n"
        );
        let out = format_link(&[], &[("drop_no_service".into(), 0)]);
        assert!(out.ends_with("drops: none\n"), "{out}");
    }
}
