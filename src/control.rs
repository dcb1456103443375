//! The control handler: applies rvsadm requests to the running service table and publishes a new
//! snapshot to the workers. A request is applied to a copy first; only when the copy validates
//! and compiles into a snapshot does it replace the running state, so a refused command leaves
//! the running configuration exactly as it was.

use crate::workers::Shared;
use parking_lot::Mutex;
use rvs_config::services::ServiceTable;
use rvs_ctrl::proto::{PortReport, Request, Response, ServiceLaddrs, ServiceStatus, MAX_TIMEOUT_S};
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::Snapshot;
use std::sync::Arc;

/// Control-plane state: what the snapshot is built from.
pub struct Control {
    shared: Arc<Shared>,
    state: Mutex<State>,
    ports: Vec<PortInfo>,
    /// PMD name per port, same order as `ports`.
    drivers: Vec<String>,
    routes: Vec<StaticRoute>,
}

struct State {
    table: ServiceTable,
    tunables: Tunables,
    generation: u64,
}

impl Control {
    /// Build the first snapshot from the config's ports, routes and services.
    pub fn new(
        ports: Vec<PortInfo>,
        drivers: Vec<String>,
        routes: Vec<StaticRoute>,
        table: ServiceTable,
        tunables: Tunables,
        n_workers: usize,
    ) -> Result<Control, String> {
        let services: Vec<_> = table.list().into_iter().cloned().collect();
        let snap = Snapshot::build(1, ports.clone(), &routes, &services, tunables)?;
        let shared = Arc::new(Shared {
            snapshot: arc_swap::ArcSwap::from_pointee(snap),
            stop: std::sync::atomic::AtomicBool::new(false),
            stats: (0..n_workers).map(|_| Mutex::new(Default::default())).collect(),
        });
        Ok(Control { shared, state: Mutex::new(State { table, tunables, generation: 1 }), ports, drivers, routes })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Apply `f` to a copy of the service table; publish it if it validates and compiles.
    fn mutate(&self, f: impl FnOnce(&mut ServiceTable) -> Result<(), String>) -> Response {
        self.mutate_all(|table, _| f(table))
    }

    /// Apply `f` to copies of the service table and the tunables; publish both if they validate
    /// and compile into a snapshot, else leave the running state untouched.
    fn mutate_all(&self, f: impl FnOnce(&mut ServiceTable, &mut Tunables) -> Result<(), String>) -> Response {
        let mut st = self.state.lock();
        let mut table = st.table.clone();
        let mut tunables = st.tunables;
        if let Err(message) = f(&mut table, &mut tunables) {
            return Response::Error { message };
        }
        let services: Vec<_> = table.list().into_iter().cloned().collect();
        match Snapshot::build(st.generation + 1, self.ports.clone(), &self.routes, &services, tunables) {
            Ok(snap) => {
                st.generation += 1;
                st.table = table;
                st.tunables = tunables;
                self.shared.snapshot.store(Arc::new(snap));
                Response::Ok
            }
            Err(message) => Response::Error { message },
        }
    }

    /// Apply `f` to a copy of the tunables and publish them with the current table.
    fn tune(&self, f: impl FnOnce(&mut Tunables) -> Result<(), String>) -> Response {
        self.mutate_all(|_, t| f(t))
    }

    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::AddService { service } => self.mutate(|t| t.add_service(service).map_err(|e| e.to_string())),
            Request::EditService { service } => self.mutate(|t| t.edit_service(service).map_err(|e| e.to_string())),
            Request::DelService { key } => self.mutate(|t| t.del_service(&key).map(drop).map_err(|e| e.to_string())),
            Request::AddReal { key, real } => self.mutate(|t| t.add_real(&key, real).map_err(|e| e.to_string())),
            Request::EditReal { key, real } => self.mutate(|t| t.edit_real(&key, real).map_err(|e| e.to_string())),
            Request::DelReal { key, addr } => self.mutate(|t| t.del_real(&key, addr).map(drop).map_err(|e| e.to_string())),
            Request::Clear => self.mutate(|t| {
                t.clear();
                Ok(())
            }),
            Request::List { key } => self.list(key),
            Request::LinkShow => self.link_show(),
            Request::Version => Response::Version { version: crate::version().to_string() },
            Request::AddLaddr { key, addr } => self.mutate(|t| t.add_laddr(&key, addr).map_err(|e| e.to_string())),
            Request::DelLaddr { key, addr } => self.mutate(|t| t.del_laddr(&key, addr).map_err(|e| e.to_string())),
            Request::GetLaddr { key } => self.laddrs(key),
            Request::SetTimeouts { tcp, tcpfin, udp } => self.tune(|t| set_timeouts(t, tcp, tcpfin, udp)),
            Request::GetTimeouts => {
                let t = self.state.lock().tunables.timeouts;
                Response::Timeouts {
                    tcp: ns_to_s(t.tcp_established_ns),
                    tcpfin: ns_to_s(t.tcp_fin_wait_ns),
                    udp: ns_to_s(t.udp_ns),
                }
            }
            Request::SetExpireNodestConn { enabled } => self.tune(|t| {
                t.expire_nodest_conn = enabled;
                Ok(())
            }),
            Request::GetExpireNodestConn => {
                Response::ExpireNodestConn { enabled: self.state.lock().tunables.expire_nodest_conn }
            }
        }
    }

    /// Local addresses of one service (error if it does not exist) or of every service that has any.
    fn laddrs(&self, key: Option<rvs_config::model::ServiceKey>) -> Response {
        let st = self.state.lock();
        let services = match key {
            Some(k) => match st.table.get(&k) {
                Some(s) => vec![ServiceLaddrs { key: k, laddrs: s.laddrs.clone() }],
                None => return Response::Error { message: format!("service {k} does not exist") },
            },
            None => st
                .table
                .list()
                .into_iter()
                .filter(|s| !s.laddrs.is_empty())
                .map(|s| ServiceLaddrs { key: s.key, laddrs: s.laddrs.clone() })
                .collect(),
        };
        Response::Laddrs { services }
    }

    fn list(&self, key: Option<rvs_config::model::ServiceKey>) -> Response {
        let conns = self.shared.conns();
        let st = self.state.lock();
        let mut services = Vec::new();
        for s in st.table.list() {
            if key.is_some_and(|k| k != s.key) {
                continue;
            }
            let c = s.reals.iter().map(|r| conns.get(&(s.key, r.addr)).copied().unwrap_or((0, 0))).collect();
            services.push(ServiceStatus { service: s.clone(), conns: c });
        }
        if let Some(k) = key {
            if services.is_empty() {
                return Response::Error { message: format!("no such service: {k}") };
            }
        }
        Response::Services { services }
    }

    fn link_show(&self) -> Response {
        let mut ports = Vec::new();
        for (p, driver) in self.ports.iter().zip(&self.drivers) {
            let mut stats = Vec::new();
            match dpdk_sys::port_stats(p.id) {
                Ok(s) => {
                    stats.extend([
                        ("ipackets".to_string(), s.ipackets),
                        ("opackets".to_string(), s.opackets),
                        ("ibytes".to_string(), s.ibytes),
                        ("obytes".to_string(), s.obytes),
                        ("imissed".to_string(), s.imissed),
                        ("ierrors".to_string(), s.ierrors),
                        ("oerrors".to_string(), s.oerrors),
                        ("rx_nombuf".to_string(), s.rx_nombuf),
                    ]);
                    for (q, v) in s.q_ipackets.iter().enumerate() {
                        stats.push((format!("q{q}_ipackets"), *v));
                    }
                    for (q, v) in s.q_opackets.iter().enumerate() {
                        stats.push((format!("q{q}_opackets"), *v));
                    }
                }
                Err(e) => tracing::warn!(port = %p.name, "port stats: {e}"),
            }
            let link = dpdk_sys::port_link(p.id);
            ports.push(PortReport {
                name: p.name.clone(),
                port_id: p.id,
                driver: driver.clone(),
                mac: fmt_mac(&p.mac),
                link_up: link.up,
                stats,
            });
        }
        let c = self.shared.counters();
        let counters = c.pairs();
        Response::Link { ports, counters }
    }
}

