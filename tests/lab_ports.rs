//! rvsd on DPDK ports other than the lab's af_packet: `net_memif` (a driver that cannot set the
//! MTU and has no RSS) and `net_tap`. Each test starts the real rvsd binary as a child process
//! with its own `--file-prefix` and control socket, outside deploy/lab.sh (no lab needed), and
//! holds the lab slot while it runs (see `common::LabSlot`).
//!
//! - memif: this test process is the other end of the memif (EAL in-process, role client, own
//!   file prefix); it asks rvsd's address by ARP, pings it, and sends a TCP SYN to a DR service,
//!   answering rvsd's ARP request for the real server, and checks the forwarded frame.
//! - tap: rvsd runs in a namespace this test creates; the tap interface DPDK makes there is the
//!   kernel side, which pings rvsd's address.
//! - an MTU the memif driver cannot have: rvsd refuses to start, naming port, wanted and actual MTU.

mod common;

use common::{out_str, run, LabSlot, Rvsd};
use dpdk_sys::{Eal, Mbuf, Mempool, PortConf};
use rvs_dataplane::wire::checksum;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const RVSD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const RS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 11];
const RVSD_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const RS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// rvsd's config: one port `device`, one worker on CPU 1, no metrics endpoint, a DR service
/// 203.0.113.100:80 → 203.0.113.11.
fn config(prefix: &str, socket: &std::path::Path, device: &str, mtu: u16) -> String {
    format!(
        r#"[eal]
args = ["--no-huge", "-m", "256", "--file-prefix", "{prefix}", "--no-shconf"]
[workers]
lcores = [1]
idle_sleep_us = 100
idle_polls = 64
[ctrl]
socket = "{}"
[metrics]
enabled = false
[[port]]
name = "eth0"
device = "{device}"
addrs = ["203.0.113.2/24"]
mtu = {mtu}
[[route]]
prefix = "0.0.0.0/0"
via = "203.0.113.1"
port = "eth0"
[[service]]
proto = "tcp"
vip = "203.0.113.100:80"
sched = "rr"
[[service.real]]
addr = "203.0.113.11:80"
fwd = "dr"
"#,
        socket.display()
    )
}

fn state_dir(prefix: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/rvs-lab-{prefix}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// ARP (Ethernet/IPv4) request or reply, padded to 60 bytes.
fn arp(op: u16, dst_mac: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(dst_mac, sha, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f.resize(60, 0);
    f
}

/// An IPv4 header (TTL 64, checksum set) for `payload_len` bytes of `proto`.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = !checksum::data(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn icmp_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut f = eth(RVSD_MAC, PEER_MAC, 0x0800);
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"rvs lab_ports ping");
    let c = !checksum::data(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend(ipv4(PEER_IP, RVSD_IP, 1, icmp.len()));
    f.extend(icmp);
    f
}

fn tcp_syn(src_port: u16) -> Vec<u8> {
    let mut f = eth(RVSD_MAC, PEER_MAC, 0x0800);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let c = !checksum::combine(&[checksum::pseudo_header(CLIENT, VIP, 6, 20), checksum::data(&tcp)]);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend(ipv4(CLIENT, VIP, 6, 20));
    f.extend(tcp);
    f.resize(60, 0);
    f
}

/// The memif peer: one port, its pool, and what it received and did not look at yet.
struct Peer {
    port: u16,
    pool: Mempool,
}

impl Peer {
    fn send(&self, frame: &[u8]) {
        let mut m = self.pool.alloc_from(frame).expect("mbuf");
        m.set_port(self.port);
        let mut v = vec![m];
        let deadline = Instant::now() + Duration::from_secs(2);
        while !v.is_empty() && Instant::now() < deadline {
            dpdk_sys::tx_burst(self.port, 0, &mut v);
        }
        assert!(v.is_empty(), "memif tx stuck");
    }

    /// Frames received within `secs` until `want` accepts one (returned). ARP requests for the
    /// real server or this peer are answered on the way (with [`RS_MAC`] / [`PEER_MAC`]).
    fn expect(&self, secs: u64, what: &str, mut want: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut rx: Vec<Mbuf> = Vec::with_capacity(32);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if dpdk_sys::rx_burst(self.port, 0, &mut rx) == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            for m in rx.drain(..) {
                let f = m.data().to_vec();
                if f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 1] {
                    let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
                    let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                    let sha: [u8; 6] = f[22..28].try_into().unwrap();
                    let mac = if tpa == RS_IP { Some(RS_MAC) } else { (tpa == PEER_IP).then_some(PEER_MAC) };
                    if let Some(mac) = mac {
                        self.send(&arp(2, sha, mac, tpa, sha, spa));
                    }
                }
                if want(&f) {
                    return f;
                }
                seen.push(format!("{:02x?}", &f[..f.len().min(42)]));
            }
        }
        panic!("no {what} from rvsd within {secs} s; frames seen: {seen:#?}");
    }
}

