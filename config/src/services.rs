//! The running set of virtual services: what rvsd holds and what ipvsadm-style commands edit.
//!
//! Every edit validates first and changes nothing when it fails, so a refused command never
//! leaves a half-applied service behind. The same validation backs the TOML config, so a
//! service refused by `rvsadm -A` is refused with the same words in `rvsd.toml`.

use crate::model::{is_contiguous_netmask, FwdMode, Persistence, Proto, RealServer, Service, ServiceKey};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Highest real-server weight ipvsadm accepts (`-w`).
pub const MAX_WEIGHT: u32 = 65535;

/// Short upper-case name and ipvsadm/DPVS option of a forwarding mode.
pub const fn fwd_label(m: FwdMode) -> (&'static str, &'static str) {
    match m {
        FwdMode::Dr => ("DR", "-g"),
        FwdMode::Tun => ("TUN", "-i"),
        FwdMode::Nat => ("NAT", "-m"),
        FwdMode::FullNat => ("FULLNAT", "-b"),
    }
}

/// What is wrong with a service or real server, without saying which one (see [`ModelError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Persistence timeout outside 1..=[`Persistence::MAX_TIMEOUT_S`].
    PersistTimeout(u32),
    /// Persistence netmask that is not ones-then-zeros.
    PersistNetmask(Ipv4Addr),
    Ipv6,
    /// An IPv6 FULLNAT local address.
    Ipv6Laddr,
    /// A local address that is the VIP of this service.
    LaddrIsVip(ServiceKey),
    /// A VIP that is a local address of this service.
    VipIsLaddr(ServiceKey),
    /// (address, what kind of address it is)
    BadAddr(IpAddr, &'static str),
    ServicePortZero,
    WeightTooBig(u32),
    Thresholds {
        u: u32,
        l: u32,
    },
    PortMismatch {
        fwd: FwdMode,
        rs_port: u16,
        svc_port: u16,
    },
    FamilyMismatch,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PersistTimeout(t) => {
                write!(f, "persistence timeout {t} s is not in 1..={} (-p)", Persistence::MAX_TIMEOUT_S)
            }
            Problem::PersistNetmask(m) => {
                write!(f, "persistence netmask {m} is not a contiguous netmask (-M)")
            }
            Problem::Ipv6 => f.write_str("IPv6 services are not supported yet"),
            Problem::Ipv6Laddr => f.write_str("IPv6 local addresses are not supported yet"),
            Problem::LaddrIsVip(k) => {
                write!(f, "the address is the VIP of service {k}; a local address must differ from every VIP")
            }
            Problem::VipIsLaddr(k) => {
                write!(f, "the VIP is a local address (laddr) of service {k}")
            }
            Problem::BadAddr(ip, what) => write!(f, "{ip} is {what} address"),
            Problem::ServicePortZero => {
                f.write_str("service port 0 is not supported (ipvsadm's port-0 and fwmark services are not supported)")
            }
            Problem::WeightTooBig(w) => write!(f, "weight {w} is over the maximum {MAX_WEIGHT}"),
            Problem::Thresholds { u, l } => {
                write!(f, "lower threshold (-y) {l} is above the upper threshold (-x) {u}")
            }
            Problem::PortMismatch { fwd, rs_port, svc_port } => {
                let (name, opt) = fwd_label(*fwd);
                write!(
                    f,
                    "real server port {rs_port} differs from the service port {svc_port}, \
                     which {name} ({opt}) cannot do (give no port or port {svc_port})"
                )
            }
            Problem::FamilyMismatch => f.write_str("real server and service address families differ"),
        }
    }
}

/// Why a service-table edit was refused. The message names the service and real server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("service {0} already exists")]
    ServiceExists(ServiceKey),
    #[error("service {0} does not exist")]
    NoSuchService(ServiceKey),
    #[error("service {key}: real server {addr} already exists")]
    RealExists { key: ServiceKey, addr: SocketAddr },
    #[error("service {key}: real server {addr} does not exist")]
    NoSuchReal { key: ServiceKey, addr: SocketAddr },
    #[error("service {key}: {problem}")]
    InvalidService { key: ServiceKey, problem: Problem },
    #[error("service {key}: real server {addr}: {problem}")]
    InvalidReal { key: ServiceKey, addr: SocketAddr, problem: Problem },
    #[error("service {key}: local address {addr} already exists")]
    LaddrExists { key: ServiceKey, addr: IpAddr },
    #[error("service {key}: local address {addr} does not exist")]
    NoSuchLaddr { key: ServiceKey, addr: IpAddr },
    #[error("service {key}: local address {addr}: {problem}")]
    InvalidLaddr { key: ServiceKey, addr: IpAddr, problem: Problem },
}