const NS_PER_S: u64 = 1_000_000_000;

fn ns_to_s(ns: u64) -> u32 {
    u32::try_from(ns / NS_PER_S).unwrap_or(u32::MAX)
}

/// ipvsadm's `--set TCP TCPFIN UDP`: seconds, 0 leaves that timeout unchanged. Only the
/// established, FIN_WAIT and UDP timeouts change; the other states keep theirs.
fn set_timeouts(t: &mut Tunables, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), String> {
    for (name, v) in [("tcp", tcp), ("tcpfin", tcpfin), ("udp", udp)] {
        if v > MAX_TIMEOUT_S {
            return Err(format!("{name} timeout {v} s is over the maximum {MAX_TIMEOUT_S} s"));
        }
    }
    let ns = |s: u32| u64::from(s) * NS_PER_S;
    if tcp != 0 {
        t.timeouts.tcp_established_ns = ns(tcp);
    }
    if tcpfin != 0 {
        t.timeouts.tcp_fin_wait_ns = ns(tcpfin);
    }
    if udp != 0 {
        t.timeouts.udp_ns = ns(udp);
    }
    Ok(())
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_timeouts_zero_keeps_and_max_is_checked() {
        let mut t = Tunables::default();
        let before = t.timeouts;
        set_timeouts(&mut t, 0, 0, 0).unwrap();
        assert_eq!(t.timeouts, before);
        set_timeouts(&mut t, 3600, 0, 60).unwrap();
        assert_eq!(t.timeouts.tcp_established_ns, 3600 * NS_PER_S);
        assert_eq!(t.timeouts.tcp_fin_wait_ns, before.tcp_fin_wait_ns);
        assert_eq!(t.timeouts.udp_ns, 60 * NS_PER_S);
        assert_eq!(t.timeouts.tcp_syn_recv_ns, before.tcp_syn_recv_ns, "other states untouched");
        let cur = t;
        let e = set_timeouts(&mut t, 0, MAX_TIMEOUT_S + 1, 0).unwrap_err();
        assert!(e.contains("tcpfin timeout 31536001 s is over the maximum"), "{e}");
        assert_eq!(t, cur, "refused --set changes nothing");
        assert_eq!(ns_to_s(120 * NS_PER_S), 120);
    }
}
