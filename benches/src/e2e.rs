//! rvs-loadgen: the whole rvsd, end to end, over `net_memif`. This process is the memif server
//! (one port, on CPU 0); the real `rvsd` binary runs as a child (memif client, one worker on
//! CPU 1, a config generated for the mode), and before it a bare reflector (this binary again,
//! `--reflector`: rx, swap MACs, tx, on CPU 1) gives the ceiling of the same path. The generator
//! plays at once the clients (behind the gateway 203.0.113.1, whose MAC is the generator's), the
//! real servers (their MACs answered by ARP) and, for NAT/FULLNAT, the real servers' replies.
//!
//! Frames are the benchmark's ([`crate::frames`]): 60 bytes, built before the measured windows
//! (established: one per flow, plus one reply per flow for NAT/FULLNAT, learnt from what rvsd sent
//! while the flows were opened; new: TCP SYNs on tuples never used before, built as they are sent
//! since they cannot repeat). Forwarded frames are sampled and checked with [`crate::frames::verify`]
//! (DR: dst MAC of the RS, IP untouched; NAT: dst RIP; FULLNAT: src a LIP; TUN: IPIP outer header).
//! `--short` runs every case in lockstep (send a burst, wait for all of it) and checks every frame.

use crate::frames::{self, build, client_of, net, verify, Frame, OutDir, ACK, SYN, TCP, UDP};
use crate::util::Rng;
use dpdk_sys::{DpdkError, Eal, Mbuf, Mempool, PortConf};
use rvs_config::model::FwdMode;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The generator's MAC: the clients' gateway and every real server's switch port at once.
const GEN_MAC: [u8; 6] = net::GW_MAC;
const BURST: usize = 32;
/// One forwarded frame in this many is checked (all of them with `--short`).
const SAMPLE: u64 = 64;
/// Flows opened per lockstep round while opening (at most this many wait for one ARP answer).
const OPEN_ROUND: usize = 16;
/// FULLNAT local addresses in rvsd's config.
const FULLNAT_LADDRS: usize = 128;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub modes: Vec<FwdMode>,
    pub flows: Vec<usize>,
    /// Measured windows per case, and their length.
    pub windows: usize,
    pub window_secs: f64,
    pub short: bool,
    pub huge: bool,
    /// rvsd binary (default: next to this one).
    pub rvsd: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    /// Working directory: memif socket, rvsd config and log.
    pub dir: PathBuf,
}

