//! Prometheus endpoint: `GET /metrics` in the text exposition format 0.0.4.
//!
//! Two halves. [`render`] turns a [`MetricsData`] (collected by the daemon from the workers'
//! published stats and the DPDK port counters) into the text format; it is pure and tested
//! here. [`MetricsServer`] is a deliberately tiny HTTP/1.1 server on std's `TcpListener`: one
//! request per connection (`Connection: close`), requests bounded in size and time, at most
//! [`MAX_CLIENTS`] at once, and any garbage answered with a 4xx, never a panic. Scrapes read
//! the per-worker stats slots (refreshed every 100 ms), never the packet path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use rvs_dataplane::RsStats;

/// Longest request head accepted (request line + headers), bytes.
pub const MAX_REQUEST: usize = 8192;
/// Read and write deadline per connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 16;
/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One real server of a service.
#[derive(Debug, Clone, Default)]
pub struct RsMetrics {
    /// `IP:PORT`.
    pub rs: String,
    /// dr | nat | fullnat | tun
    pub fwd: String,
    pub weight: u32,
    pub active: u64,
    pub inactive: u64,
    /// `None` when the running build does not count per-RS traffic.
    pub counters: Option<RsStats>,
}

/// One service (`TCP 203.0.113.100:80`) and its real servers.
#[derive(Debug, Clone, Default)]
pub struct ServiceMetrics {
    pub service: String,
    pub sched: String,
    pub reals: Vec<RsMetrics>,
}

/// One DPDK port.
#[derive(Debug, Clone, Default)]
pub struct PortMetrics {
    pub name: String,
    pub driver: String,
    pub link_up: bool,
    /// `rte_eth_stats` as `(name, value)`: ipackets, opackets, ibytes, obytes, imissed,
    /// ierrors, oerrors, rx_nombuf, qN_ipackets, qN_opackets.
    pub stats: Vec<(String, u64)>,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct MetricsData {
    pub version: String,
    /// Unix time rvsd started, seconds.
    pub start_time_s: u64,
    /// Dataplane counters summed over workers, as `Counters::pairs` names them (drops are
    /// `drop_<reason>`).
    pub counters: Vec<(String, u64)>,
    /// Sessions in each worker's table, index = worker.
    pub worker_sessions: Vec<u64>,
    pub ports: Vec<PortMetrics>,
    pub services: Vec<ServiceMetrics>,
    /// Config reloads that were applied / refused since start.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its type, HELP text and samples as (rendered labels, value).
type Family = (Kind, String, Vec<(String, u64)>);

/// Metric families in order of first use; each name gets one HELP and one TYPE line.
struct Families {
    order: Vec<String>,
    fams: HashMap<String, Family>,
}

impl Families {
    fn new() -> Families {
        Families { order: Vec::new(), fams: HashMap::new() }
    }

    fn add(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], value: u64) {
        let e = self.fams.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            (kind, help.to_string(), Vec::new())
        });
        let mut l = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                l.push(',');
            }
            let _ = write!(l, "{k}=\"{}\"", escape_label(v));
        }
        e.2.push((l, value));
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for name in &self.order {
            let (kind, help, samples) = &self.fams[name];
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} {t}");
            for (labels, v) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        out
    }
}

/// Label values: backslash, double quote and newline escaped (exposition format).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// HELP text: backslash and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A dataplane counter name (`rx_pkts`) as a metric name (`rvs_rx_packets_total`), with help.
fn counter_metric(name: &str) -> (String, &'static str) {
    let help = match name {
        "rx_pkts" => "Packets received by the workers.",
        "rx_bytes" => "Bytes received by the workers.",
        "tx_pkts" => "Packets sent by the workers.",
        "tx_bytes" => "Bytes sent by the workers.",
        "fwd_pkts" => "Packets forwarded to or from a real server.",
        "sessions_created" => "Sessions created.",
        "sessions_expired" => "Sessions expired or removed.",
        "redirected_out" => "Packets handed to the worker that owns their session.",
        "redirected_in" => "Packets received from another worker through a redirect ring.",
        _ => "Dataplane counter summed over workers (see rvsadm link show).",
    };
    let base = name.replace("_pkts", "_packets");
    (format!("rvs_{base}_total"), help)
}

