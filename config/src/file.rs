//! The rvsd TOML configuration file.
//!
//! Parsing happens in two steps: serde reads the TOML (syntax and type errors carry the key and
//! line, unknown keys are refused everywhere), then [`Config::parse`] checks what types cannot
//! say, naming the offending field by its path, e.g.
//! `port[1].addrs[0]: "203.0.113.2/33": prefix length 33 is over 32`.
//! The services of the file go through the same validation as `rvsadm` commands
//! ([`crate::services`]), so both refuse the same things with the same words.
//!
//! A commented example is [`EXAMPLE`].

use crate::model::{
    parse_real_addr, prefix_mask, same_subnet, ClientAddrMode, FwdMode, Persistence, Proto, RealServer, SchedKind,
    Service, ServiceKey, SessionTimeouts, UnknownName,
};
use crate::services::{self, ModelError, Problem, ServiceTable};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// A complete, commented rvsd configuration (what `deploy/rvsd.example.toml` holds).
pub const EXAMPLE: &str = r#"# rvsd configuration. Every section is optional except [[port]].

[eal]
# Extra DPDK EAL arguments, passed as given (the [[port]] devices add their own -a/--vdev).
args = ["--no-huge", "-m", "512", "--file-prefix", "rvs-lab"]

[workers]
# CPU ids; one pinned packet worker per entry. Unique, below 1024.
lcores = [1]
# Back-off sleep (microseconds) once a worker has polled `idle_polls` times without a packet;
# 0 = pure busy polling (lowest latency, one full core per worker).
idle_sleep_us = 100
idle_polls = 64
# Packets per rx/tx burst, 1..=64.
burst = 32

[sessions]
# Connection-table capacity of each worker.
max_per_worker = 1048576
# Idle timeouts per state, seconds (IPVS defaults).
tcp_syn_recv_s = 60
tcp_established_s = 900
tcp_fin_wait_s = 120
tcp_close_s = 10
udp_s = 300
# Drop the sessions of a deleted real server at once instead of letting them run out
# (IPVS's expire_nodest_conn sysctl; at run time: rvsadm --set-expire-nodest-conn on|off).
expire_nodest_conn = false
# How long the real servers keep a closed connection in TIME_WAIT (2 x MSL; 60 s on Linux):
# a FULLNAT local port handed out again towards the same server sooner is counted
# (lport_reused_early), a sign that the service needs more local addresses.
rs_time_wait_s = 60

[neigh]
# ARP: packets held per unresolved next hop and in total, request interval, requests before
# giving up, and how long an answer is trusted.
max_entries = 4096
pending_per_entry = 16
pending_total = 1024
retry_ms = 1000
max_requests = 3
reachable_s = 300

[ctrl]
# Unix socket rvsadm talks to (mode 0600: root only).
socket = "/run/rvs/rvsd.sock"

[mempool]
# Packet buffers per NUMA socket, and the per-lcore cache (<= 512, <= mbufs / 1.5).
mbufs = 16383
cache = 256

[metrics]
# Prometheus text exposition at http://LISTEN/metrics. listen = "" (or enabled = false)
# turns it off. Keep it on loopback or a management address: it has no authentication.
enabled = true
listen = "127.0.0.1:9469"

[log]
# Log filter: a level (error, warn, info, debug, trace, off) or tracing directives such as
# "info,rvs::reload=debug". The RUST_LOG environment variable, when set, overrides it.
level = "info"

[[port]]
# Name used by routes and `rvsadm link show`: 1..=15 characters of [A-Za-z0-9_.-].
name = "eth0"
# A DPDK virtual device ("net_af_packet0,iface=rvs0", "net_tap0,iface=rvs0", ...)
# or a PCI address bound to vfio-pci ("0000:03:00.0").
device = "net_af_packet0,iface=rvs0"
# Local IPv4 addresses of the port (answer ARP/ping, source ARP requests); each adds a
# connected route.
addrs = ["203.0.113.2/24"]
mtu = 1500
rx_desc = 1024
tx_desc = 1024
promiscuous = false

[[route]]
# Default route through a gateway on eth0's subnet; omit `via` for a directly connected prefix.
prefix = "0.0.0.0/0"
via = "203.0.113.1"
port = "eth0"

[[service]]
# Same as: rvsadm -A -t 203.0.113.100:80 -s rr
proto = "tcp"
vip = "203.0.113.100:80"
sched = "rr"

[[service.real]]
# Same as: rvsadm -a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1
addr = "203.0.113.11:80"
fwd = "dr"
weight = 1

[[service.real]]
addr = "203.0.113.12"      # no port: the service port
weight = 2

[[service]]
# Same as: rvsadm -A -t 203.0.113.101:443 -s wlc -p 600 -M 255.255.255.0 --client-addr toa
#          rvsadm --add-laddr -t 203.0.113.101:443 -z 203.0.113.3
proto = "tcp"
vip = "203.0.113.101:443"
sched = "wlc"
# Persistence: same real server for a client (network, with `netmask`) for `persistent` seconds.
persistent = 600
netmask = "255.255.255.0"
# FULLNAT: the source addresses rvs uses towards the real servers, and how the real server
# learns the client address: "toa" (TCP option), "proxy-v2" (PROXY protocol v2) or "none".
laddrs = ["203.0.113.3"]
client_addr = "toa"

[[service.real]]
# Same as: rvsadm -a -t 203.0.113.101:443 -r 198.51.100.11:8443 -b -w 1 -x 1000 -y 800
# (NAT "nat" and FULLNAT "fullnat" may map the port; DR "dr" and TUN "tun" may not.)
addr = "198.51.100.11:8443"
fwd = "fullnat"
u_threshold = 1000
l_threshold = 800
"#;

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io { path: PathBuf, source: std::io::Error },
    /// TOML syntax or type error; toml's message already shows the line, column and key.
    Syntax { file: Option<PathBuf>, message: String },
    /// A value that parses but makes no sense; `field` is its path, e.g. `port[1].addrs[0]`.
    Invalid { file: Option<PathBuf>, field: String, message: String },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { file: None, field: field.into(), message: message.into() }
    }
    fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax { file: Some(path.into()), message },
            ConfigError::Invalid { field, message, .. } => {
                ConfigError::Invalid { file: Some(path.into()), field, message }
            }
            e => e,
        }
    }
    /// The path of the offending field, for semantic errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Syntax { file, message } => {
                if let Some(p) = file {
                    write!(f, "{}: ", p.display())?;
                }
                write!(f, "{}", message.trim_end())
            }
            ConfigError::Invalid { file, field, message } => {
                if let Some(p) = file {
                    write!(f, "{}: ", p.display())?;
                }
                write!(f, "{field}: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `[eal]`
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// Extra EAL arguments, passed as given.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[workers]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// CPU ids, one pinned worker each.
    pub lcores: Vec<u32>,
    /// Sleep after `idle_polls` empty polls, microseconds; 0 = busy poll.
    pub idle_sleep_us: u64,
    pub idle_polls: u32,
    /// rx/tx burst size, 1..=64.
    pub burst: u16,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig { lcores: vec![0], idle_sleep_us: 0, idle_polls: 64, burst: 32 }
    }
}

