//! IPv4 prefix arithmetic and address parsing shared by the config file, the control plane and
//! the dataplane.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Netmask of a prefix length, host order: `/0` → `0`, `/24` → `0xffff_ff00`. Lengths over 32
/// count as 32 (never a shift overflow).
pub const fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else if len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - len as u32)
    }
}

/// Whether `a` and `b` are in the same `/len` subnet (lengths over 32 count as 32).
pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let m = prefix_mask(len);
    (u32::from(a) ^ u32::from(b)) & m == 0
}

/// `RIP:PORT` or a bare `RIP` (port 0: the service port), as ipvsadm's `-r` and the config's
/// `real.addr` take it.
pub fn parse_real_addr(s: &str) -> Result<SocketAddr, BadRealAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    Err(BadRealAddr(s.to_string()))
}

/// A real-server address that is neither `IP:PORT` nor `IP`; holds the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid IPv4 address[:port]")]
pub struct BadRealAddr(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(1), 0x8000_0000);
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert_eq!(prefix_mask(32), u32::MAX);
        assert_eq!(prefix_mask(40), u32::MAX, "over-long prefixes are clamped");
    }

    #[test]
    fn same_subnet_edges() {
        let a = Ipv4Addr::new(203, 0, 113, 2);
        assert!(same_subnet(a, Ipv4Addr::new(203, 0, 113, 200), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(203, 0, 114, 2), 24));
        assert!(same_subnet(a, Ipv4Addr::new(1, 2, 3, 4), 0));
        assert!(same_subnet(a, a, 32) && !same_subnet(a, Ipv4Addr::new(203, 0, 113, 3), 32));
        assert!(same_subnet(a, a, 40), "over-long prefixes are clamped, not a panic");
    }

    #[test]
    fn real_addrs() {
        assert_eq!(parse_real_addr("203.0.113.1:8080"), Ok("203.0.113.1:8080".parse().unwrap()));
        assert_eq!(parse_real_addr("203.0.113.1"), Ok("203.0.113.1:0".parse().unwrap()));
        let e = parse_real_addr("x:1").unwrap_err();
        assert_eq!(e, BadRealAddr("x:1".into()));
        assert_eq!(e.to_string(), "'x:1' is not a valid IPv4 address[:port]");
    }
}
