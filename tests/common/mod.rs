//! Harness for the end-to-end lab tests: a network-namespace lab (deploy/lab.sh),
//! an rvsd running in it, and helpers to drive traffic and rvsadm.
//!
//! Every external command runs under `timeout`, so no test can hang. Each test
//! uses its own lab PREFIX, which also gives rvsd its own DPDK `--file-prefix`
//! and control socket. Labs run one at a time (see [`LabSlot`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub mod prereq;

/// The right to run a lab: an exclusive `flock` on [`LAB_LOCK`], so labs run one
/// at a time across test threads, test binaries and concurrent `cargo test` runs
/// (on a 2-core machine several labs, each with an rvsd of 2 polling workers, a
/// dozen servers and wrk, starve each other into timeouts). Unlike a `MutexGuard`
/// it is `Send`, so a `Lab` can be shared with traffic threads; the lock goes
/// with the file descriptor, also when a test panics or the process dies.
pub struct LabSlot(fs::File);

pub const LAB_LOCK: &str = "/tmp/rvs-lab.lock";

impl LabSlot {
    pub fn acquire() -> LabSlot {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LAB_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {LAB_LOCK}: {e}"));
        let t0 = Instant::now();
        f.lock().unwrap_or_else(|e| panic!("cannot lock {LAB_LOCK}: {e}"));
        if t0.elapsed() > Duration::from_secs(1) {
            eprintln!("waited {:.1} s for another lab to finish", t0.elapsed().as_secs_f64());
        }
        LabSlot(f)
    }
}

/// Root of the `rvs` crate (= workspace root).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn rvsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvsd"))
}

/// rvsadm is a binary of another workspace crate; it lands next to rvsd.
pub fn rvsadm_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_rvsd")).with_file_name("rvsadm");
    assert!(
        p.exists(),
        "rvsadm not found at {} - build every binary first: `cargo build --workspace --bins` \
         (deploy/test.sh does this)",
        p.display()
    );
    p
}

