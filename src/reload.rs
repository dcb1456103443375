//! Configuration reload (SIGHUP, `rvsadm --reload`): re-read the file rvsd was started with,
//! validate it whole, and apply its services and tunables as one new snapshot.
//!
//! What a reload may change without a restart is what the snapshot holds: the services (with
//! their real servers and local addresses) and the tunables (session timeouts,
//! `expire_nodest_conn`), plus the log filter. Everything the start-up sequence consumed — EAL
//! arguments, lcores, ports, mempool, control socket, routes, neighbour settings, the metrics
//! listener — is compared and reported as "needs restart: ..." but left as it runs.
//!
//! Like keepalived, the file is the truth: services changed at run time with rvsadm are
//! replaced by the file's. Existing sessions keep forwarding to their real server (a session
//! holds its RS), unless `expire_nodest_conn` drops those of a removed RS.
//!
//! The diff is computed against the *running* service table and tunables, so what is reported
//! is what the reload actually changes.

use crate::control::{Control, ControlError};
use parking_lot::Mutex;
use rvs_config::file::{Config, ConfigError};
use rvs_config::model::SessionTimeouts;
use rvs_config::model::{RealServer, Service, ServiceKey};
use rvs_config::services::ServiceTable;
use rvs_config::ModelError;
use rvs_ctrl::proto::{Request, Response};
use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::snapshot::Tunables;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What a reload changes, and what it would change but cannot without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub services_added: Vec<ServiceKey>,
    pub services_removed: Vec<ServiceKey>,
    /// Service and what changed in its own parameters, e.g. "sched rr -> wrr".
    pub services_edited: Vec<(ServiceKey, Vec<String>)>,
    /// Real servers added to / removed from services present before and after.
    pub rs_added: Vec<(ServiceKey, SocketAddr)>,
    pub rs_removed: Vec<(ServiceKey, SocketAddr)>,
    pub rs_edited: Vec<(ServiceKey, SocketAddr, Vec<String>)>,
    /// e.g. "sessions.tcp_established_s 900 -> 600".
    pub tunables: Vec<String>,
    /// Log filter change, "info -> debug".
    pub log_level: Option<String>,
    /// Config items that differ from the running ones but only take effect at start-up.
    pub needs_restart: Vec<String>,
}

impl Diff {
    /// Whether the reload applies anything (restart-only items do not count).
    pub fn applies_nothing(&self) -> bool {
        self.services_added.is_empty()
            && self.services_removed.is_empty()
            && self.services_edited.is_empty()
            && self.rs_added.is_empty()
            && self.rs_removed.is_empty()
            && self.rs_edited.is_empty()
            && self.tunables.is_empty()
            && self.log_level.is_none()
    }

    /// One line per change, for the log and the rvsadm response.
    pub fn lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        v.extend(self.services_added.iter().map(|k| format!("service added: {k}")));
        v.extend(self.services_removed.iter().map(|k| format!("service removed: {k}")));
        v.extend(self.services_edited.iter().map(|(k, c)| format!("service edited: {k}: {}", c.join(", "))));
        v.extend(self.rs_added.iter().map(|(k, a)| format!("real server added: {k} -> {a}")));
        v.extend(self.rs_removed.iter().map(|(k, a)| format!("real server removed: {k} -> {a}")));
        v.extend(self.rs_edited.iter().map(|(k, a, c)| format!("real server edited: {k} -> {a}: {}", c.join(", "))));
        v.extend(self.tunables.iter().map(|t| format!("tunable changed: {t}")));
        if let Some(l) = &self.log_level {
            v.push(format!("log level changed: {l}"));
        }
        v.extend(self.needs_restart.iter().map(|r| format!("needs restart (not applied): {r}")));
        v
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        if lines.is_empty() {
            return write!(f, "no changes");
        }
        write!(f, "{}", lines.join("; "))
    }
}

