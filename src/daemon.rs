//! rvsd start-up and shut-down: EAL, ports, mempool, workers, control socket, signals.
//!
//! Order matters: EAL first (it owns the ports), then one mempool, then every port configured with
//! one rx/tx queue pair per worker (RSS spreads flows when there is more than one), then the first
//! snapshot, the workers, and last the control socket (so rvsadm only ever talks to a gateway that
//! is forwarding). Shut-down runs the same steps backwards.
//!
//! With several workers, the redirect rings and neighbour inboxes between them (the
//! `workers::Fabric`) are created before the workers and dropped after they have joined, and the
//! FULLNAT steering rules (`flow`) are installed after the ports start and removed before they
//! stop. See docs/multicore.md.
//!
//! After start-up the main thread watches for SIGTERM/SIGINT (stop), SIGHUP (reload the config
//! file, see `reload`) and link changes; the Prometheus endpoint (`metrics`) runs in its own
//! thread. See docs/operations.md.

use crate::control::Control;
use crate::flow::{Steering, SteeringHandle};
use crate::metrics::{self, MetricsData, MetricsServer, PortMetrics, RsMetrics, ServiceMetrics};
use crate::reload::{self, LogSetter, Reloader};
use crate::workers::{self, Fabric, LoopConfig};
use dpdk_sys::{Eal, Mempool, PortConf};
use rvs_config::file::Config;
use rvs_dataplane::neigh::NeighConfig;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute};
use rvs_dataplane::worker::WorkerConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A start-up or run-time failure, with the item it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("EAL initialisation failed: {0} (EAL arguments: {1})")]
    Eal(dpdk_sys::DpdkError, String),
    #[error("port {name} ({device}): {msg}")]
    Port { name: String, device: String, msg: String },
    #[error("mempool: {0}")]
    Mempool(dpdk_sys::DpdkError),
    #[error("configuration: {0}")]
    Config(#[from] rvs_dataplane::SnapshotError),
    #[error("control socket {path}: {err}")]
    Socket { path: String, err: std::io::Error },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("worker thread: {0}")]
    Thread(std::io::Error),
    #[error("redirect rings between workers: {0}")]
    Rings(dpdk_sys::DpdkError),
    #[error("metrics endpoint {addr} (config metrics.listen): {err}")]
    Metrics { addr: std::net::SocketAddr, err: std::io::Error },
}

/// What rvsd needs after start-up besides the config itself.
pub struct RunOptions {
    /// The file the config came from; SIGHUP and `rvsadm --reload` read it again.
    pub config_path: PathBuf,
    /// Changes the log filter on reload; `None` when `RUST_LOG` decides it.
    pub set_log: Option<LogSetter>,
}

/// EAL arguments: the configured ones, the ports as `--vdev`/`-a`, and two defaults an operator
/// would otherwise have to know about: the main lcore on a CPU no worker uses (`-l`, unless the
/// config sets `-l`/`-c`/`--lcores`), and no telemetry socket. An af_packet vdev gets one queue pair
/// per worker (`qpairs=N`) unless its string says otherwise.
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let mut args: Vec<String> = cfg.eal.args.clone();
    let has =
        |flags: &[&str]| cfg.eal.args.iter().any(|a| flags.iter().any(|f| a == f || a.starts_with(&format!("{f}="))));
    if !has(&["-l", "-c", "--lcores"]) {
        let cpus: Vec<u32> =
            core_affinity::get_core_ids().map(|ids| ids.iter().map(|c| c.id as u32).collect()).unwrap_or_default();
        let main = main_lcore(&cfg.workers.lcores, &cpus);
        args.extend(["-l".to_string(), main.to_string()]);
    }
    if !has(&["--no-telemetry", "--telemetry"]) {
        args.push("--no-telemetry".to_string());
    }
    // Without a PCI port, EAL must not touch the machine's PCI devices at all (it would probe,
    // and with a bound driver take, the management NIC); with PCI ports, `-a` allowlists them.
    if !cfg.ports.iter().any(|p| p.is_pci()) && !has(&["--no-pci", "-a", "--allow", "-b", "--block"]) {
        args.push("--no-pci".to_string());
    }
    let n = cfg.workers.lcores.len();
    for p in &cfg.ports {
        let mut dev_args = p.eal_args();
        if let Some(dev) = dev_args.last_mut() {
            if !p.is_pci() && dev.starts_with("net_af_packet") && !dev.contains("qpairs=") {
                dev.push_str(&format!(",qpairs={n}"));
            }
        }
        args.extend(dev_args);
    }
    args
}