/// Why a run could not be done.
#[derive(Debug, Error)]
pub enum LoadgenError {
    #[error("DPDK: {0}")]
    Dpdk(#[from] DpdkError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("rvsd binary {0} not found: build every binary first (`cargo build --release --workspace --bins`) or pass --rvsd")]
    NoRvsd(PathBuf),
    #[error("{0}")]
    Peer(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadgenError {
    let what = what.into();
    move |err| LoadgenError::Io { what, err }
}

/// EAL arguments of the generator, the reflector and rvsd (each with its own prefix and CPU).
pub fn eal_args(prefix: &str, cpu: usize, huge: bool) -> Vec<String> {
    let mem: &[&str] = if huge {
        &["--in-memory", "--huge-dir", "/dev/hugepages", "-m", "512"]
    } else {
        &["--no-huge", "--no-shconf", "-m", "512"]
    };
    let mut v: Vec<String> = mem.iter().map(|s| s.to_string()).collect();
    v.extend(
        ["--file-prefix", prefix, "--no-pci", "--no-telemetry", "--log-level", "lib.eal:error", "-l", &cpu.to_string()]
            .iter()
            .map(|s| s.to_string()),
    );
    v
}

/// `net_memif` device string of the generator (server) or its peer (client).
pub fn memif_dev(name: &str, server: bool, socket: &Path, mac: [u8; 6]) -> String {
    let m = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let role = if server { "server" } else { "client" };
    format!("{name},role={role},socket={},mac={m}", socket.display())
}

pub fn mode_name(m: FwdMode) -> &'static str {
    crate::cases::mode_name(m)
}

fn fwd_word(m: FwdMode) -> &'static str {
    match m {
        FwdMode::Dr => "dr",
        FwdMode::Nat => "nat",
        FwdMode::FullNat => "fullnat",
        FwdMode::Tun => "tun",
    }
}

/// rvsd's config for `mode`: the memif client port (MAC and address of the benchmark's port),
/// one busy-polling worker on CPU 1, TCP :80 and UDP :53 on the VIP to the 8 real servers of
/// the mode, FULLNAT local addresses, room for the sessions of every case of the run.
pub fn rvsd_config(mode: FwdMode, socket: &Path, ctl: &Path, huge: bool) -> String {
    let eal: Vec<String> = eal_args("rvs-loadgen-rvsd", 0, huge)
        .into_iter()
        .filter(|a| a != "-l" && a != "0")
        .map(|a| format!("{a:?}"))
        .collect();
    let mut c = format!(
        "[eal]\nargs = [{}]\n[workers]\nlcores = [1]\nidle_sleep_us = 0\n[sessions]\nmax_per_worker = 16777216\n\
         [ctrl]\nsocket = {:?}\n[metrics]\nenabled = false\n[log]\nlevel = \"warn\"\n\
         [[port]]\nname = \"eth0\"\ndevice = {:?}\naddrs = [\"{}/24\"]\n\
         [[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"{}\"\nport = \"eth0\"\n",
        eal.join(", "),
        ctl.display().to_string(),
        memif_dev("net_memif0", false, socket, net::PORT_MAC),
        net::PORT_ADDR,
        net::GW,
    );
    for (proto, port) in [("tcp", net::TCP_PORT), ("udp", net::UDP_PORT)] {
        c.push_str(&format!("[[service]]\nproto = \"{proto}\"\nvip = \"{}:{port}\"\nsched = \"rr\"\n", net::VIP));
        if mode == FwdMode::FullNat {
            // 128 × 64512 local ports: the established flows and every SYN of "TCP new".
            let l: Vec<String> = (0..FULLNAT_LADDRS).map(|i| format!("\"{}\"", net::laddr(i))).collect();
            c.push_str(&format!("laddrs = [{}]\n", l.join(", ")));
            if proto == "tcp" {
                c.push_str("client_addr = \"none\"\n");
            }
        }
        for i in 0..net::N_RS {
            c.push_str(&format!("[[service.real]]\naddr = \"{}:{port}\"\nfwd = \"{}\"\n", net::rs(i), fwd_word(mode)));
        }
    }
    c
}

/// The generator's port and what it has counted.
pub struct Gen {
    pub port: u16,
    pool: Mempool,
    rx: Vec<Mbuf>,
    pending: Vec<Mbuf>,
    /// Frames checked, and the first failures.
    pub checked: u64,
    pub failures: Vec<String>,
    seen: u64,
}

/// What one window (or a lockstep exchange) moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub sent: u64,
    pub received: u64,
    pub secs: f64,
}

impl Window {
    pub fn mpps(&self) -> f64 {
        self.received as f64 / self.secs / 1e6
    }
}

/// What the receive path does with a frame (other than ARP, always answered).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Swapped MACs only (the reflector).
    Reflected,
    Mode(FwdMode),
}

impl Gen {
    pub fn new(eal: &Eal, socket: &Path) -> Result<Gen, LoadgenError> {
        let port = eal.port_by_name("net_memif0")?;
        let pool = Mempool::new(eal, "loadgen", 16383, 256, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1)?;
        let conf = PortConf { mtu: None, promiscuous: false, ..PortConf::default() };
        dpdk_sys::port_configure(eal, port, &conf, &pool)?;
        dpdk_sys::port_start(port)?;
        let _ = socket;
        Ok(Gen {
            port,
            pool,
            rx: Vec::with_capacity(BURST),
            pending: Vec::with_capacity(BURST),
            checked: 0,
            failures: Vec::new(),
            seen: 0,
        })
    }