/// Services and real servers: `old` is the running table, `new` the file's.
pub fn diff_services(old: &ServiceTable, new: &ServiceTable, d: &mut Diff) {
    for o in old.list() {
        if new.get(&o.key).is_none() {
            d.services_removed.push(o.key);
        }
    }
    for n in new.list() {
        let Some(o) = old.get(&n.key) else {
            d.services_added.push(n.key);
            continue;
        };
        let changes = service_changes(o, n);
        if !changes.is_empty() {
            d.services_edited.push((n.key, changes));
        }
        for r in &o.reals {
            if !n.reals.iter().any(|x| x.addr == r.addr) {
                d.rs_removed.push((n.key, r.addr));
            }
        }
        for r in &n.reals {
            match o.reals.iter().find(|x| x.addr == r.addr) {
                None => d.rs_added.push((n.key, r.addr)),
                Some(before) => {
                    let c = real_changes(before, r);
                    if !c.is_empty() {
                        d.rs_edited.push((n.key, r.addr, c));
                    }
                }
            }
        }
    }
}

fn service_changes(o: &Service, n: &Service) -> Vec<String> {
    let mut c = Vec::new();
    if o.sched != n.sched {
        c.push(format!("sched {} -> {}", o.sched, n.sched));
    }
    if o.persistence != n.persistence {
        let p = |s: &Service| match s.persistence {
            None => "none".to_string(),
            Some(p) => format!("{} s /{}", p.timeout_s, p.netmask),
        };
        c.push(format!("persistent {} -> {}", p(o), p(n)));
    }
    if o.laddrs != n.laddrs {
        c.push(format!("laddrs {:?} -> {:?}", o.laddrs, n.laddrs));
    }
    if o.client_addr != n.client_addr {
        c.push(format!("client_addr {} -> {}", o.client_addr, n.client_addr));
    }
    c
}

fn real_changes(o: &RealServer, n: &RealServer) -> Vec<String> {
    let mut c = Vec::new();
    if o.fwd != n.fwd {
        c.push(format!("fwd {} -> {}", o.fwd.ipvsadm_name(), n.fwd.ipvsadm_name()));
    }
    if o.weight != n.weight {
        c.push(format!("weight {} -> {}", o.weight, n.weight));
    }
    if o.u_threshold != n.u_threshold {
        c.push(format!("u_threshold {} -> {}", o.u_threshold, n.u_threshold));
    }
    if o.l_threshold != n.l_threshold {
        c.push(format!("l_threshold {} -> {}", o.l_threshold, n.l_threshold));
    }
    c
}

/// Tunables: `old` running, `new` from the file. Timeouts are shown in seconds under the
/// config's key names.
pub fn diff_tunables(old: &Tunables, new: &Tunables, d: &mut Diff) {
    let (o, n) = (SessionTimeouts::from(old.timeouts), SessionTimeouts::from(new.timeouts));
    for (name, a, b) in [
        ("sessions.tcp_syn_recv_s", o.tcp_syn_recv_s, n.tcp_syn_recv_s),
        ("sessions.tcp_established_s", o.tcp_established_s, n.tcp_established_s),
        ("sessions.tcp_fin_wait_s", o.tcp_fin_wait_s, n.tcp_fin_wait_s),
        ("sessions.tcp_close_s", o.tcp_close_s, n.tcp_close_s),
        ("sessions.udp_s", o.udp_s, n.udp_s),
    ] {
        if a != b {
            d.tunables.push(format!("{name} {a} -> {b}"));
        }
    }
    if old.expire_nodest_conn != new.expire_nodest_conn {
        d.tunables
            .push(format!("sessions.expire_nodest_conn {} -> {}", old.expire_nodest_conn, new.expire_nodest_conn));
    }
}

/// Items only start-up consumes: `running` is the config rvsd started with.
pub fn restart_items(running: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let mut item = |changed: bool, what: &str| {
        if changed {
            v.push(what.to_string());
        }
    };
    item(running.eal != new.eal, "eal.args");
    item(running.workers.lcores != new.workers.lcores, "workers.lcores");
    item(running.workers.idle_sleep_us != new.workers.idle_sleep_us, "workers.idle_sleep_us");
    item(running.workers.idle_polls != new.workers.idle_polls, "workers.idle_polls");
    item(running.workers.burst != new.workers.burst, "workers.burst");
    item(running.sessions.max_per_worker != new.sessions.max_per_worker, "sessions.max_per_worker");
    item(running.sessions.rs_time_wait_s != new.sessions.rs_time_wait_s, "sessions.rs_time_wait_s");
    item(running.neigh != new.neigh, "neigh");
    item(running.ctrl != new.ctrl, "ctrl.socket");
    item(running.mempool != new.mempool, "mempool");
    item(running.metrics_listen() != new.metrics_listen(), "metrics");
    if running.ports.len() != new.ports.len() {
        v.push(format!("port (count {} -> {})", running.ports.len(), new.ports.len()));
    } else {
        for (i, (a, b)) in running.ports.iter().zip(&new.ports).enumerate() {
            if a != b {
                v.push(format!("port[{i}] ({})", b.name));
            }
        }
    }
    if running.routes != new.routes {
        v.push("route".to_string());
    }
    v
}

