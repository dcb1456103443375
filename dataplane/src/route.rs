//! IPv4 routing table: connected and static routes, longest prefix match.
//! OWNER: tables helper. API is fixed (other modules code against it); bodies to be written.

use std::net::Ipv4Addr;

/// Where a matching destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Egress DPDK port id.
    pub port: u16,
    /// Gateway; `None` for a connected route (the next hop is the destination itself).
    pub via: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Prefix length over 32.
    BadPrefixLen(u8),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::BadPrefixLen(l) => write!(f, "prefix length /{l} is over 32"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {}

impl RouteTable {
    pub fn new() -> Self {
        todo!()
    }
    /// Insert or replace the route for prefix/len (host bits of `prefix` are ignored).
    pub fn insert(&mut self, _prefix: Ipv4Addr, _len: u8, _route: Route) -> Result<(), RouteError> {
        todo!()
    }
    pub fn remove(&mut self, _prefix: Ipv4Addr, _len: u8) -> Option<Route> {
        todo!()
    }
    /// Longest prefix match.
    pub fn lookup(&self, _dst: Ipv4Addr) -> Option<Route> {
        todo!()
    }
    /// Egress port and the next-hop address to resolve by ARP (`via`, or `dst` when connected).
    pub fn next_hop(&self, _dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        todo!()
    }
    /// All routes as (prefix, len, route), most specific first.
    pub fn entries(&self) -> Vec<(Ipv4Addr, u8, Route)> {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