    /// Waits for the memif link (the peer connected) to be `up`.
    pub fn wait_link(&self, up: bool, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if dpdk_sys::port_link(self.port).up == up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Puts `frames` into mbufs (pending tx); false when the pool is empty.
    fn fill(&mut self, frames: &[Frame]) -> bool {
        if !self.pool.alloc_bulk(&mut self.pending, frames.len()) {
            return false;
        }
        for (m, f) in self.pending.iter_mut().zip(frames) {
            m.append(f.len()).expect("room for 60 bytes").copy_from_slice(f);
        }
        true
    }

    /// Sends what is pending; returns how many left.
    fn flush(&mut self) -> u64 {
        dpdk_sys::tx_burst(self.port, 0, &mut self.pending) as u64
    }

    /// Receives one burst: answers ARP, counts and (sampled, or all with `all`) checks the rest,
    /// keeping copies in `keep` when given. Returns frames counted.
    fn poll(&mut self, check: Check, all: bool, mut keep: Option<&mut Vec<Vec<u8>>>) -> u64 {
        if dpdk_sys::rx_burst(self.port, 0, &mut self.rx) == 0 {
            return 0;
        }
        let mut n = 0;
        let mut arp: Vec<Frame> = Vec::new();
        for m in self.rx.drain(..) {
            let f = m.data();
            if f.len() >= 42 && f[12..14] == [8, 6] {
                if let Some(r) = arp_answer(f) {
                    arp.push(r);
                }
                continue;
            }
            n += 1;
            self.seen += 1;
            if all || self.seen.is_multiple_of(SAMPLE) || keep.is_some() {
                self.checked += 1;
                let res = match check {
                    Check::Reflected => (f.len() == frames::FRAME_LEN && f[0..6] == GEN_MAC)
                        .then_some(())
                        .ok_or_else(|| format!("reflected frame {:02x?}", &f[..14.min(f.len())])),
                    Check::Mode(mode) => verify(mode, f).map(|_| ()),
                };
                if let Err(e) = res {
                    if self.failures.len() < 5 {
                        self.failures.push(e);
                    }
                }
                if let Some(k) = keep.as_deref_mut() {
                    k.push(f.to_vec());
                }
            }
        }
        for r in arp {
            if let Some(mut m) = self.pool.alloc_from(&r) {
                m.set_port(self.port);
                let mut v = vec![m];
                let t = Instant::now();
                while !v.is_empty() && t.elapsed() < Duration::from_millis(100) {
                    dpdk_sys::tx_burst(self.port, 0, &mut v);
                }
            }
        }
        n
    }

    /// Lockstep: sends `frames` in rounds of `round`, after each waits (<= 2 s) for as many
    /// frames back, checks all of them, and returns them.
    pub fn exchange(&mut self, frames: &[Frame], round: usize, check: Check) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(round) {
            if !self.fill(chunk) {
                return Err("mempool empty".into());
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut got = 0;
            while (got < chunk.len() || !self.pending.is_empty()) && Instant::now() < deadline {
                self.flush();
                got += self.poll(check, true, Some(&mut out)) as usize;
            }
            if got < chunk.len() {
                return Err(format!("sent {} frames, {got} came back within 2 s", chunk.len()));
            }
        }
        Ok(out)
    }

    /// Sends for `secs` as fast as the link takes, `next` giving each burst's frames, while
    /// counting (and sampling) what comes back.
    pub fn blast(&mut self, secs: f64, check: Check, mut next: impl FnMut(&mut [Frame; BURST])) -> Window {
        let mut w = Window::default();
        let mut burst = [[0u8; frames::FRAME_LEN]; BURST];
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs_f64(secs);
        let mut i = 0u32;
        loop {
            if self.pending.is_empty() {
                next(&mut burst);
                if !self.fill(&burst) {
                    // All mbufs in flight: let the receive side free some.
                    w.received += self.poll(check, false, None);
                    continue;
                }
            }
            w.sent += self.flush();
            w.received += self.poll(check, false, None);
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) && Instant::now() >= end {
                break;
            }
        }
        w.secs = t0.elapsed().as_secs_f64();
        w
    }

    /// Frees what is pending and receives until nothing came for 250 ms: frames still in flight
    /// (a peer descheduled by other load may hold some that long).
    pub fn drain(&mut self, check: Check) -> u64 {
        self.pending.clear();
        let mut n = 0;
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_millis(250) {
            let k = self.poll(check, false, None);
            if k > 0 {
                n += k;
                quiet = Instant::now();
            }
        }
        n
    }
}

