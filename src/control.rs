//! The control handler: applies rvsadm requests to the running service table and publishes a new
//! snapshot to the workers. A request is applied to a copy first; only when the copy validates
//! and compiles into a snapshot does it replace the running state, so a refused command leaves
//! the running configuration exactly as it was.

use crate::workers::Shared;
use parking_lot::Mutex;
use rvs_config::services::ServiceTable;
use rvs_ctrl::proto::{PortReport, Request, Response, ServiceStatus};
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::{DropReason, Snapshot};
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
        let mut st = self.state.lock();
        let mut table = st.table.clone();
        if let Err(message) = f(&mut table) {
            return Response::Error { message };
        }
        let services: Vec<_> = table.list().into_iter().cloned().collect();
        match Snapshot::build(st.generation + 1, self.ports.clone(), &self.routes, &services, st.tunables) {
            Ok(snap) => {
                st.generation += 1;
                st.table = table;
                self.shared.snapshot.store(Arc::new(snap));
                Response::Ok
            }
            Err(message) => Response::Error { message },
        }
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
        }
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
        let mut counters = vec![
            ("rx_pkts".to_string(), c.rx_pkts),
            ("rx_bytes".to_string(), c.rx_bytes),
            ("tx_pkts".to_string(), c.tx_pkts),
            ("tx_bytes".to_string(), c.tx_bytes),
            ("fwd_pkts".to_string(), c.fwd_pkts),
            ("arp_replies".to_string(), c.arp_replies),
            ("arp_requests".to_string(), c.arp_requests),
            ("icmp_echo_replies".to_string(), c.icmp_echo_replies),
            ("sessions_created".to_string(), c.sessions_created),
            ("sessions_expired".to_string(), c.sessions_expired),
            ("sessions_active".to_string(), c.sessions_active),
        ];
        for r in DropReason::ALL {
            counters.push((format!("drop_{}", r.name()), c.drops_of(*r)));
        }
        Response::Link { ports, counters }
    }
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}