/// Name and help of an `rte_eth_stats` field.
fn port_metric(stat: &str) -> Option<(&'static str, &'static str)> {
    Some(match stat {
        "ipackets" => ("rvs_port_rx_packets_total", "Packets received by the port (rte_eth_stats.ipackets)."),
        "opackets" => ("rvs_port_tx_packets_total", "Packets sent by the port (rte_eth_stats.opackets)."),
        "ibytes" => ("rvs_port_rx_bytes_total", "Bytes received by the port."),
        "obytes" => ("rvs_port_tx_bytes_total", "Bytes sent by the port."),
        "imissed" => ("rvs_port_rx_missed_total", "Packets dropped by the NIC: rx queue full (workers too slow)."),
        "ierrors" => ("rvs_port_rx_errors_total", "Erroneous received packets."),
        "oerrors" => ("rvs_port_tx_errors_total", "Failed transmissions."),
        "rx_nombuf" => ("rvs_port_rx_nombuf_total", "Receive failures for want of an mbuf (mempool too small)."),
        _ => return None,
    })
}

/// The text exposition of `d`.
pub fn render(d: &MetricsData) -> String {
    let mut f = Families::new();
    let rev = d.version.split_once(" (").map(|(_, r)| r.trim_end_matches(')')).unwrap_or("");
    let ver = d.version.split(' ').next().unwrap_or("");
    f.add(
        "rvs_build_info",
        Kind::Gauge,
        "rvsd version and git revision; always 1.",
        &[("version", ver), ("revision", rev)],
        1,
    );
    f.add("rvs_start_time_seconds", Kind::Gauge, "Unix time rvsd started.", &[], d.start_time_s);
    f.add(
        "rvs_config_reloads_total",
        Kind::Counter,
        "Configuration reloads by result.",
        &[("result", "ok")],
        d.reloads_ok,
    );
    f.add("rvs_config_reloads_total", Kind::Counter, "", &[("result", "error")], d.reloads_failed);

    for (name, v) in &d.counters {
        if let Some(reason) = name.strip_prefix("drop_") {
            f.add(
                "rvs_drops_total",
                Kind::Counter,
                "Packets dropped by the dataplane, by reason.",
                &[("reason", reason)],
                *v,
            );
        } else if name == "sessions_active" {
            f.add("rvs_sessions", Kind::Gauge, "Sessions in the tables of all workers.", &[], *v);
        } else {
            let (m, help) = counter_metric(name);
            f.add(&m, Kind::Counter, help, &[], *v);
        }
    }
    for (w, n) in d.worker_sessions.iter().enumerate() {
        let w = w.to_string();
        f.add("rvs_worker_sessions", Kind::Gauge, "Sessions in one worker's table.", &[("worker", &w)], *n);
    }

    for p in &d.ports {
        f.add(
            "rvs_port_link_up",
            Kind::Gauge,
            "Link state of the port: 1 up, 0 down.",
            &[("port", &p.name), ("driver", &p.driver)],
            u64::from(p.link_up),
        );
        for (stat, v) in &p.stats {
            if let Some((m, help)) = port_metric(stat) {
                f.add(m, Kind::Counter, help, &[("port", &p.name)], *v);
            } else if let Some((q, dir)) = queue_stat(stat) {
                let (m, help) = if dir == "rx" {
                    ("rvs_port_queue_rx_packets_total", "Packets received on one rx queue (= one worker).")
                } else {
                    ("rvs_port_queue_tx_packets_total", "Packets sent on one tx queue (= one worker).")
                };
                f.add(m, Kind::Counter, help, &[("port", &p.name), ("queue", q)], *v);
            }
        }
    }

    for s in &d.services {
        for r in &s.reals {
            let l = [("service", s.service.as_str()), ("rs", r.rs.as_str()), ("fwd", r.fwd.as_str())];
            f.add("rvs_rs_weight", Kind::Gauge, "Scheduling weight of the real server.", &l, u64::from(r.weight));
            f.add(
                "rvs_rs_active_sessions",
                Kind::Gauge,
                "Sessions to the real server in an active (TCP established) state.",
                &l,
                r.active,
            );
            f.add(
                "rvs_rs_inactive_sessions",
                Kind::Gauge,
                "Sessions to the real server in other states.",
                &l,
                r.inactive,
            );
            if let Some(c) = r.counters {
                f.add(
                    "rvs_rs_connections_total",
                    Kind::Counter,
                    "Connections scheduled to the real server.",
                    &l,
                    c.conns,
                );
                f.add("rvs_rs_in_packets_total", Kind::Counter, "Packets client -> real server.", &l, c.inpkts);
                f.add(
                    "rvs_rs_out_packets_total",
                    Kind::Counter,
                    "Packets real server -> client (none in DR/TUN).",
                    &l,
                    c.outpkts,
                );
                f.add("rvs_rs_in_bytes_total", Kind::Counter, "Bytes client -> real server.", &l, c.inbytes);
                f.add(
                    "rvs_rs_out_bytes_total",
                    Kind::Counter,
                    "Bytes real server -> client (none in DR/TUN).",
                    &l,
                    c.outbytes,
                );
            }
        }
    }
    f.render()
}

