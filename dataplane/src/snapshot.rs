//! The immutable view of configuration the workers run on. The control thread builds a new
//! `Snapshot` for every change and publishes it (rvsd uses arc-swap); a worker picks it up between
//! bursts with `Worker::set_snapshot`. Nothing in here changes after `build`; a snapshot built from
//! the one it replaces lists which services changed ([`Changes`]) so workers update only those.

use crate::conn::Timeouts;
use crate::route::{Route, RouteError, RouteTable};
use crate::sched::MaglevTable;
use hashbrown::{HashMap, HashSet};
use rvs_model::SchedKind;
use rvs_model::{FwdMode, Proto, Service, ServiceKey};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a snapshot does not build from its ports, routes and services.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("port {port}: prefix length /{len} of {addr} is over 32")]
    PortPrefixLen { port: String, addr: Ipv4Addr, len: u8 },
    #[error("port {port}: {source}")]
    PortRoute { port: String, source: RouteError },
    #[error("route {prefix}/{len}: port id {port} does not exist")]
    NoSuchPort { prefix: Ipv4Addr, len: u8, port: u16 },
    #[error("route {prefix}/{len}: {source}")]
    Route { prefix: Ipv4Addr, len: u8, source: RouteError },
    #[error("service {0}: IPv6 VIPs are not forwarded yet")]
    Ipv6Vip(ServiceKey),
    #[error("service {key}: IPv6 local address {addr} is not supported yet")]
    Ipv6Laddr { key: ServiceKey, addr: IpAddr },
}

/// Source of [`Snapshot::id`]s: unique per build in this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The services a [`Snapshot::build_from`] found different from the snapshot it started from,
/// so a worker running on that one updates only these (one change among 10k services must not
/// cost a 10k-entry walk in the worker's gap between bursts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// `generation` of the snapshot built from.
    pub since: u64,
    /// [`Snapshot::id`] of the snapshot built from: a worker applies the list only when it runs
    /// on exactly that one (generations alone may repeat across unrelated builds).
    pub base: u64,
    /// Services added, changed (definition not equal) or removed, in no particular order.
    pub keys: Vec<ServiceKey>,
}

/// One DPDK port as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// DPDK port id (what `PacketBuf::port` holds).
    pub id: u16,
    /// Name from the config (for messages and stats).
    pub name: String,
    pub mac: [u8; 6],
    /// Interface addresses with prefix length; each adds a connected route.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    pub mtu: u16,
}

/// A static route from the config or `rvsadm route add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub port: u16,
    pub via: Option<Ipv4Addr>,
}

/// Run-time settings that apply to every service (`rvsadm --set`, and the config's `[sessions]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tunables {
    /// Per-state session timeouts (IPVS `--set tcp tcpfin udp` changes three of them).
    pub timeouts: Timeouts,
    /// When a real server is deleted, drop its sessions at once (IPVS's `expire_nodest_conn`);
    /// otherwise they keep forwarding to it until they expire.
    pub expire_nodest_conn: bool,
}

/// Which worker owns a client's sessions, for the replies of NAT real servers to find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `owner_of(client_ip, client_port)`: the NAT rule.
    ClientTuple,
    /// `owner_of(client_ip & mask, 0)`: every service of the real server is persistent with
    /// this netmask.
    ClientNet(Ipv4Addr),
}

/// What the workers run on. Build with [`Snapshot::build`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every publication; workers compare it to know they are current.
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    /// Connected routes (from `ports[].addrs`) and static routes, longest prefix match.
    pub routes: RouteTable,
    /// Interface addresses → port id. ARP and ICMP echo are answered for these.
    pub local_addrs: HashMap<Ipv4Addr, u16>,
    /// Every IPv4 VIP of a service: ARP is answered for these on every port.
    pub vips: HashSet<Ipv4Addr>,
    /// Services by (protocol, VIP, port). Shared (`Arc`) with the previous snapshot when unchanged
    /// (see [`Snapshot::build_from`]), so a worker skips unchanged services with `Arc::ptr_eq`.
    pub services: HashMap<(Proto, Ipv4Addr, u16), Arc<Service>>,
    /// FULLNAT local addresses of all services: ARP is answered for these on every port, and
    /// packets to them are replies of FULLNAT sessions.
    pub laddrs: HashSet<Ipv4Addr>,
    /// (IP protocol, VIP, port) of services with a NAT real server: their client packets are
    /// steered to the worker owning the client (`worker::owner_of`).
    pub nat_services: HashSet<(u8, Ipv4Addr, u16)>,
    /// (IP protocol, RIP, port) of NAT real servers: their replies are steered to the worker
    /// owning the client, and dropped as `NoSession` when no session knows them. The value is
    /// how that worker was chosen for the client's packets (see [`Owner`]).
    pub nat_reals: HashMap<(u8, Ipv4Addr, u16), Owner>,
    /// (IP protocol, VIP, port) of persistent services → their persistence netmask: every
    /// client network is owned by one worker (`worker::owner_of(client & mask, 0)`), so its
    /// template lives in one place whichever queue its connections arrive on.
    pub persistent: HashMap<(u8, Ipv4Addr, u16), Ipv4Addr>,
    pub tunables: Tunables,
    /// Maglev lookup tables of `mh` services, built here, once per change, by the control
    /// thread, and shared by every worker (a 65537-entry build is too slow for a worker's gap).
    pub maglev: HashMap<ServiceKey, Arc<MaglevTable>>,
    /// What changed relative to the `prev` of [`Snapshot::build_from`]: `None` when built
    /// without one, or when so many services changed (over a quarter) that a full walk is as
    /// cheap.
    pub changes: Option<Changes>,
    /// Unique per build in this process (a clone keeps it: same content).
    id: u64,
}

