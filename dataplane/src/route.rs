//! IPv4 routing table: connected and static routes, longest prefix match.

pub use rvs_model::{prefix_mask, same_subnet};
use std::net::Ipv4Addr;

/// Where a matching destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Egress DPDK port id.
    pub port: u16,
    /// Gateway; `None` for a connected route (the next hop is the destination itself).
    pub via: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Prefix length over 32.
    #[error("prefix length /{0} is over 32")]
    BadPrefixLen(u8),
}

/// Routes grouped by prefix length: one hash map (masked prefix → route) per length in use,
/// kept sorted by length, longest first. A lookup masks the destination once per length in use
/// and probes the map, so the most specific match is the first hit. A gateway has a handful of
/// lengths in use (/32 hosts, /24 connected, /0 default), which makes this a few hash probes
/// with no trie to maintain.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// (prefix length, masked prefix → route), sorted by length descending; no empty map.
    by_len: Vec<(u8, hashbrown::HashMap<u32, Route>)>,
    len: usize,
}

impl RouteTable {
    pub fn new() -> Self {
        RouteTable::default()
    }
    /// Insert or replace the route for prefix/len (host bits of `prefix` are ignored).
    pub fn insert(&mut self, prefix: Ipv4Addr, len: u8, route: Route) -> Result<(), RouteError> {
        if len > 32 {
            return Err(RouteError::BadPrefixLen(len));
        }
        let key = u32::from(prefix) & prefix_mask(len);
        let i = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.by_len.insert(i, (len, hashbrown::HashMap::new()));
                i
            }
        };
        if self.by_len[i].1.insert(key, route).is_none() {
            self.len += 1;
        }
        Ok(())
    }
    pub fn remove(&mut self, prefix: Ipv4Addr, len: u8) -> Option<Route> {
        if len > 32 {
            return None;
        }
        let key = u32::from(prefix) & prefix_mask(len);
        let i = self.by_len.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let old = self.by_len[i].1.remove(&key)?;
        self.len -= 1;
        if self.by_len[i].1.is_empty() {
            self.by_len.remove(i);
        }
        Some(old)
    }
    /// Longest prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Route> {
        let d = u32::from(dst);
        self.by_len.iter().find_map(|(l, m)| m.get(&(d & prefix_mask(*l))).copied())
    }
    /// Egress port and the next-hop address to resolve by ARP (`via`, or `dst` when connected).
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        self.lookup(dst).map(|r| (r.port, r.via.unwrap_or(dst)))
    }
    /// All routes as (prefix, len, route), most specific first, then by prefix.
    pub fn entries(&self) -> Vec<(Ipv4Addr, u8, Route)> {
        let mut out = Vec::with_capacity(self.len);
        for (l, m) in &self.by_len {
            let start = out.len();
            out.extend(m.iter().map(|(&p, &r)| (Ipv4Addr::from(p), *l, r)));
            out[start..].sort_unstable_by_key(|e| u32::from(e.0));
        }
        out
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn conn(port: u16) -> Route {
        Route { port, via: None }
    }
    fn gw(port: u16, via: &str) -> Route {
        Route { port, via: Some(ip(via)) }
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = RouteTable::new();
        assert!(t.is_empty());
        assert_eq!(t.lookup(ip("192.0.2.1")), None);
        assert_eq!(t.next_hop(ip("192.0.2.1")), None);
        assert!(t.entries().is_empty());
    }

    #[test]
    fn default_route_matches_everything() {
        let mut t = RouteTable::new();
        t.insert(ip("0.0.0.0"), 0, gw(1, "198.51.100.1")).unwrap();
        assert_eq!(t.lookup(ip("203.0.113.9")), Some(gw(1, "198.51.100.1")));
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(gw(1, "198.51.100.1")));
        assert_eq!(t.next_hop(ip("203.0.113.9")), Some((1, ip("198.51.100.1"))));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        t.insert(ip("0.0.0.0"), 0, gw(0, "198.51.100.1")).unwrap();
        t.insert(ip("192.0.2.0"), 24, conn(1)).unwrap();
        t.insert(ip("192.0.2.77"), 32, gw(2, "203.0.113.1")).unwrap();
        t.insert(ip("192.0.2.0"), 25, conn(3)).unwrap();
        assert_eq!(t.len(), 4);
        // /32 host route beats everything for that host.
        assert_eq!(t.next_hop(ip("192.0.2.77")), Some((2, ip("203.0.113.1"))));
        // /25 beats /24 in the lower half.
        assert_eq!(t.next_hop(ip("192.0.2.10")), Some((3, ip("192.0.2.10"))));
        // /24 connected in the upper half: next hop is the destination itself.
        assert_eq!(t.next_hop(ip("192.0.2.200")), Some((1, ip("192.0.2.200"))));
        // Everything else by the default.
        assert_eq!(t.next_hop(ip("198.51.100.20")), Some((0, ip("198.51.100.1"))));
    }

    #[test]
    fn no_default_means_no_route() {
        let mut t = RouteTable::new();
        t.insert(ip("192.0.2.0"), 24, conn(1)).unwrap();
        assert_eq!(t.lookup(ip("192.0.3.1")), None);
        assert_eq!(t.lookup(ip("192.0.2.255")), Some(conn(1)));
    }

    #[test]
    fn insert_replaces() {
        let mut t = RouteTable::new();
        t.insert(ip("192.0.2.0"), 24, conn(1)).unwrap();
        t.insert(ip("192.0.2.0"), 24, gw(2, "198.51.100.1")).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip("192.0.2.5")), Some(gw(2, "198.51.100.1")));
    }

    #[test]
    fn host_bits_are_ignored() {
        let mut t = RouteTable::new();
        t.insert(ip("192.0.2.55"), 24, conn(1)).unwrap();
        assert_eq!(t.entries(), vec![(ip("192.0.2.0"), 24, conn(1))]);
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(conn(1)));
        // Same prefix spelt differently replaces rather than adds.
        t.insert(ip("192.0.2.200"), 24, conn(2)).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(ip("192.0.2.9"), 24), Some(conn(2)));
        assert!(t.is_empty());
    }

    #[test]
    fn remove_falls_back_to_less_specific() {
        let mut t = RouteTable::new();
        t.insert(ip("0.0.0.0"), 0, gw(0, "198.51.100.1")).unwrap();
        t.insert(ip("192.0.2.0"), 24, conn(1)).unwrap();
        assert_eq!(t.remove(ip("192.0.2.0"), 24), Some(conn(1)));
        assert_eq!(t.remove(ip("192.0.2.0"), 24), None);
        assert_eq!(t.remove(ip("192.0.2.0"), 23), None);
        assert_eq!(t.remove(ip("192.0.2.0"), 40), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(gw(0, "198.51.100.1")));
        assert_eq!(t.remove(ip("10.0.0.0"), 0), Some(gw(0, "198.51.100.1")));
        assert!(t.is_empty());
        assert_eq!(t.lookup(ip("192.0.2.1")), None);
        // The emptied lengths are gone: re-adding works as new.
        t.insert(ip("192.0.2.0"), 24, conn(4)).unwrap();
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(conn(4)));
    }

    #[test]
    fn prefix_over_32_is_refused() {
        let mut t = RouteTable::new();
        assert_eq!(t.insert(ip("192.0.2.1"), 33, conn(1)), Err(RouteError::BadPrefixLen(33)));
        assert!(t.is_empty());
        assert_eq!(RouteError::BadPrefixLen(33).to_string(), "prefix length /33 is over 32");
        t.insert(ip("192.0.2.1"), 32, conn(1)).unwrap();
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(conn(1)));
        assert_eq!(t.lookup(ip("192.0.2.2")), None);
    }

    #[test]
    fn entries_most_specific_first_then_by_prefix() {
        let mut t = RouteTable::new();
        t.insert(ip("0.0.0.0"), 0, gw(0, "198.51.100.1")).unwrap();
        t.insert(ip("203.0.113.0"), 24, conn(2)).unwrap();
        t.insert(ip("192.0.2.0"), 24, conn(1)).unwrap();
        t.insert(ip("192.0.2.9"), 32, conn(3)).unwrap();
        t.insert(ip("192.0.2.3"), 32, conn(3)).unwrap();
        let e: Vec<(Ipv4Addr, u8)> = t.entries().into_iter().map(|(p, l, _)| (p, l)).collect();
        assert_eq!(
            e,
            vec![
                (ip("192.0.2.3"), 32),
                (ip("192.0.2.9"), 32),
                (ip("192.0.2.0"), 24),
                (ip("203.0.113.0"), 24),
                (ip("0.0.0.0"), 0),
            ]
        );
    }
}
