//! End-to-end operations tests in the namespace lab (deploy/lab.sh): config reload (rvsadm
//! --reload and SIGHUP) under traffic, refused reloads, the Prometheus endpoint checked with
//! promtool, and the control socket's permissions and robustness.
//!
//! Need root and `ip netns` (failing without them unless RVS_SKIP_LAB=1 skips them) and every workspace binary built
//! (`cargo build --workspace --bins`). Lab prefixes p1..p5.

mod common;

use common::{out_str, run, rvsadm_bin, wait_until, Lab, Rvsd};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const URL: &str = "http://203.0.113.100/";
const METRICS_PORT: u16 = 9469;

/// A DR service on 203.0.113.100:80 with the given real servers (last octets).
fn service(rs: &[u8]) -> String {
    let mut s = String::from("[[service]]\nproto = \"tcp\"\nvip = \"203.0.113.100:80\"\nsched = \"rr\"\n");
    for n in rs {
        s.push_str(&format!("[[service.real]]\naddr = \"203.0.113.{n}:80\"\nfwd = \"dr\"\n"));
    }
    s
}

fn config(lab: &Lab, extra: &str) -> String {
    format!("{}\n{}\n", lab.base_config(), extra)
}

/// Real servers of the service as `rvsadm -L -n` lists them.
fn listed_rs(rvsd: &Rvsd) -> Vec<String> {
    rvsd.rvsadm_ok(&["-L", "-n"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-> "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|a| a.starts_with("203.0.113."))
        .map(str::to_string)
        .collect()
}

fn sighup(rvsd: &Rvsd) {
    let pid = rvsd.pid().expect("rvsd pid").to_string();
    let o = run(&["kill", "-HUP", &pid], 5);
    assert!(o.status.success(), "kill -HUP {pid}: {}", out_str(&o));
}

/// A curl loop from the client until stopped: (requests, failures, bodies seen).
struct CurlLoop {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, Vec<String>, Vec<String>)>,
}

impl CurlLoop {
    fn start(lab: &Arc<Lab>) -> CurlLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, lab) = (Arc::clone(&stop), Arc::clone(lab));
        let handle = thread::spawn(move || {
            let (mut n, mut failed, mut bodies) = (0, Vec::new(), Vec::new());
            while !s.load(Ordering::Relaxed) {
                n += 1;
                match lab.client_curl(URL) {
                    Ok(b) => bodies.push(b),
                    Err(e) => failed.push(e),
                }
            }
            (n, failed, bodies)
        });
        CurlLoop { stop, handle }
    }

    fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("curl loop thread")
    }
}

