//! End-to-end tests of the operator's read side in the namespace lab (deploy/lab.sh): per-service
//! and per-RS statistics and rates under real traffic, zeroing, the session list, and
//! `rvsadm -S | rvsadm -R` round trips of every kind of service.
//!
//! Need root and `ip netns` (failing without them unless RVS_SKIP_LAB=1 skips them) and the workspace binaries built.
//! Prefixes s1..s3.

mod common;

use common::{out_str, rvsadm_bin, wait_until, Lab, Rvsd};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// NAT service on the internal segment: both directions cross rvs, so in and out counters move.
const VIP_NAT: &str = "203.0.113.100:80";
const URL: &str = "http://203.0.113.100/";

fn nat_service(rvsd: &Rvsd) {
    rvsd.rvsadm_ok(&["-A", "-t", VIP_NAT, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-t", VIP_NAT, "-r", "192.0.2.11:80", "-m"]);
    rvsd.rvsadm_ok(&["-a", "-t", VIP_NAT, "-r", "192.0.2.12:80", "-m"]);
}

fn json(rvsd: &Rvsd, args: &[&str]) -> Value {
    let out = rvsd.rvsadm_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rvsadm {args:?} printed no JSON ({e}):\n{out}"))
}

/// `total` of the one service in a `--stats --json` / `--rate --json` service list.
fn total(services: &Value, field: &str) -> u64 {
    let svc = services.as_array().and_then(|a| a.first()).unwrap_or_else(|| panic!("no service in {services}"));
    svc["total"][field].as_u64().unwrap_or_else(|| panic!("no total.{field} in {svc}"))
}

#[test]
fn stats_rates_zero_and_sessions_move_under_traffic() {
    let Some(mut lab) = Lab::up("s1") else { return };
    lab.set_workers(2);
    let rvsd = Rvsd::start(&lab, "");
    nat_service(&rvsd);

    for i in 0..10 {
        lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i}: {e}"));
    }
    let stats = json(&rvsd, &["-L", "-n", "--stats", "--json"]);
    assert_eq!(total(&stats, "conns"), 10, "10 curls are 10 connections: {stats:#}");
    // A curl is at least SYN, ACK, request, FIN/ACK one way and SYN-ACK, response, FIN the other.
    assert!(total(&stats, "inpkts") >= 40, "in packets: {stats:#}");
    assert!(total(&stats, "outpkts") >= 30, "out packets (NAT replies cross rvs): {stats:#}");
    assert!(total(&stats, "outbytes") > total(&stats, "outpkts") * 40, "out bytes: {stats:#}");
    let reals = stats[0]["reals"].as_array().expect("reals");
    assert_eq!(reals.len(), 2);
    for r in reals {
        assert!(r[1]["conns"].as_u64().unwrap_or(0) >= 3, "both NAT servers get connections: {stats:#}");
    }
    let plain = rvsd.rvsadm_ok(&["-L", "-n", "--stats"]);
    assert!(plain.contains("Conns") && plain.contains("192.0.2.11:80"), "ipvsadm-style --stats:\n{plain}");

    // The session list shows the client, the VIP and the real servers of those connections.
    let conns = json(&rvsd, &["-L", "-n", "-c", "--json"]);
    let entries = conns["conns"].as_array().unwrap_or_else(|| panic!("no conns in {conns:#}"));
    assert!(entries.len() >= 10, "10 recent sessions expected: {conns:#}");
    assert!(
        entries.iter().all(|c| c["client"].as_str().is_some_and(|s| s.starts_with("198.51.100.10:"))
            && c["vip"] == VIP_NAT
            && c["rip"].as_str().is_some_and(|s| s.starts_with("192.0.2.1"))),
        "sessions: {conns:#}"
    );
    let one = json(&rvsd, &["-L", "-n", "-c", "--max", "1", "--json"]);
    assert_eq!(one["conns"].as_array().map(Vec::len), Some(1), "--max 1: {one:#}");
    assert!(one["total"].as_u64().unwrap_or(0) >= 10, "total still counts all: {one:#}");

    // -Z zeroes what the listing shows; new traffic counts from zero.
    rvsd.rvsadm_ok(&["-Z"]);
    let zeroed = json(&rvsd, &["-L", "-n", "--stats", "--json"]);
    assert_eq!(total(&zeroed, "conns"), 0, "after -Z: {zeroed:#}");
    assert_eq!(total(&zeroed, "inpkts"), 0, "after -Z: {zeroed:#}");
    lab.client_curl(URL).expect("curl after -Z");
    let one_more = json(&rvsd, &["-L", "-n", "--stats", "--json"]);
    assert_eq!(total(&one_more, "conns"), 1, "one curl after -Z: {one_more:#}");

    // Rates under a steady curl loop: connections and packets per second are non-zero.
    let stop = Arc::new(AtomicBool::new(false));
    let looper = {
        let (stop, ns) = (Arc::clone(&stop), lab.ns("cl"));
        thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let ok = Command::new("ip")
                    .args(["netns", "exec", &ns, "curl", "-s", "-o", "/dev/null", "--max-time", "2", URL])
                    .status()
                    .is_ok_and(|s| s.success());
                n += u32::from(ok);
            }
            n
        })
    };
    let _ = rvsd.rvsadm_ok(&["-L", "-n", "--rate"]); // first call samples
    let mut rates = Value::Null;
    let moved = wait_until(10, || {
        rates = json(&rvsd, &["-L", "-n", "--rate", "--json"]);
        total(&rates["services"], "cps") > 0 && total(&rates["services"], "inpps") > 0
    });
    stop.store(true, Ordering::Relaxed);
    let done = looper.join().expect("curl loop");
    assert!(moved, "rates stayed at zero under a curl loop ({done} curls): {rates:#}");
    assert!(total(&rates["services"], "outbps") > 0, "NAT replies give out bytes per second: {rates:#}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

/// `rvsadm -S`, then `-C`, then the saved text into `rvsadm -R`: the same listing, the same
/// save text, and traffic still flows.
#[test]
fn save_clear_restore_round_trip() {
    let Some(lab) = Lab::up("s2") else { return };
    let rvsd = Rvsd::start(&lab, "");
    let setup: &[&[&str]] = &[
        &["-A", "-t", VIP_NAT, "-s", "wrr"],
        &["-a", "-t", VIP_NAT, "-r", "192.0.2.11:80", "-m", "-w", "3"],
        &["-a", "-t", VIP_NAT, "-r", "192.0.2.12:80", "-m", "-w", "1", "-x", "100", "-y", "50"],
        &["-A", "-t", "203.0.113.100:8080", "-s", "mh", "--client-addr", "proxy-v2"],
        &["-a", "-t", "203.0.113.100:8080", "-r", "203.0.113.11:8080", "-b"],
        &["--add-laddr", "-t", "203.0.113.100:8080", "-z", "203.0.113.3"],
        &["-A", "-u", "203.0.113.100:9000", "-s", "sh", "-p", "600", "-M", "255.255.255.0"],
        &["-a", "-u", "203.0.113.100:9000", "-r", "203.0.113.12:9000", "-g", "-w", "0"],
        &["-A", "-t", "203.0.113.101:80", "-s", "lc"],
        &["-a", "-t", "203.0.113.101:80", "-r", "192.0.2.140:80", "-i"],
    ];
    for args in setup {
        rvsd.rvsadm_ok(args);
    }
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    let listed = rvsd.rvsadm_ok(&["-L", "-n"]);
    for needle in
        ["-m", "-b", "-i", "-g", "-w 3", "-x 100", "-y 50", "-p 600", "203.0.113.3", "proxy-v2", "mh", "sh", "lc"]
    {
        assert!(saved.contains(needle), "saved text lacks {needle:?}:\n{saved}");
    }

    rvsd.rvsadm_ok(&["-C"]);
    assert!(!rvsd.rvsadm_ok(&["-L", "-n"]).contains("203.0.113.100"), "-C left services behind");
    assert!(lab.client_curl(URL).is_err(), "traffic forwarded with no service");

    let o = restore(&lab, &saved);
    assert!(o.status.success(), "rvsadm -R refused its own -S output: {}\n{saved}", out_str(&o));

    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved, "save text differs after restore");
    // ActiveConn/InActConn may differ (a late SYN of the curl above can open a session).
    assert_eq!(
        without_conn_counts(&rvsd.rvsadm_ok(&["-L", "-n"])),
        without_conn_counts(&listed),
        "listing differs after restore"
    );
    let answers: Vec<String> =
        (0..8).map(|i| lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i}: {e}"))).collect();
    let rn1 = answers.iter().filter(|a| a.trim() == "rn1").count();
    assert!(rn1 >= 5, "wrr 3:1 restored: {answers:?}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

/// `rvsadm -R` with `text` on its standard input.
fn restore(lab: &Lab, text: &str) -> std::process::Output {
    let mut child = Command::new(rvsadm_bin())
        .args(["--socket", &lab.socket().display().to_string(), "-R"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvsadm -R");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write rvsadm -R input");
    child.wait_with_output().expect("rvsadm -R")
}

/// `-L -n` text without the ActiveConn/InActConn columns of the real-server lines.
fn without_conn_counts(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if l.starts_with("  -> ") && t.len() == 6 {
                t[..4].join(" ")
            } else {
                t.join(" ")
            }
        })
        .collect()
}

/// A refused restore (a bad line in the middle) applies nothing.
#[test]
fn restore_with_a_bad_line_applies_nothing() {
    let Some(lab) = Lab::up("s3") else { return };
    let rvsd = Rvsd::start(&lab, "");
    let text = "-A -t 203.0.113.100:80 -s rr\n-a -t 203.0.113.100:80 -r 192.0.2.11:80 -m\n-a -t 203.0.113.100:80 -r 192.0.2.300:80 -m\n";
    let o = restore(&lab, text);
    assert!(!o.status.success(), "a restore with a bad address must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3") && err.contains("192.0.2.300"), "error names the line and the address: {err}");
    assert!(!rvsd.rvsadm_ok(&["-L", "-n"]).contains("203.0.113.100"), "a refused restore applied lines");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}
