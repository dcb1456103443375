//! Text output of rvsadm: `-L -n`, `-L --stats`, `-L --rate` and `-L -c` in ipvsadm's layouts,
//! `-S`, `-G` (local addresses), `-L --timeout`, and the dpip-like `link`, `addr`, `route` and
//! `neigh show`.

use crate::ipvsadm::save_lines;
use crate::proto::{
    ConnEntry, NeighEntry, PortAddrs, PortReport, RateRow, RouteEntry, RsStats, ServiceLaddrs, ServiceRates,
    ServiceStats, ServiceStatus,
};
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
    let _ = writeln!(o, "rvs {} (ipvsadm-compatible listing)", env!("CARGO_PKG_VERSION"));
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

/// ipvsadm's `print_largenum`: 9 columns, K/M/G/T beyond 8 digits unless `exact`.
fn largenum(o: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let w = if i.to_string().len() <= 8 { 9 } else { i.to_string().len() + 1 };
        write!(o, "{i:>w$}")
    } else if i < 100_000_000 {
        write!(o, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(o, "{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        write!(o, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(o, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(o, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// ipvsadm's service name column: `"TCP  VIP:PORT"`, cut at 33 characters.
fn svc_name(key: &rvs_config::model::ServiceKey) -> String {
    let mut n = format!("{}  {}", key.proto.name(), key.vip);
    n.truncate(33);
    n
}

/// ipvsadm's destination column, cut at 28 characters.
fn dest_name(a: &std::net::SocketAddr) -> String {
    let mut n = a.to_string();
    n.truncate(28);
    n
}

fn version_line(o: &mut String) {
    let _ = writeln!(o, "rvs {} (ipvsadm-compatible listing)", env!("CARGO_PKG_VERSION"));
}

/// `ipvsadm -L -n --stats`: ipvsadm's `print_title` and `print_service_entry` layouts; a
/// service's figures are the sum of its real servers'.
pub fn format_stats(services: &[ServiceStats], exact: bool) -> String {
    let mut o = String::new();
    version_line(&mut o);
    let _ = writeln!(
        o,
        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
        "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
    );
    let row = |o: &mut String, r: &RsStats| {
        for v in [r.conns, r.inpkts, r.outpkts, r.inbytes, r.outbytes] {
            largenum(o, v, exact);
        }
        o.push('\n');
    };
    for s in services {
        let _ = write!(o, "{:<33}", svc_name(&s.key));
        row(&mut o, &s.total);
        for (a, r) in &s.reals {
            let _ = write!(o, "  -> {:<28}", dest_name(a));
            row(&mut o, r);
        }
    }
    o
}

/// `ipvsadm -L -n --rate`: ipvsadm's layout (real-server CPS/InPPS/OutPPS as `%8u`), preceded
/// by the interval the rates were measured over.
pub fn format_rates(services: &[ServiceRates], interval_ms: u64, exact: bool) -> String {
    let mut o = String::new();
    version_line(&mut o);
    let _ = writeln!(o, "Rates per second over the last {}.{:03} s", interval_ms / 1000, interval_ms % 1000);
    let _ = writeln!(
        o,
        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
        "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
    );
    for s in services {
        let t: &RateRow = &s.total;
        let _ = write!(o, "{:<33}", svc_name(&s.key));
        for v in [t.cps, t.inpps, t.outpps, t.inbps, t.outbps] {
            largenum(&mut o, v, exact);
        }
        o.push('\n');
        for (a, r) in &s.reals {
            let _ = write!(o, "  -> {:<28} {:>8} {:>8} {:>8}", dest_name(a), r.cps, r.inpps, r.outpps);
            largenum(&mut o, r.inbps, exact);
            largenum(&mut o, r.outbps, exact);
            o.push('\n');
        }
    }
    o
}

/// `ipvsadm -L -n -c`: `IPVS connection entries` in ipvsadm's layout; when a FULLNAT session is
/// listed, DPVS's `local` column (LIP:lport) comes before `destination`. Ends with a note when
/// entries were left out (`total` matched, `conns` shown) or workers did not answer.
pub fn format_conns(conns: &[ConnEntry], total: u64, missing_workers: &[u32]) -> String {
    let mut o = String::new();
    let local = conns.iter().any(|c| c.lip.is_some());
    o.push_str("IPVS connection entries\n");
    if local {
        let _ =
            writeln!(o, "pro expire {:<11} {:<18} {:<18} {:<18} destination", "state", "source", "virtual", "local");
    } else {
        let _ = writeln!(o, "pro expire {:<11} {:<18} {:<18} destination", "state", "source", "virtual");
    }
    for c in conns {
        let _ = write!(
            o,
            "{:<3} {:02}:{:02}  {:<11} {:<18} {:<18} ",
            c.proto,
            c.expire_s / 60,
            c.expire_s % 60,
            c.state,
            c.client.to_string(),
            c.vip.to_string()
        );
        if local {
            let l = c.lip.map_or_else(|| "-".to_string(), |l| l.to_string());
            let _ = write!(o, "{l:<18} ");
        }
        let _ = writeln!(o, "{}", c.rip);
    }
    let shown = conns.len() as u64;
    if total > shown {
        let _ = writeln!(o, "# {shown} of {total} entries shown, {} left out (raise --max to see more)", total - shown);
    }
    if !missing_workers.is_empty() {
        let _ =
            writeln!(o, "# worker(s) {} did not answer in time: their sessions are missing", join_ids(missing_workers));
    }
    o
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `rvsadm addr show`, in the manner of `ip addr`.
pub fn format_addrs(ports: &[PortAddrs]) -> String {
    let mut o = String::new();
    for p in ports {
        let _ = writeln!(o, "{}: {}  mac {}  mtu {}", p.port_id, p.name, p.mac, p.mtu);
        for (a, l) in &p.addrs {
            let _ = writeln!(o, "    inet {a}/{l}");
        }
    }
    o
}

/// `rvsadm route show`, in the manner of `ip route`: connected routes are `proto connected
/// scope link src ADDR` (the kernel's `proto kernel`), the others `proto static`.
pub fn format_routes(routes: &[RouteEntry]) -> String {
    let mut o = String::new();
    for r in routes {
        if r.len == 0 && r.prefix.is_unspecified() {
            o.push_str("default");
        } else {
            let _ = write!(o, "{}/{}", r.prefix, r.len);
        }
        if let Some(v) = r.via {
            let _ = write!(o, " via {v}");
        }
        let _ = write!(o, " dev {} proto {}", r.dev, r.kind);
        if let Some(src) = r.src {
            let _ = write!(o, " scope link src {src}");
        }
        o.push('\n');
    }
    o
}

/// `rvsadm neigh show`, in the manner of `ip neigh`, with the workers holding each entry.
pub fn format_neighs(neighs: &[NeighEntry], missing_workers: &[u32]) -> String {
    let mut o = String::new();
    for n in neighs {
        let _ = write!(o, "{} dev {}", n.ip, n.dev);
        if let Some(m) = &n.mac {
            let _ = write!(o, " lladdr {m}");
        }
        let _ = write!(o, " {}", n.state.to_ascii_uppercase());
        if n.pending > 0 {
            let _ = write!(o, " pending {}", n.pending);
        }
        let _ = writeln!(o, " workers {}", join_ids(&n.workers));
    }
    if !missing_workers.is_empty() {
        let _ = writeln!(o, "# worker(s) {} did not answer in time", join_ids(missing_workers));
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
    let (drops, plain): (Pairs, Pairs) = counters.iter().partition(|(n, _)| n.starts_with(DROP_PREFIX));
    o.push_str("dataplane:\n");
    write_pairs(&mut o, plain.into_iter());
    let nonzero: Vec<(String, u64)> =
        drops.into_iter().filter(|(_, v)| *v > 0).map(|(n, v)| (n[DROP_PREFIX.len()..].to_string(), *v)).collect();
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
                    key: ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() },
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
                    key: ServiceKey { proto: Proto::Udp, vip: "203.0.113.100:53".parse().unwrap() },
                    sched: SchedKind::Wrr,
                    persistence: Some(Persistence { timeout_s: 50, netmask: Ipv4Addr::new(255, 255, 255, 0) }),
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
        assert!(format_list(&st)
            .contains("UDP  203.0.113.100:53 wrr persistent 50 mask 255.255.255.0 client-addr proxy-v2\n"));
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

    fn svc_key(p: Proto, v: &str) -> ServiceKey {
        ServiceKey { proto: p, vip: v.parse().unwrap() }
    }

    #[test]
    fn stats_match_ipvsadm_layout() {
        let r = |c, ip, op, ib, ob| RsStats { conns: c, inpkts: ip, outpkts: op, inbytes: ib, outbytes: ob };
        let out = format_stats(
            &[ServiceStats {
                key: svc_key(Proto::Tcp, "203.0.113.100:80"),
                total: r(353, 2387, 0, 425447, 123_456_789_012),
                reals: vec![
                    ("203.0.113.11:80".parse().unwrap(), r(169, 1211, 0, 199557, 0)),
                    ("203.0.113.12:80".parse().unwrap(), r(184, 1176, 0, 225890, 123_456_789_012)),
                ],
            }],
            false,
        );
        let lines: Vec<&str> = out.lines().skip(1).collect();
        // The first four lines are those of a real `ipvsadm -ln --stats`.
        assert_eq!(
            lines,
            [
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
                "  -> RemoteAddress:Port",
                "TCP  203.0.113.100:80                  353     2387        0   425447     123G",
                "  -> 203.0.113.11:80                   169     1211        0   199557        0",
                "  -> 203.0.113.12:80                   184     1176        0   225890     123G",
            ]
        );
        let exact = format_stats(
            &[ServiceStats {
                key: svc_key(Proto::Udp, "203.0.113.100:53"),
                total: r(0, 0, 0, 0, 123_456_789_012),
                reals: vec![],
            }],
            true,
        );
        assert!(
            exact.ends_with("UDP  203.0.113.100:53                    0        0        0        0 123456789012\n"),
            "{exact}"
        );
        let mut s = String::new();
        for v in [99_999_999, 100_000_000, 999_999_999_999] {
            largenum(&mut s, v, false);
        }
        assert_eq!(s, " 99999999  100000K     999G");
    }

    #[test]
    fn rates_match_ipvsadm_layout() {
        let out = format_rates(
            &[ServiceRates {
                key: svc_key(Proto::Tcp, "203.0.113.100:80"),
                total: RateRow { cps: 12, inpps: 340, outpps: 0, inbps: 51_000, outbps: 0 },
                reals: vec![(
                    "203.0.113.11:80".parse().unwrap(),
                    RateRow { cps: 12, inpps: 340, outpps: 0, inbps: 51_000, outbps: 0 },
                )],
            }],
            1500,
            false,
        );
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "Rates per second over the last 1.500 s",
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
                "  -> RemoteAddress:Port",
                "TCP  203.0.113.100:80                   12      340        0    51000        0",
                "  -> 203.0.113.11:80                    12      340        0    51000        0",
            ]
        );
    }

    fn conn(lip: Option<&str>) -> ConnEntry {
        ConnEntry {
            proto: "TCP".into(),
            expire_s: 899,
            state: "ESTABLISHED".into(),
            client: "198.51.100.10:40000".parse().unwrap(),
            vip: "203.0.113.100:80".parse().unwrap(),
            lip: lip.map(|l| l.parse().unwrap()),
            rip: "203.0.113.11:80".parse().unwrap(),
            fwd: if lip.is_some() { "FullNat" } else { "Route" }.into(),
            worker: 0,
        }
    }

    #[test]
    fn connections_match_ipvsadm_layout() {
        let out = format_conns(&[conn(None)], 1, &[]);
        assert_eq!(
            out,
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination\n\
             TCP 14:59  ESTABLISHED 198.51.100.10:40000 203.0.113.100:80   203.0.113.11:80\n"
        );
        let out = format_conns(&[conn(Some("203.0.113.3:5000")), conn(None)], 7, &[1]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "pro expire state       source             virtual            local              destination",
                "TCP 14:59  ESTABLISHED 198.51.100.10:40000 203.0.113.100:80   203.0.113.3:5000   203.0.113.11:80",
                "TCP 14:59  ESTABLISHED 198.51.100.10:40000 203.0.113.100:80   -                  203.0.113.11:80",
                "# 2 of 7 entries shown, 5 left out (raise --max to see more)",
                "# worker(s) 1 did not answer in time: their sessions are missing",
            ]
        );
    }

    #[test]
    fn addr_route_neigh_layouts() {
        let out = format_addrs(&[PortAddrs {
            name: "lan".into(),
            port_id: 0,
            mac: "02:00:00:00:00:01".into(),
            mtu: 1500,
            addrs: vec![("203.0.113.2".parse().unwrap(), 24), ("198.51.100.2".parse().unwrap(), 24)],
        }]);
        assert_eq!(out, "0: lan  mac 02:00:00:00:00:01  mtu 1500\n    inet 203.0.113.2/24\n    inet 198.51.100.2/24\n");
        let out = format_routes(&[
            RouteEntry {
                prefix: "203.0.113.0".parse().unwrap(),
                len: 24,
                via: None,
                dev: "lan".into(),
                kind: "connected".into(),
                src: Some("203.0.113.2".parse().unwrap()),
            },
            RouteEntry {
                prefix: "0.0.0.0".parse().unwrap(),
                len: 0,
                via: Some("203.0.113.1".parse().unwrap()),
                dev: "lan".into(),
                kind: "static".into(),
                src: None,
            },
            RouteEntry {
                prefix: "192.0.2.0".parse().unwrap(),
                len: 25,
                via: None,
                dev: "lan".into(),
                kind: "static".into(),
                src: None,
            },
        ]);
        assert_eq!(
            out,
            "203.0.113.0/24 dev lan proto connected scope link src 203.0.113.2\n\
             default via 203.0.113.1 dev lan proto static\n\
             192.0.2.0/25 dev lan proto static\n"
        );
        let out = format_neighs(
            &[
                NeighEntry {
                    ip: "203.0.113.11".parse().unwrap(),
                    mac: Some("02:00:00:00:00:0b".into()),
                    dev: "lan".into(),
                    state: "reachable".into(),
                    workers: vec![0, 1],
                    pending: 0,
                },
                NeighEntry {
                    ip: "203.0.113.12".parse().unwrap(),
                    mac: None,
                    dev: "lan".into(),
                    state: "incomplete".into(),
                    workers: vec![1],
                    pending: 2,
                },
            ],
            &[],
        );
        assert_eq!(
            out,
            "203.0.113.11 dev lan lladdr 02:00:00:00:00:0b REACHABLE workers 0,1\n\
             203.0.113.12 dev lan INCOMPLETE pending 2 workers 1\n"
        );
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
        let counters =
            vec![("rx_pkts".to_string(), 10), ("drop_no_service".into(), 3), ("drop_ttl_exceeded".into(), 0)];
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