#[test]
fn reload_adds_and_removes_real_servers_under_traffic() {
    let Some(lab) = Lab::up_with("p1", &["wrk"]) else { return };
    let lab = Arc::new(lab);
    let mut rvsd = Rvsd::start_with_config(&lab, &config(&lab, &service(&[11, 12])));
    assert_eq!(listed_rs(&rvsd), ["203.0.113.11:80", "203.0.113.12:80"]);
    let curls = CurlLoop::start(&lab);
    let wrk = {
        let lab = Arc::clone(&lab);
        thread::spawn(move || lab.client_wrk(URL, 6))
    };
    thread::sleep(Duration::from_secs(1));

    // rvsadm --reload: add rs3.
    std::fs::write(&rvsd.config, config(&lab, &service(&[11, 12, 13]))).unwrap();
    let o = rvsd.rvsadm(&["--reload"]);
    assert!(o.status.success(), "rvsadm --reload: {}\n--- rvsd log ---\n{}", out_str(&o), rvsd.log_tail(20));
    assert!(
        out_str(&o).contains("reloaded: real server added: TCP 203.0.113.100:80 -> 203.0.113.13:80"),
        "rvsadm --reload should print the diff: {}",
        out_str(&o)
    );
    assert_eq!(listed_rs(&rvsd), ["203.0.113.11:80", "203.0.113.12:80", "203.0.113.13:80"]);
    thread::sleep(Duration::from_secs(2));

    // SIGHUP: remove rs1.
    std::fs::write(&rvsd.config, config(&lab, &service(&[12, 13]))).unwrap();
    sighup(&rvsd);
    assert!(
        wait_until(5, || listed_rs(&rvsd) == ["203.0.113.12:80", "203.0.113.13:80"]),
        "SIGHUP did not remove rs1: {:?}\n--- rvsd log ---\n{}",
        listed_rs(&rvsd),
        rvsd.log_tail(20)
    );
    thread::sleep(Duration::from_secs(2));
    let (n, failed, bodies) = curls.finish();
    let wrk = wrk.join().expect("wrk thread");

    assert!(
        failed.is_empty(),
        "{} of {n} curls failed during reloads: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(n >= 10, "only {n} curls ran");
    assert!(bodies.iter().any(|b| b == "rs3"), "rs3 never answered after being added: {bodies:?}");
    let tail: Vec<&String> = bodies.iter().rev().take(6).collect();
    assert!(tail.iter().all(|b| *b != "rs1"), "rs1 still answers new connections after removal: {tail:?}");
    assert!(wrk.socket_errors.is_none(), "wrk socket errors during reloads: {}", wrk.output);
    assert!(wrk.non_2xx.is_none(), "wrk non-2xx during reloads: {}", wrk.output);
    assert!(wrk.requests > 0, "{}", wrk.output);
    let log = std::fs::read_to_string(&rvsd.log).unwrap_or_default();
    assert!(
        log.contains("real server added: TCP 203.0.113.100:80 -> 203.0.113.13:80"),
        "reload diff not logged:\n{log}"
    );
    assert!(
        log.contains("real server removed: TCP 203.0.113.100:80 -> 203.0.113.11:80"),
        "SIGHUP diff not logged:\n{log}"
    );
    assert!(rvsd.is_alive());
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn broken_config_is_refused_and_traffic_continues() {
    let Some(lab) = Lab::up("p2") else { return };
    let mut rvsd = Rvsd::start_with_config(&lab, &config(&lab, &service(&[11, 12])));
    lab.client_curl(URL).expect("curl before the reload");

    // A semantic error: rvsadm --reload exits non-zero naming the field; nothing changes.
    let bad =
        config(&lab, &format!("{}[[service.real]]\naddr = \"203.0.113.13:80\"\nweight = 70000\n", service(&[11, 12])));
    std::fs::write(&rvsd.config, bad).unwrap();
    let o = rvsd.rvsadm(&["--reload"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "refused reload must exit 1: {}", out_str(&o));
    assert!(err.contains("service[0].real[2].weight"), "error does not name the field: {err}");
    assert_eq!(listed_rs(&rvsd), ["203.0.113.11:80", "203.0.113.12:80"], "refused reload changed the services");
    for i in 0..5 {
        lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i} after the refused reload: {e}"));
    }

    // A syntax error by SIGHUP: logged with the line, running state untouched.
    let broken = config(&lab, "[[service]\nproto = \"tcp\"\n");
    // The line toml reports: the one with the unclosed table header (1-based).
    let bad_line =
        broken.lines().position(|l| l.starts_with("[[service]") && !l.starts_with("[[service]]")).expect("broken line")
            + 1;
    std::fs::write(&rvsd.config, broken).unwrap();
    sighup(&rvsd);
    assert!(
        wait_until(5, || std::fs::read_to_string(&rvsd.log).unwrap_or_default().matches("reload refused").count() >= 2),
        "SIGHUP with a broken file not logged as refused:\n{}",
        rvsd.log_tail(20)
    );
    let log = std::fs::read_to_string(&rvsd.log).unwrap_or_default();
    assert!(
        log.contains(&format!("parse error at line {bad_line}")),
        "syntax error without its line {bad_line}:\n{}",
        rvsd.log_tail(10)
    );
    assert_eq!(listed_rs(&rvsd), ["203.0.113.11:80", "203.0.113.12:80"]);
    for i in 0..5 {
        lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i} after the refused SIGHUP: {e}"));
    }
    assert!(rvsd.is_alive(), "rvsd died on a broken config");

    // Fixed again: the reload goes through.
    std::fs::write(&rvsd.config, config(&lab, &service(&[12]))).unwrap();
    rvsd.rvsadm_ok(&["--reload"]);
    assert_eq!(listed_rs(&rvsd), ["203.0.113.12:80"]);
    assert!(rvsd.stop().success());
}

#[test]
fn metrics_endpoint_validates_with_promtool() {
    let Some(lab) = Lab::up_with("p3", &["promtool"]) else { return };
    let extra = format!("[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n{}", service(&[11, 12]));
    let rvsd = Rvsd::start_with_config(&lab, &config(&lab, &extra));
    for i in 0..6 {
        lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i}: {e}"));
    }
    thread::sleep(Duration::from_millis(300)); // stats are published every 100 ms
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let o = lab.exec("lb", &["curl", "-s", "-f", "--max-time", "5", &url], 10);
    assert!(o.status.success(), "scrape failed: {}", out_str(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for want in [
        "# TYPE rvs_rx_packets_total counter",
        "rvs_drops_total{reason=\"no_local_addr\"}",
        "rvs_port_rx_packets_total{port=\"eth0\"}",
        "rvs_rs_active_sessions{service=\"TCP 203.0.113.100:80\",rs=\"203.0.113.11:80\",fwd=\"dr\"}",
        "rvs_worker_sessions{worker=\"0\"}",
        "rvs_build_info{",
    ] {
        assert!(text.contains(want), "scrape lacks {want:?}:\n{text}");
    }
    let rx: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rvs_rx_packets_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(rx >= 6, "rvs_rx_packets_total {rx} after 6 curls");
    let o404 = lab.exec(
        "lb",
        &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{METRICS_PORT}/x")],
        10,
    );
    assert_eq!(String::from_utf8_lossy(&o404.stdout), "404");

    let path = lab.state.join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let o = run(&["sh", "-c", &format!("promtool check metrics < {}", path.display())], 20);
    eprintln!("promtool check metrics: {}", out_str(&o));
    assert!(o.status.success(), "promtool check metrics failed: {}", out_str(&o));
    assert!(rvsd.stop().success());
}

#[test]
fn control_socket_permissions_and_robustness() {
    let Some(lab) = Lab::up("p4") else { return };
    let rvsd = Rvsd::start_with_config(&lab, &config(&lab, &service(&[11, 12])));
    let sock = rvsd.socket.clone();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");

    // A non-root user is refused by the socket's permissions.
    let bin = rvsadm_bin();
    let o = run(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "-L",
            "-n",
        ],
        10,
    );
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(!o.status.success(), "nobody could use the control socket: {}", out_str(&o));
    assert!(err.contains("permission denied"), "no 'permission denied': {}", out_str(&o));

    // Garbage on the socket gets an error response; rvsd keeps serving.
    for garbage in ["garbage", "{\"op\":\"nope\"}", "{", "\u{1}\u{2}\u{3}"] {
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{garbage}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).expect("read a response");
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{garbage:?}: bad response {line:?}: {e}"));
        assert_eq!(v["status"], "error", "{garbage:?} -> {line}");
    }
    assert_eq!(listed_rs(&rvsd), ["203.0.113.11:80", "203.0.113.12:80"]);

    // 1,000 concurrent rvsadm -L -n, from 20 threads in batches: all answered.
    let failures = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (f, d, sock, bin) = (Arc::clone(&failures), Arc::clone(&done), sock.clone(), bin.clone());
            thread::spawn(move || {
                for _ in 0..50 {
                    let o = run(&[bin.to_str().unwrap(), "--socket", sock.to_str().unwrap(), "-L", "-n"], 30);
                    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("203.0.113.100:80") {
                        f.lock().unwrap().push(out_str(&o));
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 1000);
    assert!(failures.is_empty(), "{} of 1000 rvsadm -L -n failed, e.g. {:?}", failures.len(), failures.first());
    lab.client_curl(URL).expect("traffic after the control-socket storm");
    assert!(rvsd.stop().success());
}

#[test]
fn log_level_and_restart_items_on_reload() {
    let Some(lab) = Lab::up("p5") else { return };
    let rvsd = Rvsd::start_with_config(&lab, &config(&lab, &format!("[log]\nlevel = \"info\"\n{}", service(&[11]))));
    // Changed timeouts and log level apply; a changed burst needs a restart and is reported.
    let base = lab.base_config().replace("[workers]\n", "[workers]\nburst = 16\n");
    let new = format!("{base}\n[sessions]\ntcp_established_s = 600\n[log]\nlevel = \"debug\"\n{}", service(&[11]));
    std::fs::write(&rvsd.config, new).unwrap();
    rvsd.rvsadm_ok(&["--reload"]);
    let t = rvsd.rvsadm_ok(&["-L", "--timeout"]);
    assert!(t.contains("600"), "timeout not applied: {t}");
    let log = std::fs::read_to_string(&rvsd.log).unwrap_or_default();
    assert!(log.contains("sessions.tcp_established_s 900 -> 600"), "{log}");
    assert!(log.contains("log level changed: info -> debug"), "{log}");
    assert!(log.contains("needs restart (not applied): workers.burst"), "{log}");
    assert!(rvsd.stop().success());
}