/// Refuse addresses that can never be a VIP or RIP.
fn check_host_ip(ip: IpAddr) -> Result<(), Problem> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => return Err(Problem::Ipv6),
    };
    if v4.is_unspecified() {
        Err(Problem::BadAddr(ip, "the unspecified"))
    } else if v4.is_broadcast() {
        Err(Problem::BadAddr(ip, "the broadcast"))
    } else if v4.is_multicast() {
        Err(Problem::BadAddr(ip, "a multicast"))
    } else if v4.is_loopback() {
        Err(Problem::BadAddr(ip, "a loopback"))
    } else {
        Ok(())
    }
}

/// Check a service key: IPv4 unicast VIP with a non-zero port.
pub fn validate_key(key: &ServiceKey) -> Result<(), ModelError> {
    let err = |problem| ModelError::InvalidService { key: *key, problem };
    check_host_ip(key.vip.ip()).map_err(err)?;
    if key.vip.port() == 0 {
        return Err(err(Problem::ServicePortZero));
    }
    Ok(())
}

/// Check the service-wide settings (key, persistence; every scheduler is implemented); not the
/// real servers.
pub fn validate_service_params(key: &ServiceKey, persistence: Option<&Persistence>) -> Result<(), ModelError> {
    validate_key(key)?;
    let err = |problem| ModelError::InvalidService { key: *key, problem };
    if let Some(p) = persistence {
        if !(1..=Persistence::MAX_TIMEOUT_S).contains(&p.timeout_s) {
            return Err(err(Problem::PersistTimeout(p.timeout_s)));
        }
        if !is_contiguous_netmask(p.netmask) {
            return Err(err(Problem::PersistNetmask(p.netmask)));
        }
    }
    Ok(())
}

/// Check one FULLNAT local address of `key` on its own: an IPv4 unicast host address that is
/// not the service's VIP. (That it is no other service's VIP is checked by [`ServiceTable`].)
pub fn validate_laddr(key: &ServiceKey, addr: IpAddr) -> Result<(), ModelError> {
    let err = |problem| ModelError::InvalidLaddr { key: *key, addr, problem };
    match check_host_ip(addr) {
        Err(Problem::Ipv6) => return Err(err(Problem::Ipv6Laddr)),
        Err(p) => return Err(err(p)),
        Ok(()) => {}
    }
    if addr == key.vip.ip() {
        return Err(err(Problem::LaddrIsVip(*key)));
    }
    Ok(())
}

/// Check one real server of `key` and return it normalised (port 0 → the service port).
pub fn validate_real(key: &ServiceKey, real: &RealServer) -> Result<RealServer, ModelError> {
    let mut rs = *real;
    if rs.addr.port() == 0 {
        rs.addr.set_port(key.vip.port());
    }
    let err = |problem| ModelError::InvalidReal { key: *key, addr: rs.addr, problem };
    if rs.addr.is_ipv4() != key.vip.is_ipv4() {
        return Err(err(Problem::FamilyMismatch));
    }
    check_host_ip(rs.addr.ip()).map_err(err)?;
    if !rs.fwd.maps_ports() && rs.addr.port() != key.vip.port() {
        return Err(err(Problem::PortMismatch { fwd: rs.fwd, rs_port: rs.addr.port(), svc_port: key.vip.port() }));
    }
    if rs.weight > MAX_WEIGHT {
        return Err(err(Problem::WeightTooBig(rs.weight)));
    }
    if rs.u_threshold > 0 && rs.l_threshold > rs.u_threshold {
        return Err(err(Problem::Thresholds { u: rs.u_threshold, l: rs.l_threshold }));
    }
    Ok(rs)
}

/// Check a whole service and return it normalised (real-server ports filled in).
pub fn validate_service(svc: &Service) -> Result<Service, ModelError> {
    validate_service_params(&svc.key, svc.persistence.as_ref())?;
    let mut reals: Vec<RealServer> = Vec::with_capacity(svc.reals.len());
    for r in &svc.reals {
        let r = validate_real(&svc.key, r)?;
        if reals.iter().any(|x| x.addr == r.addr) {
            return Err(ModelError::RealExists { key: svc.key, addr: r.addr });
        }
        reals.push(r);
    }
    for (i, &l) in svc.laddrs.iter().enumerate() {
        validate_laddr(&svc.key, l)?;
        if svc.laddrs[..i].contains(&l) {
            return Err(ModelError::LaddrExists { key: svc.key, addr: l });
        }
    }
    Ok(Service {
        key: svc.key,
        sched: svc.sched,
        persistence: svc.persistence,
        laddrs: svc.laddrs.clone(),
        client_addr: svc.client_addr,
        reals,
    })
}

/// Real-server address as the user may give it (port 0 = the service port), normalised.
fn normalise_addr(key: &ServiceKey, mut addr: SocketAddr) -> SocketAddr {
    if addr.port() == 0 {
        addr.set_port(key.vip.port());
    }
    addr
}

