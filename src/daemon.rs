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

use crate::control::Control;
use crate::flow::{Steering, SteeringHandle};
use crate::workers::{self, Fabric, LoopConfig};
use dpdk_sys::{Eal, Mempool, PortConf};
use rvs_config::file::Config;
use rvs_dataplane::conn::Timeouts;
use rvs_dataplane::neigh::NeighConfig;
use rvs_dataplane::snapshot::{PortInfo, StaticRoute, Tunables};
use rvs_dataplane::worker::WorkerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    Config(String),
    #[error("control socket {path}: {err}")]
    Socket { path: String, err: std::io::Error },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("worker thread: {0}")]
    Thread(std::io::Error),
    #[error("redirect rings between workers: {0}")]
    Rings(dpdk_sys::DpdkError),
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

/// Run the gateway until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(DaemonError::Signal)?;
    }

    // EAL, with the configured ports turned into --vdev / -a arguments.
    let eal_args = eal_args(&cfg);
    tracing::info!(args = ?eal_args, "initialising EAL");
    let eal = Eal::init(&eal_args).map_err(|e| DaemonError::Eal(e, eal_args.join(" ")))?;

    let result = run_with_eal(&eal, &cfg, &stop);
    if let Err(e) = eal.cleanup() {
        tracing::warn!("rte_eal_cleanup: {e}");
    }
    result
}

fn run_with_eal(eal: &Eal, cfg: &Config, stop: &AtomicBool) -> Result<(), DaemonError> {
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
        serve(eal, cfg, ports, drivers, Arc::clone(&pool), stop)
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
    stop: &AtomicBool,
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
        Control::new(ports.clone(), drivers, routes, table, tunables(cfg), n_workers).map_err(DaemonError::Config)?,
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
        timeouts: timeouts(cfg),
        neigh: neigh(cfg),
        expire_budget: 256,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
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
        tracing::info!(socket = %cfg.ctrl.socket.display(), workers = n_workers, "rvsd ready");
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let snap = shared.snapshot.load();
            if snap.generation != steered_gen {
                steered_gen = snap.generation;
                steering.lock().sync(&snap.laddrs);
            }
        }
        tracing::info!("stopping");
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

/// The run-time settings of the config: session timeouts and `expire_nodest_conn`.
fn tunables(cfg: &Config) -> Tunables {
    Tunables { timeouts: timeouts(cfg), expire_nodest_conn: cfg.sessions.expire_nodest_conn }
}

fn timeouts(cfg: &Config) -> Timeouts {
    let t = cfg.timeouts_ns();
    Timeouts {
        tcp_syn_recv_ns: t.tcp_syn_recv_ns,
        tcp_established_ns: t.tcp_established_ns,
        tcp_fin_wait_ns: t.tcp_fin_wait_ns,
        tcp_close_ns: t.tcp_close_ns,
        udp_ns: t.udp_ns,
        ..Timeouts::default()
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