/// `q3_ipackets` → ("3", "rx").
fn queue_stat(stat: &str) -> Option<(&str, &'static str)> {
    let rest = stat.strip_prefix('q')?;
    let (q, field) = rest.split_once('_')?;
    if q.is_empty() || !q.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match field {
        "ipackets" => Some((q, "rx")),
        "opackets" => Some((q, "tx")),
        _ => None,
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head: bool },
    NotFound,
    BadMethod,
    BadRequest,
}

/// Parse the request line of `head` (bytes up to the blank line).
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else { return Route::BadRequest };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut it = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::BadMethod,
    };
    if path == "/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

/// Produces the exposition text of one scrape.
pub type Collect = Arc<dyn Fn() -> String + Send + Sync>;

/// The HTTP listener thread; stopped and joined by [`MetricsServer::shutdown`] or drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Bind `addr` and serve in a background thread.
    pub fn start(addr: SocketAddr, collect: Collect) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let thread =
            std::thread::Builder::new().name("rvs-metrics".into()).spawn(move || accept_loop(listener, collect, st))?;
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    /// The bound address (the port, when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn accept_loop(listener: TcpListener, collect: Collect, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if busy.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    tracing::debug!(%peer, "metrics: too many clients, closing");
                    continue;
                }
                busy.fetch_add(1, Ordering::Relaxed);
                let (c, b) = (Arc::clone(&collect), Arc::clone(&busy));
                let spawned = std::thread::Builder::new().name("rvs-metrics-conn".into()).spawn(move || {
                    if let Err(e) = serve(stream, &c) {
                        tracing::debug!(%peer, "metrics: {e}");
                    }
                    b.fetch_sub(1, Ordering::Relaxed);
                });
                if let Err(e) = spawned {
                    busy.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!("metrics: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One request, one response.
fn serve(mut s: TcpStream, collect: &Collect) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_len = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(p);
        }
        if buf.len() >= MAX_REQUEST {
            break None;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            // Closed before a complete head: nothing to answer.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, body, head_only) = match head_len.map(|n| route(&buf[..n])) {
        None => ("431 Request Header Fields Too Large", "request head too large\n".to_string(), false),
        Some(Route::Metrics { head }) => ("200 OK", collect(), head),
        Some(Route::NotFound) => ("404 Not Found", "not found; try /metrics\n".to_string(), false),
        Some(Route::BadMethod) => ("405 Method Not Allowed", "only GET and HEAD\n".to_string(), false),
        Some(Route::BadRequest) => ("400 Bad Request", "bad request\n".to_string(), false),
    };
    let ctype = if status.starts_with("200") { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        resp.push_str("Allow: GET, HEAD\r\n");
    }
    resp.push_str("\r\n");
    s.write_all(resp.as_bytes())?;
    if !head_only {
        s.write_all(body.as_bytes())?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sample() -> MetricsData {
        MetricsData {
            version: "0.1.0 (abc123)".into(),
            start_time_s: 1_700_000_000,
            counters: vec![
                ("rx_pkts".into(), 10),
                ("tx_bytes".into(), 1500),
                ("sessions_active".into(), 3),
                ("drop_no_local_addr".into(), 2),
                ("drop_bad_checksum".into(), 0),
            ],
            worker_sessions: vec![1, 2],
            ports: vec![PortMetrics {
                name: "eth0".into(),
                driver: "net_af_packet".into(),
                link_up: true,
                stats: vec![
                    ("ipackets".into(), 11),
                    ("q0_ipackets".into(), 5),
                    ("q1_opackets".into(), 6),
                    ("weird".into(), 1),
                ],
            }],
            services: vec![ServiceMetrics {
                service: "TCP 203.0.113.100:80".into(),
                sched: "rr".into(),
                reals: vec![
                    RsMetrics {
                        rs: "203.0.113.11:80".into(),
                        fwd: "dr".into(),
                        weight: 1,
                        active: 1,
                        inactive: 0,
                        counters: Some(RsStats { conns: 7, inpkts: 70, outpkts: 0, inbytes: 7000, outbytes: 0 }),
                    },
                    RsMetrics { rs: "203.0.113.12:80".into(), fwd: "dr".into(), weight: 2, ..Default::default() },
                ],
            }],
            reloads_ok: 1,
            reloads_failed: 0,
        }
    }

    /// A small checker of the text format: every sample line is `name{labels} value`, every
    /// family has one HELP and one TYPE line before its samples and its samples are contiguous,
    /// counters end in `_total`. Returns the samples.
    fn validate(text: &str) -> Vec<(String, String, u64)> {
        let mut help = HashSet::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut current = String::new();
        let mut samples = Vec::new();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(valid_name(name), "bad name in {line:?}");
                assert!(help.insert(name.to_string()), "second HELP for {name}");
                assert!(!done.contains(name), "{name} appears in two places");
                if !current.is_empty() && current != name {
                    done.insert(std::mem::take(&mut current));
                }
                current = name.to_string();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let (name, t) = (it.next().unwrap(), it.next().unwrap());
                assert_eq!(name, current, "TYPE {name} not right after its HELP");
                assert!(types.insert(name.into(), t.into()).is_none(), "second TYPE for {name}");
                assert!(matches!(t, "counter" | "gauge"), "{line}");
                if t == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} does not end in _total");
                }
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "stray line {line:?}");
                let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
                let value: u64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series, ""),
                    Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"))),
                };
                assert_eq!(name, current, "sample {line:?} outside its family");
                assert!(types.contains_key(name), "sample before TYPE: {line:?}");
                if !labels.is_empty() {
                    // k="v" pairs; values may contain escaped quotes but not raw ones.
                    let mut rest = labels;
                    while !rest.is_empty() {
                        let (k, r) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                        assert!(valid_name(k), "bad label name {k:?} in {line:?}");
                        let mut end = None;
                        let mut esc = false;
                        for (i, c) in r.char_indices() {
                            match (esc, c) {
                                (true, _) => esc = false,
                                (false, '\\') => esc = true,
                                (false, '"') => {
                                    end = Some(i);
                                    break;
                                }
                                _ => {}
                            }
                        }
                        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                        rest = r[end + 1..].strip_prefix(',').unwrap_or(&r[end + 1..]);
                    }
                }
                samples.push((name.to_string(), labels.to_string(), value));
            }
        }
        for n in &help {
            assert!(types.contains_key(n), "{n} has HELP but no TYPE");
        }
        samples
    }

    fn value(samples: &[(String, String, u64)], name: &str, labels: &str) -> Option<u64> {
        samples.iter().find(|(n, l, _)| n == name && l == labels).map(|s| s.2)
    }

    #[test]
    fn renders_valid_text() {
        let text = render(&sample());
        let s = validate(&text);
        assert_eq!(value(&s, "rvs_rx_packets_total", ""), Some(10));
        assert_eq!(value(&s, "rvs_tx_bytes_total", ""), Some(1500));
        assert_eq!(value(&s, "rvs_sessions", ""), Some(3));
        assert_eq!(value(&s, "rvs_drops_total", "reason=\"no_local_addr\""), Some(2));
        assert_eq!(value(&s, "rvs_drops_total", "reason=\"bad_checksum\""), Some(0));
        assert_eq!(value(&s, "rvs_worker_sessions", "worker=\"1\""), Some(2));
        assert_eq!(value(&s, "rvs_port_rx_packets_total", "port=\"eth0\""), Some(11));
        assert_eq!(value(&s, "rvs_port_queue_rx_packets_total", "port=\"eth0\",queue=\"0\""), Some(5));
        assert_eq!(value(&s, "rvs_port_queue_tx_packets_total", "port=\"eth0\",queue=\"1\""), Some(6));
        assert_eq!(value(&s, "rvs_port_link_up", "port=\"eth0\",driver=\"net_af_packet\""), Some(1));
        let rs = "service=\"TCP 203.0.113.100:80\",rs=\"203.0.113.11:80\",fwd=\"dr\"";
        assert_eq!(value(&s, "rvs_rs_connections_total", rs), Some(7));
        assert_eq!(value(&s, "rvs_rs_in_bytes_total", rs), Some(7000));
        assert_eq!(value(&s, "rvs_rs_active_sessions", rs), Some(1));
        let rs2 = "service=\"TCP 203.0.113.100:80\",rs=\"203.0.113.12:80\",fwd=\"dr\"";
        assert_eq!(value(&s, "rvs_rs_weight", rs2), Some(2));
        assert_eq!(value(&s, "rvs_rs_connections_total", rs2), None, "no counters: no sample");
        assert_eq!(value(&s, "rvs_build_info", "version=\"0.1.0\",revision=\"abc123\""), Some(1));
        assert_eq!(value(&s, "rvs_config_reloads_total", "result=\"error\""), Some(0));
        assert!(!text.contains("weird"), "unknown port stats are left out");
    }

    #[test]
    fn empty_data_is_valid_and_labels_are_escaped() {
        validate(&render(&MetricsData::default()));
        let mut d = MetricsData::default();
        d.ports.push(PortMetrics { name: "a\"b\\c\nd".into(), driver: "x".into(), link_up: false, stats: vec![] });
        let text = render(&d);
        assert!(text.contains(r#"port="a\"b\\c\nd""#), "{text}");
        validate(&text);
    }

    #[test]
    fn the_validator_catches_mistakes() {
        for bad in [
            "# HELP a_total x\n# TYPE a_total counter\na_total 1\n# HELP a_total x\n",
            "# HELP a x\n# TYPE a counter\na 1\n",
            "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
            "# HELP a x\n# TYPE a gauge\na{l=\"1} 1\n",
            "# HELP a x\n# TYPE a gauge\na one\n",
        ] {
            assert!(std::panic::catch_unwind(|| validate(bad)).is_err(), "accepted: {bad:?}");
        }
    }

    #[test]
    fn request_routing() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x"), Route::Metrics { head: false });
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0"), Route::Metrics { head: false });
        assert_eq!(route(b"HEAD /metrics HTTP/1.1"), Route::Metrics { head: true });
        assert_eq!(route(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::BadMethod);
        assert_eq!(route(b"garbage"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3"), Route::BadRequest);
        assert_eq!(route(b"GET  /metrics HTTP/1.1"), Route::BadRequest);
        assert_eq!(route(&[0xff, 0xfe, b' ']), Route::BadRequest);
    }

    fn exchange(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn server_answers_scrapes_and_garbage() {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(|| render(&sample()))).unwrap();
        let a = srv.local_addr();
        let ok = exchange(a, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
        let body = ok.split_once("\r\n\r\n").unwrap().1;
        assert!(ok.contains(&format!("Content-Length: {}\r\n", body.len())), "{ok}");
        validate(body);
        let head = exchange(a, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(exchange(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(exchange(a, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(exchange(a, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        let big = vec![b'A'; MAX_REQUEST + 100];
        assert!(exchange(a, &big).starts_with("HTTP/1.1 431"));
        // A client that connects and says nothing is timed out; others are still served.
        let _idle = TcpStream::connect(a).unwrap();
        assert!(exchange(a, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        srv.shutdown();
        assert!(TcpStream::connect(a).is_err(), "listener closed after shutdown");
    }
}