/// The virtual services rvsd runs, keyed (and listed) in (protocol, VIP:port) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTable {
    services: BTreeMap<ServiceKey, Service>,
    /// Index: local address → the services that have it, so the VIP/laddr disjointness checks
    /// are O(1) per address rather than a scan of every service (10k services would be O(n²)).
    /// Derived from `services`; every mutating method keeps it in step.
    laddr_owners: HashMap<IpAddr, BTreeSet<ServiceKey>>,
    /// Index: VIP address → the services on it (several ports/protocols may share one VIP).
    vip_owners: HashMap<IpAddr, BTreeSet<ServiceKey>>,
}

/// Add `key` to the set of `ip` in an address index.
fn index_add(idx: &mut HashMap<IpAddr, BTreeSet<ServiceKey>>, ip: IpAddr, key: ServiceKey) {
    idx.entry(ip).or_default().insert(key);
}

/// Remove `key` from the set of `ip`, dropping the entry when it becomes empty (so that two
/// tables with the same services compare equal).
fn index_del(idx: &mut HashMap<IpAddr, BTreeSet<ServiceKey>>, ip: IpAddr, key: &ServiceKey) {
    if let Some(set) = idx.get_mut(&ip) {
        set.remove(key);
        if set.is_empty() {
            idx.remove(&ip);
        }
    }
}

/// First (in key order, as a scan of the table would find it) service of `ip` in an index.
fn index_first(idx: &HashMap<IpAddr, BTreeSet<ServiceKey>>, ip: IpAddr) -> Option<ServiceKey> {
    idx.get(&ip).and_then(|set| set.iter().next().copied())
}