/// The ARP reply to a request for a real server or the gateway (the generator plays both).
fn arp_answer(f: &[u8]) -> Option<Frame> {
    if f[20..22] != [0, 1] {
        return None;
    }
    let tpa = std::net::Ipv4Addr::new(f[38], f[39], f[40], f[41]);
    let mac = if net::is_rs(tpa) {
        net::rs_mac(tpa)
    } else if tpa == net::GW {
        net::GW_MAC
    } else {
        return None;
    };
    let mut r = [0u8; frames::FRAME_LEN];
    r[0..6].copy_from_slice(&f[6..12]);
    r[6..12].copy_from_slice(&mac);
    r[12..14].copy_from_slice(&[8, 6]);
    r[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    r[20..22].copy_from_slice(&[0, 2]);
    r[22..28].copy_from_slice(&mac);
    r[28..32].copy_from_slice(&tpa.octets());
    r[32..42].copy_from_slice(&f[22..32]);
    Some(r)
}

/// A client frame of flow `i` (`proto`, flags) to the VIP.
fn client(i: u64, proto: u8, flags: u8) -> Frame {
    build(proto, client_of(i), frames::vip_of(proto), flags, net::GW_MAC, net::PORT_MAC)
}

/// The real server's answer to a frame rvsd sent it (addresses and ports swapped).
fn reply_to(fwd: &[u8], flags: u8) -> Option<Frame> {
    let (p, src, dst) = frames::tuple(fwd)?;
    Some(build(p, dst, src, flags, net::rs_mac(*dst.ip()), net::PORT_MAC))
}

/// A measured case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub target: String,
    pub workload: String,
    pub flows: usize,
    pub windows: Vec<Window>,
    /// Sent and not come back at the end of the case (after a drain).
    pub drops: u64,
    pub checked: u64,
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn mpps(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.windows.iter().map(Window::mpps).collect();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.mpps();
        if v.is_empty() {
            0.0
        } else {
            v[v.len() / 2]
        }
    }
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
    pub fn line(&self) -> String {
        if self.windows.iter().all(|w| w.secs == 0.0) {
            let (sent, got): (u64, u64) =
                self.windows.iter().map(|w| (w.sent, w.received)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            return format!(
                "{} {} {} flows: lockstep {got}/{sent} back, checked {} {}",
                self.target,
                self.workload,
                self.flows,
                self.checked,
                if self.ok() { "OK".to_string() } else { format!("FAILED: {}", self.failures.join("; ")) }
            );
        }
        let v = self.mpps();
        let (lo, hi) = (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
        format!(
            "{} {} {} flows: Mpps min/median/max {lo:.2}/{:.2}/{hi:.2} drops {} checked {} {}",
            self.target,
            self.workload,
            self.flows,
            self.median(),
            self.drops,
            self.checked,
            if self.ok() { "OK".to_string() } else { format!("FAILED: {}", self.failures.join("; ")) }
        )
    }
}

/// Runs the measured windows of one case (or, short, one lockstep pass) and collects the result.
fn measure(
    g: &mut Gen,
    o: &Options,
    check: Check,
    names: (&str, &str, usize),
    since: (u64, usize),
    mut next: impl FnMut(&mut [Frame; BURST]),
) -> CaseResult {
    // Checks and failures from `since` on (opening the flows included).
    let (checked0, fail0) = since;
    let mut windows = Vec::new();
    let mut drops = 0;
    if o.short {
        let mut burst = [[0u8; frames::FRAME_LEN]; BURST];
        next(&mut burst);
        match g.exchange(&burst, BURST, check) {
            Ok(_) => windows.push(Window { sent: BURST as u64, received: BURST as u64, secs: 0.0 }),
            Err(e) => g.failures.push(e),
        }
    } else {
        let (mut sent, mut got) = (0, 0);
        for _ in 0..o.windows {
            let w = g.blast(o.window_secs, check, &mut next);
            sent += w.sent;
            got += w.received;
            windows.push(w);
        }
        got += g.drain(check);
        drops = sent.saturating_sub(got);
    }
    CaseResult {
        target: names.0.to_string(),
        workload: names.1.to_string(),
        flows: names.2,
        windows,
        drops,
        checked: g.checked - checked0,
        failures: g.failures.split_off(fail0.min(g.failures.len())),
    }
}

/// Opens flows `base..base + n` of `proto` through rvsd (lockstep, every frame checked) and
/// returns the established frames: one client packet per flow, and for NAT/FULLNAT one reply
/// per flow, shuffled.
fn open_flows(g: &mut Gen, mode: FwdMode, proto: u8, base: u64, n: usize) -> Result<Vec<Frame>, String> {
    let idx: Vec<u64> = (base..base + n as u64).collect();
    let two_way = matches!(mode, FwdMode::Nat | FwdMode::FullNat);
    let check = Check::Mode(mode);
    let first: Vec<Frame> = idx.iter().map(|&i| client(i, proto, if proto == TCP { SYN } else { 0 })).collect();
    let out = g.exchange(&first, OPEN_ROUND, check)?;
    let mut replies = Vec::new();
    if two_way {
        let flags = if proto == TCP { SYN | ACK } else { 0 };
        let syn_acks: Vec<Frame> = out.iter().filter_map(|f| reply_to(f, flags)).collect();
        let back = g.exchange(&syn_acks, OPEN_ROUND, check)?;
        if let Some(f) = back.iter().find(|f| verify(mode, f) != Ok(OutDir::ToClient)) {
            return Err(format!("a reply did not go to the client: {:?}", frames::tuple(f)));
        }
        replies = out.iter().filter_map(|f| reply_to(f, if proto == TCP { ACK } else { 0 })).collect();
    }
    let later: Vec<Frame> = idx.iter().map(|&i| client(i, proto, if proto == TCP { ACK } else { 0 })).collect();
    if proto == TCP {
        g.exchange(&later, OPEN_ROUND, check)?;
    }
    let mut all = later;
    all.extend(replies);
    Rng(0x5eed ^ base).shuffle(&mut all);
    Ok(all)
}

/// Cycles through `frames` burst by burst.
fn cycle(frames: Vec<Frame>) -> impl FnMut(&mut [Frame; BURST]) {
    let mut at = 0;
    move |b| {
        for slot in b.iter_mut() {
            *slot = frames[at];
            at = (at + 1) % frames.len();
        }
    }
}

fn proto_word(p: u8) -> &'static str {
    if p == TCP {
        "TCP"
    } else {
        "UDP"
    }
}

/// The reflector (`--reflector`): memif client on `socket`, rx → swap MACs → tx until stdin
/// closes. The child of [`run`]; EAL pins it to `cpu`.
pub fn reflect(socket: &Path, cpu: usize, huge: bool) -> Result<(), LoadgenError> {
    let mut args = eal_args("rvs-loadgen-refl", cpu, huge);
    args.extend(["--vdev".to_string(), memif_dev("net_memif0", false, socket, net::PORT_MAC)]);
    let eal = Eal::init(&args)?;
    let port = eal.port_by_name("net_memif0")?;
    let pool = Mempool::new(&eal, "reflector", 8191, 256, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1)?;
    let conf = PortConf { mtu: None, promiscuous: false, ..PortConf::default() };
    dpdk_sys::port_configure(&eal, port, &conf, &pool)?;
    dpdk_sys::port_start(port)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        s.store(true, Ordering::Relaxed);
    });
    let mut v: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut i = 0u32;
    while !(i.is_multiple_of(1024) && stop.load(Ordering::Relaxed)) {
        i = i.wrapping_add(1);
        if v.is_empty() && dpdk_sys::rx_burst(port, 0, &mut v) == 0 {
            continue;
        }
        for m in v.iter_mut() {
            let d = m.data_mut();
            if d.len() >= 12 {
                let mut a = [0u8; 6];
                a.copy_from_slice(&d[0..6]);
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&a);
            }
        }
        dpdk_sys::tx_burst(port, 0, &mut v);
        v.clear(); // unsent: dropped (the generator counts them)
    }
    drop(v);
    dpdk_sys::port_close(port)?;
    drop(pool);
    eal.cleanup()?;
    Ok(())
}

