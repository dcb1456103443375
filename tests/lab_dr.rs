//! End-to-end tests of rvsd in LVS-DR mode, in the namespace lab of deploy/lab.sh:
//! client -> router -> {rvs, rs1, rs2, rs3} with VIP 203.0.113.100.
//!
//! Need root and `ip netns` (failing without them unless RVS_SKIP_LAB=1 skips them), and every workspace
//! binary built (`cargo build --workspace --bins`; deploy/test.sh does it).
//! Each test has its own lab prefix (t1..t8), so they run side by side.

mod common;

use common::{assert_round_robin, out_str, repo_root, run, wait_until, Lab, Rvsd};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

const VIP: &str = "203.0.113.100";
const VIP_HTTP: &str = "203.0.113.100:80";
const URL: &str = "http://203.0.113.100/";
const RVS_IP: &str = "203.0.113.2";

/// Adds the TCP :80 DR service with the given real servers (last octets).
fn add_http_service(rvsd: &Rvsd, rs: &[u8]) {
    rvsd.rvsadm_ok(&["-A", "-t", VIP_HTTP, "-s", "rr"]);
    for n in rs {
        let rip = format!("203.0.113.{n}:80");
        rvsd.rvsadm_ok(&["-a", "-t", VIP_HTTP, "-r", &rip, "-g"]);
    }
}

fn curls(lab: &Lab, n: usize) -> Vec<String> {
    (0..n).map(|i| lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i} through the VIP failed: {e}"))).collect()
}

