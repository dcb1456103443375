//! rvs-ipip-decap: the real-server end of rvs TUN mode on a kernel without the `ipip` module.
//!
//! rvs sends client packets to the real server wrapped in an outer IPv4 header (RFC 2003,
//! protocol 4). A normal Linux real server strips it with `tunl0`; where that module is missing
//! (the lab machines), this program does the same in user space: it reads IPIP packets from a raw
//! `socket(AF_INET, SOCK_RAW, IPPROTO_IPIP)` (the kernel hands them over outer header included),
//! checks them, and writes the inner packet to a TUN device. The kernel then receives the inner
//! packet as if it had arrived on that device: destination = VIP on `lo` → delivered locally, and
//! the reply leaves through the normal interface straight to the client, from the VIP.
//!
//! Setting up the device (up, `rp_filter=0`), the VIP and the ARP sysctls is the caller's job:
//! see docs/tun.md.
#![forbid(unsafe_code)]

use clap::Parser;
use rvs_dataplane::ipip::decap_ipip;
use rvs_dataplane::wire::ipv4;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// IPPROTO_IPIP (IANA protocol number 4, RFC 2003).
const IPPROTO_IPIP: i32 = ipv4::protocol::IPIP as i32;
/// Largest IPv4 datagram.
const MAX_PACKET: usize = 65_535;
/// How often a blocked receive wakes up to look at the termination flag.
const POLL: Duration = Duration::from_millis(200);

#[derive(Parser, Debug)]
#[command(
    name = "rvs-ipip-decap",
    version,
    about = "Decapsulate IPIP (protocol 4) packets from rvs TUN mode into a TUN device",
    after_help = "Before starting: ip tuntap add dev rvstun0 mode tun; ip link set rvstun0 up;\n\
                  sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.rvstun0.rp_filter=0;\n\
                  VIP on lo (ip addr add VIP/32 dev lo), arp_ignore=1, arp_announce=2. See docs/tun.md."
)]
struct Args {
    /// TUN device to create, or to attach to if it exists (IFF_TUN, no packet information).
    #[arg(long, default_value = "rvstun0", value_name = "NAME")]
    dev: String,
    /// Accept IPIP only from this outer source address (the balancer); repeat for several.
    /// Without it, any source is accepted.
    #[arg(long = "allow", value_name = "SRC")]
    allow: Vec<Ipv4Addr>,
    /// Bring the device up after opening it (otherwise: `ip link set NAME up`).
    #[arg(long)]
    up: bool,
    /// Log every packet.
    #[arg(long, short)]
    verbose: bool,
}

/// Why a received packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    /// Outer header invalid, not protocol 4, a fragment, or the inner packet is not valid IPv4.
    Malformed,
    /// Outer source not in `--allow`.
    NotAllowed(Ipv4Addr),
}

/// A checked IPIP packet: outer source, and the inner packet to hand to the kernel.
#[derive(Debug, PartialEq, Eq)]
struct Accepted<'a> {
    outer_src: Ipv4Addr,
    inner: &'a [u8],
}

/// Check one packet as the raw socket returns it (outer IPv4 header first).
fn classify<'a>(pkt: &'a [u8], allow: &[Ipv4Addr]) -> Result<Accepted<'a>, Reject> {
    let outer = ipv4::Packet::new_checked(pkt).map_err(|_| Reject::Malformed)?;
    let outer_src = outer.src_addr();
    let inner = decap_ipip(pkt).ok_or(Reject::Malformed)?;
    if !allow.is_empty() && !allow.contains(&outer_src) {
        return Err(Reject::NotAllowed(outer_src));
    }
    Ok(Accepted { outer_src, inner })
}

/// Packet counts, printed at exit.
#[derive(Debug, Default)]
struct Counts {
    received: u64,
    forwarded: u64,
    malformed: u64,
    not_allowed: u64,
    write_errors: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received {} forwarded {} malformed {} not_allowed {} write_errors {}",
            self.received, self.forwarded, self.malformed, self.not_allowed, self.write_errors
        )
    }
}

fn describe(inner: &[u8]) -> String {
    match ipv4::Packet::new_checked(inner) {
        Ok(p) => format!("{} -> {} proto {} len {}", p.src_addr(), p.dst_addr(), p.protocol(), p.total_len()),
        Err(e) => format!("unparsable ({e})"),
    }
}

fn open_socket() -> Result<Socket, String> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_IPIP))).map_err(|e| {
        let hint = if e.kind() == ErrorKind::PermissionDenied { " (run as root, or with CAP_NET_RAW)" } else { "" };
        format!("cannot open raw IPIP socket: {e}{hint}")
    })?;
    sock.set_read_timeout(Some(POLL)).map_err(|e| format!("cannot set a receive timeout on the raw socket: {e}"))?;
    // Best effort: a bigger buffer rides out bursts; the default is fine for a lab.
    let _ = sock.set_recv_buffer_size(4 << 20);
    Ok(sock)
}