/// A child process (rvsd or the reflector), SIGTERMed (then killed) on drop.
struct ChildProc {
    child: Child,
    what: String,
    log: Option<PathBuf>,
}

impl ChildProc {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    fn tail(&self) -> String {
        let t = self.log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.take() {
            // The reflector stops when its stdin closes.
            drop(stdin);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(3) && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within 10 s: killed", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whatever was measured.
pub struct Report {
    pub reflector: Option<CaseResult>,
    pub cases: Vec<CaseResult>,
    pub started: String,
    /// /proc/loadavg when the run started (the generator and rvsd add about 2 while they run).
    pub load_at_start: String,
    pub seconds: f64,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.reflector.iter().chain(&self.cases).filter(|c| !c.ok() || c.windows.is_empty()).count()
    }
}

/// The whole run: EAL and the memif server, the reflector, then rvsd once per mode.
pub fn run(o: &Options) -> Result<Report, LoadgenError> {
    let t_start = Instant::now();
    std::fs::create_dir_all(&o.dir).map_err(io(format!("mkdir {}", o.dir.display())))?;
    let socket = o.dir.join("memif.sock");
    let _ = std::fs::remove_file(&socket);
    let rvsd = o.rvsd.clone().unwrap_or_else(|| {
        std::env::current_exe().map(|e| e.with_file_name("rvsd")).unwrap_or_else(|_| PathBuf::from("rvsd"))
    });
    if !rvsd.exists() {
        return Err(LoadgenError::NoRvsd(rvsd));
    }
    let mut args = eal_args("rvs-loadgen", 0, o.huge);
    args.extend(["--vdev".to_string(), memif_dev("net_memif0", true, &socket, GEN_MAC)]);
    let eal = Eal::init(&args)?;
    let mut g = Gen::new(&eal, &socket)?;
    let mut report = Report {
        reflector: None,
        cases: Vec::new(),
        started: now_utc(),
        load_at_start: read("/proc/loadavg").trim().to_string(),
        seconds: 0.0,
    };

    // The ceiling: the same frames through a bare reflector on the CPU rvsd's worker gets.
    {
        let me = std::env::current_exe().map_err(io("current_exe"))?;
        let mut cmd = Command::new(me);
        cmd.args(["--reflector", &socket.display().to_string(), "--cpu", "1"]);
        if o.huge {
            cmd.args(["--huge"]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io("spawning the reflector"))?;
        let mut c = ChildProc { child, what: "reflector".into(), log: None };
        if !g.wait_link(true, 20) || !c.alive() {
            return Err(LoadgenError::Peer("the reflector did not connect to the memif within 20 s".into()));
        }
        let n = o.flows.iter().copied().max().unwrap_or(1024);
        let mut frames: Vec<Frame> = (0..n as u64).map(|i| client(i, UDP, 0)).collect();
        Rng(7).shuffle(&mut frames);
        let since = (g.checked, g.failures.len());
        let r = measure(&mut g, o, Check::Reflected, ("reflector", "UDP", n), since, cycle(frames));
        println!("{}", r.line());
        report.reflector = Some(r);
        drop(c);
        g.wait_link(false, 10);
    }

    for &mode in &o.modes {
        let ctl = o.dir.join("rvsd.sock");
        let cfg_path = o.dir.join("rvsd.toml");
        let log = o.dir.join("rvsd.log");
        std::fs::write(&cfg_path, rvsd_config(mode, &socket, &ctl, o.huge)).map_err(io("writing the rvsd config"))?;
        let logf = std::fs::File::create(&log).map_err(io("creating the rvsd log"))?;
        let child = Command::new(&rvsd)
            .arg("-c")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(io("log"))?)
            .stderr(logf)
            .spawn()
            .map_err(io(format!("spawning {}", rvsd.display())))?;
        let mut c = ChildProc { child, what: "rvsd".into(), log: Some(log) };
        if !g.wait_link(true, 30) || !c.alive() {
            return Err(LoadgenError::Peer(format!(
                "rvsd ({}) did not connect to the memif within 30 s; its log:\n{}",
                mode_name(mode),
                c.tail()
            )));
        }
        let check = Check::Mode(mode);
        let mut base = 0u64;
        for &proto in &[TCP, UDP] {
            for &n in &o.flows {
                // Flow indices: TCP/UDP alternate in client_of's tuple space, each case its own.
                let since = (g.checked, g.failures.len());
                let frames = match open_flows(&mut g, mode, proto, base, n) {
                    Ok(f) => f,
                    Err(e) => {
                        let mut r = failed(mode_name(mode), proto_word(proto), n, format!("opening the flows: {e}"));
                        r.failures.extend(g.failures.split_off(since.1.min(g.failures.len())));
                        println!("{}", r.line());
                        report.cases.push(r);
                        base += n as u64;
                        continue;
                    }
                };
                base += n as u64;
                let r = measure(&mut g, o, check, (mode_name(mode), proto_word(proto), n), since, cycle(frames));
                println!("{}", r.line());
                report.cases.push(r);
            }
        }
        // New TCP connections: SYNs on tuples never used in this rvsd's life.
        let mut next_flow = base;
        let syns = move |b: &mut [Frame; BURST]| {
            for slot in b.iter_mut() {
                // 16M tuples: a run that used them all would wrap onto live sessions.
                *slot = client(next_flow % net::MAX_FLOWS, TCP, SYN);
                next_flow += 1;
            }
        };
        let since = (g.checked, g.failures.len());
        let r = measure(&mut g, o, check, (mode_name(mode), "TCP new", 0), since, syns);
        println!("{}", r.line());
        report.cases.push(r);
        if !c.alive() {
            return Err(LoadgenError::Peer(format!("rvsd exited during the run; its log:\n{}", c.tail())));
        }
        drop(c);
        g.wait_link(false, 10);
    }
    if let Err(e) = dpdk_sys::port_close(g.port) {
        eprintln!("closing the memif port: {e}");
    }
    drop(g);
    report.seconds = t_start.elapsed().as_secs_f64();
    if let Err(e) = eal.cleanup() {
        eprintln!("rte_eal_cleanup: {e}");
    }
    if let Some(path) = &o.markdown {
        std::fs::write(path, markdown(&report, o)).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(report)
}

fn failed(target: &str, workload: &str, flows: usize, e: String) -> CaseResult {
    CaseResult {
        target: target.into(),
        workload: workload.into(),
        flows,
        windows: Vec::new(),
        drops: 0,
        checked: 0,
        failures: vec![e],
    }
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The markdown report (docs/performance-e2e.md).
pub fn markdown(r: &Report, o: &Options) -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let refl = r.reflector.as_ref().map_or(0.0, CaseResult::median);
    let mut s = String::new();
    s.push_str("# Performance, end to end (rvsd over net_memif)\n\n");
    s.push_str("Generated by `rvs-loadgen` (crate `rvs-benches`, `benches/src/e2e.rs`). Regenerate with ONE command (root):\n\n");
    s.push_str("```sh\ncargo build --release --workspace --bins && target/release/rvs-loadgen --markdown docs/performance-e2e.md\n```\n\n");
    s.push_str("CI runs only the correctness side (`cargo test -p rvs-benches --test loadgen`: `rvs-loadgen --short`, every frame checked, no timing asserts).\n\n");
    s.push_str("## Set-up\n\n");
    s.push_str(&format!(
        "| | |\n|---|---|\n| CPU | {} ({} logical CPUs) |\n| kernel | {} |\n| date | {} |\n| load average at the start / end | {} / {} |\n| memory | {} |\n| windows per case | {} × {:.1} s |\n| run time | {:.0} s |\n\n",
        crate::machine::cpu_model(&cpuinfo),
        crate::machine::logical_cpus(&cpuinfo),
        read("/proc/sys/kernel/osrelease").trim(),
        r.started,
        r.load_at_start,
        read("/proc/loadavg").trim(),
        if o.huge { "2 MiB hugepages (`--in-memory`)" } else { "`--no-huge` (4 KiB pages) in all three processes" },
        o.windows,
        o.window_secs,
        r.seconds,
    ));
    s.push_str(
        "Three processes over one `net_memif` link (copy mode, one queue pair, 1024-slot rings): the generator \
         (`rvs-loadgen`, memif server, CPU 0) sends pre-built 60-byte frames (64 on a wire) as fast as the ring \
         takes them and counts what comes back; at the other end of the link either the **reflector** (the same \
         binary with `--reflector`: rx, swap MACs, tx; CPU 1) or the real **rvsd** binary (memif client, one \
         busy-polling worker on CPU 1, its main thread on CPU 0 with the generator; a config generated per mode: \
         TCP :80 and UDP :53 on 203.0.113.100, 8 real servers of the mode, rr, FULLNAT with 128 local addresses and \
         `client_addr = \"none\"`). The generator is the clients' gateway and the real servers at once (it answers \
         rvsd's ARP requests), so every forwarded frame comes back to it: Mpps = frames received back per second \
         (for NAT/FULLNAT half of them are the real servers' replies, forwarded to the clients). The generator and \
         memif copies are part of both paths, so the reflector is the ceiling of this set-up, not of rvsd on a NIC.\n\n",
    );
    s.push_str(
        "Workloads: **established** = N flows opened first in lockstep (TCP: SYN, for NAT/FULLNAT the real \
         server's SYN-ACK, ACK; UDP: one datagram and its reply), then one packet per flow (plus one reply per flow \
         for NAT/FULLNAT) over and over in a shuffled order; **TCP new** = SYNs on tuples never used before (built \
         as they are sent, one session each: connections/s = forwarded SYNs per second). Drops = frames sent \
         into the link and never back (after a 250 ms drain; rvsd counts the reason in `rvsadm link show`). \
         1 forwarded frame in 64 is checked with the mode's rewrite (DR: RS's MAC, IP header untouched; NAT: dst \
         RIP, replies from the VIP; FULLNAT: src a local address; TUN: IPIP outer header to the RIP), as are all \
         frames while the flows are opened.\n\n",
    );
    s.push_str(
        "The machine has 2 CPUs shared with another engineer's work: their lab tests (wrk) may have overlapped \
         this run. The load averages above are the trace of it: the run itself adds about 2 (two busy-polling \
         processes); more than that at the start means other work competed for both CPUs, and the figures \
         (the reflector's too) are then lower and noisier than the machine can do.\n\n",
    );
    s.push_str("| target | workload | flows | Mpps min | Mpps median | Mpps max | ratio to reflector | conns/s (median) | drops | checked | check |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for c in r.reflector.iter().chain(&r.cases) {
        let v = c.mpps();
        let (lo, hi) = (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
        let ratio = if refl > 0.0 { format!("{:.2}", c.median() / refl) } else { "-".into() };
        let conns = if c.workload.ends_with("new") { format!("{:.2} M", c.median()) } else { "-".into() };
        let flows = if c.flows == 0 { "-".to_string() } else { crate::util::fmt_n(c.flows) };
        let check = if c.ok() { "ok".to_string() } else { format!("FAILED: {}", c.failures.join("; ")) };
        s.push_str(&format!(
            "| {} | {} | {flows} | {lo:.2} | {:.2} | {hi:.2} | {ratio} | {conns} | {} | {} | {check} |\n",
            c.target,
            c.workload,
            c.median(),
            c.drops,
            c.checked
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    #[test]
    fn rvsd_config_parses_for_every_mode() {
        for mode in crate::cases::MODES {
            let text = rvsd_config(mode, Path::new("/tmp/x/memif.sock"), Path::new("/tmp/x/rvsd.sock"), false);
            let cfg = rvs_config::file::Config::parse(&text).unwrap_or_else(|e| panic!("{mode:?}: {e}\n{text}"));
            assert_eq!(cfg.ports.len(), 1);
            assert!(text.contains("role=client") && text.contains("mac=02:00:00:00:00:01"), "{text}");
        }
    }

    #[test]
    fn arp_answers_for_real_servers_and_the_gateway_only() {
        let mut req = [0u8; 60];
        req[0..6].copy_from_slice(&[0xff; 6]);
        req[6..12].copy_from_slice(&net::PORT_MAC);
        req[12..14].copy_from_slice(&[8, 6]);
        req[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        req[22..28].copy_from_slice(&net::PORT_MAC);
        req[28..32].copy_from_slice(&net::PORT_ADDR.octets());
        req[38..42].copy_from_slice(&net::rs(3).octets());
        let r = arp_answer(&req).expect("answered");
        assert_eq!(&r[0..6], &net::PORT_MAC);
        assert_eq!(&r[22..28], &net::rs_mac(net::rs(3)));
        assert_eq!(&r[38..42], &net::PORT_ADDR.octets());
        req[38..42].copy_from_slice(&net::GW.octets());
        assert_eq!(&arp_answer(&req).unwrap()[22..28], &net::GW_MAC);
        req[38..42].copy_from_slice(&[203, 0, 113, 99]);
        assert!(arp_answer(&req).is_none());
    }

    #[test]
    fn a_reply_swaps_the_forwarded_tuple() {
        let f =
            build(TCP, client_of(5), SocketAddrV4::new(net::rs(1), 80), SYN, net::PORT_MAC, net::rs_mac(net::rs(1)));
        let r = reply_to(&f, SYN | ACK).unwrap();
        let (p, src, dst) = frames::tuple(&r).unwrap();
        assert_eq!((p, src, dst), (TCP, SocketAddrV4::new(net::rs(1), 80), client_of(5)));
        assert_eq!(&r[0..6], &net::PORT_MAC);
    }
}