/// `[sessions]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub max_per_worker: u32,
    pub tcp_syn_recv_s: u32,
    pub tcp_established_s: u32,
    pub tcp_fin_wait_s: u32,
    pub tcp_close_s: u32,
    pub udp_s: u32,
    /// Drop the sessions of a deleted real server at once (IPVS's `expire_nodest_conn`).
    pub expire_nodest_conn: bool,
    /// The real servers' TIME_WAIT, seconds (FULLNAT's `lport_reused_early` counter).
    pub rs_time_wait_s: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        let ipvs = SessionTimeouts::IPVS;
        SessionsConfig {
            max_per_worker: 1 << 20,
            tcp_syn_recv_s: ipvs.tcp_syn_recv_s,
            tcp_established_s: ipvs.tcp_established_s,
            tcp_fin_wait_s: ipvs.tcp_fin_wait_s,
            tcp_close_s: ipvs.tcp_close_s,
            udp_s: ipvs.udp_s,
            expire_nodest_conn: false,
            rs_time_wait_s: 60,
        }
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// `[neigh]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeighSettings {
    pub max_entries: u32,
    pub pending_per_entry: u32,
    pub pending_total: u32,
    pub retry_ms: u64,
    pub max_requests: u32,
    pub reachable_s: u64,
}

impl Default for NeighSettings {
    fn default() -> Self {
        NeighSettings {
            max_entries: 4096,
            pending_per_entry: 16,
            pending_total: 1024,
            retry_ms: 1000,
            max_requests: 3,
            reachable_s: 300,
        }
    }
}

impl NeighSettings {
    pub fn retry_ns(&self) -> u64 {
        self.retry_ms.saturating_mul(1_000_000)
    }
    pub fn reachable_ns(&self) -> u64 {
        self.reachable_s.saturating_mul(NS_PER_S)
    }
}

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// `[ctrl]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CtrlConfig {
    pub socket: PathBuf,
}

impl Default for CtrlConfig {
    fn default() -> Self {
        CtrlConfig { socket: PathBuf::from(DEFAULT_SOCKET) }
    }
}

/// `[mempool]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    pub mbufs: u32,
    pub cache: u32,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig { mbufs: 16383, cache: 256 }
    }
}

/// Default Prometheus listen address: loopback only (the endpoint has no authentication).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9469";

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `IP:PORT` of the HTTP endpoint; empty disables it.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: DEFAULT_METRICS_LISTEN.into() }
    }
}

/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level or comma-separated tracing directives (`target=level`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: DEFAULT_LOG_LEVEL.into() }
    }
}

/// Whether `s` is a level name tracing knows.
fn is_level(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "error" | "warn" | "info" | "debug" | "trace" | "off")
}

/// Check a log filter: comma-separated `LEVEL` or `TARGET=LEVEL` directives, TARGET a Rust
/// module path. (tracing-subscriber accepts more — span filters — but a config needs no more.)
fn check_log_level(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty (e.g. \"info\")".into());
    }
    for d in s.split(',').map(str::trim) {
        let ok = match d.split_once('=') {
            None => is_level(d),
            Some((target, level)) => {
                !target.is_empty()
                    && target.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && is_level(level)
            }
        };
        if !ok {
            return Err(format!(
                "directive \"{d}\" is not LEVEL or TARGET=LEVEL (levels: error, warn, info, debug, trace, off)"
            ));
        }
    }
    Ok(())
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// A DPDK vdev string (`net_...`) or a PCI address (`0000:03:00.0`), either with
    /// `,key=value` devargs (`0000:3b:00.0,dv_flow_en=1`).
    pub device: String,
    /// IPv4 CIDRs as written; see [`PortConfig::ipv4_addrs`] for the parsed form.
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    #[serde(default)]
    pub promiscuous: bool,
    /// Filled by validation.
    #[serde(skip)]
    parsed_addrs: Vec<(Ipv4Addr, u8)>,
}

fn default_mtu() -> u16 {
    1500
}
fn default_desc() -> u16 {
    1024
}

impl PortConfig {
    /// The port's addresses with their prefix lengths (validated at parse time).
    pub fn ipv4_addrs(&self) -> &[(Ipv4Addr, u8)] {
        &self.parsed_addrs
    }
    /// Whether the device is a PCI address (else a vdev).
    pub fn is_pci(&self) -> bool {
        is_pci_addr(self.device_name())
    }
    /// The EAL arguments that attach this device: `-a PCI` or `--vdev STRING`.
    pub fn eal_args(&self) -> Vec<String> {
        if self.is_pci() {
            vec!["-a".into(), self.device.clone()]
        } else {
            vec!["--vdev".into(), self.device.clone()]
        }
    }
    /// The DPDK device name: the PCI address, or the vdev string before its first ','.
    pub fn device_name(&self) -> &str {
        self.device.split(',').next().unwrap_or("")
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    #[serde(default)]
    pub via: Option<String>,
    pub port: String,
    #[serde(skip)]
    parsed: Option<ParsedRoute>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedRoute {
    prefix: (Ipv4Addr, u8),
    via: Option<Ipv4Addr>,
}

impl RouteConfig {
    /// Destination prefix (validated: host bits are zero).
    pub fn prefix_v4(&self) -> (Ipv4Addr, u8) {
        self.parsed.map(|p| p.prefix).unwrap_or((Ipv4Addr::UNSPECIFIED, 0))
    }
    /// Gateway, `None` for a directly connected prefix.
    pub fn via_v4(&self) -> Option<Ipv4Addr> {
        self.parsed.and_then(|p| p.via)
    }
}

/// One `[[service.real]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealConfig {
    /// `RIP:PORT` or `RIP` (port = service port).
    pub addr: String,
    /// dr | tun | nat | fullnat (also ipvsadm's words: route, ipip, masq, ...).
    #[serde(default = "default_fwd")]
    pub fwd: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub u_threshold: u32,
    #[serde(default)]
    pub l_threshold: u32,
}

fn default_fwd() -> String {
    "dr".into()
}
fn default_weight() -> u32 {
    1
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub proto: Proto,
    /// `VIP:PORT`
    pub vip: String,
    /// Scheduler name; default wrr.
    #[serde(default = "default_sched")]
    pub sched: String,
    /// Persistence timeout in seconds (`-p`), 1..=31536000.
    #[serde(default)]
    pub persistent: Option<u32>,
    /// Persistence netmask (`-M`), default 255.255.255.255.
    #[serde(default)]
    pub netmask: Option<String>,
    /// FULLNAT local addresses (DPVS's `--add-laddr`), IPv4.
    #[serde(default)]
    pub laddrs: Vec<String>,
    /// FULLNAT client-address mode: toa (default) | proxy-v2 | none.
    #[serde(default)]
    pub client_addr: Option<String>,
    #[serde(default, rename = "real")]
    pub reals: Vec<RealConfig>,
}

fn default_sched() -> String {
    "wrr".into()
}

/// The whole rvsd configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: EalConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub neigh: NeighSettings,
    #[serde(default)]
    pub ctrl: CtrlConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// Built by validation from `services`.
    #[serde(skip)]
    table: ServiceTable,
}

