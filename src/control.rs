//! The control handler: applies rvsadm requests to the running service table and publishes a new
//! snapshot to the workers. A request is applied to a copy first; only when the copy validates
//! and compiles into a snapshot does it replace the running state, so a refused command leaves
//! the running configuration exactly as it was.

use crate::workers::{RsStats, Shared, WorkerMsg};
use parking_lot::Mutex;
use rvs_config::model::{prefix_mask, same_subnet, ServiceKey};
use rvs_config::services::ServiceTable;
use rvs_config::ModelError;
use rvs_ctrl::proto::{
    ConnEntry, NeighEntry, PortAddrs, PortReport, RateRow, Request, Response, RouteEntry, ServiceLaddrs, ServiceRates,
    ServiceStats, ServiceStatus, MAX_TIMEOUT_S,
};
use rvs_dataplane::conn::SessionFilter;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::{Snapshot, SnapshotError};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a listing waits for the workers to publish fresh figures; a worker that has not
/// answered by then is shown with its last published ones (at most 100 ms old).
pub const FRESH_WAIT: Duration = Duration::from_millis(50);
/// How long session dumps and neighbour requests wait for the workers.
pub const WORKER_WAIT: Duration = Duration::from_secs(1);
/// Shortest interval `--rate` measures over.
pub const RATE_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A previous `--rate` sample older than this is not used: a fresh one is taken.
pub const RATE_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Per-(service, real server) traffic.
pub type StatsMap = HashMap<(ServiceKey, SocketAddr), RsStats>;

/// Why a control request was refused. The message is what rvsadm prints; it names the
/// address, prefix, port, route or service concerned (the variants carry them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A service-table edit the model refuses.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The changed state does not compile into a snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("no such service: {0}")]
    UnknownService(ServiceKey),
    /// `ports`: the names there are.
    #[error("no port named '{dev}' (ports: {})", .ports.join(", "))]
    NoSuchPort { dev: String, ports: Vec<String> },
    #[error("{addr}/{len}: prefix length over 32")]
    PrefixTooLong { addr: Ipv4Addr, len: u8 },
    #[error("{0} is not a unicast address")]
    NotUnicast(Ipv4Addr),
    #[error("{addr}/{len}: that is the network or broadcast address of the prefix")]
    NetworkOrBroadcast { addr: Ipv4Addr, len: u8 },
    #[error("{addr} is already an address of port {port}")]
    AddrExists { addr: Ipv4Addr, port: String },
    #[error("{addr} is the VIP of service {service}: an interface address would take its traffic")]
    AddrIsVip { addr: Ipv4Addr, service: ServiceKey },
    #[error("{addr} is a local address (laddr) of service {service}")]
    AddrIsLaddr { addr: Ipv4Addr, service: ServiceKey },
    /// `has`: the port's addresses.
    #[error("{addr}/{len} is not an address of port {dev} (it has: {})", fmt_cidrs(.has))]
    NoSuchAddr { addr: Ipv4Addr, len: u8, dev: String, has: Vec<(Ipv4Addr, u8)> },
    /// Deleting `addr/len` would leave the gateway of the static route `prefix/prefix_len` unreachable.
    #[error(
        "route {prefix}/{prefix_len} via {gw} needs {addr}/{len} (its gateway is reachable through it only): delete the route first"
    )]
    AddrNeededByRoute { prefix: Ipv4Addr, prefix_len: u8, gw: Ipv4Addr, addr: Ipv4Addr, len: u8 },
    #[error("{prefix}/{len}: host bits are set; the prefix is {net}/{len}")]
    HostBitsSet { prefix: Ipv4Addr, len: u8, net: Ipv4Addr },
    #[error("route {prefix}/{len}{} exists: delete it first", via_suffix(.via))]
    RouteExists { prefix: Ipv4Addr, len: u8, via: Option<Ipv4Addr> },
    /// `route add` of a prefix that is a port address's connected route.
    #[error("{prefix}/{len} is the connected route of port {port}")]
    ConnectedRoute { prefix: Ipv4Addr, len: u8, port: String },
    /// `route del` of a connected route.
    #[error("{prefix}/{len} is the connected route of port {port}: delete its address instead")]
    DelConnectedRoute { prefix: Ipv4Addr, len: u8, port: String },
    #[error("no static route {prefix}/{len}{}", via_suffix(.via))]
    NoSuchRoute { prefix: Ipv4Addr, len: u8, via: Option<Ipv4Addr> },
    #[error("gateway {0} is one of our own addresses")]
    GatewayIsOurs(Ipv4Addr),
    #[error("gateway {gw} is not on a connected subnet of port {dev}")]
    GatewayNotConnected { gw: Ipv4Addr, dev: String },
    /// `--set`: `name` is tcp, tcpfin or udp; `max` is [`MAX_TIMEOUT_S`].
    #[error("{name} timeout {value} s is over the maximum {max} s")]
    TimeoutTooLong { name: &'static str, value: u32, max: u32 },
}

/// The wire boundary: rvsadm gets the message.
impl From<ControlError> for Response {
    fn from(e: ControlError) -> Response {
        Response::Error { message: e.to_string() }
    }
}

/// `A/L, B/M` or `none`.
fn fmt_cidrs(addrs: &[(Ipv4Addr, u8)]) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>().join(", ")
}

/// ` via GW` or nothing.
fn via_suffix(via: &Option<Ipv4Addr>) -> String {
    via.map(|v| format!(" via {v}")).unwrap_or_default()
}

/// The reload hook `rvsadm --reload` runs (set by rvsd's reloader).
pub type ReloadHook = Box<dyn Fn() -> Response + Send + Sync>;

/// Control-plane state: what the snapshot is built from.
pub struct Control {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// PMD name per port id order of the start-up ports.
    drivers: Vec<String>,
    /// `-Z` baseline: figures shown by `--stats` are the workers' minus these.
    zero_base: Mutex<StatsMap>,
    /// The last `--rate` sample and when it was taken.
    rate_prev: Mutex<Option<(Instant, StatsMap)>>,
    reload_hook: Mutex<Option<Arc<dyn Fn() -> Response + Send + Sync>>>,
}

/// Everything a snapshot is built from; changed as a whole on a copy.
#[derive(Clone)]
struct Running {
    table: ServiceTable,
    tunables: Tunables,
    /// Ports with their current addresses (`addr add|del` change them).
    ports: Vec<PortInfo>,
    /// Static routes (`route add|del` change them).
    routes: Vec<StaticRoute>,
}