fn open_tun(name: &str, up: bool) -> Result<tun::Device, String> {
    let mut cfg = tun::Configuration::default();
    cfg.tun_name(name).layer(tun::Layer::L3);
    // The crate only touches addresses/MTU/state when told to; we only ask for "up".
    cfg.platform_config(|p| {
        p.ensure_root_privileges(up);
    });
    if up {
        cfg.up();
    }
    tun::create(&cfg).map_err(|e| {
        let hint = match &e {
            tun::Error::Io(io) if io.kind() == ErrorKind::PermissionDenied => " (run as root, or with CAP_NET_ADMIN)",
            tun::Error::Io(io) if io.raw_os_error() == Some(22) => {
                " (an existing device of that name is not a TUN device without packet information)"
            }
            tun::Error::Io(io) if io.kind() == ErrorKind::NotFound => " (/dev/net/tun missing: modprobe tun)",
            _ => "",
        };
        format!("cannot open TUN device {name}: {e}{hint}")
    })
}

fn run(args: &Args, term: &AtomicBool) -> Result<Counts, String> {
    let sock = open_socket()?;
    let mut dev = open_tun(&args.dev, args.up)?;
    let allow = if args.allow.is_empty() {
        "any".to_string()
    } else {
        args.allow.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
    };
    eprintln!("rvs-ipip-decap: ready: raw IPIP socket -> {} (allow {allow})", args.dev);
    let mut counts = Counts::default();
    let mut buf = vec![0u8; MAX_PACKET];
    let mut write_error_logged = false;
    while !term.load(Ordering::Relaxed) {
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                continue
            }
            Err(e) => return Err(format!("receive on the raw IPIP socket failed: {e}")),
        };
        counts.received += 1;
        match classify(&buf[..n], &args.allow) {
            Ok(a) => match dev.write(a.inner) {
                Ok(_) => {
                    counts.forwarded += 1;
                    if args.verbose {
                        eprintln!("ipip from {}: {} -> {}", a.outer_src, describe(a.inner), args.dev);
                    }
                }
                Err(e) => {
                    counts.write_errors += 1;
                    if args.verbose || !write_error_logged {
                        eprintln!("cannot write to {}: {e} (is it up? ip link set {} up)", args.dev, args.dev);
                        write_error_logged = true;
                    }
                }
            },
            Err(Reject::Malformed) => {
                counts.malformed += 1;
                if args.verbose {
                    eprintln!("dropped malformed IPIP packet ({n} bytes)");
                }
            }
            Err(Reject::NotAllowed(src)) => {
                counts.not_allowed += 1;
                if args.verbose {
                    eprintln!("dropped IPIP packet from {src}: not in --allow");
                }
            }
        }
    }
    Ok(counts)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&term)) {
            eprintln!("rvs-ipip-decap: cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&args, &term) {
        Ok(counts) => {
            eprintln!("rvs-ipip-decap: exiting: {counts}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("rvs-ipip-decap: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dataplane::buf::{PacketBuf, VecBuf};
    use rvs_dataplane::ipip::encap_ipip;

    const LB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const RS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

    /// An IPIP packet (from the outer IPv4 header on, as the raw socket returns it) around a
    /// UDP datagram 203.0.113.1:40000 → 203.0.113.100:5353 carrying "ping".
    fn ipip(outer_src: Ipv4Addr) -> (Vec<u8>, Vec<u8>) {
        let mut inner = vec![
            0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 203, 0, 113, 1, 203, 0, 113, 100, // IPv4
            0x9c, 0x40, 0x14, 0xe9, 0, 12, 0, 0, b'p', b'i', b'n', b'g', // UDP, no checksum
        ];
        let mut ip = ipv4::Packet::new_checked(&mut inner[..]).unwrap();
        ip.fill_checksum();
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&inner);
        let mut b = VecBuf::new(&frame, 0);
        encap_ipip(&mut b, outer_src, RS, 1500, &mut 1).unwrap();
        (b.data()[14..].to_vec(), inner)
    }

    #[test]
    fn accepts_ipip_and_returns_inner() {
        let (pkt, inner) = ipip(LB);
        assert_eq!(classify(&pkt, &[]), Ok(Accepted { outer_src: LB, inner: &inner }));
        assert_eq!(classify(&pkt, &[RS, LB]), Ok(Accepted { outer_src: LB, inner: &inner }));
        assert_eq!(describe(&inner), "203.0.113.1 -> 203.0.113.100 proto 17 len 32");
    }

    #[test]
    fn allow_list_filters_outer_source() {
        let other = Ipv4Addr::new(203, 0, 113, 9);
        let (pkt, _) = ipip(other);
        assert_eq!(classify(&pkt, &[LB]), Err(Reject::NotAllowed(other)));
    }

    #[test]
    fn malformed_is_rejected() {
        let (pkt, inner) = ipip(LB);
        assert_eq!(classify(&inner, &[]), Err(Reject::Malformed), "plain UDP, not IPIP");
        assert_eq!(classify(&pkt[..30], &[]), Err(Reject::Malformed), "truncated");
        let mut bad = pkt.clone();
        bad[10] ^= 0xff;
        assert_eq!(classify(&bad, &[]), Err(Reject::Malformed), "bad outer checksum");
        assert_eq!(classify(&[], &[]), Err(Reject::Malformed));
    }

    #[test]
    fn cli_parses() {
        let a =
            Args::try_parse_from(["rvs-ipip-decap", "--allow", "203.0.113.2", "--allow", "203.0.113.3", "-v"]).unwrap();
        assert_eq!(a.dev, "rvstun0");
        assert_eq!(a.allow, vec![LB, Ipv4Addr::new(203, 0, 113, 3)]);
        assert!(a.verbose && !a.up);
        assert!(Args::try_parse_from(["rvs-ipip-decap", "--allow", "not-an-ip"]).is_err());
    }
}