impl Config {
    /// Read and validate a config file; errors name the file.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Config::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parse and validate config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { file: None, message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The services of the file, validated and normalised.
    pub fn service_table(&self) -> ServiceTable {
        self.table.clone()
    }

    /// The session timeouts: the file's `[sessions]` keys, IPVS's defaults for the states it has
    /// no key for.
    pub fn timeouts(&self) -> SessionTimeouts {
        let s = &self.sessions;
        SessionTimeouts {
            tcp_syn_recv_s: s.tcp_syn_recv_s,
            tcp_established_s: s.tcp_established_s,
            tcp_fin_wait_s: s.tcp_fin_wait_s,
            tcp_close_s: s.tcp_close_s,
            udp_s: s.udp_s,
            ..SessionTimeouts::IPVS
        }
    }

    /// Where the Prometheus endpoint listens; `None` when disabled.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        if !self.metrics.enabled || self.metrics.listen.trim().is_empty() {
            return None;
        }
        // Validated at parse time.
        self.metrics.listen.trim().parse().ok()
    }

    /// Worker idle back-off sleep, nanoseconds (0 = busy poll).
    pub fn idle_sleep_ns(&self) -> u64 {
        self.workers.idle_sleep_us.saturating_mul(1000)
    }

    /// The EAL arguments attaching every port's device, in port order.
    pub fn ports_eal_args(&self) -> Vec<String> {
        self.ports.iter().flat_map(|p| p.eal_args()).collect()
    }

    /// The port with this name and its index (= the order of `[[port]]` entries).
    pub fn port_by_name(&self, name: &str) -> Option<(usize, &PortConfig)> {
        self.ports.iter().enumerate().find(|(_, p)| p.name == name)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.validate_workers()?;
        self.validate_sessions()?;
        self.validate_neigh()?;
        self.validate_ctrl()?;
        self.validate_mempool()?;
        self.validate_metrics()?;
        check_log_level(&self.log.level).map_err(|m| ConfigError::invalid("log.level", m))?;
        self.validate_ports()?;
        self.validate_routes()?;
        self.table = self.build_services()?;
        Ok(())
    }

    fn validate_workers(&self) -> Result<(), ConfigError> {
        let w = &self.workers;
        if w.lcores.is_empty() {
            return Err(ConfigError::invalid("workers.lcores", "at least one lcore is needed"));
        }
        for (i, &c) in w.lcores.iter().enumerate() {
            if c >= 1024 {
                return Err(ConfigError::invalid(
                    format!("workers.lcores[{i}]"),
                    format!("lcore {c} is not below 1024"),
                ));
            }
            if let Some(j) = w.lcores[..i].iter().position(|&d| d == c) {
                return Err(ConfigError::invalid(
                    format!("workers.lcores[{i}]"),
                    format!("lcore {c} is listed twice (also workers.lcores[{j}])"),
                ));
            }
        }
        if !(1..=64).contains(&w.burst) {
            return Err(ConfigError::invalid("workers.burst", format!("{} is not in 1..=64", w.burst)));
        }
        Ok(())
    }

    fn validate_sessions(&self) -> Result<(), ConfigError> {
        let s = &self.sessions;
        for (name, v) in [
            ("max_per_worker", s.max_per_worker),
            ("tcp_syn_recv_s", s.tcp_syn_recv_s),
            ("tcp_established_s", s.tcp_established_s),
            ("tcp_fin_wait_s", s.tcp_fin_wait_s),
            ("tcp_close_s", s.tcp_close_s),
            ("udp_s", s.udp_s),
            ("rs_time_wait_s", s.rs_time_wait_s),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(format!("sessions.{name}"), "must be greater than 0"));
            }
        }
        Ok(())
    }

    fn validate_neigh(&self) -> Result<(), ConfigError> {
        let n = &self.neigh;
        for (name, v) in [
            ("max_entries", u64::from(n.max_entries)),
            ("pending_per_entry", u64::from(n.pending_per_entry)),
            ("pending_total", u64::from(n.pending_total)),
            ("retry_ms", n.retry_ms),
            ("max_requests", u64::from(n.max_requests)),
            ("reachable_s", n.reachable_s),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(format!("neigh.{name}"), "must be greater than 0"));
            }
        }
        Ok(())
    }

    fn validate_ctrl(&self) -> Result<(), ConfigError> {
        let len = self.ctrl.socket.as_os_str().len();
        if len == 0 {
            return Err(ConfigError::invalid("ctrl.socket", "must not be empty"));
        }
        // sun_path is 108 bytes including the terminating NUL.
        if len > 107 {
            return Err(ConfigError::invalid(
                "ctrl.socket",
                format!("path is {len} bytes long; Unix socket paths are limited to 107"),
            ));
        }
        Ok(())
    }

    fn validate_mempool(&self) -> Result<(), ConfigError> {
        let m = &self.mempool;
        if m.mbufs == 0 {
            return Err(ConfigError::invalid("mempool.mbufs", "must be greater than 0"));
        }
        // RTE_MEMPOOL_CACHE_MAX_SIZE, and rte_mempool_create's cache_size * 1.5 <= n rule.
        if m.cache > 512 {
            return Err(ConfigError::invalid("mempool.cache", format!("{} is over DPDK's maximum 512", m.cache)));
        }
        if u64::from(m.cache) * 3 / 2 > u64::from(m.mbufs) {
            return Err(ConfigError::invalid(
                "mempool.cache",
                format!("{} is too large for {} mbufs (DPDK needs cache * 1.5 <= mbufs)", m.cache, m.mbufs),
            ));
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), ConfigError> {
        let l = self.metrics.listen.trim();
        if !self.metrics.enabled || l.is_empty() {
            return Ok(());
        }
        let addr: SocketAddr = l.parse().map_err(|_| {
            ConfigError::invalid(
                "metrics.listen",
                format!("\"{l}\" is not IP:PORT (e.g. \"{DEFAULT_METRICS_LISTEN}\"; \"\" disables)"),
            )
        })?;
        if addr.port() == 0 {
            return Err(ConfigError::invalid("metrics.listen", format!("\"{l}\": port 0 is not allowed")));
        }
        Ok(())
    }

    fn validate_ports(&mut self) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(ConfigError::invalid("port", "at least one [[port]] is needed"));
        }
        // (address, where) of every address seen so far, to refuse duplicates across ports.
        let mut seen_addrs: HashMap<Ipv4Addr, String> = HashMap::new();
        for i in 0..self.ports.len() {
            let p = &self.ports[i];
            let at = |f: &str| format!("port[{i}].{f}");
            let n = &p.name;
            if n.is_empty() || n.len() > 15 {
                return Err(ConfigError::invalid(at("name"), format!("\"{n}\" must be 1 to 15 characters long")));
            }
            if let Some(c) = n.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
                return Err(ConfigError::invalid(
                    at("name"),
                    format!("\"{n}\" contains {c:?}; use only A-Z a-z 0-9 _ . -"),
                ));
            }
            if let Some(j) = self.ports[..i].iter().position(|q| q.name == *n) {
                return Err(ConfigError::invalid(at("name"), format!("duplicate port name \"{n}\" (also port[{j}])")));
            }
            check_device(&p.device).map_err(|m| ConfigError::invalid(at("device"), m))?;
            if let Some(j) = self.ports[..i].iter().position(|q| q.device_name() == p.device_name()) {
                return Err(ConfigError::invalid(
                    at("device"),
                    format!("device \"{}\" is already used by port[{j}]", p.device_name()),
                ));
            }
            if !(68..=9600).contains(&p.mtu) {
                return Err(ConfigError::invalid(at("mtu"), format!("{} is not in 68..=9600", p.mtu)));
            }
            for (f, v) in [("rx_desc", p.rx_desc), ("tx_desc", p.tx_desc)] {
                if !(64..=4096).contains(&v) || !v.is_power_of_two() {
                    return Err(ConfigError::invalid(at(f), format!("{v} is not a power of two in 64..=4096")));
                }
            }
            let mut parsed = Vec::with_capacity(p.addrs.len());
            for (k, a) in p.addrs.iter().enumerate() {
                let field = format!("port[{i}].addrs[{k}]");
                let (ip, len) = parse_cidr(a).map_err(|m| ConfigError::invalid(&field, m))?;
                check_interface_addr(ip, len).map_err(|m| ConfigError::invalid(&field, format!("\"{a}\": {m}")))?;
                if let Some(other) = seen_addrs.insert(ip, field.clone()) {
                    return Err(ConfigError::invalid(&field, format!("\"{a}\": address {ip} is also in {other}")));
                }
                parsed.push((ip, len));
            }
            self.ports[i].parsed_addrs = parsed;
        }
        Ok(())
    }

    fn validate_routes(&mut self) -> Result<(), ConfigError> {
        for i in 0..self.routes.len() {
            let r = &self.routes[i];
            let at = |f: &str| format!("route[{i}].{f}");
            let (net, len) = parse_cidr(&r.prefix).map_err(|m| ConfigError::invalid(at("prefix"), m))?;
            let mask = prefix_mask(len);
            if u32::from(net) & !mask != 0 {
                let want = Ipv4Addr::from(u32::from(net) & mask);
                return Err(ConfigError::invalid(
                    at("prefix"),
                    format!("\"{}\" has host bits set (did you mean \"{want}/{len}\"?)", r.prefix),
                ));
            }
            if let Some(j) = self.routes[..i].iter().position(|q| q.parsed.map(|p| p.prefix) == Some((net, len))) {
                return Err(ConfigError::invalid(
                    at("prefix"),
                    format!("duplicate route to {net}/{len} (also route[{j}])"),
                ));
            }
            let Some((_, port)) = self.port_by_name(&r.port) else {
                let names: Vec<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigError::invalid(
                    at("port"),
                    format!("no port named \"{}\" (ports: {})", r.port, names.join(", ")),
                ));
            };
            let via = match &r.via {
                None => None,
                Some(v) => {
                    let gw: Ipv4Addr = v
                        .parse()
                        .map_err(|_| ConfigError::invalid(at("via"), format!("\"{v}\" is not an IPv4 address")))?;
                    if gw.is_unspecified() || gw.is_broadcast() || gw.is_multicast() || gw.is_loopback() {
                        return Err(ConfigError::invalid(at("via"), format!("{gw} cannot be a gateway")));
                    }
                    // The gateway must be resolvable by ARP on the port, i.e. on one of its subnets.
                    let on_link = port.ipv4_addrs().iter().any(|&(a, l)| same_subnet(a, gw, l));
                    if !on_link {
                        let subnets: Vec<String> = port.addrs.clone();
                        return Err(ConfigError::invalid(
                            at("via"),
                            format!(
                                "gateway {gw} is not on a subnet of port \"{}\" (addrs: [{}])",
                                port.name,
                                subnets.join(", ")
                            ),
                        ));
                    }
                    if port.ipv4_addrs().iter().any(|&(a, _)| a == gw) {
                        return Err(ConfigError::invalid(at("via"), format!("gateway {gw} is the port's own address")));
                    }
                    Some(gw)
                }
            };
            self.routes[i].parsed = Some(ParsedRoute { prefix: (net, len), via });
        }
        Ok(())
    }

    fn build_services(&self) -> Result<ServiceTable, ConfigError> {
        let mut out: Vec<Service> = Vec::with_capacity(self.services.len());
        for (i, s) in self.services.iter().enumerate() {
            let at = |f: &str| {
                if f.is_empty() {
                    format!("service[{i}]")
                } else {
                    format!("service[{i}].{f}")
                }
            };
            let vip: SocketAddr = s.vip.parse().map_err(|_| {
                ConfigError::invalid(at("vip"), format!("\"{}\" is not a valid IPv4 address:port", s.vip))
            })?;
            let key = ServiceKey { proto: s.proto, vip };
            let sched: SchedKind =
                s.sched.parse().map_err(|e: UnknownName| ConfigError::invalid(at("sched"), e.to_string()))?;
            let persistence = match s.persistent {
                None => {
                    if s.netmask.is_some() {
                        return Err(ConfigError::invalid(at("netmask"), "netmask needs persistent"));
                    }
                    None
                }
                Some(t) => {
                    let netmask = match &s.netmask {
                        None => Ipv4Addr::BROADCAST,
                        Some(m) => m.parse().map_err(|_| {
                            ConfigError::invalid(at("netmask"), format!("\"{m}\" is not an IPv4 netmask"))
                        })?,
                    };
                    Some(Persistence { timeout_s: t, netmask })
                }
            };
            services::validate_service_params(&key, persistence.as_ref()).map_err(|e| match e {
                ModelError::InvalidService { problem, .. } => {
                    let f = match problem {
                        Problem::PersistTimeout(_) => "persistent",
                        Problem::PersistNetmask(_) => "netmask",
                        _ => "vip",
                    };
                    ConfigError::invalid(at(f), problem.to_string())
                }
                e => ConfigError::invalid(at(""), e.to_string()),
            })?;
            if let Some(j) = out.iter().position(|o| o.key == key) {
                return Err(ConfigError::invalid(at(""), format!("duplicate service {key} (also service[{j}])")));
            }
            let mut reals: Vec<RealServer> = Vec::with_capacity(s.reals.len());
            for (k, r) in s.reals.iter().enumerate() {
                let rat = |f: &str| format!("service[{i}].real[{k}].{f}");
                let addr = parse_real_addr(&r.addr).map_err(|e| {
                    ConfigError::invalid(rat("addr"), format!("\"{}\" is not a valid IPv4 address[:port]", e.0))
                })?;
                let fwd: FwdMode =
                    r.fwd.parse().map_err(|e: UnknownName| ConfigError::invalid(rat("fwd"), e.to_string()))?;
                let rs =
                    RealServer { addr, fwd, weight: r.weight, u_threshold: r.u_threshold, l_threshold: r.l_threshold };
                let rs = services::validate_real(&key, &rs).map_err(|e| match e {
                    ModelError::InvalidReal { problem, .. } => {
                        let f = match problem {
                            Problem::WeightTooBig(_) => "weight",
                            Problem::Thresholds { .. } => "l_threshold",
                            _ => "addr",
                        };
                        ConfigError::invalid(rat(f), problem.to_string())
                    }
                    e => ConfigError::invalid(format!("service[{i}].real[{k}]"), e.to_string()),
                })?;
                if let Some(j) = reals.iter().position(|o| o.addr == rs.addr) {
                    return Err(ConfigError::invalid(
                        rat("addr"),
                        format!("duplicate real server {} (also service[{i}].real[{j}])", rs.addr),
                    ));
                }
                reals.push(rs);
            }
            let client_addr: ClientAddrMode = match &s.client_addr {
                None => ClientAddrMode::default(),
                Some(m) => {
                    m.parse().map_err(|e: UnknownName| ConfigError::invalid(at("client_addr"), e.to_string()))?
                }
            };
            let mut laddrs: Vec<IpAddr> = Vec::with_capacity(s.laddrs.len());
            for (k, l) in s.laddrs.iter().enumerate() {
                let lat = format!("service[{i}].laddrs[{k}]");
                let ip: IpAddr =
                    l.parse().map_err(|_| ConfigError::invalid(&lat, format!("\"{l}\" is not an IPv4 address")))?;
                services::validate_laddr(&key, ip).map_err(|e| match e {
                    ModelError::InvalidLaddr { problem, .. } => ConfigError::invalid(&lat, format!("{ip}: {problem}")),
                    e => ConfigError::invalid(&lat, e.to_string()),
                })?;
                if let Some(j) = laddrs.iter().position(|&o| o == ip) {
                    return Err(ConfigError::invalid(
                        &lat,
                        format!("duplicate local address {ip} (also service[{i}].laddrs[{j}])"),
                    ));
                }
                laddrs.push(ip);
            }
            out.push(Service { key, sched, persistence, laddrs, client_addr, reals });
        }
        // Local addresses and VIPs must be disjoint across services.
        for (i, s) in out.iter().enumerate() {
            for (k, l) in s.laddrs.iter().enumerate() {
                if let Some((j, o)) = out.iter().enumerate().find(|(_, o)| o.key.vip.ip() == *l) {
                    return Err(ConfigError::invalid(
                        format!("service[{i}].laddrs[{k}]"),
                        format!("{l}: the address is the VIP of service {} (service[{j}])", o.key),
                    ));
                }
            }
        }
        // Everything was checked above with field paths; this cannot fail but is not assumed.
        ServiceTable::from_services(out).map_err(|e| ConfigError::invalid("service", e.to_string()))
    }
}