impl ServiceTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a table from a list of services, validating all of them (duplicates refused).
    pub fn from_services(services: Vec<Service>) -> Result<ServiceTable, ModelError> {
        let mut t = ServiceTable::new();
        for s in services {
            t.add_service(s)?;
        }
        Ok(t)
    }

    /// `ipvsadm -A`: add a service, with or without real servers and local addresses.
    pub fn add_service(&mut self, svc: Service) -> Result<(), ModelError> {
        if self.services.contains_key(&svc.key) {
            return Err(ModelError::ServiceExists(svc.key));
        }
        let svc = validate_service(&svc)?;
        // Local addresses and VIPs are disjoint across the whole table: a packet to a laddr is a
        // FULLNAT reply, a packet to a VIP is a client's.
        let vip = svc.key.vip.ip();
        if let Some(other) = index_first(&self.laddr_owners, vip) {
            return Err(ModelError::InvalidService { key: svc.key, problem: Problem::VipIsLaddr(other) });
        }
        for &l in &svc.laddrs {
            self.check_laddr_not_vip(&svc.key, l)?;
        }
        index_add(&mut self.vip_owners, vip, svc.key);
        for &l in &svc.laddrs {
            index_add(&mut self.laddr_owners, l, svc.key);
        }
        self.services.insert(svc.key, svc);
        Ok(())
    }

    /// `ipvsadm -E`: change scheduler, persistence and client-address mode; the real servers
    /// and local addresses are kept (those of the argument are ignored, as `-E` carries none).
    pub fn edit_service(&mut self, svc: Service) -> Result<(), ModelError> {
        validate_service_params(&svc.key, svc.persistence.as_ref())?;
        let cur = self.services.get_mut(&svc.key).ok_or(ModelError::NoSuchService(svc.key))?;
        cur.sched = svc.sched;
        cur.persistence = svc.persistence;
        cur.client_addr = svc.client_addr;
        Ok(())
    }

    /// Refuse a local address of `key` that is the VIP of any service.
    fn check_laddr_not_vip(&self, key: &ServiceKey, addr: IpAddr) -> Result<(), ModelError> {
        if let Some(other) = index_first(&self.vip_owners, addr) {
            return Err(ModelError::InvalidLaddr { key: *key, addr, problem: Problem::LaddrIsVip(other) });
        }
        Ok(())
    }

    /// DPVS's `ipvsadm --add-laddr -z LIP -t VIP:PORT`: add a FULLNAT local address. It must be
    /// IPv4 unicast, no service's VIP, and not already on this service. A local address may be
    /// shared by several services (as in DPVS), and may be added before any FULLNAT real server.
    pub fn add_laddr(&mut self, key: &ServiceKey, addr: IpAddr) -> Result<(), ModelError> {
        if !self.services.contains_key(key) {
            return Err(ModelError::NoSuchService(*key));
        }
        validate_laddr(key, addr)?;
        self.check_laddr_not_vip(key, addr)?;
        let svc = self.services.get_mut(key).ok_or(ModelError::NoSuchService(*key))?;
        if svc.laddrs.contains(&addr) {
            return Err(ModelError::LaddrExists { key: *key, addr });
        }
        svc.laddrs.push(addr);
        index_add(&mut self.laddr_owners, addr, *key);
        Ok(())
    }

    /// DPVS's `ipvsadm --del-laddr -z LIP -t VIP:PORT`.
    pub fn del_laddr(&mut self, key: &ServiceKey, addr: IpAddr) -> Result<(), ModelError> {
        let svc = self.services.get_mut(key).ok_or(ModelError::NoSuchService(*key))?;
        let i = svc.laddrs.iter().position(|&l| l == addr).ok_or(ModelError::NoSuchLaddr { key: *key, addr })?;
        svc.laddrs.remove(i);
        index_del(&mut self.laddr_owners, addr, key);
        Ok(())
    }

    /// `ipvsadm -D`.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<Service, ModelError> {
        let svc = self.services.remove(key).ok_or(ModelError::NoSuchService(*key))?;
        index_del(&mut self.vip_owners, svc.key.vip.ip(), key);
        for &l in &svc.laddrs {
            index_del(&mut self.laddr_owners, l, key);
        }
        Ok(svc)
    }

    /// `ipvsadm -a`: add a real server (port 0 means the service port).
    pub fn add_real(&mut self, key: &ServiceKey, real: RealServer) -> Result<(), ModelError> {
        let svc = self.services.get_mut(key).ok_or(ModelError::NoSuchService(*key))?;
        let real = validate_real(key, &real)?;
        if svc.reals.iter().any(|r| r.addr == real.addr) {
            return Err(ModelError::RealExists { key: *key, addr: real.addr });
        }
        svc.reals.push(real);
        Ok(())
    }

    /// `ipvsadm -e`: change a real server's forwarding mode, weight and thresholds.
    pub fn edit_real(&mut self, key: &ServiceKey, real: RealServer) -> Result<(), ModelError> {
        let svc = self.services.get_mut(key).ok_or(ModelError::NoSuchService(*key))?;
        let addr = normalise_addr(key, real.addr);
        let slot = svc.reals.iter_mut().find(|r| r.addr == addr).ok_or(ModelError::NoSuchReal { key: *key, addr })?;
        *slot = validate_real(key, &real)?;
        Ok(())
    }

    /// `ipvsadm -d`: remove a real server (port 0 means the service port).
    pub fn del_real(&mut self, key: &ServiceKey, addr: SocketAddr) -> Result<RealServer, ModelError> {
        let svc = self.services.get_mut(key).ok_or(ModelError::NoSuchService(*key))?;
        let addr = normalise_addr(key, addr);
        let i = svc.reals.iter().position(|r| r.addr == addr).ok_or(ModelError::NoSuchReal { key: *key, addr })?;
        Ok(svc.reals.remove(i))
    }

    /// `ipvsadm -C`.
    pub fn clear(&mut self) {
        self.services.clear();
        self.laddr_owners.clear();
        self.vip_owners.clear();
    }

    pub fn get(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// All services, sorted by (protocol, VIP:port).
    pub fn list(&self) -> Vec<&Service> {
        self.services.values().collect()
    }

    /// All services, cloned, sorted (e.g. to build a dataplane snapshot).
    pub fn to_services(&self) -> Vec<Service> {
        self.services.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Services of one protocol, e.g. for per-protocol lookups.
    pub fn iter_proto(&self, proto: Proto) -> impl Iterator<Item = &Service> {
        self.services.values().filter(move |s| s.key.proto == proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SchedKind;
    use std::net::Ipv4Addr;

    fn key(s: &str) -> ServiceKey {
        ServiceKey { proto: Proto::Tcp, vip: s.parse().unwrap() }
    }
    fn rs(s: &str) -> RealServer {
        RealServer { addr: s.parse().unwrap(), fwd: FwdMode::Dr, weight: 1, u_threshold: 0, l_threshold: 0 }
    }
    fn svc(k: &str, reals: &[&str]) -> Service {
        Service {
            key: key(k),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: reals.iter().map(|r| rs(r)).collect(),
        }
    }

    /// Apply `f`; it must fail with a message containing `want`, and leave the table as it was.
    fn refused(t: &mut ServiceTable, want: &str, f: impl FnOnce(&mut ServiceTable) -> Result<(), ModelError>) {
        let before = t.clone();
        let e = f(t).expect_err("edit should have been refused");
        let msg = e.to_string();
        assert!(msg.contains(want), "message {msg:?} lacks {want:?}");
        assert_eq!(*t, before, "table changed by a refused edit ({msg})");
    }

    fn table() -> ServiceTable {
        ServiceTable::from_services(vec![svc("203.0.113.100:80", &["203.0.113.11:80", "203.0.113.12:80"])]).unwrap()
    }

    #[test]
    fn add_edit_delete_cycle() {
        let mut t = ServiceTable::new();
        t.add_service(svc("203.0.113.100:80", &[])).unwrap();
        t.add_real(&key("203.0.113.100:80"), rs("203.0.113.11:0")).unwrap();
        // Port 0 is normalised to the service port.
        assert_eq!(t.get(&key("203.0.113.100:80")).unwrap().reals[0].addr, "203.0.113.11:80".parse().unwrap());
        t.add_real(&key("203.0.113.100:80"), rs("203.0.113.12:80")).unwrap();
        let mut e = rs("203.0.113.12:80");
        e.weight = 7;
        t.edit_real(&key("203.0.113.100:80"), e).unwrap();
        assert_eq!(t.get(&key("203.0.113.100:80")).unwrap().reals[1].weight, 7);
        let mut s = svc("203.0.113.100:80", &[]);
        s.sched = SchedKind::Wrr;
        t.edit_service(s).unwrap();
        let got = t.get(&key("203.0.113.100:80")).unwrap();
        assert_eq!(got.sched, SchedKind::Wrr);
        assert_eq!(got.reals.len(), 2, "edit_service keeps the reals");
        let gone = t.del_real(&key("203.0.113.100:80"), "203.0.113.11:0".parse().unwrap()).unwrap();
        assert_eq!(gone.addr.port(), 80);
        t.del_service(&key("203.0.113.100:80")).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn list_is_sorted() {
        let mut t = ServiceTable::new();
        t.add_service(svc("203.0.113.100:443", &[])).unwrap();
        let mut u = svc("203.0.113.100:53", &[]);
        u.key.proto = Proto::Udp;
        t.add_service(u).unwrap();
        t.add_service(svc("203.0.113.100:80", &[])).unwrap();
        t.add_service(svc("198.51.100.1:80", &[])).unwrap();
        let l: Vec<String> = t.list().iter().map(|s| s.key.to_string()).collect();
        assert_eq!(l, ["TCP 198.51.100.1:80", "TCP 203.0.113.100:80", "TCP 203.0.113.100:443", "UDP 203.0.113.100:53"]);
        t.clear();
        assert!(t.list().is_empty());
    }

    #[test]
    fn refused_edits_leave_table_unchanged() {
        let k = key("203.0.113.100:80");
        let mut t = table();
        refused(&mut t, "service TCP 203.0.113.100:80 already exists", |t| t.add_service(svc("203.0.113.100:80", &[])));
        refused(&mut t, "does not exist", |t| t.edit_service(svc("203.0.113.101:80", &[])));
        refused(&mut t, "does not exist", |t| t.del_service(&key("203.0.113.101:80")).map(|_| ()));
        refused(&mut t, "real server 203.0.113.11:80 already exists", |t| t.add_real(&k, rs("203.0.113.11:80")));
        refused(&mut t, "real server 203.0.113.11:80 already exists", |t| t.add_real(&k, rs("203.0.113.11:0")));
        refused(&mut t, "real server 203.0.113.13:80 does not exist", |t| t.edit_real(&k, rs("203.0.113.13:80")));
        refused(&mut t, "real server 203.0.113.13:80 does not exist", |t| {
            t.del_real(&k, "203.0.113.13:80".parse().unwrap()).map(|_| ())
        });
        refused(&mut t, "service TCP 203.0.113.101:80 does not exist", |t| {
            t.add_real(&key("203.0.113.101:80"), rs("203.0.113.11:80"))
        });
        // Invalid edits of an existing real / service.
        refused(&mut t, "weight 65536 is over the maximum 65535", |t| {
            let mut r = rs("203.0.113.11:80");
            r.weight = 65536;
            t.edit_real(&k, r)
        });
        refused(&mut t, "persistence timeout 0 s is not in 1..=31536000", |t| {
            let mut s = svc("203.0.113.100:80", &[]);
            s.persistence = Some(Persistence { timeout_s: 0, netmask: Ipv4Addr::BROADCAST });
            t.edit_service(s)
        });
        // A service whose second real is bad is not added at all.
        refused(
            &mut t,
            "service TCP 203.0.113.102:80: real server 203.0.113.12:8080: real server port 8080 differs",
            |t| t.add_service(svc("203.0.113.102:80", &["203.0.113.11:80", "203.0.113.12:8080"])),
        );
        refused(&mut t, "real server 203.0.113.11:80 already exists", |t| {
            t.add_service(svc("203.0.113.102:80", &["203.0.113.11:80", "203.0.113.11:0"]))
        });
    }

    #[test]
    fn validation_messages() {
        let k = key("203.0.113.100:80");
        let mut t = table();
        let with_real = |f: &dyn Fn(&mut RealServer)| {
            let mut r = rs("203.0.113.20:80");
            f(&mut r);
            r
        };
        let cases: Vec<(RealServer, &str)> = vec![
            (
                with_real(&|r| r.addr = "203.0.113.20:81".parse().unwrap()),
                "real server port 81 differs from the service port 80, which DR (-g) cannot do",
            ),
            (
                with_real(&|r| (r.addr, r.fwd) = ("203.0.113.20:81".parse().unwrap(), FwdMode::Tun)),
                "real server port 81 differs from the service port 80, which TUN (-i) cannot do",
            ),
            (with_real(&|r| r.addr = "[2001:db8::1]:80".parse().unwrap()), "address families differ"),
            (with_real(&|r| r.addr = "0.0.0.0:80".parse().unwrap()), "0.0.0.0 is the unspecified address"),
            (with_real(&|r| r.addr = "255.255.255.255:80".parse().unwrap()), "broadcast"),
            (with_real(&|r| r.addr = "224.0.0.1:80".parse().unwrap()), "multicast"),
            (with_real(&|r| r.weight = 70000), "weight 70000 is over the maximum 65535"),
            (
                with_real(&|r| (r.u_threshold, r.l_threshold) = (10, 20)),
                "lower threshold (-y) 20 is above the upper threshold (-x) 10",
            ),
        ];
        for (r, want) in cases {
            refused(&mut t, want, |t| t.add_real(&k, r));
        }
        // Allowed edge cases: weight 0 (drain) and max, l threshold with u = 0, thresholds equal.
        t.add_real(&k, with_real(&|r| r.weight = 0)).unwrap();
        t.add_real(&k, with_real(&|r| (r.addr, r.weight) = ("203.0.113.21:80".parse().unwrap(), 65535))).unwrap();
        t.add_real(&k, with_real(&|r| (r.addr, r.l_threshold) = ("203.0.113.22:80".parse().unwrap(), 5))).unwrap();
        t.add_real(
            &k,
            with_real(&|r| (r.addr, r.u_threshold, r.l_threshold) = ("203.0.113.23:80".parse().unwrap(), 5, 5)),
        )
        .unwrap();

        let svc_cases: Vec<(Service, &str)> = vec![
            (svc("[2001:db8::1]:80", &[]), "IPv6 services are not supported yet"),
            (svc("203.0.113.100:0", &[]), "service port 0 is not supported"),
            (svc("0.0.0.0:80", &[]), "unspecified"),
            (svc("239.1.1.1:80", &[]), "multicast"),
            (svc("127.0.0.1:80", &[]), "loopback"),
            (
                Service {
                    persistence: Some(Persistence { timeout_s: 0, netmask: Ipv4Addr::BROADCAST }),
                    ..svc("203.0.113.5:80", &[])
                },
                "service TCP 203.0.113.5:80: persistence timeout 0 s is not in 1..=31536000 (-p)",
            ),
            (
                Service {
                    persistence: Some(Persistence { timeout_s: 31_536_001, netmask: Ipv4Addr::BROADCAST }),
                    ..svc("203.0.113.5:80", &[])
                },
                "persistence timeout 31536001 s is not in 1..=31536000",
            ),
            (
                Service {
                    persistence: Some(Persistence { timeout_s: 300, netmask: Ipv4Addr::new(255, 0, 255, 0) }),
                    ..svc("203.0.113.5:80", &[])
                },
                "persistence netmask 255.0.255.0 is not a contiguous netmask (-M)",
            ),
            (
                Service {
                    laddrs: vec!["203.0.113.3".parse().unwrap(), "203.0.113.3".parse().unwrap()],
                    ..svc("203.0.113.5:80", &[])
                },
                "service TCP 203.0.113.5:80: local address 203.0.113.3 already exists",
            ),
            (
                Service { laddrs: vec!["203.0.113.5".parse().unwrap()], ..svc("203.0.113.5:80", &[]) },
                "local address 203.0.113.5: the address is the VIP of service TCP 203.0.113.5:80",
            ),
            (
                Service { laddrs: vec!["203.0.113.100".parse().unwrap()], ..svc("203.0.113.5:80", &[]) },
                "local address 203.0.113.100: the address is the VIP of service TCP 203.0.113.100:80",
            ),
            (
                Service { laddrs: vec!["2001:db8::3".parse().unwrap()], ..svc("203.0.113.5:80", &[]) },
                "local address 2001:db8::3: IPv6 local addresses are not supported yet",
            ),
        ];
        for (s, want) in svc_cases {
            refused(&mut t, want, |t| t.add_service(s));
        }
    }

    #[test]
    fn from_services_validates_everything() {
        let e =
            ServiceTable::from_services(vec![svc("203.0.113.100:80", &[]), svc("203.0.113.100:80", &[])]).unwrap_err();
        assert_eq!(e, ModelError::ServiceExists(key("203.0.113.100:80")));
        let e = ServiceTable::from_services(vec![svc("203.0.113.100:80", &["203.0.113.1:81"])]).unwrap_err();
        assert!(matches!(e, ModelError::InvalidReal { .. }), "{e}");
        let t = ServiceTable::from_services(vec![svc("203.0.113.100:80", &["203.0.113.1:0"])]).unwrap();
        assert_eq!(t.to_services()[0].reals[0].addr.port(), 80);
        assert_eq!(t.iter_proto(Proto::Tcp).count(), 1);
        assert_eq!(t.iter_proto(Proto::Udp).count(), 0);
    }

    #[test]
    fn every_mode_and_scheduler_is_accepted() {
        let k = key("203.0.113.100:80");
        let mut t = table();
        for sched in SchedKind::ALL {
            let mut s = svc("203.0.113.100:80", &[]);
            s.sched = sched;
            t.edit_service(s).unwrap_or_else(|e| panic!("{sched}: {e}"));
            assert_eq!(t.get(&k).unwrap().sched, sched);
        }
        for (i, m) in FwdMode::ALL.iter().enumerate() {
            let mut r = rs(&format!("203.0.113.{}:80", 30 + i));
            r.fwd = *m;
            t.add_real(&k, r).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        }
    }

    #[test]
    fn port_mapping_per_mode() {
        let k = key("203.0.113.100:80");
        let mut t = table();
        // NAT and FULLNAT may map the port; port 0 still means the service port.
        for (ip, m) in [("203.0.113.21", FwdMode::Nat), ("203.0.113.22", FwdMode::FullNat)] {
            let r = RealServer { addr: format!("{ip}:8080").parse().unwrap(), fwd: m, ..rs("203.0.113.1:80") };
            t.add_real(&k, r).unwrap();
            let r = RealServer { addr: format!("{ip}:0").parse().unwrap(), fwd: m, ..rs("203.0.113.1:80") };
            t.add_real(&k, r).unwrap();
        }
        let addrs: Vec<String> = t.get(&k).unwrap().reals.iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "203.0.113.11:80",
                "203.0.113.12:80",
                "203.0.113.21:8080",
                "203.0.113.21:80",
                "203.0.113.22:8080",
                "203.0.113.22:80"
            ]
        );
        // DR and TUN may not, also when editing an existing real into that mode.
        for m in [FwdMode::Dr, FwdMode::Tun] {
            let (name, opt) = fwd_label(m);
            refused(&mut t, &format!("real server 203.0.113.23:8080: real server port 8080 differs from the service port 80, which {name} ({opt}) cannot do"), |t| {
                t.add_real(&k, RealServer { addr: "203.0.113.23:8080".parse().unwrap(), fwd: m, ..rs("203.0.113.1:80") })
            });
            refused(&mut t, "port 8080 differs", |t| {
                t.edit_real(
                    &k,
                    RealServer { addr: "203.0.113.21:8080".parse().unwrap(), fwd: m, ..rs("203.0.113.1:80") },
                )
            });
        }
        // TUN with the service port (or 0) is fine.
        let r = RealServer { addr: "203.0.113.24:0".parse().unwrap(), fwd: FwdMode::Tun, ..rs("203.0.113.1:80") };
        t.add_real(&k, r).unwrap();
    }

    #[test]
    fn persistence_rules() {
        let k = key("203.0.113.100:80");
        let mut t = table();
        for (timeout_s, netmask) in [
            (1, Ipv4Addr::BROADCAST),
            (300, Ipv4Addr::new(255, 255, 255, 0)),
            (Persistence::MAX_TIMEOUT_S, Ipv4Addr::UNSPECIFIED),
        ] {
            let p = Persistence { timeout_s, netmask };
            t.edit_service(Service { persistence: Some(p), ..svc("203.0.113.100:80", &[]) }).unwrap();
            assert_eq!(t.get(&k).unwrap().persistence, Some(p));
        }
        t.edit_service(svc("203.0.113.100:80", &[])).unwrap();
        assert_eq!(t.get(&k).unwrap().persistence, None, "-E without -p clears persistence, as ipvsadm");
        assert_eq!(Persistence::default_ipvsadm(), Persistence { timeout_s: 300, netmask: Ipv4Addr::BROADCAST });
    }

    #[test]
    fn laddr_rules() {
        use crate::model::ClientAddrMode;
        let k = key("203.0.113.100:80");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut t = table();
        t.add_service(svc("203.0.113.101:80", &[])).unwrap();
        // A FULLNAT real may come before any laddr (operators do it in that order).
        let r =
            RealServer { addr: "198.51.100.11:8080".parse().unwrap(), fwd: FwdMode::FullNat, ..rs("203.0.113.1:80") };
        t.add_real(&k, r).unwrap();
        assert!(t.get(&k).unwrap().has_fullnat());
        t.add_laddr(&k, ip("203.0.113.3")).unwrap();
        t.add_laddr(&k, ip("203.0.113.4")).unwrap();
        // Shared by two services, as DPVS allows.
        t.add_laddr(&key("203.0.113.101:80"), ip("203.0.113.3")).unwrap();
        assert_eq!(t.get(&k).unwrap().laddrs, [ip("203.0.113.3"), ip("203.0.113.4")]);

        refused(&mut t, "service TCP 203.0.113.100:80: local address 203.0.113.3 already exists", |t| {
            t.add_laddr(&k, ip("203.0.113.3"))
        });
        refused(&mut t, "local address 203.0.113.101: the address is the VIP of service TCP 203.0.113.101:80", |t| {
            t.add_laddr(&k, ip("203.0.113.101"))
        });
        refused(&mut t, "local address 203.0.113.100: the address is the VIP of service TCP 203.0.113.100:80", |t| {
            t.add_laddr(&k, ip("203.0.113.100"))
        });
        refused(&mut t, "IPv6 local addresses are not supported yet", |t| t.add_laddr(&k, ip("2001:db8::3")));
        refused(&mut t, "0.0.0.0 is the unspecified address", |t| t.add_laddr(&k, ip("0.0.0.0")));
        refused(&mut t, "224.0.0.9 is a multicast address", |t| t.add_laddr(&k, ip("224.0.0.9")));
        refused(&mut t, "service TCP 203.0.113.102:80 does not exist", |t| {
            t.add_laddr(&key("203.0.113.102:80"), ip("203.0.113.5"))
        });
        refused(&mut t, "service TCP 203.0.113.100:80: local address 203.0.113.9 does not exist", |t| {
            t.del_laddr(&k, ip("203.0.113.9"))
        });
        refused(&mut t, "service TCP 203.0.113.102:80 does not exist", |t| {
            t.del_laddr(&key("203.0.113.102:80"), ip("203.0.113.3"))
        });
        // A new service whose VIP is a laddr of another (any port) is refused.
        refused(
            &mut t,
            "service TCP 203.0.113.4:443: the VIP is a local address (laddr) of service TCP 203.0.113.100:80",
            |t| t.add_service(svc("203.0.113.4:443", &[])),
        );

        // -E keeps the laddrs and reals, and sets the client-address mode.
        let mut e = svc("203.0.113.100:80", &[]);
        e.client_addr = ClientAddrMode::ProxyV2;
        t.edit_service(e).unwrap();
        let got = t.get(&k).unwrap();
        assert_eq!((got.client_addr, got.laddrs.len(), got.reals.len()), (ClientAddrMode::ProxyV2, 2, 3));

        t.del_laddr(&k, ip("203.0.113.3")).unwrap();
        assert_eq!(t.get(&k).unwrap().laddrs, [ip("203.0.113.4")]);
        assert_eq!(
            t.get(&key("203.0.113.101:80")).unwrap().laddrs,
            [ip("203.0.113.3")],
            "the other service's copy stays"
        );
    }

    /// The VIP/laddr indexes follow deletions: once the owner of an address is gone (service
    /// or local address deleted, table cleared) the address is free for the other role.
    #[test]
    fn address_indexes_follow_deletions() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut t = table();
        let k = key("203.0.113.100:80");
        t.add_laddr(&k, ip("198.51.100.1")).unwrap();
        let mut other = svc("198.51.100.1:80", &[]);
        refused(&mut t, "the VIP is a local address (laddr) of service TCP 203.0.113.100:80", |t| {
            t.add_service(other.clone())
        });
        t.del_laddr(&k, ip("198.51.100.1")).unwrap();
        t.add_service(other.clone()).unwrap();
        refused(&mut t, "the address is the VIP of service TCP 198.51.100.1:80", |t| {
            t.add_laddr(&k, ip("198.51.100.1"))
        });
        // A second service on the same VIP keeps the VIP taken after the first one goes.
        let mut udp = svc("198.51.100.1:53", &[]);
        udp.key.proto = Proto::Udp;
        t.add_service(udp.clone()).unwrap();
        t.del_service(&other.key).unwrap();
        refused(&mut t, "the address is the VIP of service UDP 198.51.100.1:53", |t| {
            t.add_laddr(&k, ip("198.51.100.1"))
        });
        t.del_service(&udp.key).unwrap();
        t.add_laddr(&k, ip("198.51.100.1")).unwrap();
        t.del_service(&k).unwrap();
        other.laddrs.clear();
        t.add_service(other.clone()).unwrap();
        t.clear();
        assert_eq!(t, ServiceTable::new(), "cleared indexes compare equal to a new table");
        other.laddrs.push(ip("198.51.100.2"));
        t.add_service(other).unwrap();
        t.add_service(svc("198.51.100.3:80", &[])).unwrap();
    }
}