#[test]
fn rvsd_on_net_memif_answers_arp_and_ping_and_forwards_dr() {
    if !common::lab_supported("pmemif", &[]) {
        return;
    }
    let _slot = LabSlot::acquire();
    let prefix = "pmemif";
    let state = state_dir(prefix);
    let sock = state.join("memif.sock");
    let ctl = state.join("rvsd.sock");
    let device = format!("net_memif0,role=server,socket={},mac=02:00:00:00:00:01", sock.display());
    let rvsd = Rvsd::start_in(None, prefix, &state, &ctl, &config("rvs-pmemif", &ctl, &device, 1500));
    let log = std::fs::read_to_string(&rvsd.log).unwrap();
    assert!(log.contains("cannot set the MTU") && log.contains("WARN"), "no warning about the MTU:\n{log}");

    // The peer, in this process (EAL once per process: only this test of the file uses it).
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "--no-shconf",
        "-m",
        "128",
        "--file-prefix",
        "rvs-pmemif-peer",
        "--no-pci",
        "--no-telemetry",
        "--log-level",
        "warning",
        "--vdev",
        &format!("net_memif1,role=client,socket={},mac=02:00:00:00:02:01", sock.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL of the memif peer");
    let port = eal.port_by_name("net_memif1").expect("memif port");
    let pool = Mempool::new(&eal, "pmemif_peer", 1023, 0, dpdk_sys::MBUF_DEFAULT_BUF_SIZE, -1).expect("pool");
    let conf = PortConf { mtu: None, promiscuous: false, rx_desc: 256, tx_desc: 256, ..PortConf::default() };
    dpdk_sys::port_configure(&eal, port, &conf, &pool).expect("configure the peer port");
    dpdk_sys::port_start(port).expect("start the peer port");
    assert!(common::wait_until(10, || dpdk_sys::port_link(port).up), "memif link to rvsd did not come up");
    let peer = Peer { port, pool };

    // ARP: who has 203.0.113.2?
    peer.send(&arp(1, [0xff; 6], PEER_MAC, PEER_IP, [0; 6], RVSD_IP));
    let reply = peer.expect(5, "ARP reply", |f| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2]);
    assert_eq!(&reply[22..28], &RVSD_MAC, "ARP reply sender MAC");
    assert_eq!(&reply[28..32], &RVSD_IP.octets(), "ARP reply sender IP");
    assert_eq!(&reply[0..6], &PEER_MAC, "ARP reply to the asker");

    // Ping 203.0.113.2.
    peer.send(&icmp_echo(0x4242, 1));
    let pong = peer.expect(5, "ICMP echo reply", |f| f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0);
    assert_eq!(&pong[26..30], &RVSD_IP.octets());
    assert_eq!(&pong[30..34], &PEER_IP.octets());
    assert_eq!(&pong[38..42], &[0x42, 0x42, 0, 1], "echo id and sequence");

    // A DR flow: rvsd asks for the real server's MAC (answered by `expect`), then sends the SYN
    // on with the real server's MAC and the IP header as it was (TTL - 1).
    peer.send(&tcp_syn(40000));
    let fwd = peer.expect(5, "forwarded SYN", |f| f.len() >= 54 && f[12..14] == [8, 0] && f[23] == 6);
    assert_eq!(&fwd[0..6], &RS_MAC, "DR: destination MAC is the real server's");
    assert_eq!(&fwd[6..12], &RVSD_MAC, "source MAC is rvsd's port");
    assert_eq!(&fwd[26..30], &CLIENT.octets(), "DR keeps the source address");
    assert_eq!(&fwd[30..34], &VIP.octets(), "DR keeps the destination address");
    assert_eq!(fwd[22], 63, "TTL decremented");
    assert_eq!(&fwd[34..38], &[0x9c, 0x40, 0, 80], "ports kept");

    let st = rvsd.stop();
    assert!(st.success(), "rvsd exit status {st}");
    let _ = dpdk_sys::port_stop(port);
    let _ = dpdk_sys::port_close(port);
}