impl Snapshot {
    /// Compile ports, static routes and services into a snapshot. Fails with a message naming the
    /// offending item (an IPv6 VIP, a route over an unknown port, a bad prefix length, ...).
    pub fn build(
        generation: u64,
        ports: Vec<PortInfo>,
        static_routes: &[StaticRoute],
        services: &[Service],
        tunables: Tunables,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::build_from(None, generation, ports, static_routes, services, tunables)
    }

    /// [`Snapshot::build`] that shares with `prev` (the snapshot being replaced) every service
    /// whose definition is unchanged, and its Maglev table: workers then rebuild scheduler state
    /// only for the services that changed (10k services: one change must not cost 10k updates).
    pub fn build_from(
        prev: Option<&Snapshot>,
        generation: u64,
        ports: Vec<PortInfo>,
        static_routes: &[StaticRoute],
        services: &[Service],
        tunables: Tunables,
    ) -> Result<Snapshot, SnapshotError> {
        let mut routes = RouteTable::new();
        let mut local_addrs = HashMap::new();
        for p in &ports {
            for &(addr, len) in &p.addrs {
                if len > 32 {
                    return Err(SnapshotError::PortPrefixLen { port: p.name.clone(), addr, len });
                }
                local_addrs.insert(addr, p.id);
                routes
                    .insert(addr, len, Route { port: p.id, via: None })
                    .map_err(|source| SnapshotError::PortRoute { port: p.name.clone(), source })?;
            }
        }
        for r in static_routes {
            if !ports.iter().any(|p| p.id == r.port) {
                return Err(SnapshotError::NoSuchPort { prefix: r.prefix, len: r.len, port: r.port });
            }
            routes
                .insert(r.prefix, r.len, Route { port: r.port, via: r.via })
                .map_err(|source| SnapshotError::Route { prefix: r.prefix, len: r.len, source })?;
        }
        let mut vips = HashSet::new();
        let mut laddrs = HashSet::new();
        let mut maglev = HashMap::new();
        let mut map = HashMap::new();
        let mut nat_services = HashSet::new();
        let mut nat_reals: HashMap<(u8, Ipv4Addr, u16), Owner> = HashMap::new();
        let mut persistent = HashMap::new();
        let mut changed = Vec::new();
        for s in services {
            let v4 = match s.key.vip.ip() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => return Err(SnapshotError::Ipv6Vip(s.key)),
            };
            vips.insert(v4);
            for l in &s.laddrs {
                match l {
                    IpAddr::V4(l4) => {
                        laddrs.insert(*l4);
                    }
                    IpAddr::V6(_) => return Err(SnapshotError::Ipv6Laddr { key: s.key, addr: *l }),
                }
            }
            let proto = s.key.proto.ip_proto();
            let owner = match s.persistence {
                Some(p) => {
                    persistent.insert((proto, v4, s.key.vip.port()), p.netmask);
                    Owner::ClientNet(p.netmask)
                }
                None => Owner::ClientTuple,
            };
            for r in &s.reals {
                if let (FwdMode::Nat, IpAddr::V4(rip)) = (r.fwd, r.addr.ip()) {
                    nat_services.insert((proto, v4, s.key.vip.port()));
                    // A real server of services with different rules: the NAT rule, and the
                    // replies of the others may land on a worker without their session
                    // (documented in docs/multicore.md).
                    nat_reals
                        .entry((proto, rip, r.addr.port()))
                        .and_modify(|o| {
                            if *o != owner {
                                *o = Owner::ClientTuple;
                            }
                        })
                        .or_insert(owner);
                }
            }
            let mkey = (s.key.proto, v4, s.key.vip.port());
            let same = prev.and_then(|p| p.services.get(&mkey)).filter(|p| ***p == *s);
            if s.sched == SchedKind::Mh {
                let table = same
                    .and_then(|_| prev.and_then(|p| p.maglev.get(&s.key)).cloned())
                    .unwrap_or_else(|| Arc::new(MaglevTable::build(&s.reals, MaglevTable::DEFAULT_SIZE)));
                maglev.insert(s.key, table);
            }
            if same.is_none() && prev.is_some() {
                changed.push(s.key);
            }
            map.insert(mkey, same.cloned().unwrap_or_else(|| Arc::new(s.clone())));
        }
        let changes = prev.and_then(|p| {
            changed.extend(p.services.iter().filter(|(k, _)| !map.contains_key(*k)).map(|(_, s)| s.key));
            let limit = (map.len().max(p.services.len()) / 4).max(Self::MIN_CHANGE_LIMIT);
            (changed.len() <= limit).then_some(Changes { since: p.generation, base: p.id, keys: changed })
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot {
            generation,
            ports,
            routes,
            local_addrs,
            vips,
            services: map,
            laddrs,
            nat_services,
            nat_reals,
            persistent,
            tunables,
            maglev,
            changes,
            id,
        })
    }