/// Parse `A.B.C.D/LEN`; errors quote the input.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let Some((ip, len)) = s.split_once('/') else {
        return Err(format!("\"{s}\": expected ADDRESS/PREFIXLEN, e.g. \"203.0.113.2/24\""));
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("\"{s}\": {ip} is not an IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| format!("\"{s}\": prefix length \"{len}\" is not a number"))?;
    if len > 32 {
        return Err(format!("\"{s}\": prefix length {len} is over 32"));
    }
    Ok((ip, len))
}

/// An address configured on a port must be a unicast host address of its subnet.
fn check_interface_addr(ip: Ipv4Addr, len: u8) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!("{ip} is not a unicast host address"));
    }
    if len == 0 {
        return Err("prefix length 0 is not a subnet".into());
    }
    // /31 (RFC 3021) and /32 have no network or broadcast address.
    if len < 31 {
        let m = prefix_mask(len);
        let host = u32::from(ip) & !m;
        if host == 0 {
            return Err(format!("{ip} is the network address of its /{len} subnet"));
        }
        if host == !m {
            return Err(format!("{ip} is the broadcast address of its /{len} subnet"));
        }
    }
    Ok(())
}

/// `DDDD:BB:DD.F` or `BB:DD.F` (hex digits).
fn is_pci_addr(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| ('0'..='7').contains(&c))
}