#[test]
fn rvsd_on_net_tap_answers_ping_from_its_namespace() {
    if !common::lab_supported("ptap", &["ping"]) {
        return;
    }
    let _slot = LabSlot::acquire();
    let prefix = "ptap";
    let ns = "rvs-ptap-lb";
    let _ = run(&["ip", "netns", "del", ns], 10);
    let o = run(&["ip", "netns", "add", ns], 10);
    assert!(o.status.success(), "ip netns add {ns}: {}", out_str(&o));
    struct DelNs(&'static str);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = run(&["ip", "netns", "del", self.0], 10);
        }
    }
    let _ns = DelNs(ns);
    let state = state_dir(prefix);
    let ctl = state.join("rvsd.sock");
    let rvsd = Rvsd::start_in(Some(ns), prefix, &state, &ctl, &config("rvs-ptap", &ctl, "net_tap0,iface=ptap0", 1500));
    // The tap interface DPDK made in the namespace is the kernel's side of the link.
    for cmd in [
        &["ip", "link", "set", "lo", "up"][..],
        &["ip", "addr", "add", "203.0.113.1/24", "dev", "ptap0"],
        &["ip", "link", "set", "ptap0", "up"],
    ] {
        let mut argv = vec!["ip", "netns", "exec", ns];
        argv.extend_from_slice(cmd);
        let o = run(&argv, 10);
        assert!(o.status.success(), "{argv:?}: {}", out_str(&o));
    }
    let o = run(&["ip", "netns", "exec", ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "203.0.113.2"], 20);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("3 received"), "ping of rvsd's tap address: {}", out_str(&o));
    let o = run(&["ip", "netns", "exec", ns, "ip", "neigh", "show", "203.0.113.2", "dev", "ptap0"], 10);
    let neigh = String::from_utf8_lossy(&o.stdout).to_lowercase();
    let links = rvsd.rvsadm_ok(&["link", "show"]).to_lowercase();
    let mac = neigh.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or("").to_string();
    assert!(!mac.is_empty() && links.contains(&mac), "ARP answer {neigh:?} is not rvsd's port MAC:\n{links}");
    let st = rvsd.stop();
    assert!(st.success(), "rvsd exit status {st}");
}

#[test]
fn rvsd_refuses_an_mtu_the_memif_driver_cannot_have() {
    if !common::lab_supported("pmtu", &[]) {
        return;
    }
    let _slot = LabSlot::acquire();
    let prefix = "pmtu";
    let state = state_dir(prefix);
    let ctl = state.join("rvsd.sock");
    let device = format!("net_memif0,role=server,socket={}", state.join("memif.sock").display());
    let cfg = state.join("rvsd.toml");
    std::fs::write(&cfg, config("rvs-pmtu", &ctl, &device, 9000)).unwrap();
    let bin = common::rvsd_bin();
    let o = run(&[bin.to_str().unwrap(), "-c", cfg.to_str().unwrap()], 30);
    assert!(!o.status.success(), "rvsd started with an MTU its port cannot have: {}", out_str(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line =
        err.lines().find(|l| l.starts_with("rvsd: ")).unwrap_or_else(|| panic!("no error line: {}", out_str(&o)));
    for part in ["port eth0", "9000", "its MTU 1500"] {
        assert!(line.contains(part), "error {line:?} does not name {part:?}");
    }
}