    /// Change lists up to this long are always kept, whatever the number of services (a short
    /// list is cheap to apply even when it is most of a small configuration).
    const MIN_CHANGE_LIMIT: usize = 16;

    /// Unique per build in this process; [`Changes::base`] names the snapshot a change list is
    /// relative to.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// An empty snapshot (generation 0, nothing configured).
    pub fn empty() -> Snapshot {
        Snapshot::build(0, Vec::new(), &[], &[], Tunables::default()).expect("an empty snapshot always builds")
    }

    pub fn port(&self, id: u16) -> Option<&PortInfo> {
        self.ports.iter().find(|p| p.id == id)
    }

    pub fn service(&self, proto: Proto, vip: Ipv4Addr, port: u16) -> Option<&Service> {
        self.services.get(&(proto, vip, port)).map(|s| &**s)
    }

    /// Service keys, for rebuilding per-worker scheduler state.
    pub fn service_keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.services.values().map(|s| &s.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_model::RealServer;
    use std::net::SocketAddr;

    fn svc(port: u16, weight: u32) -> Service {
        let vip = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 100).into(), port);
        let mut s = Service::new(ServiceKey { proto: Proto::Tcp, vip }, SchedKind::Wrr);
        s.reals = (11..14)
            .map(|i| RealServer {
                addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, i).into(), port),
                fwd: FwdMode::Dr,
                weight,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect();
        s
    }

    fn sorted(c: &Changes) -> Vec<u16> {
        let mut v: Vec<u16> = c.keys.iter().map(|k| k.vip.port()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn build_from_lists_added_changed_and_removed_services() {
        let svcs: Vec<Service> = (1..=8).map(|p| svc(p, 1)).collect();
        let first = Snapshot::build(1, Vec::new(), &[], &svcs, Tunables::default()).unwrap();
        assert_eq!(first.changes, None, "no previous snapshot, no list");
        // Nothing changed: an empty list, relative to `first`.
        let same = Snapshot::build_from(Some(&first), 2, Vec::new(), &[], &svcs, Tunables::default()).unwrap();
        let c = same.changes.as_ref().unwrap();
        assert_eq!((c.since, c.base, c.keys.len()), (1, first.id(), 0));
        assert_ne!(same.id(), first.id());
        // Port 2 edited, port 3 removed, port 9 added.
        let mut next: Vec<Service> = svcs.iter().filter(|s| s.key.vip.port() != 3).cloned().collect();
        next[1].reals[0].weight = 7;
        next.push(svc(9, 1));
        let snap = Snapshot::build_from(Some(&same), 3, Vec::new(), &[], &next, Tunables::default()).unwrap();
        let c = snap.changes.as_ref().unwrap();
        assert_eq!((c.since, c.base), (2, same.id()));
        assert_eq!(sorted(c), vec![2, 3, 9]);
        // Too many changes (over a quarter and over the minimum): no list, workers walk all.
        let many: Vec<Service> = (1..=100).map(|p| svc(p, 1)).collect();
        let base = Snapshot::build(4, Vec::new(), &[], &many, Tunables::default()).unwrap();
        let edited: Vec<Service> =
            many.iter().map(|s| if s.key.vip.port() <= 26 { svc(s.key.vip.port(), 2) } else { s.clone() }).collect();
        let big = Snapshot::build_from(Some(&base), 5, Vec::new(), &[], &edited, Tunables::default()).unwrap();
        assert_eq!(big.changes, None, "26 of 100 changed");
        let edited: Vec<Service> =
            many.iter().map(|s| if s.key.vip.port() <= 25 { svc(s.key.vip.port(), 2) } else { s.clone() }).collect();
        let ok = Snapshot::build_from(Some(&base), 5, Vec::new(), &[], &edited, Tunables::default()).unwrap();
        assert_eq!(ok.changes.map(|c| c.keys.len()), Some(25));
    }
}