/// Everything but the services: compares `running` (start-up config, running tunables and log
/// filter) with `new`.
pub fn diff(
    started: &Config,
    running_table: &ServiceTable,
    running_tunables: &Tunables,
    running_log: &str,
    new: &Config,
) -> Diff {
    let mut d = Diff::default();
    diff_services(running_table, &new.service_table(), &mut d);
    diff_tunables(running_tunables, &tunables(new), &mut d);
    if running_log != new.log.level {
        d.log_level = Some(format!("{running_log} -> {}", new.log.level));
    }
    d.needs_restart = restart_items(started, new);
    d
}

/// The run-time settings of a config: session timeouts and `expire_nodest_conn`.
pub fn tunables(cfg: &Config) -> Tunables {
    Tunables { timeouts: timeouts(cfg), expire_nodest_conn: cfg.sessions.expire_nodest_conn }
}

/// The config's session timeouts; the states it has no key for keep IPVS's defaults.
pub fn timeouts(cfg: &Config) -> Timeouts {
    Timeouts::from(cfg.timeouts())
}

/// Why a reload was refused (the running state is then unchanged). The message is what
/// rvsadm and the log show.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not read, parse or validate; names the file and field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The control plane refused the new services and tunables.
    #[error(transparent)]
    Refused(#[from] ControlError),
    /// The running services do not form a table again (cannot happen; not assumed).
    #[error(transparent)]
    Running(#[from] ModelError),
    /// The control plane answered the listing of the running services with something else.
    #[error("cannot list the running services: {0:?}")]
    Listing(Box<Response>),
}

/// Why the log filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// The filter does not parse.
    #[error("log.level \"{level}\": {source}")]
    Parse { level: String, source: tracing_subscriber::filter::ParseError },
    /// The subscriber holding the filter is gone.
    #[error(transparent)]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Changes the process's log filter; returns an error naming what is wrong.
pub type LogSetter = Box<dyn Fn(&str) -> Result<(), LogFilterError> + Send + Sync>;

/// Re-reads and applies the config file; one reload at a time.
pub struct Reloader {
    path: PathBuf,
    control: Arc<Control>,
    /// The config rvsd started with: the baseline for restart-only items.
    started: Config,
    /// Running log filter (`None` setter: `RUST_LOG` rules, the file's level is ignored).
    log: Mutex<String>,
    set_log: Option<LogSetter>,
    /// Tunables last applied from the file (start-up or reload). The control plane is asked
    /// for the ones rvsadm can change (`--set`, `--set-expire-nodest-conn`); the other timeouts
    /// only ever come from the file.
    applied: Mutex<Tunables>,
    /// Serialises reloads (SIGHUP and rvsadm may race).
    busy: Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, control: Arc<Control>, started: Config, set_log: Option<LogSetter>) -> Reloader {
        let log = Mutex::new(started.log.level.clone());
        let applied = Mutex::new(tunables(&started));
        Reloader { path, control, started, log, set_log, applied, busy: Mutex::new(()) }
    }

    /// Re-read the file and apply it. `Err` (with the file and field named) leaves the running
    /// state untouched.
    pub fn reload(&self) -> Result<Diff, ReloadError> {
        let _one = self.busy.lock();
        let new = Config::from_path(&self.path)?;
        let (table, running_t) = self.running()?;
        let log = self.log.lock().clone();
        let mut d = diff(&self.started, &table, &running_t, &log, &new);
        if self.set_log.is_none() {
            // RUST_LOG is set: it wins over the file, so the file's level changes nothing.
            d.log_level = None;
        }
        let new_tunables = tunables(&new);
        // One snapshot: the workers see the old table or the new one, never a mix.
        self.control.replace(new.service_table(), new_tunables)?;
        *self.applied.lock() = new_tunables;
        if let (Some(set), Some(_)) = (&self.set_log, &d.log_level) {
            match set(&new.log.level) {
                Ok(()) => *self.log.lock() = new.log.level.clone(),
                Err(e) => d.needs_restart.push(format!("log.level ({e})")),
            }
        }
        Ok(d)
    }

    /// Reload and log the outcome; the answer for rvsadm.
    pub fn reload_logged(&self, trigger: &str) -> Result<Diff, ReloadError> {
        let r = self.reload();
        match &r {
            Ok(d) => {
                tracing::info!(trigger, config = %self.path.display(), "configuration reloaded: {d}");
                for r in &d.needs_restart {
                    tracing::warn!(trigger, item = %r, "configuration item changed but needs a restart; not applied");
                }
            }
            Err(e) => tracing::error!(trigger, "configuration reload refused, running state unchanged: {e}"),
        }
        r
    }

    /// The running service table and tunables, as the control plane has them.
    fn running(&self) -> Result<(ServiceTable, Tunables), ReloadError> {
        let services = match self.control.handle(Request::List { key: None }) {
            Response::Services { services } => services.into_iter().map(|s| s.service).collect(),
            other => return Err(ReloadError::Listing(Box::new(other))),
        };
        let table = ServiceTable::from_services(services)?;
        let mut t = *self.applied.lock();
        if let Response::Timeouts { tcp, tcpfin, udp } = self.control.handle(Request::GetTimeouts) {
            t.timeouts.set_ipvsadm(tcp, tcpfin, udp);
        }
        if let Response::ExpireNodestConn { enabled } = self.control.handle(Request::GetExpireNodestConn) {
            t.expire_nodest_conn = enabled;
        }
        Ok((table, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[[port]]\nname = \"eth0\"\ndevice = \"net_tap0\"\naddrs = [\"203.0.113.2/24\"]\n";
    const SVC: &str = "[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\nsched = \"rr\"\n\
        [[service.real]]\naddr = \"203.0.113.11:80\"\n[[service.real]]\naddr = \"203.0.113.12:80\"\n";

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!("{BASE}{extra}")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn d(old: &Config, new: &Config) -> Diff {
        diff(old, &old.service_table(), &tunables(old), &old.log.level, new)
    }

    #[test]
    fn unreadable_file_is_a_config_error_and_changes_nothing() {
        let control =
            Arc::new(Control::new(vec![], vec![], vec![], ServiceTable::new(), Tunables::default(), 0).unwrap());
        let path = PathBuf::from("/nonexistent/rvs-reload-test.toml");
        let r = Reloader::new(path.clone(), Arc::clone(&control), cfg(SVC), None);
        let e = r.reload().unwrap_err();
        let text = e.to_string();
        match e {
            ReloadError::Config(c) => assert_eq!(text, c.to_string(), "the config's own message"),
            other => panic!("expected a config error, got {other:?}"),
        }
        assert!(text.contains("/nonexistent/rvs-reload-test.toml"), "{text}");
        assert_eq!(control.snapshot_generation(), 1, "nothing published");
    }

    #[test]
    fn identical_configs_change_nothing() {
        let a = cfg(SVC);
        let x = d(&a, &a.clone());
        assert_eq!(x, Diff::default());
        assert!(x.applies_nothing());
        assert_eq!(x.to_string(), "no changes");
    }

    #[test]
    fn real_servers_added_removed_edited() {
        let a = cfg(SVC);
        let b = cfg("[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\nsched = \"rr\"\n\
            [[service.real]]\naddr = \"203.0.113.11:80\"\nweight = 5\n[[service.real]]\naddr = \"203.0.113.13:80\"\n");
        let x = d(&a, &b);
        let k = a.service_table().list()[0].key;
        assert_eq!(x.rs_added, [(k, "203.0.113.13:80".parse().unwrap())]);
        assert_eq!(x.rs_removed, [(k, "203.0.113.12:80".parse().unwrap())]);
        assert_eq!(x.rs_edited, [(k, "203.0.113.11:80".parse().unwrap(), vec!["weight 1 -> 5".to_string()])]);
        assert!(x.services_added.is_empty() && x.services_removed.is_empty() && x.services_edited.is_empty());
        let s = x.to_string();
        assert!(s.contains("real server added: TCP 203.0.113.100:80 -> 203.0.113.13:80"), "{s}");
        assert!(s.contains("real server edited: TCP 203.0.113.100:80 -> 203.0.113.11:80: weight 1 -> 5"), "{s}");
    }

    #[test]
    fn services_added_removed_edited() {
        let a = cfg(SVC);
        let b = cfg("[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\nsched = \"wrr\"\npersistent = 60\n\
            [[service.real]]\naddr = \"203.0.113.11:80\"\n[[service.real]]\naddr = \"203.0.113.12:80\"\n\
            [[service]]\nproto = \"udp\"\nvip = \"203.0.113.100:53\"\n");
        let x = d(&a, &b);
        assert_eq!(x.services_added.len(), 1);
        assert_eq!(x.services_added[0].to_string(), "UDP 203.0.113.100:53");
        assert_eq!(x.services_edited.len(), 1);
        let changes = &x.services_edited[0].1;
        assert!(changes.iter().any(|c| c == "sched rr -> wrr"), "{changes:?}");
        assert!(changes.iter().any(|c| c.starts_with("persistent none -> 60 s")), "{changes:?}");
        assert!(x.rs_added.is_empty(), "RS of an added service are not listed on their own");
        let back = d(&b, &a);
        assert_eq!(back.services_removed[0].to_string(), "UDP 203.0.113.100:53");
    }

    #[test]
    fn diff_is_against_the_running_table() {
        // rvsadm added an RS at run time; the file does not have it: the reload removes it.
        let a = cfg(SVC);
        let mut running = a.service_table();
        let k = running.list()[0].key;
        let extra = RealServer {
            addr: "203.0.113.14:80".parse().unwrap(),
            fwd: rvs_config::model::FwdMode::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        running.add_real(&k, extra).unwrap();
        let x = diff(&a, &running, &tunables(&a), "info", &a);
        assert_eq!(x.rs_removed, [(k, "203.0.113.14:80".parse().unwrap())]);
    }

    #[test]
    fn tunables_and_log_level() {
        let a = cfg(SVC);
        let b = cfg(&format!(
            "[sessions]\ntcp_established_s = 600\nexpire_nodest_conn = true\n[log]\nlevel = \"debug\"\n{SVC}"
        ));
        let x = d(&a, &b);
        assert_eq!(x.tunables, ["sessions.tcp_established_s 900 -> 600", "sessions.expire_nodest_conn false -> true"]);
        assert_eq!(x.log_level.as_deref(), Some("info -> debug"));
        assert!(x.needs_restart.is_empty());
        assert!(!x.applies_nothing());
        // rvsadm --set changed the running timeout: the reload reports going back to the file's.
        let mut running = tunables(&a);
        running.timeouts.udp_ns = 10 * 1_000_000_000;
        let y = diff(&a, &a.service_table(), &running, "info", &a);
        assert_eq!(y.tunables, ["sessions.udp_s 10 -> 300"]);
    }

    #[test]
    fn start_up_items_need_a_restart() {
        let a = cfg(SVC);
        let b = Config::parse(&format!(
            "[eal]\nargs = [\"--no-huge\"]\n[workers]\nlcores = [1, 2]\nburst = 16\n[mempool]\nmbufs = 8191\n\
             [ctrl]\nsocket = \"/tmp/x.sock\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n[neigh]\nretry_ms = 5\n\
             [[port]]\nname = \"eth0\"\ndevice = \"net_tap0\"\naddrs = [\"203.0.113.3/24\"]\n\
             [[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"203.0.113.1\"\nport = \"eth0\"\n{SVC}"
        ))
        .unwrap();
        let x = d(&a, &b);
        assert_eq!(
            x.needs_restart,
            [
                "eal.args",
                "workers.lcores",
                "workers.burst",
                "neigh",
                "ctrl.socket",
                "mempool",
                "metrics",
                "port[0] (eth0)",
                "route"
            ]
        );
        assert!(x.applies_nothing(), "restart-only changes apply nothing");
        assert!(x.to_string().contains("needs restart (not applied): workers.lcores"), "{x}");
        let c = cfg(&format!("[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\n{SVC}"));
        assert_eq!(d(&a, &c).needs_restart, ["port (count 1 -> 2)"]);
    }
}
