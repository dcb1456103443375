//! FULLNAT reply steering with `rte_flow` (DPVS's approach), where the NIC supports it.
//!
//! A FULLNAT session owned by worker `w` uses a local port with `lport % n == w`. With `n` a
//! power of two, one rule per (local address, TCP/UDP, worker) — `ipv4 dst == LIP && l4 dst
//! port & (n-1) == w → queue w` — makes the NIC deliver the replies straight to the owner.
//! Where rules are not available (af_packet, tap, a NIC without flow support, `n` not a power
//! of two), the replies arrive wherever RSS puts them and the pipeline hands them to their owner
//! through the redirect rings (see `workers`): same result, one ring hop more. See
//! docs/multicore.md.
//!
//! Rules must follow the snapshot's `laddrs`. rvsd calls [`Steering::sync`] at start-up and
//! whenever a new snapshot generation is published (the daemon's main loop polls for it);
//! a control handler that wants the rules in place before it answers can call
//! [`Steering::sync`] itself through the daemon's [`SteeringHandle`].

use dpdk_sys::{flow_validate, FlowL4, FlowRule, LportRule};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Shared handle: the daemon's main loop and (optionally) the control handler sync through it.
pub type SteeringHandle = Arc<parking_lot::Mutex<Steering>>;

/// Address used only to ask ports whether they would accept a rule (RFC 5737 TEST-NET-1);
/// nothing is installed for it.
const PROBE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The installed steering rules of every flow-capable port.
#[derive(Debug)]
pub struct Steering {
    n_workers: usize,
    /// Ports that accepted the probe rules.
    ports: Vec<u16>,
    /// Rules per local address (on every capable port).
    rules: HashMap<Ipv4Addr, Vec<FlowRule>>,
}

/// Whether worker count `n` can be steered by masking the local port.
pub fn maskable(n: usize) -> bool {
    n > 1 && n.is_power_of_two() && n <= usize::from(u16::MAX)
}

/// The rules that steer `laddr`'s replies for `n` workers: per L4 protocol, one per worker.
pub fn rules_for(laddr: Ipv4Addr, n: usize) -> Vec<LportRule> {
    if !maskable(n) {
        return Vec::new();
    }
    let mask = (n - 1) as u16;
    [FlowL4::Tcp, FlowL4::Udp]
        .into_iter()
        .flat_map(|l4| {
            (0..n as u16).map(move |w| LportRule { dst: laddr, l4, port_mask: mask, port_value: w, queue: w })
        })
        .collect()
}

impl Steering {
    /// Probe the started `ports` (id, name, driver) with `rte_flow_validate`. Logs once at info
    /// which mechanism FULLNAT replies will use.
    pub fn probe(ports: &[(u16, String, String)], n_workers: usize) -> Steering {
        let mut s = Steering { n_workers, ports: Vec::new(), rules: HashMap::new() };
        if n_workers <= 1 {
            return s;
        }
        if !maskable(n_workers) {
            tracing::info!(
                workers = n_workers,
                "FULLNAT reply steering by rte_flow needs a power-of-two worker count; replies reach their worker through the redirect rings"
            );
            return s;
        }
        let mut refused = Vec::new();
        for (id, name, driver) in ports {
            let probe = rules_for(PROBE_ADDR, n_workers);
            // The highest queue of each protocol is enough to learn whether the port takes them.
            let check = [probe[n_workers - 1], probe[2 * n_workers - 1]];
            match check.iter().try_for_each(|r| flow_validate(*id, r)) {
                Ok(()) => s.ports.push(*id),
                Err(e) => refused.push(format!("{name} ({driver}): {}", e.message)),
            }
        }
        if !s.ports.is_empty() {
            tracing::info!(ports = ?s.ports, workers = n_workers, "FULLNAT replies are steered to their worker by rte_flow rules");
        }
        if !refused.is_empty() {
            tracing::info!(
                ports = ?refused,
                "no rte_flow support on these ports; FULLNAT replies arriving there reach their worker through the redirect rings"
            );
        }
        s
    }

    /// Some port steers by rules.
    pub fn active(&self) -> bool {
        !self.ports.is_empty()
    }

    /// Local addresses with rules installed.
    pub fn steered(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.rules.keys()
    }

    /// Make the installed rules match `laddrs`: install rules for new addresses, remove those of
    /// addresses gone. A port refusing a rule is logged; its replies still reach the right
    /// worker through the redirect rings. Returns the errors (already logged at warn).
    pub fn sync<'a>(&mut self, laddrs: impl IntoIterator<Item = &'a Ipv4Addr>) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.active() {
            return errors;
        }
        let laddrs: HashSet<Ipv4Addr> = laddrs.into_iter().copied().collect();
        let gone: Vec<Ipv4Addr> = self.rules.keys().filter(|a| !laddrs.contains(a)).copied().collect();
        for a in gone {
            for rule in self.rules.remove(&a).unwrap_or_default() {
                if let Err(e) = rule.destroy() {
                    errors.push(format!("removing steering of {a}: {e}"));
                }
            }
            tracing::info!(laddr = %a, "FULLNAT steering rules removed");
        }
        for &a in &laddrs {
            if self.rules.contains_key(&a) {
                continue;
            }
            let mut installed = Vec::new();
            for &port in &self.ports {
                for r in rules_for(a, self.n_workers) {
                    match FlowRule::create(port, &r) {
                        Ok(rule) => installed.push(rule),
                        Err(e) => errors.push(format!("steering {a} on port {port}: {e}")),
                    }
                }
            }
            tracing::info!(laddr = %a, rules = installed.len(), "FULLNAT steering rules installed");
            self.rules.insert(a, installed);
        }
        for e in &errors {
            tracing::warn!("{e}; those replies go through the redirect rings");
        }
        errors
    }

    /// Remove every rule (before the ports stop).
    pub fn clear(&mut self) {
        for e in self.sync(&[]) {
            tracing::debug!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_partition_the_port_space_by_worker() {
        let a = Ipv4Addr::new(198, 51, 100, 5);
        assert!(rules_for(a, 1).is_empty());
        assert!(rules_for(a, 3).is_empty(), "3 workers cannot be matched by a mask");
        let r = rules_for(a, 4);
        assert_eq!(r.len(), 8);
        // Every lport matches exactly one TCP rule, and that rule's queue is lport % 4: the
        // dataplane's owner rule for FULLNAT sessions.
        for lport in [1024u16, 1025, 1026, 1027, 40_001, 65_535] {
            let hits: Vec<_> =
                r.iter().filter(|x| x.l4 == FlowL4::Tcp && lport & x.port_mask == x.port_value).collect();
            assert_eq!(hits.len(), 1, "lport {lport}");
            assert_eq!(usize::from(hits[0].queue), usize::from(lport) % 4);
            assert_eq!(hits[0].dst, a);
        }
        assert_eq!(r.iter().filter(|x| x.l4 == FlowL4::Udp).count(), 4);
    }

    #[test]
    fn single_or_odd_worker_counts_never_probe() {
        // No EAL here: probing would fail on every port, but with 1 or 3 workers it must not
        // even try, and sync is then a no-op.
        for n in [1, 3] {
            let mut s = Steering::probe(&[(0, "p0".into(), "net_x".into())], n);
            assert!(!s.active());
            assert!(s.sync(&[Ipv4Addr::new(198, 51, 100, 5)]).is_empty());
            assert_eq!(s.steered().count(), 0);
        }
        // With 2 workers the probe runs and fails cleanly without EAL.
        let s = Steering::probe(&[(0, "p0".into(), "net_x".into())], 2);
        assert!(!s.active());
    }
}