/// Runs `argv` under `timeout -k 2 <secs>`; never hangs.
pub fn run(argv: &[&str], secs: u64) -> Output {
    let secs = secs.to_string();
    Command::new("timeout")
        .args(["-k", "2", &secs])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

pub fn out_str(o: &Output) -> String {
    format!(
        "status={} stdout={:?} stderr={:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// True when this lab test may run: root and `ip netns` are there (and `tools` on PATH) and
/// `RVS_SKIP_LAB=1` is not set. False when skipped (a `SKIPPED:` line on stderr); panics,
/// failing the test with what is missing, when it cannot run and no skip was asked. See
/// [`prereq`].
pub fn lab_supported(test: &str, tools: &[&str]) -> bool {
    prereq::check(&format!("lab {test}"), tools)
}

fn lab_sh() -> String {
    repo_root().join("deploy/lab.sh").display().to_string()
}

/// A running lab (deploy/lab.sh up PREFIX); torn down on drop.
pub struct Lab {
    pub prefix: String,
    /// /tmp/rvs-lab-PREFIX: server logs, rvsd config, log and socket.
    pub state: PathBuf,
    /// rvsd workers `base_config` asks for (1 unless [`Lab::set_workers`]).
    workers: u32,
    /// Released after `lab.sh down` (fields drop after `Drop::drop`).
    _slot: LabSlot,
}

impl Lab {
    /// Brings the lab up, or returns None when `RVS_SKIP_LAB=1` skips lab tests (reported
    /// as SKIPPED); fails the test when the machine cannot run labs (see [`lab_supported`]).
    pub fn up(prefix: &str) -> Option<Lab> {
        Lab::up_with(prefix, &[])
    }

    /// [`Lab::up`] for a test that also needs `tools` on PATH (checked like root).
    pub fn up_with(prefix: &str, tools: &[&str]) -> Option<Lab> {
        if !lab_supported(prefix, tools) {
            return None;
        }
        let slot = LabSlot::acquire();
        let t0 = Instant::now();
        let o = run(&["bash", &lab_sh(), "up", prefix], 60);
        assert!(o.status.success(), "lab.sh up {prefix} failed: {}", out_str(&o));
        eprintln!("lab {prefix}: up in {:.1} s", t0.elapsed().as_secs_f64());
        Some(Lab {
            prefix: prefix.to_string(),
            state: PathBuf::from(format!("/tmp/rvs-lab-{prefix}")),
            workers: 1,
            _slot: slot,
        })
    }

    /// Makes [`Lab::base_config`] (and so [`Rvsd::start`]) run `n` workers.
    pub fn set_workers(&mut self, n: u32) {
        self.workers = n;
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{}", self.prefix, name)
    }

    /// `ip netns exec PREFIX-<ns> argv...` under a timeout.
    pub fn exec(&self, ns: &str, argv: &[&str], secs: u64) -> Output {
        let ns = self.ns(ns);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(argv);
        run(&full, secs)
    }

    /// The rvsd config for this lab, without services (`lab.sh config`).
    pub fn base_config(&self) -> String {
        let w = self.workers.to_string();
        let o = run(&["bash", &lab_sh(), "config", &self.prefix, "--workers", &w], 10);
        assert!(o.status.success(), "lab.sh config failed: {}", out_str(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.state.join("rvsd.sock")
    }

    /// One HTTP GET from the client: body on success, a description on failure.
    pub fn client_curl(&self, url: &str) -> Result<String, String> {
        self.client_curl_within(url, 2)
    }

    /// [`Lab::client_curl`] with a `secs` time limit (> 1 s leaves room for a SYN
    /// retransmission, > 3 s for two).
    pub fn client_curl_within(&self, url: &str, secs: u64) -> Result<String, String> {
        let t = secs.to_string();
        let o = self.exec("cl", &["curl", "-s", "--max-time", &t, url], secs + 3);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(format!("curl {url}: {}", out_str(&o)))
        }
    }

    /// One datagram from the client, from a fresh socket (fresh source port),
    /// connected to addr:port so only a reply from addr:port is accepted.
    pub fn client_udp(&self, addr: &str, port: u16, payload: &str) -> Result<String, String> {
        let script = "import socket,sys\n\
                      s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                      s.settimeout(2)\n\
                      s.connect((sys.argv[1],int(sys.argv[2])))\n\
                      s.send(sys.argv[3].encode())\n\
                      sys.stdout.write(s.recv(65535).decode())\n";
        let port = port.to_string();
        let o = self.exec("cl", &["/usr/bin/python3", "-c", script, addr, &port, payload], 6);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(format!("udp {addr}:{port}: {}", out_str(&o)))
        }
    }

    /// Pings `dst` from the client `count` times; returns the number of replies.
    pub fn client_ping(&self, dst: &str, count: u32) -> u32 {
        let c = count.to_string();
        let o = self.exec("cl", &["ping", "-n", "-c", &c, "-i", "0.2", "-W", "2", dst], 5 + 3 * count as u64);
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines()
            .find_map(|l| {
                let l = l.trim();
                let rest = l.split(" packets transmitted, ").nth(1)?;
                rest.split(' ').next()?.parse::<u32>().ok()
            })
            .unwrap_or(0)
    }

    /// Neighbour-table MAC of `ip` on the router's server-segment leg.
    pub fn router_neigh_mac(&self, ip: &str) -> Option<String> {
        let o = self.exec("rt", &["ip", "neigh", "show", ip, "dev", "eth1"], 5);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let mut it = text.split_whitespace();
        while let Some(tok) = it.next() {
            if tok == "lladdr" {
                return it.next().map(str::to_string);
            }
        }
        None
    }
}

/// A finished `wrk` run.
#[derive(Debug)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    /// The "Socket errors: ..." line, when wrk printed one.
    pub socket_errors: Option<String>,
    /// The "Non-2xx or 3xx responses: N" line, when wrk printed one.
    pub non_2xx: Option<String>,
    pub output: String,
}

/// tcpdump writing a pcap in a lab namespace; [`Capture::stop`] ends it.
pub struct Capture {
    child: Option<Child>,
    pub pcap: PathBuf,
    stderr: PathBuf,
}

impl Capture {
    /// Packets already captured, decoded by scapy: one JSON object per packet with
    /// src, dst, proto, sport, dport, flags (scapy's string, e.g. "S", "A", "PA") and
    /// toa (hex of the kind-254 option value) when present.
    pub fn packets(&self) -> Vec<serde_json::Value> {
        let script = "import json,sys,logging\n\
                      logging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
                      from scapy.all import rdpcap,IP,TCP,UDP\n\
                      out=[]\n\
                      for p in rdpcap(sys.argv[1]):\n    \
                          if IP not in p: continue\n    \
                          d={'src':p[IP].src,'dst':p[IP].dst,'proto':p[IP].proto}\n    \
                          l4=p[TCP] if TCP in p else (p[UDP] if UDP in p else None)\n    \
                          if l4 is not None: d['sport']=l4.sport; d['dport']=l4.dport\n    \
                          if TCP in p:\n        \
                              d['flags']=str(p[TCP].flags)\n        \
                              for k,v in p[TCP].options:\n            \
                                  if k==254 or k=='Experiment': d['toa']=(bytes(v) if isinstance(v,(bytes,bytearray)) else b'').hex()\n    \
                          out.append(d)\n\
                      print(json.dumps(out))\n";
        let o = run(&["/usr/bin/python3", "-c", script, self.pcap.to_str().unwrap()], 30);
        assert!(o.status.success(), "decoding {}: {}", self.pcap.display(), out_str(&o));
        serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout)
            .unwrap_or_else(|e| panic!("bad JSON from scapy ({e}): {}", out_str(&o)))
    }

    /// Stops tcpdump (SIGINT) and waits for it to flush.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = run(&["kill", "-INT", &c.id().to_string()], 5);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Lab {
    /// Starts `tcpdump -i iface filter` in namespace `ns` (pcap in the state dir
    /// named `name`.pcap) and waits (<= 10 s) until it is listening.
    pub fn capture(&self, ns: &str, iface: &str, filter: &str, name: &str) -> Capture {
        let pcap = self.state.join(format!("{name}.pcap"));
        let stderr = self.state.join(format!("{name}.tcpdump.err"));
        let errf = fs::File::create(&stderr).unwrap();
        let mut args: Vec<String> =
            ["netns", "exec", &self.ns(ns), "tcpdump", "--immediate-mode", "-U", "-n", "-i", iface, "-w"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.push(pcap.display().to_string());
        args.extend(filter.split_whitespace().map(str::to_string));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errf)
            .spawn()
            .expect("spawn tcpdump");
        let cap = Capture { child: Some(child), pcap, stderr: stderr.clone() };
        let ok = wait_until(10, || fs::read_to_string(&stderr).unwrap_or_default().contains("listening on"));
        assert!(ok, "tcpdump in {ns} on {iface} did not start: {}", fs::read_to_string(&stderr).unwrap_or_default());
        cap
    }

    /// One HTTP GET from the client with curl: (body, client port) or a description.
    pub fn client_curl_port(&self, url: &str) -> Result<(String, u16), String> {
        let o = self.exec("cl", &["curl", "-s", "--max-time", "2", "-w", "\n%{local_port}", url], 5);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let mut lines: Vec<&str> = text.trim().lines().collect();
        let port = lines.pop().and_then(|p| p.trim().parse::<u16>().ok());
        match (o.status.success(), port) {
            (true, Some(p)) => Ok((lines.join("\n").trim().to_string(), p)),
            _ => Err(format!("curl {url}: {}", out_str(&o))),
        }
    }

    /// `n` sequential HTTP GETs from the client, each on a new connection, in one
    /// Python process (much faster than `n` curls): body or error per request.
    pub fn client_http_many(&self, host: &str, port: u16, n: usize) -> Vec<Result<String, String>> {
        let script = "import http.client,json,sys\n\
                      h,p,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])\n\
                      out=[]\n\
                      for i in range(n):\n    \
                          try:\n        \
                              c=http.client.HTTPConnection(h,p,timeout=2)\n        \
                              c.request('GET','/',headers={'Connection':'close'})\n        \
                              r=c.getresponse(); b=r.read().decode().strip(); c.close()\n        \
                              out.append({'ok':b} if r.status==200 else {'err':'HTTP %d %s'%(r.status,b)})\n    \
                          except Exception as e:\n        \
                              out.append({'err':repr(e)})\n\
                      print(json.dumps(out))\n";
        let (ps, ns) = (port.to_string(), n.to_string());
        let o = self.exec("cl", &["/usr/bin/python3", "-c", script, host, &ps, &ns], 10 + 3 * n as u64);
        assert!(o.status.success(), "HTTP loop from the client failed: {}", out_str(&o));
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", out_str(&o)));
        v.into_iter()
            .map(|r| match (r.get("ok").and_then(|b| b.as_str()), r.get("err").and_then(|b| b.as_str())) {
                (Some(b), _) => Ok(b.to_string()),
                (_, Some(e)) => Err(e.to_string()),
                _ => Err(format!("bad result {r}")),
            })
            .collect()
    }

    /// `wrk -t2 -c16 -d<secs>s -H 'Connection: close' url` from the client.
    pub fn client_wrk(&self, url: &str, secs: u64) -> WrkResult {
        let d = format!("{secs}s");
        let o = self.exec(
            "cl",
            &["wrk", "-t2", "-c16", "-d", &d, "--timeout", "2s", "-H", "Connection: close", url],
            secs + 20,
        );
        let output = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "wrk failed: {}", out_str(&o));
        let requests = output
            .lines()
            .find_map(|l| l.trim().split_once(" requests in ")?.0.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no 'N requests in' line in wrk output:\n{output}"));
        let requests_per_sec = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let line = |p: &str| output.lines().find(|l| l.trim().starts_with(p)).map(|l| l.trim().to_string());
        WrkResult {
            requests,
            requests_per_sec,
            socket_errors: line("Socket errors:"),
            non_2xx: line("Non-2xx or 3xx responses:"),
            output,
        }
    }

    /// `lab.sh nginx start|stop PREFIX ns`.
    pub fn nginx(&self, action: &str, ns: &str) {
        let o = run(&["bash", &lab_sh(), "nginx", action, &self.prefix, ns], 30);
        assert!(o.status.success(), "lab.sh nginx {action} {} {ns}: {}", self.prefix, out_str(&o));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let o = run(&["bash", &lab_sh(), "down", &self.prefix], 60);
        if !o.status.success() {
            eprintln!("lab.sh down {} failed: {}", self.prefix, out_str(&o));
        }
    }
}

/// rvsd running in PREFIX-lb. Dropping it SIGTERMs (then SIGKILLs) it; tests
/// that care about the exit status call [`Rvsd::stop`]. If the test is
/// panicking, the drop prints the rvsd log tail and the counters.
pub struct Rvsd {
    child: Option<Child>,
    pub prefix: String,
    pub log: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Rvsd {
    /// Writes `lab.sh config` + `extra_toml`, starts rvsd and waits (<= 20 s)
    /// until its control socket answers `rvsadm -L -n`.
    pub fn start(lab: &Lab, extra_toml: &str) -> Rvsd {
        let cfg = format!("{}\n{}\n", lab.base_config(), extra_toml);
        Self::start_with_config(lab, &cfg)
    }

    pub fn start_with_config(lab: &Lab, cfg: &str) -> Rvsd {
        Self::start_in(Some(&lab.ns("lb")), &lab.prefix, &lab.state, &lab.socket(), cfg)
    }

    /// Starts rvsd outside any lab: in network namespace `netns` (None: this one), config `cfg`
    /// written to `state`/rvsd.toml (its `[ctrl] socket` must be `socket`), log in
    /// `state`/rvsd.log; waits (<= 20 s) until the control socket answers `rvsadm -L -n`.
    pub fn start_in(netns: Option<&str>, prefix: &str, state: &Path, socket: &Path, cfg: &str) -> Rvsd {
        let rvsadm = rvsadm_bin();
        fs::create_dir_all(state).unwrap();
        let config = state.join("rvsd.toml");
        fs::write(&config, cfg).unwrap();
        let log = state.join("rvsd.log");
        let logf = fs::File::create(&log).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(rvsd_bin());
                c
            }
            None => Command::new(rvsd_bin()),
        };
        let child = cmd
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawn rvsd");
        let mut d = Rvsd { child: Some(child), prefix: prefix.to_string(), log, config, socket: socket.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rvsd exited during start-up with {st}\n--- rvsd log ---\n{}", d.log_tail(40));
            }
            if d.socket.exists() {
                let o = run(&[rvsadm.to_str().unwrap(), "--socket", d.socket.to_str().unwrap(), "-L", "-n"], 5);
                if o.status.success() {
                    return d;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "rvsd control socket {} did not answer within 20 s\n--- rvsd log ---\n{}",
                    d.socket.display(),
                    d.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `rvsadm --socket <sock> args...`.
    pub fn rvsadm(&self, args: &[&str]) -> Output {
        let bin = rvsadm_bin();
        let mut argv = vec![bin.to_str().unwrap(), "--socket", self.socket.to_str().unwrap()];
        argv.extend_from_slice(args);
        run(&argv, 10)
    }

    /// rvsadm that must succeed; returns stdout.
    pub fn rvsadm_ok(&self, args: &[&str]) -> String {
        let o = self.rvsadm(args);
        assert!(o.status.success(), "rvsadm {args:?} failed: {}", out_str(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Counters from `rvsadm link show --json` (`"counters": [[name, n], ...]`;
    /// a `{name: n}` object is accepted too).
    pub fn counters(&self) -> HashMap<String, u64> {
        let out = self.rvsadm_ok(&["link", "show", "--json"]);
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON from link show ({e}): {out}"));
        let mut m = HashMap::new();
        match v.get("counters") {
            Some(serde_json::Value::Array(a)) => {
                for pair in a {
                    if let (Some(k), Some(n)) =
                        (pair.get(0).and_then(|k| k.as_str()), pair.get(1).and_then(|n| n.as_u64()))
                    {
                        m.insert(k.to_string(), n);
                    }
                }
            }
            Some(serde_json::Value::Object(o)) => {
                for (k, n) in o {
                    if let Some(n) = n.as_u64() {
                        m.insert(k.clone(), n);
                    }
                }
            }
            _ => panic!("no counters in link show output: {out}"),
        }
        m
    }

    /// Counters are published by the workers periodically, so a value read
    /// right after traffic may lag: polls (<= `secs`) until `name` >= `min` and
    /// returns the last reading either way.
    pub fn counters_when(&self, name: &str, min: u64, secs: u64) -> HashMap<String, u64> {
        let mut last = HashMap::new();
        wait_until(secs, || {
            last = self.counters();
            last.get(name).copied().unwrap_or(0) >= min
        });
        last
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = run(&["kill", sig, &pid.to_string()], 5);
        }
    }

    fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait (<= 15 s) for the exit status. Panics (with the log)
    /// if rvsd does not exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        match self.wait_timeout(Duration::from_secs(15)) {
            Some(st) => {
                self.child = None;
                st
            }
            None => {
                self.signal("-KILL");
                let _ = self.wait_timeout(Duration::from_secs(5));
                let tail = self.log_tail(40);
                self.child = None;
                panic!("rvsd did not exit within 15 s of SIGTERM\n--- rvsd log ---\n{tail}");
            }
        }
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        if self.child.is_none() {
            if thread::panicking() {
                eprintln!("--- rvsd log ({}) ---\n{}", self.log.display(), self.log_tail(40));
            }
            return;
        }
        if thread::panicking() {
            if self.is_alive() {
                let o = self.rvsadm(&["link", "show", "--json"]);
                eprintln!("--- rvsd counters ---\n{}", String::from_utf8_lossy(&o.stdout));
            }
            eprintln!("--- rvsd log ({}) ---\n{}", self.log.display(), self.log_tail(40));
        }
        self.signal("-TERM");
        if self.wait_timeout(Duration::from_secs(10)).is_none() {
            self.signal("-KILL");
            let _ = self.wait_timeout(Duration::from_secs(5));
        }
    }
}

/// Asserts that `seq` cycles through `names` round-robin: every element is one
/// of `names` and each one follows its predecessor in cyclic order (starting anywhere).
pub fn assert_round_robin(seq: &[String], names: &[&str]) {
    assert!(!seq.is_empty(), "no responses");
    let idx: Vec<usize> = seq
        .iter()
        .map(|s| names.iter().position(|n| n == s).unwrap_or_else(|| panic!("unexpected response {s:?} in {seq:?}")))
        .collect();
    for w in idx.windows(2) {
        assert_eq!((w[0] + 1) % names.len(), w[1], "not round-robin over {names:?}: {seq:?}");
    }
}

/// Polls `f` every 100 ms until it returns true or `secs` elapse.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}