/// The CPU for EAL's main lcore (the control thread, mostly asleep): the first CPU this process
/// may run on that no worker uses, else — every CPU has a worker, e.g. two workers on a
/// two-CPU machine — the first allowed CPU, shared with its worker. `cpus` empty = unknown.
pub fn main_lcore(workers: &[u32], cpus: &[u32]) -> u32 {
    if cpus.is_empty() {
        return (0u32..1024).find(|c| !workers.contains(c)).unwrap_or(0);
    }
    cpus.iter().copied().find(|c| !workers.contains(c)).unwrap_or(cpus[0])
}

/// Run the gateway until SIGTERM or SIGINT; SIGHUP reloads the config file.
pub fn run(cfg: Config, opts: RunOptions) -> Result<(), DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(DaemonError::Signal)?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)).map_err(DaemonError::Signal)?;
    let signals = Signals { stop, hup };

    // EAL, with the configured ports turned into --vdev / -a arguments.
    let eal_args = eal_args(&cfg);
    tracing::info!(args = ?eal_args, "initialising EAL");
    let eal = Eal::init(&eal_args).map_err(|e| DaemonError::Eal(e, eal_args.join(" ")))?;

    let result = run_with_eal(&eal, &cfg, &signals, opts);
    if let Err(e) = eal.cleanup() {
        tracing::warn!("rte_eal_cleanup: {e}");
    }
    result
}

/// Flags the signal handlers set.
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

fn run_with_eal(eal: &Eal, cfg: &Config, signals: &Signals, opts: RunOptions) -> Result<(), DaemonError> {
    let n_workers = cfg.workers.lcores.len();
    let pool = Arc::new(
        Mempool::new(eal, "rvs_pktmbuf", cfg.mempool.mbufs, cfg.mempool.cache, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1)
            .map_err(DaemonError::Mempool)?,
    );

    // Ports: find, configure, start. Configured ports are stopped and closed again on the way out.
    let mut started: Vec<u16> = Vec::new();
    let res = (|| {
        let mut ports = Vec::new();
        let mut drivers = Vec::new();
        for p in &cfg.ports {
            let perr = |msg: String| DaemonError::Port { name: p.name.clone(), device: p.device.clone(), msg };
            let id = eal.port_by_name(p.device_name()).map_err(|e| {
                perr(format!(
                    "DPDK has no such port ({e}); check the device string, that the interface or PCI device exists, and the EAL log above"
                ))
            })?;
            let info = dpdk_sys::port_info(eal, id).map_err(|e| perr(e.to_string()))?;
            let conf = PortConf {
                n_rx_queues: n_workers as u16,
                n_tx_queues: n_workers as u16,
                rx_desc: p.rx_desc,
                tx_desc: p.tx_desc,
                mtu: Some(p.mtu),
                rss: n_workers > 1,
                promiscuous: p.promiscuous,
            };
            let configured = dpdk_sys::port_configure(eal, id, &conf, &pool).map_err(|e| perr(e.to_string()))?;
            // What the driver could not do and rvsd runs without (RSS, setting the MTU).
            for note in &configured.notes {
                tracing::warn!(port = %p.name, id, driver = %info.driver, "{note}");
            }
            started.push(id);
            dpdk_sys::port_start(id).map_err(|e| perr(e.to_string()))?;
            tracing::info!(port = %p.name, id, driver = %info.driver, mac = %crate::control::fmt_mac(&info.mac),
                queues = n_workers, ?configured, "port started");
            drivers.push(info.driver.clone());
            ports.push(PortInfo {
                id,
                name: p.name.clone(),
                mac: info.mac,
                addrs: p.ipv4_addrs().to_vec(),
                mtu: p.mtu,
            });
        }
        serve(eal, cfg, ports, drivers, Arc::clone(&pool), signals, opts)
    })();

    for id in started {
        if let Err(e) = dpdk_sys::port_stop(id) {
            tracing::debug!(port = id, "stop: {e}");
        }
        if let Err(e) = dpdk_sys::port_close(id) {
            tracing::warn!(port = id, "close: {e}");
        }
    }
    // Mbufs still in rx/tx rings were freed by close; the pool itself lives until EAL cleanup.
    drop(pool);
    res
}