fn check_device(d: &str) -> Result<(), String> {
    let name = d.split(',').next().unwrap_or("");
    // A PCI address, optionally with driver devargs ("0000:3b:00.0,dv_flow_en=1" for mlx5).
    if is_pci_addr(name) {
        return Ok(());
    }
    if name.starts_with("net_") && name.len() > 4 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(());
    }
    Err(format!(
        "\"{d}\" is neither a PCI address (\"0000:03:00.0\") nor a DPDK net vdev (\"net_af_packet0,iface=rvs0\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: &str = "[[port]]\nname = \"eth0\"\ndevice = \"net_tap0\"\naddrs = [\"203.0.113.2/24\"]\n";

    fn err(text: &str) -> String {
        Config::parse(text).expect_err("config should have been refused").to_string()
    }

    /// `extra` appended to a minimal valid config must be refused with `want` in the message.
    fn refused(extra: &str, want: &str) {
        let msg = err(&format!("{PORT}{extra}"));
        assert!(msg.contains(want), "message {msg:?} lacks {want:?}");
    }

    #[test]
    fn example_parses() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.eal.args, ["--no-huge", "-m", "512", "--file-prefix", "rvs-lab"]);
        assert_eq!(c.workers.lcores, [1]);
        assert_eq!(c.workers.idle_sleep_us, 100);
        assert_eq!(c.idle_sleep_ns(), 100_000);
        assert_eq!(c.ctrl.socket, Path::new("/run/rvs/rvsd.sock"));
        assert_eq!(c.ports.len(), 1);
        let p = &c.ports[0];
        assert_eq!(p.ipv4_addrs(), [(Ipv4Addr::new(203, 0, 113, 2), 24)]);
        assert!(!p.is_pci());
        assert_eq!(p.eal_args(), ["--vdev", "net_af_packet0,iface=rvs0"]);
        assert_eq!(c.ports_eal_args(), ["--vdev", "net_af_packet0,iface=rvs0"]);
        assert_eq!(c.routes[0].prefix_v4(), (Ipv4Addr::UNSPECIFIED, 0));
        assert_eq!(c.routes[0].via_v4(), Some(Ipv4Addr::new(203, 0, 113, 1)));
        let t = c.service_table();
        let svcs = t.list();
        assert_eq!(svcs.len(), 2);
        assert_eq!(svcs[0].sched, SchedKind::Rr);
        assert_eq!(svcs[0].reals.len(), 2);
        assert_eq!(svcs[0].reals[1].addr, "203.0.113.12:80".parse().unwrap(), "port defaulted to the service's");
        assert_eq!(svcs[0].reals[1].weight, 2);
        let f = svcs[1];
        assert_eq!(f.sched, SchedKind::Wlc);
        assert_eq!(f.persistence, Some(Persistence { timeout_s: 600, netmask: Ipv4Addr::new(255, 255, 255, 0) }));
        assert_eq!(f.laddrs, ["203.0.113.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(f.client_addr, ClientAddrMode::Toa);
        assert_eq!(
            f.reals[0],
            RealServer {
                addr: "198.51.100.11:8443".parse().unwrap(),
                fwd: FwdMode::FullNat,
                weight: 1,
                u_threshold: 1000,
                l_threshold: 800
            }
        );
        assert!(!c.sessions.expire_nodest_conn);
        assert_eq!(c.timeouts().tcp_established_s, 900);
        assert_eq!(c.neigh.retry_ns(), 1_000_000_000);
        assert_eq!(c.neigh.reachable_ns(), 300 * NS_PER_S);
    }

    #[test]
    fn defaults() {
        let c = Config::parse(PORT).unwrap();
        assert_eq!(c.workers, WorkersConfig::default());
        assert_eq!(c.workers.lcores, [0]);
        assert_eq!(c.workers.burst, 32);
        assert_eq!(c.sessions, SessionsConfig::default());
        assert_eq!(c.ctrl.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.mempool, MempoolConfig { mbufs: 16383, cache: 256 });
        assert_eq!(
            (c.ports[0].mtu, c.ports[0].rx_desc, c.ports[0].tx_desc, c.ports[0].promiscuous),
            (1500, 1024, 1024, false)
        );
        assert!(c.service_table().is_empty());
        assert!(c.eal.args.is_empty());
        let t = c.timeouts();
        assert_eq!((t.tcp_syn_recv_s, t.tcp_fin_wait_s, t.tcp_close_s, t.udp_s), (60, 120, 10, 300));
    }

    #[test]
    fn pci_device() {
        let c = Config::parse("[[port]]\nname = \"p0\"\ndevice = \"0000:03:00.0\"\n").unwrap();
        assert!(c.ports[0].is_pci());
        assert_eq!(c.ports[0].eal_args(), ["-a", "0000:03:00.0"]);
        let c = Config::parse("[[port]]\nname = \"p0\"\ndevice = \"0000:3b:00.0,dv_flow_en=1\"\n").unwrap();
        assert!(c.ports[0].is_pci(), "PCI address with devargs");
        assert_eq!(c.ports[0].eal_args(), ["-a", "0000:3b:00.0,dv_flow_en=1"]);
        assert_eq!(c.ports[0].device_name(), "0000:3b:00.0");
        assert!(is_pci_addr("03:00.1"));
        assert!(!is_pci_addr("0000:03:00.8"));
        assert!(!is_pci_addr("0000:3:00.0"));
    }

    #[test]
    fn syntax_and_type_errors_keep_key_and_line() {
        let msg = err("[[port]]\nname = \"eth0\"\ndevice = \"net_tap0\"\nmtu = \"big\"\n");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("mtu") || msg.contains("invalid type"), "{msg}");
        let msg = err("[workers\n");
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn unknown_fields_refused() {
        refused("[workers]\nlcore = [1]\n", "unknown field `lcore`");
        refused("[sessions]\ntcp_establised_s = 1\n", "unknown field `tcp_establised_s`");
        let msg = err("[[port]]\nname = \"eth0\"\ndevice = \"net_tap0\"\nadrs = []\n");
        assert!(msg.contains("unknown field `adrs`"), "{msg}");
        refused("[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\n[[service.real]]\naddr = \"203.0.113.11\"\nwieght = 1\n", "unknown field `wieght`");
        refused("[bogus]\n", "unknown field `bogus`");
        refused("[[service]]\nproto = \"sctp\"\nvip = \"203.0.113.100:80\"\n", "sctp");
    }

    #[test]
    fn from_path_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rvs-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert!(Config::from_path(&good).is_ok());
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, format!("{PORT}[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"eth9\"\n")).unwrap();
        let msg = Config::from_path(&bad).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}: route[0].port: no port named \"eth9\"", bad.display())), "{msg}");
        let missing = dir.join("missing.toml");
        let msg = Config::from_path(&missing).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("cannot read {}", missing.display())), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let two_ports =
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"198.51.100.2/24\", \"203.0.113.2/33\"]\n";
        refused(two_ports, "port[1].addrs[1]: \"203.0.113.2/33\": prefix length 33 is over 32");
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"198.51.100.2\"]\n",
            "port[1].addrs[0]: \"198.51.100.2\": expected ADDRESS/PREFIXLEN",
        );
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"198.51.100.300/24\"]\n",
            "port[1].addrs[0]: \"198.51.100.300/24\": 198.51.100.300 is not an IPv4 address",
        );
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"198.51.100.0/24\"]\n",
            "port[1].addrs[0]: \"198.51.100.0/24\": 198.51.100.0 is the network address",
        );
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"198.51.100.255/24\"]\n",
            "broadcast address",
        );
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\naddrs = [\"203.0.113.2/24\"]\n",
            "port[1].addrs[0]: \"203.0.113.2/24\": address 203.0.113.2 is also in port[0].addrs[0]",
        );
        refused("[[port]]\nname = \"eth0\"\ndevice = \"net_tap1\"\n", "port[1].name: duplicate port name \"eth0\"");
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap0,iface=x\"\n",
            "port[1].device: device \"net_tap0\" is already used by port[0]",
        );
        refused(
            "[[port]]\nname = \"a-very-long-port-name\"\ndevice = \"net_tap1\"\n",
            "port[1].name: \"a-very-long-port-name\" must be 1 to 15",
        );
        refused("[[port]]\nname = \"eth 1\"\ndevice = \"net_tap1\"\n", "port[1].name: \"eth 1\" contains ' '");
        refused("[[port]]\nname = \"eth1\"\ndevice = \"eth1\"\n", "port[1].device: \"eth1\" is neither a PCI address");
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\nmtu = 10000\n",
            "port[1].mtu: 10000 is not in 68..=9600",
        );
        refused(
            "[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\nrx_desc = 1000\n",
            "port[1].rx_desc: 1000 is not a power of two",
        );
        refused("[[port]]\nname = \"eth1\"\ndevice = \"net_tap1\"\ntx_desc = 8192\n", "port[1].tx_desc: 8192");
        let msg = err("[workers]\nlcores = [1]\n");
        assert!(msg.contains("port: at least one [[port]] is needed"), "{msg}");

        refused("[workers]\nlcores = []\n", "workers.lcores: at least one lcore");
        refused(
            "[workers]\nlcores = [1, 2, 1]\n",
            "workers.lcores[2]: lcore 1 is listed twice (also workers.lcores[0])",
        );
        refused("[workers]\nlcores = [1024]\n", "workers.lcores[0]: lcore 1024 is not below 1024");
        refused("[workers]\nburst = 0\n", "workers.burst: 0 is not in 1..=64");
        refused("[workers]\nburst = 65\n", "workers.burst: 65");
        refused("[sessions]\nudp_s = 0\n", "sessions.udp_s: must be greater than 0");
        refused("[sessions]\nmax_per_worker = 0\n", "sessions.max_per_worker");
        refused("[neigh]\nretry_ms = 0\n", "neigh.retry_ms: must be greater than 0");
        refused("[ctrl]\nsocket = \"\"\n", "ctrl.socket: must not be empty");
        refused(&format!("[ctrl]\nsocket = \"/{}\"\n", "x".repeat(120)), "ctrl.socket: path is 121 bytes");
        refused("[mempool]\ncache = 1024\n", "mempool.cache: 1024 is over DPDK's maximum 512");
        refused("[mempool]\nmbufs = 100\ncache = 256\n", "mempool.cache: 256 is too large for 100 mbufs");
        refused("[mempool]\nmbufs = 0\n", "mempool.mbufs");

        refused(
            "[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"eth9\"\n",
            "route[0].port: no port named \"eth9\" (ports: eth0)",
        );
        refused(
            "[[route]]\nprefix = \"198.51.100.7/24\"\nport = \"eth0\"\n",
            "route[0].prefix: \"198.51.100.7/24\" has host bits set (did you mean \"198.51.100.0/24\"?)",
        );
        refused(
            "[[route]]\nprefix = \"198.51.100.0/40\"\nport = \"eth0\"\n",
            "route[0].prefix: \"198.51.100.0/40\": prefix length 40 is over 32",
        );
        refused(
            "[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"198.51.100.1\"\nport = \"eth0\"\n",
            "route[0].via: gateway 198.51.100.1 is not on a subnet of port \"eth0\"",
        );
        refused(
            "[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"203.0.113.2\"\nport = \"eth0\"\n",
            "route[0].via: gateway 203.0.113.2 is the port's own address",
        );
        refused(
            "[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"gw\"\nport = \"eth0\"\n",
            "route[0].via: \"gw\" is not an IPv4 address",
        );
        refused(
            "[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"203.0.113.1\"\nport = \"eth0\"\n[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"eth0\"\n",
            "route[1].prefix: duplicate route to 0.0.0.0/0 (also route[0])",
        );

        let svc = "[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\n";
        refused(
            "[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.300:80\"\n",
            "service[0].vip: \"203.0.113.300:80\" is not a valid IPv4 address:port",
        );
        refused(
            "[[service]]\nproto = \"tcp\"\nvip = \"[2001:db8::1]:80\"\n",
            "service[0].vip: IPv6 services are not supported yet",
        );
        refused(
            "[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:0\"\n",
            "service[0].vip: service port 0 is not supported",
        );
        refused(&format!("{svc}sched = \"fastest\"\n"), "service[0].sched: unknown scheduler 'fastest'");
        refused(
            &format!("{svc}persistent = 0\n"),
            "service[0].persistent: persistence timeout 0 s is not in 1..=31536000",
        );
        refused(&format!("{svc}persistent = 31536001\n"), "service[0].persistent: persistence timeout 31536001 s");
        refused(
            &format!("{svc}persistent = 60\nnetmask = \"255.0.255.0\"\n"),
            "service[0].netmask: persistence netmask 255.0.255.0 is not a contiguous netmask",
        );
        refused(
            &format!("{svc}persistent = 60\nnetmask = \"/24\"\n"),
            "service[0].netmask: \"/24\" is not an IPv4 netmask",
        );
        refused(
            &format!("{svc}client_addr = \"proxy-v1\"\n"),
            "service[0].client_addr: unknown client-address mode 'proxy-v1'",
        );
        refused(
            &format!("{svc}laddrs = [\"203.0.113.3\", \"x\"]\n"),
            "service[0].laddrs[1]: \"x\" is not an IPv4 address",
        );
        refused(
            &format!("{svc}laddrs = [\"203.0.113.3\", \"203.0.113.3\"]\n"),
            "service[0].laddrs[1]: duplicate local address 203.0.113.3 (also service[0].laddrs[0])",
        );
        refused(
            &format!("{svc}laddrs = [\"2001:db8::3\"]\n"),
            "service[0].laddrs[0]: 2001:db8::3: IPv6 local addresses are not supported yet",
        );
        refused(
            &format!("{svc}laddrs = [\"203.0.113.100\"]\n"),
            "service[0].laddrs[0]: 203.0.113.100: the address is the VIP of service TCP 203.0.113.100:80",
        );
        refused(
            &format!("{svc}laddrs = [\"203.0.113.101\"]\n[[service]]\nproto = \"udp\"\nvip = \"203.0.113.101:53\"\n"),
            "service[0].laddrs[0]: 203.0.113.101: the address is the VIP of service UDP 203.0.113.101:53 (service[1])",
        );
        refused("[sessions]\nexpire_nodest_conn = \"yes\"\n", "invalid type");
        refused(&format!("{svc}netmask = \"255.255.255.0\"\n"), "service[0].netmask: netmask needs persistent");
        refused(&format!("{svc}{svc}"), "service[1]: duplicate service TCP 203.0.113.100:80 (also service[0])");
        let real = |body: &str| format!("{svc}[[service.real]]\naddr = \"203.0.113.11:80\"\n[[service.real]]\n{body}");
        refused(
            &real("addr = \"203.0.113.12:8080\"\nfwd = \"tun\"\n"),
            "service[0].real[1].addr: real server port 8080 differs from the service port 80, which TUN (-i) cannot do",
        );
        refused(
            &real("addr = \"203.0.113.12:80\"\nfwd = \"warp\"\n"),
            "service[0].real[1].fwd: unknown forwarding mode 'warp'",
        );
        refused(
            &real("addr = \"203.0.113.12:8080\"\n"),
            "service[0].real[1].addr: real server port 8080 differs from the service port 80",
        );
        refused(
            &real("addr = \"203.0.113.12:80\"\nweight = 70000\n"),
            "service[0].real[1].weight: weight 70000 is over the maximum 65535",
        );
        refused(
            &real("addr = \"203.0.113.12:80\"\nu_threshold = 5\nl_threshold = 6\n"),
            "service[0].real[1].l_threshold: lower threshold",
        );
        refused(
            &real("addr = \"203.0.113.11\"\n"),
            "service[0].real[1].addr: duplicate real server 203.0.113.11:80 (also service[0].real[0])",
        );
        refused(&real("addr = \"rs1\"\n"), "service[0].real[1].addr: \"rs1\" is not a valid IPv4 address[:port]");
        refused(&real("addr = \"224.0.0.5:80\"\n"), "service[0].real[1].addr: 224.0.0.5 is a multicast address");
    }

    #[test]
    fn modes_persistence_laddrs_accepted() {
        let text = format!(
            "{PORT}[sessions]\nexpire_nodest_conn = true\n\
             [[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\nsched = \"mh\"\npersistent = 300\n\
             laddrs = [\"203.0.113.3\", \"203.0.113.4\"]\nclient_addr = \"proxy-v2\"\n\
             [[service.real]]\naddr = \"198.51.100.11:8080\"\nfwd = \"nat\"\n\
             [[service.real]]\naddr = \"198.51.100.12\"\nfwd = \"fullnat\"\n\
             [[service.real]]\naddr = \"198.51.100.13:80\"\nfwd = \"tun\"\n\
             [[service.real]]\naddr = \"198.51.100.14\"\nfwd = \"dr\"\nu_threshold = 10\nl_threshold = 5\n"
        );
        let c = Config::parse(&text).unwrap();
        assert!(c.sessions.expire_nodest_conn);
        let t = c.service_table();
        let s = t.list()[0];
        assert_eq!(s.sched, SchedKind::Mh);
        assert_eq!(s.persistence, Some(Persistence::default_ipvsadm()));
        assert_eq!(s.client_addr, ClientAddrMode::ProxyV2);
        assert_eq!(s.laddrs.len(), 2);
        let got: Vec<(String, FwdMode)> = s.reals.iter().map(|r| (r.addr.to_string(), r.fwd)).collect();
        assert_eq!(
            got,
            [
                ("198.51.100.11:8080".to_string(), FwdMode::Nat),
                ("198.51.100.12:80".to_string(), FwdMode::FullNat),
                ("198.51.100.13:80".to_string(), FwdMode::Tun),
                ("198.51.100.14:80".to_string(), FwdMode::Dr),
            ]
        );
        assert_eq!((s.reals[3].u_threshold, s.reals[3].l_threshold), (10, 5));
    }

    #[test]
    fn metrics_and_log_sections() {
        let c = Config::parse(PORT).unwrap();
        assert_eq!(c.metrics_listen(), Some("127.0.0.1:9469".parse().unwrap()));
        assert_eq!(c.log.level, "info");
        let c = Config::parse(&format!("{PORT}[metrics]\nlisten = \"\"\n")).unwrap();
        assert_eq!(c.metrics_listen(), None, "empty listen disables");
        let c = Config::parse(&format!("{PORT}[metrics]\nenabled = false\nlisten = \"junk\"\n")).unwrap();
        assert_eq!(c.metrics_listen(), None, "disabled: listen is not looked at");
        let c = Config::parse(&format!(
            "{PORT}[metrics]\nlisten = \"[::1]:9100\"\n[log]\nlevel = \"warn,rvs::reload=debug\"\n"
        ))
        .unwrap();
        assert_eq!(c.metrics_listen(), Some("[::1]:9100".parse().unwrap()));
        assert_eq!(c.log.level, "warn,rvs::reload=debug");
        refused("[metrics]\nlisten = \"localhost:9100\"\n", "metrics.listen: \"localhost:9100\" is not IP:PORT");
        refused("[metrics]\nlisten = \"127.0.0.1:0\"\n", "metrics.listen: \"127.0.0.1:0\": port 0");
        refused("[metrics]\nport = 9100\n", "unknown field `port`");
        refused("[log]\nlevel = \"loud\"\n", "log.level: directive \"loud\" is not LEVEL or TARGET=LEVEL");
        refused("[log]\nlevel = \"info,rvs=chatty\"\n", "log.level: directive \"rvs=chatty\"");
        refused("[log]\nlevel = \"\"\n", "log.level: must not be empty");
        assert!(check_log_level("DEBUG").is_ok());
        assert!(check_log_level("rvs_dataplane::conn=trace").is_ok());
        assert!(check_log_level("a b=info").is_err());
    }

    /// Every deploy/examples/*.toml parses: the examples cannot rot.
    #[test]
    fn deploy_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let c = Config::from_path(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.ports.is_empty(), "{}", p.display());
            assert!(!c.service_table().is_empty(), "{}: an example without services", p.display());
            n += 1;
        }
        assert!(n >= 3, "expected at least 3 examples in {}, found {n}", dir.display());
    }
}