struct State {
    run: Running,
    generation: u64,
    /// The last two published snapshots (newest last). The next build shares unchanged services
    /// with the newest; and holding the one before means the workers' switch away from it is
    /// only a reference-count decrement: it is freed here, on the control thread, not in a
    /// worker's gap between bursts.
    published: [Arc<Snapshot>; 2],
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
    ) -> Result<Control, SnapshotError> {
        let services: Vec<_> = table.list().into_iter().cloned().collect();
        let snap = Snapshot::build(1, ports.clone(), &routes, &services, tunables)?;
        let shared = Arc::new(Shared::new(snap, n_workers));
        let first = shared.snapshot.load_full();
        Ok(Control {
            shared,
            state: Mutex::new(State {
                run: Running { table, tunables, ports, routes },
                generation: 1,
                published: [Arc::clone(&first), first],
            }),
            drivers,
            zero_base: Mutex::new(HashMap::new()),
            rate_prev: Mutex::new(None),
            reload_hook: Mutex::new(None),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Generation of the last published snapshot.
    pub fn snapshot_generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Replace the whole service table and the tunables in one snapshot publication (what a
    /// configuration reload does). Ports, their addresses and the routes stay as they run
    /// (including `addr`/`route` changes). Refused, with nothing changed, if the snapshot does
    /// not build.
    pub fn replace(&self, table: ServiceTable, tunables: Tunables) -> Result<(), ControlError> {
        self.try_change(|r| {
            r.table = table;
            r.tunables = tunables;
            Ok(())
        })
    }

    /// What `rvsadm --reload` (`Request::Reload`) runs.
    pub fn set_reload_hook(&self, hook: ReloadHook) {
        *self.reload_hook.lock() = Some(Arc::from(hook));
    }

    /// Apply `f` to a copy of the running state; publish it if it validates and compiles into a
    /// snapshot, else leave the running state untouched.
    fn try_change(&self, f: impl FnOnce(&mut Running) -> Result<(), ControlError>) -> Result<(), ControlError> {
        let mut st = self.state.lock();
        let mut next = st.run.clone();
        f(&mut next)?;
        let services: Vec<_> = next.table.list().into_iter().cloned().collect();
        let prev = Arc::clone(&st.published[1]);
        let snap = Snapshot::build_from(
            Some(&prev),
            st.generation + 1,
            next.ports.clone(),
            &next.routes,
            &services,
            next.tunables,
        )?;
        st.generation += 1;
        st.run = next;
        let snap = Arc::new(snap);
        self.shared.snapshot.store(Arc::clone(&snap));
        // The oldest one is dropped here (freed if no worker still runs on it).
        st.published = [prev, snap];
        Ok(())
    }

    /// [`Control::try_change`], answered for rvsadm.
    fn change(&self, f: impl FnOnce(&mut Running) -> Result<(), ControlError>) -> Response {
        self.try_change(f).map_or_else(Response::from, |()| Response::Ok)
    }

    /// Apply `f` to a copy of the service table; publish it if it validates and compiles.
    fn mutate(&self, f: impl FnOnce(&mut ServiceTable) -> Result<(), ModelError>) -> Response {
        self.change(|r| Ok(f(&mut r.table)?))
    }

    /// Apply `f` to a copy of the tunables and publish them with the current table.
    fn tune(&self, f: impl FnOnce(&mut Tunables) -> Result<(), ControlError>) -> Response {
        self.change(|r| f(&mut r.tunables))
    }

    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::AddService { service } => self.mutate(|t| t.add_service(service)),
            Request::EditService { service } => self.mutate(|t| t.edit_service(service)),
            Request::DelService { key } => self.mutate(|t| t.del_service(&key).map(drop)),
            Request::AddReal { key, real } => self.mutate(|t| t.add_real(&key, real)),
            Request::EditReal { key, real } => self.mutate(|t| t.edit_real(&key, real)),
            Request::DelReal { key, addr } => self.mutate(|t| t.del_real(&key, addr).map(drop)),
            Request::Clear => self.mutate(|t| {
                t.clear();
                Ok(())
            }),
            Request::List { key } => self.list(key),
            Request::LinkShow => self.link_show(),
            Request::Version => Response::Version { version: crate::version().to_string() },
            Request::AddLaddr { key, addr } => self.mutate(|t| t.add_laddr(&key, addr)),
            Request::DelLaddr { key, addr } => self.mutate(|t| t.del_laddr(&key, addr)),
            Request::GetLaddr { key } => self.laddrs(key),
            Request::SetTimeouts { tcp, tcpfin, udp } => self.tune(|t| set_timeouts(t, tcp, tcpfin, udp)),
            Request::GetTimeouts => {
                let (tcp, tcpfin, udp) = self.state.lock().run.tunables.timeouts.ipvsadm();
                Response::Timeouts { tcp, tcpfin, udp }
            }
            Request::SetExpireNodestConn { enabled } => self.tune(|t| {
                t.expire_nodest_conn = enabled;
                Ok(())
            }),
            Request::GetExpireNodestConn => {
                Response::ExpireNodestConn { enabled: self.state.lock().run.tunables.expire_nodest_conn }
            }
            Request::Stats { key } => self.stats(key),
            Request::Rate { key } => self.rate(key),
            Request::Zero { key } => self.zero(key),
            Request::ListConns { key, real, max } => self.conns(key, real, max),
            Request::AddrAdd { addr, len, dev } => self.change(|r| addr_add(r, addr, len, &dev)),
            Request::AddrDel { addr, len, dev } => self.change(|r| addr_del(r, addr, len, &dev)),
            Request::AddrShow { dev } => self.addr_show(dev),
            Request::RouteAdd { prefix, len, via, dev } => self.change(|r| route_add(r, prefix, len, via, &dev)),
            Request::RouteDel { prefix, len, via, dev } => {
                self.change(|r| route_del(r, prefix, len, via, dev.as_deref()))
            }
            Request::RouteShow => Response::Routes { routes: route_entries(&self.state.lock().run) },
            Request::NeighShow { dev } => self.neigh_show(dev),
            Request::NeighFlush { dev } => self.neigh_flush(dev),
            Request::Reload => {
                let hook = self.reload_hook.lock().clone();
                match hook {
                    Some(h) => h(),
                    None => Response::error("reload is not available"),
                }
            }
        }
    }

    /// Local addresses of one service (error if it does not exist) or of every service that has any.
    fn laddrs(&self, key: Option<ServiceKey>) -> Response {
        let st = self.state.lock();
        let services = match key {
            Some(k) => match st.run.table.get(&k) {
                Some(s) => vec![ServiceLaddrs { key: k, laddrs: s.laddrs.clone() }],
                None => return ControlError::Model(ModelError::NoSuchService(k)).into(),
            },
            None => st
                .run
                .table
                .list()
                .into_iter()
                .filter(|s| !s.laddrs.is_empty())
                .map(|s| ServiceLaddrs { key: s.key, laddrs: s.laddrs.clone() })
                .collect(),
        };
        Response::Laddrs { services }
    }

    fn list(&self, key: Option<ServiceKey>) -> Response {
        self.shared.refresh(FRESH_WAIT);
        let conns = self.shared.conns();
        let st = self.state.lock();
        let mut services = Vec::new();
        for s in st.run.table.list() {
            if key.is_some_and(|k| k != s.key) {
                continue;
            }
            let c = s.reals.iter().map(|r| conns.get(&(s.key, r.addr)).copied().unwrap_or((0, 0))).collect();
            services.push(ServiceStatus { service: s.clone(), conns: c });
        }
        if let Some(k) = key {
            if services.is_empty() {
                return ControlError::UnknownService(k).into();
            }
        }
        Response::Services { services }
    }

    /// `(service, [real servers])` of the table, one service or all (error if it does not exist).
    fn service_reals(&self, key: Option<ServiceKey>) -> Result<Vec<(ServiceKey, Vec<SocketAddr>)>, ControlError> {
        let st = self.state.lock();
        let v: Vec<_> = st
            .run
            .table
            .list()
            .into_iter()
            .filter(|s| key.is_none_or(|k| k == s.key))
            .map(|s| (s.key, s.reals.iter().map(|r| r.addr).collect()))
            .collect();
        match key {
            Some(k) if v.is_empty() => Err(ControlError::UnknownService(k)),
            _ => Ok(v),
        }
    }

    /// `-L --stats`: fresh figures minus the `-Z` baseline.
    fn stats(&self, key: Option<ServiceKey>) -> Response {
        let svcs = match self.service_reals(key) {
            Ok(v) => v,
            Err(e) => return e.into(),
        };
        self.shared.refresh(FRESH_WAIT);
        let cur = self.shared.service_stats();
        let base = self.zero_base.lock();
        Response::Stats { services: stats_rows(&svcs, &cur, &base) }
    }

    /// `-L --rate`: rates between the previous `--rate` sample (kept here with its time) and a
    /// fresh one. The interval is at least [`RATE_MIN_INTERVAL`] (the call waits out the rest);
    /// with no previous sample, or one older than [`RATE_MAX_INTERVAL`], a first sample is taken
    /// now and the call measures over [`RATE_MIN_INTERVAL`]. Callers are served one at a time.
    fn rate(&self, key: Option<ServiceKey>) -> Response {
        let svcs = match self.service_reals(key) {
            Ok(v) => v,
            Err(e) => return e.into(),
        };
        let mut prev = self.rate_prev.lock();
        let (t0, s0) = match prev.take() {
            Some((t, s)) if t.elapsed() <= RATE_MAX_INTERVAL => (t, s),
            _ => {
                self.shared.refresh(FRESH_WAIT);
                (Instant::now(), self.shared.service_stats())
            }
        };
        let waited = t0.elapsed();
        if waited < RATE_MIN_INTERVAL {
            std::thread::sleep(RATE_MIN_INTERVAL - waited);
        }
        self.shared.refresh(FRESH_WAIT);
        let s1 = self.shared.service_stats();
        let t1 = Instant::now();
        let dt = t1.duration_since(t0);
        let services = rate_rows(&svcs, &s0, &s1, dt);
        *prev = Some((t1, s1));
        Response::Rates { interval_ms: dt.as_millis() as u64, services }
    }

    /// `-Z`: the current figures become the baseline of one service's real servers, or of all.
    fn zero(&self, key: Option<ServiceKey>) -> Response {
        if let Err(e) = self.service_reals(key) {
            return e.into();
        }
        self.shared.refresh(FRESH_WAIT);
        let cur = self.shared.service_stats();
        zero_baseline(&mut self.zero_base.lock(), &cur, key);
        Response::Ok
    }

    /// `-L -c`: each worker's sessions (at most `max` from each), merged and cut at `max`.
    fn conns(&self, key: Option<ServiceKey>, real: Option<SocketAddr>, max: u32) -> Response {
        if let Some(k) = key {
            if self.state.lock().run.table.get(&k).is_none() {
                return ControlError::UnknownService(k).into();
            }
        }
        let filter = SessionFilter { service: key, real };
        let max = max.max(1) as usize;
        let answers = self.shared.ask(WORKER_WAIT, |reply| WorkerMsg::DumpSessions { filter, max, reply });
        let mut conns = Vec::new();
        let mut total = 0u64;
        let mut missing_workers = Vec::new();
        for (w, a) in answers.into_iter().enumerate() {
            let Some((views, n)) = a else {
                missing_workers.push(w as u32);
                continue;
            };
            total += n;
            for v in views {
                if conns.len() >= max {
                    break;
                }
                conns.push(ConnEntry {
                    proto: v.proto.name().to_string(),
                    expire_s: v.expires_in_s,
                    state: v.state.name().to_string(),
                    client: SocketAddr::V4(v.client),
                    vip: SocketAddr::V4(v.vip),
                    lip: v.lip.map(SocketAddr::V4),
                    rip: SocketAddr::V4(v.rip),
                    fwd: v.fwd.ipvsadm_name().to_string(),
                    worker: w as u32,
                });
            }
        }
        Response::Conns { conns, total, missing_workers }
    }

    fn addr_show(&self, dev: Option<String>) -> Response {
        let st = self.state.lock();
        if let Some(d) = &dev {
            if let Err(e) = port_named(&st.run.ports, d) {
                return e.into();
            }
        }
        let ports = st
            .run
            .ports
            .iter()
            .filter(|p| dev.as_ref().is_none_or(|d| *d == p.name))
            .map(|p| PortAddrs {
                name: p.name.clone(),
                port_id: p.id,
                mac: fmt_mac(&p.mac),
                mtu: p.mtu,
                addrs: p.addrs.clone(),
            })
            .collect();
        Response::Addrs { ports }
    }

    /// The port id of `dev` (None: all), or an error naming the ports there are.
    fn port_id(&self, dev: Option<&str>) -> Result<Option<u16>, ControlError> {
        match dev {
            None => Ok(None),
            Some(d) => port_named(&self.state.lock().run.ports, d).map(|p| Some(p.id)),
        }
    }

    fn port_names(&self) -> HashMap<u16, String> {
        self.state.lock().run.ports.iter().map(|p| (p.id, p.name.clone())).collect()
    }

    /// Every worker's neighbours, merged by (address, port).
    fn neigh_show(&self, dev: Option<String>) -> Response {
        let port = match self.port_id(dev.as_deref()) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        let names = self.port_names();
        let answers = self.shared.ask(WORKER_WAIT, |reply| WorkerMsg::NeighShow { reply });
        let mut merged: BTreeMap<(u32, u16), NeighEntry> = BTreeMap::new();
        let mut missing_workers = Vec::new();
        for (w, a) in answers.into_iter().enumerate() {
            let Some(entries) = a else {
                missing_workers.push(w as u32);
                continue;
            };
            for e in entries.into_iter().filter(|e| port.is_none_or(|p| p == e.port)) {
                let n = merged.entry((u32::from(e.ip), e.port)).or_insert_with(|| NeighEntry {
                    ip: e.ip,
                    mac: None,
                    dev: names.get(&e.port).cloned().unwrap_or_else(|| format!("port{}", e.port)),
                    state: "incomplete".into(),
                    workers: Vec::new(),
                    pending: 0,
                });
                if let Some(m) = e.mac {
                    n.mac.get_or_insert_with(|| fmt_mac(&m));
                    n.state = "reachable".into();
                }
                n.workers.push(w as u32);
                n.pending += e.pending as u64;
            }
        }
        Response::Neighs { neighs: merged.into_values().collect(), missing_workers }
    }

    fn neigh_flush(&self, dev: Option<String>) -> Response {
        let port = match self.port_id(dev.as_deref()) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        let answers = self.shared.ask(WORKER_WAIT, |reply| WorkerMsg::NeighFlush { port, reply });
        let mut removed = 0u64;
        let mut missing_workers = Vec::new();
        for (w, a) in answers.into_iter().enumerate() {
            match a {
                Some(n) => removed += n as u64,
                None => missing_workers.push(w as u32),
            }
        }
        Response::NeighFlushed { removed, missing_workers }
    }

    fn link_show(&self) -> Response {
        self.shared.refresh(FRESH_WAIT);
        let ports_now = self.state.lock().run.ports.clone();
        let mut ports = Vec::new();
        for (p, driver) in ports_now.iter().zip(&self.drivers) {
            let stats = match dpdk_sys::port_stats(p.id) {
                Ok(s) => s.pairs(),
                Err(e) => {
                    tracing::warn!(port = %p.name, "port stats: {e}");
                    Vec::new()
                }
            };
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

/// `--stats` rows: each real server's figures minus its baseline; a service's are the sum.
fn stats_rows(svcs: &[(ServiceKey, Vec<SocketAddr>)], cur: &StatsMap, base: &StatsMap) -> Vec<ServiceStats> {
    let zero = RsStats::default();
    svcs.iter()
        .map(|(key, reals)| {
            let mut total = RsStats::default();
            let reals = reals
                .iter()
                .map(|a| {
                    let k = (*key, *a);
                    let r = cur.get(&k).unwrap_or(&zero).since(base.get(&k).unwrap_or(&zero));
                    total.add(&r);
                    (*a, r)
                })
                .collect();
            ServiceStats { key: *key, total, reals }
        })
        .collect()
}

/// Per-second rates of the change from `s0` to `s1` over `dt` (rounded to nearest).
fn rate_of(d: &RsStats, dt: Duration) -> RateRow {
    let ms = dt.as_millis().max(1);
    let per_s = |v: u64| ((u128::from(v) * 1000 + ms / 2) / ms) as u64;
    RateRow {
        cps: per_s(d.conns),
        inpps: per_s(d.inpkts),
        outpps: per_s(d.outpkts),
        inbps: per_s(d.inbytes),
        outbps: per_s(d.outbytes),
    }
}

fn rate_rows(svcs: &[(ServiceKey, Vec<SocketAddr>)], s0: &StatsMap, s1: &StatsMap, dt: Duration) -> Vec<ServiceRates> {
    let zero = RsStats::default();
    svcs.iter()
        .map(|(key, reals)| {
            let mut sum = RsStats::default();
            let reals = reals
                .iter()
                .map(|a| {
                    let k = (*key, *a);
                    let d = s1.get(&k).unwrap_or(&zero).since(s0.get(&k).unwrap_or(&zero));
                    sum.add(&d);
                    (*a, rate_of(&d, dt))
                })
                .collect();
            ServiceRates { key: *key, total: rate_of(&sum, dt), reals }
        })
        .collect()
}

/// `-Z`: make `cur` the baseline of one service's entries, or of all.
fn zero_baseline(base: &mut StatsMap, cur: &StatsMap, key: Option<ServiceKey>) {
    match key {
        None => base.clone_from(cur),
        Some(k) => {
            base.retain(|(s, _), _| *s != k);
            base.extend(cur.iter().filter(|((s, _), _)| *s == k).map(|(a, b)| (*a, *b)));
        }
    }
}

fn port_named<'a>(ports: &'a [PortInfo], dev: &str) -> Result<&'a PortInfo, ControlError> {
    ports.iter().find(|p| p.name == dev).ok_or_else(|| no_port(ports, dev))
}

fn no_port(ports: &[PortInfo], dev: &str) -> ControlError {
    ControlError::NoSuchPort { dev: dev.to_string(), ports: ports.iter().map(|p| p.name.clone()).collect() }
}

/// `addr add`: a unicast address not already on any port, not a VIP or FULLNAT local address.
fn addr_add(r: &mut Running, addr: Ipv4Addr, len: u8, dev: &str) -> Result<(), ControlError> {
    if len > 32 {
        return Err(ControlError::PrefixTooLong { addr, len });
    }
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback() {
        return Err(ControlError::NotUnicast(addr));
    }
    if len < 31 && (u32::from(addr) & !prefix_mask(len) == 0 || u32::from(addr) | prefix_mask(len) == u32::MAX) {
        return Err(ControlError::NetworkOrBroadcast { addr, len });
    }
    if let Some(p) = r.ports.iter().find(|p| p.addrs.iter().any(|(a, _)| *a == addr)) {
        return Err(ControlError::AddrExists { addr, port: p.name.clone() });
    }
    for s in r.table.list() {
        if s.key.vip.ip() == std::net::IpAddr::V4(addr) {
            return Err(ControlError::AddrIsVip { addr, service: s.key });
        }
        if s.laddrs.contains(&std::net::IpAddr::V4(addr)) {
            return Err(ControlError::AddrIsLaddr { addr, service: s.key });
        }
    }
    let pi = r.ports.iter().position(|p| p.name == dev).ok_or_else(|| no_port(&r.ports, dev))?;
    r.ports[pi].addrs.push((addr, len));
    Ok(())
}

/// `addr del`: the address must be on the port (a /32 given matches any prefix length), and no
/// static route's gateway may be reachable only through it.
fn addr_del(r: &mut Running, addr: Ipv4Addr, len: u8, dev: &str) -> Result<(), ControlError> {
    let pi = r.ports.iter().position(|p| p.name == dev).ok_or_else(|| no_port(&r.ports, dev))?;
    let port = &r.ports[pi];
    let Some(i) = port.addrs.iter().position(|&(a, l)| a == addr && (l == len || len == 32)) else {
        return Err(ControlError::NoSuchAddr { addr, len, dev: dev.to_string(), has: port.addrs.clone() });
    };
    let (_, l) = port.addrs[i];
    let rest: Vec<(Ipv4Addr, u8)> = port.addrs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| *a).collect();
    for rt in r.routes.iter().filter(|rt| rt.port == port.id) {
        if let Some(gw) = rt.via {
            if same_subnet(addr, gw, l) && !rest.iter().any(|&(a, rl)| same_subnet(a, gw, rl)) {
                return Err(ControlError::AddrNeededByRoute {
                    prefix: rt.prefix,
                    prefix_len: rt.len,
                    gw,
                    addr,
                    len: l,
                });
            }
        }
    }
    r.ports[pi].addrs = rest;
    Ok(())
}

/// `route add`: a proper prefix (no host bits), not a duplicate of a static or connected route,
/// the gateway on a connected subnet of the port and not one of our addresses.
fn route_add(r: &mut Running, prefix: Ipv4Addr, len: u8, via: Option<Ipv4Addr>, dev: &str) -> Result<(), ControlError> {
    if len > 32 {
        return Err(ControlError::PrefixTooLong { addr: prefix, len });
    }
    let net = Ipv4Addr::from(u32::from(prefix) & prefix_mask(len));
    if net != prefix {
        return Err(ControlError::HostBitsSet { prefix, len, net });
    }
    let port = port_named(&r.ports, dev)?;
    if let Some(rt) = r.routes.iter().find(|rt| rt.prefix == prefix && rt.len == len) {
        return Err(ControlError::RouteExists { prefix, len, via: rt.via });
    }
    if let Some(p) = r.ports.iter().find(|p| connects(p, prefix, len)) {
        return Err(ControlError::ConnectedRoute { prefix, len, port: p.name.clone() });
    }
    if let Some(gw) = via {
        if r.ports.iter().any(|p| p.addrs.iter().any(|(a, _)| *a == gw)) {
            return Err(ControlError::GatewayIsOurs(gw));
        }
        if !port.addrs.iter().any(|&(a, l)| same_subnet(a, gw, l)) {
            return Err(ControlError::GatewayNotConnected { gw, dev: dev.to_string() });
        }
    }
    let id = port.id;
    r.routes.push(StaticRoute { prefix, len, port: id, via });
    Ok(())
}

/// `route del`: a static route matching prefix/len (and `via`/`dev` when given).
fn route_del(
    r: &mut Running,
    prefix: Ipv4Addr,
    len: u8,
    via: Option<Ipv4Addr>,
    dev: Option<&str>,
) -> Result<(), ControlError> {
    let port = match dev {
        Some(d) => Some(port_named(&r.ports, d)?.id),
        None => None,
    };
    let found = r.routes.iter().position(|rt| {
        rt.prefix == prefix
            && rt.len == len
            && via.is_none_or(|v| rt.via == Some(v))
            && port.is_none_or(|p| rt.port == p)
    });
    match found {
        Some(i) => {
            r.routes.remove(i);
            Ok(())
        }
        None => match r.ports.iter().find(|p| connects(p, prefix, len)) {
            Some(p) => Err(ControlError::DelConnectedRoute { prefix, len, port: p.name.clone() }),
            None => Err(ControlError::NoSuchRoute { prefix, len, via }),
        },
    }
}

/// Whether `prefix/len` is the connected route of one of the port's addresses.
fn connects(p: &PortInfo, prefix: Ipv4Addr, len: u8) -> bool {
    p.addrs.iter().any(|&(a, l)| l == len && Ipv4Addr::from(u32::from(a) & prefix_mask(l)) == prefix)
}

/// Connected routes (one per port address) then static routes, as `route show` lists them.
fn route_entries(r: &Running) -> Vec<RouteEntry> {
    let name = |id: u16| r.ports.iter().find(|p| p.id == id).map_or_else(|| format!("port{id}"), |p| p.name.clone());
    let mut v = Vec::new();
    for p in &r.ports {
        for &(a, l) in &p.addrs {
            v.push(RouteEntry {
                prefix: Ipv4Addr::from(u32::from(a) & prefix_mask(l)),
                len: l,
                via: None,
                dev: p.name.clone(),
                kind: "connected".into(),
                src: Some(a),
            });
        }
    }
    for rt in &r.routes {
        v.push(RouteEntry {
            prefix: rt.prefix,
            len: rt.len,
            via: rt.via,
            dev: name(rt.port),
            kind: "static".into(),
            src: None,
        });
    }
    v
}

/// ipvsadm's `--set TCP TCPFIN UDP`: seconds, 0 leaves that timeout unchanged. Only the
/// established, FIN_WAIT and UDP timeouts change; the other states keep theirs.
fn set_timeouts(t: &mut Tunables, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), ControlError> {
    for (name, value) in [("tcp", tcp), ("tcpfin", tcpfin), ("udp", udp)] {
        if value > MAX_TIMEOUT_S {
            return Err(ControlError::TimeoutTooLong { name, value, max: MAX_TIMEOUT_S });
        }
    }
    t.timeouts.set_ipvsadm(tcp, tcpfin, udp);
    Ok(())
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS_PER_S: u64 = 1_000_000_000;

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
        let e = set_timeouts(&mut t, 0, MAX_TIMEOUT_S + 1, 0).unwrap_err().to_string();
        assert!(e.contains("tcpfin timeout 31536001 s is over the maximum"), "{e}");
        assert_eq!(t, cur, "refused --set changes nothing");
        assert_eq!(t.timeouts.ipvsadm(), (3600, 120, 60), "-L --timeout shows seconds");
    }

    use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn key() -> ServiceKey {
        ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }
    }
    fn rs(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }
    fn table() -> ServiceTable {
        let mut svc = Service::new(key(), SchedKind::Rr);
        for a in ["203.0.113.11:80", "203.0.113.12:80"] {
            svc.reals.push(RealServer { addr: rs(a), fwd: FwdMode::Dr, weight: 1, u_threshold: 0, l_threshold: 0 });
        }
        ServiceTable::from_services(vec![svc]).unwrap()
    }
    /// A control handler with no workers (nothing to wait for) over one port "lan"
    /// 203.0.113.2/24 and a default route via 203.0.113.1.
    fn control() -> Control {
        let port = PortInfo {
            id: 0,
            name: "lan".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![(ip("203.0.113.2"), 24)],
            mtu: 1500,
        };
        let default = StaticRoute { prefix: ip("0.0.0.0"), len: 0, port: 0, via: Some(ip("203.0.113.1")) };
        Control::new(vec![port], vec!["net_null".into()], vec![default], table(), Tunables::default(), 0).unwrap()
    }
    fn error(r: Response) -> String {
        match r {
            Response::Error { message } => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }
    fn routes(c: &Control) -> Vec<RouteEntry> {
        match c.handle(Request::RouteShow) {
            Response::Routes { routes } => routes,
            other => panic!("{other:?}"),
        }
    }
    fn addrs(c: &Control) -> Vec<(Ipv4Addr, u8)> {
        match c.handle(Request::AddrShow { dev: None }) {
            Response::Addrs { ports } => ports[0].addrs.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addr_changes_publish_and_refusals_change_nothing() {
        let c = control();
        let add = |a: &str, len, dev: &str| c.handle(Request::AddrAdd { addr: ip(a), len, dev: dev.into() });
        let del = |a: &str, len, dev: &str| c.handle(Request::AddrDel { addr: ip(a), len, dev: dev.into() });
        assert_eq!(add("198.51.100.2", 24, "lan"), Response::Ok);
        assert_eq!(c.snapshot_generation(), 2);
        let snap = c.shared().snapshot.load();
        assert_eq!(snap.generation, 2);
        assert_eq!(snap.local_addrs.get(&ip("198.51.100.2")), Some(&0), "the workers answer for it");
        assert_eq!(snap.routes.next_hop(ip("198.51.100.77")), Some((0, ip("198.51.100.77"))), "connected route");
        drop(snap);
        let before = addrs(&c);
        for (r, want) in [
            (add("198.51.100.2", 24, "lan"), "198.51.100.2 is already an address of port lan"),
            (add("198.51.100.3", 24, "wan"), "no port named 'wan' (ports: lan)"),
            (add("224.0.0.1", 24, "lan"), "224.0.0.1 is not a unicast address"),
            (add("192.0.2.0", 24, "lan"), "network or broadcast address"),
            (add("192.0.2.255", 24, "lan"), "network or broadcast address"),
            (add("203.0.113.100", 32, "lan"), "is the VIP of service TCP 203.0.113.100:80"),
            (add("192.0.2.1", 33, "lan"), "prefix length over 32"),
            (
                del("192.0.2.9", 24, "lan"),
                "192.0.2.9/24 is not an address of port lan (it has: 203.0.113.2/24, 198.51.100.2/24)",
            ),
            // The default route's gateway 203.0.113.1 is reachable through 203.0.113.2/24 only.
            (del("203.0.113.2", 24, "lan"), "route 0.0.0.0/0 via 203.0.113.1 needs 203.0.113.2/24"),
        ] {
            let m = error(r);
            assert!(m.contains(want), "{m:?} lacks {want:?}");
        }
        assert_eq!(addrs(&c), before, "refused commands change nothing");
        assert_eq!(c.snapshot_generation(), 2, "and publish nothing");
        // A /32 given matches the address whatever its length.
        assert_eq!(del("198.51.100.2", 32, "lan"), Response::Ok);
        assert_eq!(addrs(&c), [(ip("203.0.113.2"), 24)]);
        // With another address covering the gateway, the first may go.
        assert_eq!(add("203.0.113.3", 24, "lan"), Response::Ok);
        assert_eq!(del("203.0.113.2", 24, "lan"), Response::Ok);
        assert_eq!(addrs(&c), [(ip("203.0.113.3"), 24)]);
    }

    #[test]
    fn route_changes_publish_and_refusals_change_nothing() {
        let c = control();
        let add = |p: &str, len, via: Option<&str>, dev: &str| {
            c.handle(Request::RouteAdd { prefix: ip(p), len, via: via.map(ip), dev: dev.into() })
        };
        assert_eq!(add("198.51.100.0", 24, Some("203.0.113.254"), "lan"), Response::Ok);
        assert_eq!(c.shared().snapshot.load().routes.next_hop(ip("198.51.100.9")), Some((0, ip("203.0.113.254"))));
        let before = routes(&c);
        assert_eq!(before.len(), 3);
        assert_eq!(
            before[0],
            RouteEntry {
                prefix: ip("203.0.113.0"),
                len: 24,
                via: None,
                dev: "lan".into(),
                kind: "connected".into(),
                src: Some(ip("203.0.113.2"))
            }
        );
        assert_eq!(before[2].kind, "static");
        for (r, want) in [
            (add("198.51.100.1", 24, None, "lan"), "198.51.100.1/24: host bits are set; the prefix is 198.51.100.0/24"),
            (add("198.51.100.0", 24, Some("203.0.113.1"), "lan"), "route 198.51.100.0/24 via 203.0.113.254 exists"),
            (add("203.0.113.0", 24, None, "lan"), "203.0.113.0/24 is the connected route of port lan"),
            (
                add("192.0.2.0", 24, Some("192.0.2.1"), "lan"),
                "gateway 192.0.2.1 is not on a connected subnet of port lan",
            ),
            (add("192.0.2.0", 24, Some("203.0.113.2"), "lan"), "gateway 203.0.113.2 is one of our own addresses"),
            (add("192.0.2.0", 24, None, "wan"), "no port named 'wan'"),
            (
                c.handle(Request::RouteDel { prefix: ip("203.0.113.0"), len: 24, via: None, dev: None }),
                "203.0.113.0/24 is the connected route of port lan: delete its address instead",
            ),
            (
                c.handle(Request::RouteDel {
                    prefix: ip("198.51.100.0"),
                    len: 24,
                    via: Some(ip("203.0.113.9")),
                    dev: None,
                }),
                "no static route 198.51.100.0/24 via 203.0.113.9",
            ),
        ] {
            let m = error(r);
            assert!(m.contains(want), "{m:?} lacks {want:?}");
        }
        assert_eq!(routes(&c), before);
        assert_eq!(c.snapshot_generation(), 2);
        assert_eq!(
            c.handle(Request::RouteDel { prefix: ip("198.51.100.0"), len: 24, via: None, dev: Some("lan".into()) }),
            Response::Ok
        );
        assert_eq!(
            c.shared().snapshot.load().routes.next_hop(ip("198.51.100.9")),
            Some((0, ip("203.0.113.1"))),
            "default again"
        );
    }

    #[test]
    fn refusals_are_typed_and_keep_their_text() {
        let c = control();
        let mut run = c.state.lock().run.clone();
        let e = route_add(&mut run, ip("198.51.100.1"), 24, None, "lan").unwrap_err();
        assert_eq!(e, ControlError::HostBitsSet { prefix: ip("198.51.100.1"), len: 24, net: ip("198.51.100.0") });
        assert_eq!(e.to_string(), "198.51.100.1/24: host bits are set; the prefix is 198.51.100.0/24");
        // What rvsadm gets is exactly that text.
        let answer = c.handle(Request::RouteAdd { prefix: ip("198.51.100.1"), len: 24, via: None, dev: "lan".into() });
        assert_eq!(error(answer), e.to_string());
        assert!(matches!(
            route_del(&mut run, ip("203.0.113.0"), 24, None, None),
            Err(ControlError::DelConnectedRoute { port, .. }) if port == "lan"
        ));
        assert_eq!(
            addr_add(&mut run, ip("192.0.2.1"), 24, "wan"),
            Err(ControlError::NoSuchPort { dev: "wan".into(), ports: vec!["lan".into()] })
        );
        let mut t = Tunables::default();
        assert_eq!(
            set_timeouts(&mut t, MAX_TIMEOUT_S + 1, 0, 0),
            Err(ControlError::TimeoutTooLong { name: "tcp", value: MAX_TIMEOUT_S + 1, max: MAX_TIMEOUT_S })
        );
        // Model refusals pass through with the model's text.
        let dup = Service::new(key(), SchedKind::Rr);
        assert_eq!(
            error(c.handle(Request::AddService { service: dup })),
            "service TCP 203.0.113.100:80 already exists"
        );
        assert_eq!(c.snapshot_generation(), 1, "nothing published");
    }

    #[test]
    fn error_messages_are_the_rvsadm_texts() {
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.254"));
        let svc = key();
        for (e, want) in [
            (ControlError::UnknownService(svc), "no such service: TCP 203.0.113.100:80"),
            (ControlError::Model(ModelError::NoSuchService(svc)), "service TCP 203.0.113.100:80 does not exist"),
            (
                ControlError::NoSuchPort { dev: "wan".into(), ports: vec!["lan".into(), "dmz".into()] },
                "no port named 'wan' (ports: lan, dmz)",
            ),
            (ControlError::NoSuchPort { dev: "wan".into(), ports: vec![] }, "no port named 'wan' (ports: )"),
            (ControlError::PrefixTooLong { addr: a, len: 33 }, "192.0.2.1/33: prefix length over 32"),
            (ControlError::NotUnicast(ip("224.0.0.1")), "224.0.0.1 is not a unicast address"),
            (
                ControlError::NetworkOrBroadcast { addr: ip("192.0.2.0"), len: 24 },
                "192.0.2.0/24: that is the network or broadcast address of the prefix",
            ),
            (ControlError::AddrExists { addr: a, port: "lan".into() }, "192.0.2.1 is already an address of port lan"),
            (
                ControlError::AddrIsVip { addr: a, service: svc },
                "192.0.2.1 is the VIP of service TCP 203.0.113.100:80: an interface address would take its traffic",
            ),
            (
                ControlError::AddrIsLaddr { addr: a, service: svc },
                "192.0.2.1 is a local address (laddr) of service TCP 203.0.113.100:80",
            ),
            (
                ControlError::NoSuchAddr { addr: a, len: 24, dev: "lan".into(), has: vec![] },
                "192.0.2.1/24 is not an address of port lan (it has: none)",
            ),
            (
                ControlError::NoSuchAddr { addr: a, len: 24, dev: "lan".into(), has: vec![(b, 24), (a, 32)] },
                "192.0.2.1/24 is not an address of port lan (it has: 192.0.2.254/24, 192.0.2.1/32)",
            ),
            (
                ControlError::AddrNeededByRoute { prefix: ip("0.0.0.0"), prefix_len: 0, gw: b, addr: a, len: 24 },
                "route 0.0.0.0/0 via 192.0.2.254 needs 192.0.2.1/24 (its gateway is reachable through it only): \
                 delete the route first",
            ),
            (
                ControlError::RouteExists { prefix: ip("10.0.0.0"), len: 8, via: Some(b) },
                "route 10.0.0.0/8 via 192.0.2.254 exists: delete it first",
            ),
            (
                ControlError::RouteExists { prefix: ip("10.0.0.0"), len: 8, via: None },
                "route 10.0.0.0/8 exists: delete it first",
            ),
            (
                ControlError::ConnectedRoute { prefix: ip("192.0.2.0"), len: 24, port: "lan".into() },
                "192.0.2.0/24 is the connected route of port lan",
            ),
            (
                ControlError::DelConnectedRoute { prefix: ip("192.0.2.0"), len: 24, port: "lan".into() },
                "192.0.2.0/24 is the connected route of port lan: delete its address instead",
            ),
            (ControlError::NoSuchRoute { prefix: ip("10.0.0.0"), len: 8, via: None }, "no static route 10.0.0.0/8"),
            (
                ControlError::NoSuchRoute { prefix: ip("10.0.0.0"), len: 8, via: Some(b) },
                "no static route 10.0.0.0/8 via 192.0.2.254",
            ),
            (ControlError::GatewayIsOurs(a), "gateway 192.0.2.1 is one of our own addresses"),
            (
                ControlError::GatewayNotConnected { gw: a, dev: "lan".into() },
                "gateway 192.0.2.1 is not on a connected subnet of port lan",
            ),
            (
                ControlError::TimeoutTooLong { name: "udp", value: 31_536_001, max: MAX_TIMEOUT_S },
                "udp timeout 31536001 s is over the maximum 31536000 s",
            ),
        ] {
            assert_eq!(e.to_string(), want);
            assert_eq!(Response::from(e), Response::Error { message: want.to_string() });
        }
    }

    #[test]
    fn rates_come_from_two_samples() {
        let k = (key(), rs("203.0.113.11:80"));
        let k2 = (key(), rs("203.0.113.12:80"));
        let s0: StatsMap =
            [(k, RsStats { conns: 10, inpkts: 100, outpkts: 50, inbytes: 10_000, outbytes: 70_000 })].into();
        let s1: StatsMap = [
            (k, RsStats { conns: 13, inpkts: 400, outpkts: 50, inbytes: 40_000, outbytes: 70_000 }),
            (k2, RsStats { conns: 1, inpkts: 2, outpkts: 0, inbytes: 120, outbytes: 0 }),
        ]
        .into();
        let svcs = vec![(key(), vec![k.1, k2.1])];
        let r = rate_rows(&svcs, &s0, &s1, Duration::from_millis(2000));
        assert_eq!(
            r[0].reals[0].1,
            RateRow { cps: 2, inpps: 150, outpps: 0, inbps: 15_000, outbps: 0 },
            "3 conns in 2 s rounds to 2"
        );
        assert_eq!(
            r[0].reals[1].1,
            RateRow { cps: 1, inpps: 1, outpps: 0, inbps: 60, outbps: 0 },
            "new server: from zero"
        );
        assert_eq!(r[0].total, RateRow { cps: 2, inpps: 151, outpps: 0, inbps: 15_060, outbps: 0 });
        let same = rate_rows(&svcs, &s1, &s1, Duration::from_millis(1000));
        assert_eq!(same[0].total, RateRow::default());
    }

    #[test]
    fn zeroing_is_a_baseline_per_service_or_all() {
        let other = ServiceKey { proto: Proto::Udp, vip: "203.0.113.100:53".parse().unwrap() };
        let a = (key(), rs("203.0.113.11:80"));
        let b = (other, rs("203.0.113.11:53"));
        let st = |n| RsStats { conns: n, inpkts: 10 * n, outpkts: 0, inbytes: 100 * n, outbytes: 0 };
        let svcs = vec![(key(), vec![a.1]), (other, vec![b.1])];
        let mut base = StatsMap::new();
        zero_baseline(&mut base, &[(a, st(5)), (b, st(7))].into(), Some(key()));
        let rows = stats_rows(&svcs, &[(a, st(8)), (b, st(9))].into(), &base);
        assert_eq!(
            rows[0].total,
            RsStats { conns: 3, inpkts: 30, outpkts: 0, inbytes: 300, outbytes: 0 },
            "zeroed at 5"
        );
        assert_eq!(rows[1].total.conns, 9, "the other service untouched");
        zero_baseline(&mut base, &[(a, st(8)), (b, st(9))].into(), None);
        let rows = stats_rows(&svcs, &[(a, st(8)), (b, st(10))].into(), &base);
        assert_eq!((rows[0].total.conns, rows[1].total.conns), (0, 1));
        assert_eq!(rows[1].reals[0].1.inbytes, 100);
    }

    #[test]
    fn stats_zero_conns_and_neigh_requests_without_workers() {
        let c = control();
        match c.handle(Request::Stats { key: None }) {
            Response::Stats { services } => {
                assert_eq!(services.len(), 1);
                assert_eq!(services[0].reals.len(), 2);
                assert_eq!(services[0].total, RsStats::default());
            }
            other => panic!("{other:?}"),
        }
        let nokey = ServiceKey { proto: Proto::Udp, vip: "203.0.113.100:53".parse().unwrap() };
        assert!(error(c.handle(Request::Stats { key: Some(nokey) })).contains("no such service: UDP 203.0.113.100:53"));
        assert!(error(c.handle(Request::Zero { key: Some(nokey) })).contains("no such service"));
        assert_eq!(c.handle(Request::Zero { key: None }), Response::Ok);
        assert_eq!(
            c.handle(Request::ListConns { key: None, real: None, max: 10 }),
            Response::Conns { conns: vec![], total: 0, missing_workers: vec![] }
        );
        assert!(error(c.handle(Request::NeighFlush { dev: Some("wan".into()) })).contains("no port named 'wan'"));
        assert_eq!(
            c.handle(Request::NeighShow { dev: None }),
            Response::Neighs { neighs: vec![], missing_workers: vec![] }
        );
    }

    #[test]
    fn replace_and_reload_hook() {
        let c = Arc::new(control());
        assert_eq!(error(c.handle(Request::Reload)), "reload is not available");
        // (`replace` goes through the same copy-build-publish path as addr/route, whose
        // refusals are tested above; the service model refuses what Snapshot::build would.)
        let gen = c.snapshot_generation();
        // The hook may call back into the handler (no lock is held while it runs).
        let weak = Arc::downgrade(&c);
        c.set_reload_hook(Box::new(move || {
            let c = weak.upgrade().expect("control alive");
            c.replace(ServiceTable::new(), Tunables { expire_nodest_conn: true, ..Tunables::default() })
                .map_or_else(Response::from, |()| Response::Ok)
        }));
        assert_eq!(c.handle(Request::Reload), Response::Ok);
        assert_eq!(c.snapshot_generation(), gen + 1, "one publication");
        let snap = c.shared().snapshot.load();
        assert!(snap.services.is_empty() && snap.tunables.expire_nodest_conn);
        assert_eq!(snap.routes.next_hop(ip("192.0.2.1")), Some((0, ip("203.0.113.1"))), "routes kept");
    }
}
