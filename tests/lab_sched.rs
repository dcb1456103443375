//! End-to-end scheduling semantics in the namespace lab (deploy/lab.sh), with 2 workers:
//! persistence keeps a client on one real server whichever worker its connections land on;
//! sh and mh are sticky per client; lc and wlc use every server.
//!
//! Need root and `ip netns` (failing without them unless RVS_SKIP_LAB=1 skips them) and the workspace binaries built.
//! Prefixes q1..q3.

mod common;

use common::{Lab, Rvsd};

const VIP: &str = "203.0.113.100:80";
const URL: &str = "http://203.0.113.100/";

fn dr_service(rvsd: &Rvsd, sched_args: &[&str]) {
    let mut a = vec!["-A", "-t", VIP];
    a.extend_from_slice(sched_args);
    rvsd.rvsadm_ok(&a);
    for rip in ["203.0.113.11:80", "203.0.113.12:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", VIP, "-r", rip, "-g"]);
    }
}

fn answers(lab: &Lab, n: usize) -> Vec<String> {
    (0..n).map(|i| lab.client_curl(URL).unwrap_or_else(|e| panic!("curl #{i}: {e}")).trim().to_string()).collect()
}

fn all_same(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn persistence_keeps_a_client_on_one_server_across_workers() {
    let Some(mut lab) = Lab::up("q1") else { return };
    lab.set_workers(2);
    let rvsd = Rvsd::start(&lab, "");
    dr_service(&rvsd, &["-s", "rr"]);
    // Move the workers' rr positions apart first (each worker has its own rotation, so a
    // per-worker template alone would send the client to whatever its worker picks next).
    let warm = answers(&lab, 7);
    assert!(warm.contains(&"rs1".to_string()) && warm.contains(&"rs2".to_string()), "rr warm-up: {warm:?}");
    rvsd.rvsadm_ok(&["-E", "-t", VIP, "-s", "rr", "-p", "60"]);
    // Twelve connections from new source ports: the fanout spreads them over both workers,
    // and rr alone would alternate; the persistence template must win.
    let got = answers(&lab, 12);
    assert!(all_same(&got), "persistent service sent one client to several servers: {got:?}");
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("persistent 60"), "-L -n shows persistence:\n{list}");
    // Without persistence the same traffic uses both servers.
    rvsd.rvsadm_ok(&["-E", "-t", VIP, "-s", "rr"]);
    let mut seen = answers(&lab, 12);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"], "rr without persistence must use both servers");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn source_hash_and_maglev_are_sticky_per_client() {
    let Some(mut lab) = Lab::up("q2") else { return };
    lab.set_workers(2);
    let rvsd = Rvsd::start(&lab, "");
    dr_service(&rvsd, &["-s", "sh"]);
    let sh = answers(&lab, 10);
    assert!(all_same(&sh), "sh sent one client to several servers: {sh:?}");
    rvsd.rvsadm_ok(&["-E", "-t", VIP, "-s", "mh"]);
    let mh = answers(&lab, 10);
    assert!(all_same(&mh), "mh sent one client to several servers: {mh:?}");
    // Draining the chosen server moves the client, to the other one, and keeps it there.
    let chosen = mh[0].clone();
    let rip = if chosen == "rs1" { "203.0.113.11:80" } else { "203.0.113.12:80" };
    rvsd.rvsadm_ok(&["-e", "-t", VIP, "-r", rip, "-g", "-w", "0"]);
    let moved = answers(&lab, 6);
    assert!(moved.iter().all(|a| *a != chosen), "mh kept sending to a weight-0 server: {moved:?}");
    assert!(all_same(&moved), "mh not sticky after the change: {moved:?}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}

#[test]
fn least_connection_schedulers_use_every_server() {
    let Some(mut lab) = Lab::up("q3") else { return };
    lab.set_workers(2);
    let rvsd = Rvsd::start(&lab, "");
    for sched in ["lc", "wlc", "fo"] {
        rvsd.rvsadm_ok(&["-C"]);
        dr_service(&rvsd, &["-s", sched]);
        let mut got = answers(&lab, 12);
        got.sort();
        got.dedup();
        if sched == "fo" {
            // Weighted failover: the highest weight (ties: the first) takes every flow.
            assert_eq!(got.len(), 1, "fo used several servers: {got:?}");
        } else {
            assert_eq!(got, ["rs1", "rs2"], "{sched} did not use both servers");
        }
    }
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}