/// Workers and the control socket, until stopped.
fn serve(
    eal: &Eal,
    cfg: &Config,
    ports: Vec<PortInfo>,
    drivers: Vec<String>,
    pool: Arc<Mempool>,
    signals: &Signals,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    let routes: Vec<StaticRoute> = cfg
        .routes
        .iter()
        .map(|r| {
            let (prefix, len) = r.prefix_v4();
            let port = ports.iter().find(|p| p.name == r.port).map(|p| p.id).unwrap_or(u16::MAX);
            StaticRoute { prefix, len, port, via: r.via_v4() }
        })
        .collect();
    let table = cfg.service_table();
    let n_workers = cfg.workers.lcores.len();
    let probe_ports: Vec<(u16, String, String)> =
        ports.iter().zip(&drivers).map(|(p, d)| (p.id, p.name.clone(), d.clone())).collect();
    let control = Arc::new(
        Control::new(ports.clone(), drivers.clone(), routes, table, reload::tunables(cfg), n_workers)
            .map_err(DaemonError::Config)?,
    );
    let shared = Arc::clone(control.shared());

    // Between the workers: redirect rings and neighbour inboxes (dropped after they join).
    let fabric = Arc::new(Fabric::new(eal, n_workers, workers::REDIRECT_RING_SIZE).map_err(DaemonError::Rings)?);
    // FULLNAT reply steering for the configured local addresses; kept in step with every
    // published snapshot by the loop below.
    let steering: SteeringHandle = Arc::new(parking_lot::Mutex::new(Steering::probe(&probe_ports, n_workers)));
    let mut steered_gen = {
        let snap = shared.snapshot.load();
        steering.lock().sync(&snap.laddrs);
        snap.generation
    };

    let dp = WorkerConfig {
        core: 0,
        n_cores: n_workers,
        max_sessions: cfg.sessions.max_per_worker as usize,
        timeouts: reload::timeouts(cfg),
        neigh: neigh(cfg),
        expire_budget: 256,
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        secret: host_secret(),
        rs_time_wait_ns: u64::from(cfg.sessions.rs_time_wait_s).saturating_mul(1_000_000_000),
        ..WorkerConfig::default()
    };
    let port_ids: Vec<u16> = ports.iter().map(|p| p.id).collect();
    let mut handles = Vec::new();
    for (idx, &cpu) in cfg.workers.lcores.iter().enumerate() {
        let lc = LoopConfig {
            idx,
            cpu: cpu as usize,
            ports: port_ids.clone(),
            burst: usize::from(cfg.workers.burst),
            idle_polls: cfg.workers.idle_polls,
            idle_sleep: Duration::from_micros(cfg.workers.idle_sleep_us),
            dataplane: WorkerConfig { core: idx, ..dp.clone() },
        };
        let pool = Arc::clone(&pool);
        let shared = Arc::clone(&shared);
        let fabric = Arc::clone(&fabric);
        let h = std::thread::Builder::new()
            .name(format!("rvs-worker-{idx}"))
            .spawn(move || workers::run(lc, pool, shared, fabric))
            .map_err(DaemonError::Thread)?;
        handles.push(h);
    }

    let result = (|| {
        let server = rvs_ctrl::server::Server::bind(&cfg.ctrl.socket)
            .map_err(|err| DaemonError::Socket { path: cfg.ctrl.socket.display().to_string(), err })?;
        let c = Arc::clone(&control);
        let handle = server.run(Arc::new(move |req| c.handle(req)));
        let reloads = Arc::new(ReloadCount::default());
        let reloader =
            Arc::new(Reloader::new(opts.config_path.clone(), Arc::clone(&control), cfg.clone(), opts.set_log));
        {
            // Weak: the control plane holds the hook, the reloader holds the control plane.
            let (r, n) = (Arc::downgrade(&reloader), Arc::clone(&reloads));
            control.set_reload_hook(Box::new(move || {
                let Some(r) = r.upgrade() else { return rvs_ctrl::proto::Response::error("rvsd is stopping") };
                let res = r.reload_logged("rvsadm");
                n.count(&res);
                match res {
                    Ok(diff) => rvs_ctrl::proto::Response::Reloaded { changes: diff.lines() },
                    // The wire boundary: rvsadm gets the message.
                    Err(e) => rvs_ctrl::proto::Response::Error { message: e.to_string() },
                }
            }));
        }
        let metrics = match cfg.metrics_listen() {
            None => None,
            Some(addr) => {
                let collect = collector(Arc::clone(&control), ports.clone(), drivers.clone(), Arc::clone(&reloads));
                let m = MetricsServer::start(addr, collect).map_err(|err| DaemonError::Metrics { addr, err });
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        handle.shutdown();
                        return Err(e);
                    }
                };
                tracing::info!(listen = %m.local_addr(), "metrics endpoint ready: GET /metrics");
                Some(m)
            }
        };
        tracing::info!(socket = %cfg.ctrl.socket.display(), workers = n_workers, config = %opts.config_path.display(), "rvsd ready");
        let mut links = LinkWatch::new(&ports);
        while !signals.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if signals.hup.swap(false, Ordering::Relaxed) {
                reloads.count(&reloader.reload_logged("SIGHUP"));
            }
            let snap = shared.snapshot.load();
            if snap.generation != steered_gen {
                steered_gen = snap.generation;
                steering.lock().sync(&snap.laddrs);
            }
            links.poll();
        }
        tracing::info!("stopping");
        if let Some(m) = metrics {
            m.shutdown();
        }
        handle.shutdown();
        Ok(())
    })();

    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        if h.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    // Rules go while the ports still run; the rings (and the mbufs left in them) before the
    // ports close and EAL cleans up.
    steering.lock().clear();
    drop(fabric);
    result
}