#[test]
fn ping_gateway() {
    let Some(lab) = Lab::up("t1") else { return };
    let rvsd = Rvsd::start(&lab, "");
    let got = lab.client_ping(RVS_IP, 3);
    assert_eq!(got, 3, "client got {got}/3 echo replies from rvs {RVS_IP}");
    let c = rvsd.counters_when("icmp_echo_replies", 3, 3);
    assert!(c.get("icmp_echo_replies").copied().unwrap_or(0) >= 3, "icmp_echo_replies counter: {c:?}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn dr_round_robin_20_curls() {
    let Some(lab) = Lab::up("t2") else { return };
    let rvsd = Rvsd::start(&lab, "");
    add_http_service(&rvsd, &[11, 12]);

    let seq = curls(&lab, 20);
    assert_round_robin(&seq, &["rs1", "rs2"]);

    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.lines().any(|l| l.starts_with("TCP") && l.contains(VIP_HTTP) && l.split_whitespace().any(|t| t == "rr")),
        "service line missing from -L -n:\n{list}"
    );
    for rip in ["203.0.113.11:80", "203.0.113.12:80"] {
        let line =
            list.lines().find(|l| l.contains(rip)).unwrap_or_else(|| panic!("{rip} missing from -L -n:\n{list}"));
        let toks: Vec<&str> = line.split_whitespace().collect();
        assert!(
            toks.len() >= 4 && toks[0] == "->" && toks[2] == "Route" && toks[3] == "1",
            "expected `-> {rip} Route 1 ...`, got {line:?}"
        );
    }
    let c = rvsd.counters_when("sessions_created", 20, 3);
    assert!(c.get("sessions_created").copied().unwrap_or(0) >= 20, "sessions_created: {c:?}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn dr_udp() {
    let Some(lab) = Lab::up("t3") else { return };
    let rvsd = Rvsd::start(&lab, "");
    rvsd.rvsadm_ok(&["-A", "-u", "203.0.113.100:9000", "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-u", "203.0.113.100:9000", "-r", "203.0.113.11:9000", "-g"]);
    rvsd.rvsadm_ok(&["-a", "-u", "203.0.113.100:9000", "-r", "203.0.113.12:9000", "-g"]);

    let seq: Vec<String> =
        (0..6).map(|i| lab.client_udp(VIP, 9000, "hello").unwrap_or_else(|e| panic!("datagram #{i}: {e}"))).collect();
    assert_round_robin(&seq, &["rs1", "rs2"]);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.lines().any(|l| l.starts_with("UDP") && l.contains("203.0.113.100:9000")), "-L -n:\n{list}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn add_third_rs_while_traffic_runs() {
    let Some(lab) = Lab::up("t4") else { return };
    let rvsd = Rvsd::start(&lab, "");
    add_http_service(&rvsd, &[11, 12]);
    let lab = Arc::new(lab);

    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let bg = {
        let (lab, stop, results) = (lab.clone(), stop.clone(), results.clone());
        thread::spawn(move || {
            // Bounded even if the main thread dies: at most 200 curls.
            for _ in 0..200 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = lab.client_curl(URL);
                results.lock().unwrap().push(r);
            }
        })
    };
    let warm = wait_until(10, || results.lock().unwrap().len() >= 6);
    let added_at = results.lock().unwrap().len();
    let add = rvsd.rvsadm(&["-a", "-t", VIP_HTTP, "-r", "203.0.113.13:80", "-g"]);
    let more = wait_until(10, || results.lock().unwrap().len() >= added_at + 9);
    stop.store(true, Ordering::Relaxed);
    bg.join().expect("curl loop panicked");

    assert!(add.status.success(), "adding rs3 failed: {}", out_str(&add));
    let results = results.lock().unwrap().clone();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} curls failed: {failed:?}", failed.len(), results.len());
    assert!(warm && more, "curl loop too slow: {} curls", results.len());
    let bodies: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    assert!(!bodies[..added_at].iter().any(|b| b == "rs3"), "rs3 served before it was added: {bodies:?}");
    assert!(bodies[added_at..].iter().any(|b| b == "rs3"), "rs3 never seen after it was added: {bodies:?}");

    // Once the loop is quiet, six new connections reach all three servers.
    let seq = curls(&lab, 6);
    for rs in ["rs1", "rs2", "rs3"] {
        assert!(seq.iter().any(|b| b == rs), "{rs} not seen in {seq:?}");
    }
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn delete_service_stops_forwarding() {
    let Some(lab) = Lab::up("t5") else { return };
    let rvsd = Rvsd::start(&lab, "");
    add_http_service(&rvsd, &[11, 12]);
    curls(&lab, 2);

    rvsd.rvsadm_ok(&["-D", "-t", VIP_HTTP]);
    for i in 0..2 {
        let r = lab.client_curl(URL);
        assert!(r.is_err(), "curl #{i} still answered after -D: {r:?}");
    }
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(!list.contains("203.0.113."), "-L -n not empty after -D:\n{list}");
    assert_eq!(lab.client_ping(RVS_IP, 3), 3, "rvs stopped answering ping after -D");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn malformed_packets_counted_and_dropped() {
    let Some(lab) = Lab::up("t6") else { return };
    let mut rvsd = Rvsd::start(&lab, "");
    add_http_service(&rvsd, &[11, 12]);
    // The ping makes the router learn rvs's MAC; the curl proves the path works.
    assert_eq!(lab.client_ping(RVS_IP, 1), 1, "rvs does not answer ping");
    curls(&lab, 2);
    let mac = lab.router_neigh_mac(RVS_IP).expect("router has no neighbour entry for rvs after a ping");

    let before = rvsd.counters();
    let script = repo_root().join("tests/scripts/malformed.py");
    let o = lab.exec(
        "rt",
        &["/usr/bin/python3", script.to_str().unwrap(), "--iface", "eth1", "--dst-mac", &mac, "--vip", VIP],
        60,
    );
    assert!(o.status.success(), "malformed.py failed: {}", out_str(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    eprintln!("{stdout}");
    // The script's last line: the counters it expects to grow and by how much.
    let expected: HashMap<String, u64> =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("malformed.py prints expectations last");
    let want: HashMap<&str, u64> =
        [("drop_malformed_ipv4", 3), ("drop_bad_ipv4_checksum", 1), ("drop_malformed_l4", 2), ("drop_ttl_exceeded", 1)]
            .into_iter()
            .collect();
    for (k, v) in &want {
        assert_eq!(expected.get(*k), Some(v), "malformed.py and this test disagree on {k}");
    }

    let delta = |now: &HashMap<String, u64>, k: &str| {
        now.get(k).copied().unwrap_or(0).saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    let mut now = HashMap::new();
    let reached = wait_until(5, || {
        now = rvsd.counters();
        want.iter().all(|(k, v)| delta(&now, k) >= *v)
    });
    let deltas: Vec<(String, u64, u64)> = want.iter().map(|(k, v)| (k.to_string(), delta(&now, k), *v)).collect();
    assert!(reached, "drop counters did not grow as expected (name, got, want): {deltas:?}\nall: {now:?}");
    for (k, got, v) in &deltas {
        assert_eq!(got, v, "{k} grew by {got}, want exactly {v}; all deltas {deltas:?}");
    }

    assert!(rvsd.is_alive(), "rvsd died after malformed input");
    let seq = curls(&lab, 4);
    assert_round_robin(&seq, &["rs1", "rs2"]);
    assert_eq!(lab.client_ping(RVS_IP, 1), 1, "rvs stopped answering ping");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

/// `rvsd --check -c <cfg>` with `cfg` written to a temp file.
fn check_config(name: &str, cfg: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("rvs-test-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, cfg).unwrap();
    let o = run(&[env!("CARGO_BIN_EXE_rvsd"), "--check", "-c", path.to_str().unwrap()], 20);
    let _ = std::fs::remove_dir_all(&dir);
    o
}

fn lab_config_text(prefix: &str) -> String {
    let o = run(&["bash", repo_root().join("deploy/lab.sh").to_str().unwrap(), "config", prefix], 10);
    assert!(o.status.success(), "lab.sh config: {}", out_str(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn bad_config_refused() {
    let good = lab_config_text("t7");
    let o = check_config("good.toml", &good);
    assert!(o.status.success(), "the lab config itself is refused by --check: {}", out_str(&o));

    let typo = good.replace("idle_sleep_us", "idle_sleep_usec");
    assert_ne!(typo, good);
    let o = check_config("typo.toml", &typo);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--check accepted an unknown field: {}", out_str(&o));
    assert!(err.contains("idle_sleep_usec"), "message does not name the unknown field: {err}");

    let bad_prefix = good.replace("prefix = \"0.0.0.0/0\"", "prefix = \"0.0.0.0/33\"");
    assert_ne!(bad_prefix, good);
    let o = check_config("prefix.toml", &bad_prefix);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "--check accepted prefix /33: {}", out_str(&o));
    assert!(err.contains("prefix") || err.contains("0.0.0.0/33"), "message does not name the bad prefix: {err}");

    // A port whose interface does not exist: rvsd itself must refuse to start.
    let Some(lab) = Lab::up("t7") else { return };
    let ghost = good
        .replace("name = \"eth0\"", "name = \"ghost\"")
        .replace("port = \"eth0\"", "port = \"ghost\"")
        .replace("iface=lb0", "iface=nosuch0");
    let cfg = lab.state.join("ghost.toml");
    std::fs::write(&cfg, &ghost).unwrap();
    let ns = lab.ns("lb");
    let o = run(&["ip", "netns", "exec", &ns, env!("CARGO_BIN_EXE_rvsd"), "-c", cfg.to_str().unwrap()], 30);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code().is_some() && !o.status.success(), "rvsd with a missing interface: {}", out_str(&o));
    assert_ne!(o.status.code(), Some(124), "rvsd hung with a missing interface: {}", out_str(&o));
    assert!(err.contains("ghost") || err.contains("nosuch0"), "message does not name the port: {err}");
}

#[test]
fn clean_shutdown() {
    let Some(lab) = Lab::up("t8") else { return };
    let rvsd = Rvsd::start(&lab, "");
    add_http_service(&rvsd, &[11]);
    assert_eq!(lab.client_curl(URL).as_deref(), Ok("rs1"));
    let sock = rvsd.socket.clone();
    let log = rvsd.log.clone();
    let st = rvsd.stop();
    let tail = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "rvsd exit status after SIGTERM: {st}\n--- log ---\n{tail}");
    assert!(!sock.exists(), "control socket {} left behind", sock.display());
    // Nothing of rvsd left in the namespace.
    let pids = Command::new("ip").args(["netns", "pids", &lab.ns("lb")]).output().unwrap();
    assert!(pids.stdout.is_empty(), "processes left in {}: {}", lab.ns("lb"), out_str(&pids));
}