/// Reloads applied and refused, for the metrics.
#[derive(Default)]
struct ReloadCount {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ReloadCount {
    fn count<T, E>(&self, r: &Result<T, E>) {
        let c = if r.is_ok() { &self.ok } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs link up/down changes of the ports, checked once a second.
struct LinkWatch {
    ports: Vec<(u16, String, bool)>,
    next: Instant,
}

impl LinkWatch {
    fn new(ports: &[PortInfo]) -> LinkWatch {
        let ports = ports
            .iter()
            .map(|p| {
                let l = dpdk_sys::port_link(p.id);
                tracing::info!(port = %p.name, up = l.up, speed_mbps = l.speed_mbps, "link state");
                (p.id, p.name.clone(), l.up)
            })
            .collect();
        LinkWatch { ports, next: Instant::now() + Duration::from_secs(1) }
    }

    fn poll(&mut self) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + Duration::from_secs(1);
        for (id, name, up) in &mut self.ports {
            let l = dpdk_sys::port_link(*id);
            if l.up != *up {
                *up = l.up;
                if l.up {
                    tracing::info!(port = %name, speed_mbps = l.speed_mbps, "link up");
                } else {
                    tracing::warn!(port = %name, "link down");
                }
            }
        }
    }
}

/// What one Prometheus scrape reads: the workers' published stats, the services with their
/// session counts, and the DPDK port counters.
fn collector(
    control: Arc<Control>,
    ports: Vec<PortInfo>,
    drivers: Vec<String>,
    reloads: Arc<ReloadCount>,
) -> metrics::Collect {
    let start_time_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Arc::new(move || {
        let shared = control.shared();
        let rs_stats = shared.service_stats();
        let mut d = MetricsData {
            version: crate::version().to_string(),
            start_time_s,
            counters: shared.counters().pairs(),
            worker_sessions: shared.stats.iter().map(|s| s.lock().counters.sessions_active).collect(),
            reloads_ok: reloads.ok.load(Ordering::Relaxed),
            reloads_failed: reloads.failed.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (p, driver) in ports.iter().zip(&drivers) {
            let stats = dpdk_sys::port_stats(p.id).map(|s| s.pairs()).unwrap_or_default();
            d.ports.push(PortMetrics {
                name: p.name.clone(),
                driver: driver.clone(),
                link_up: dpdk_sys::port_link(p.id).up,
                stats,
            });
        }
        if let rvs_ctrl::proto::Response::Services { services } =
            control.handle(rvs_ctrl::proto::Request::List { key: None })
        {
            for st in services {
                let s = &st.service;
                let reals = s
                    .reals
                    .iter()
                    .zip(st.conns.iter().chain(std::iter::repeat(&(0, 0))))
                    .map(|(r, &(active, inactive))| RsMetrics {
                        rs: r.addr.to_string(),
                        fwd: fwd_label(r.fwd).to_string(),
                        weight: r.weight,
                        active,
                        inactive,
                        counters: rs_stats.get(&(s.key, r.addr)).copied(),
                    })
                    .collect();
                d.services.push(ServiceMetrics { service: s.key.to_string(), sched: s.sched.to_string(), reals });
            }
        }
        metrics::render(&d)
    })
}

/// The config's word for a forwarding mode, as a metric label.
fn fwd_label(f: rvs_config::model::FwdMode) -> &'static str {
    use rvs_config::model::FwdMode;
    match f {
        FwdMode::Dr => "dr",
        FwdMode::Tun => "tun",
        FwdMode::Nat => "nat",
        FwdMode::FullNat => "fullnat",
    }
}

fn neigh(cfg: &Config) -> NeighConfig {
    let n = &cfg.neigh;
    NeighConfig {
        max_entries: n.max_entries as usize,
        pending_per_entry: n.pending_per_entry as usize,
        pending_total: n.pending_total as usize,
        retry_ns: n.retry_ns(),
        max_requests: n.max_requests,
        reachable_ns: n.reachable_ns(),
    }
}

/// The dataplane's secret for FULLNAT's initial sequence numbers and timestamps: stable on this
/// host (a hash of `/etc/machine-id`), so that a restarted rvsd keeps giving every tuple newer
/// numbers than its predecessor did (real servers hold the old ones in TIME_WAIT for a minute);
/// random when there is no machine id, with a warning.
fn host_secret() -> u64 {
    use std::hash::{Hash, Hasher};
    match std::fs::read_to_string("/etc/machine-id") {
        Ok(id) if !id.trim().is_empty() => {
            // std's DefaultHasher::new() has fixed keys: the same id gives the same secret on
            // every run.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ("rvs-fullnat-isn", id.trim()).hash(&mut h);
            h.finish()
        }
        _ => {
            tracing::warn!(
                "no /etc/machine-id: FULLNAT sequence numbers get a new secret per run, so right after a \
                 restart some connections to ports the previous run used may be refused by real servers \
                 still holding them in TIME_WAIT"
            );
            random_u64()
        }
    }
}

/// 64 random bits from the operating system (std draws its hash keys from it), for the
/// dataplane's secrets.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5276_7373);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::main_lcore;

    #[test]
    fn main_lcore_avoids_workers_but_never_leaves_the_machine() {
        assert_eq!(main_lcore(&[1], &[0, 1]), 0);
        assert_eq!(main_lcore(&[0], &[0, 1]), 1);
        assert_eq!(main_lcore(&[0, 1], &[0, 1]), 0, "all CPUs busy: share the first");
        assert_eq!(main_lcore(&[2, 3], &[2, 3, 4]), 4);
        assert_eq!(main_lcore(&[0, 1], &[]), 2, "CPU set unknown: first id no worker uses");
    }
}
