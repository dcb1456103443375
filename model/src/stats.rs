//! Per-real-server traffic counters, the one type the workers count into, the control plane
//! sums and baselines, rvsadm `--stats` shows and `/metrics` exports.

/// Traffic of one (service, real server), as IPVS keeps it per destination (ipvsadm's five
/// `--stats` counters): `in` is client → real server, `out` real server → client (NAT/FULLNAT
/// replies; always 0 for DR and TUN, whose replies bypass the gateway). Bytes are IP datagram
/// lengths as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RsStats {
    /// Sessions created.
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl RsStats {
    /// Add another worker's (or real server's) figures into these.
    pub fn add(&mut self, o: &RsStats) {
        self.conns = self.conns.wrapping_add(o.conns);
        self.inpkts = self.inpkts.wrapping_add(o.inpkts);
        self.outpkts = self.outpkts.wrapping_add(o.outpkts);
        self.inbytes = self.inbytes.wrapping_add(o.inbytes);
        self.outbytes = self.outbytes.wrapping_add(o.outbytes);
    }
    /// These minus `base`, never below zero (a baseline taken before a counter went away).
    pub fn since(&self, base: &RsStats) -> RsStats {
        RsStats {
            conns: self.conns.saturating_sub(base.conns),
            inpkts: self.inpkts.saturating_sub(base.inpkts),
            outpkts: self.outpkts.saturating_sub(base.outpkts),
            inbytes: self.inbytes.saturating_sub(base.inbytes),
            outbytes: self.outbytes.saturating_sub(base.outbytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs_stats_sum_and_baseline() {
        let mut a = RsStats { conns: 1, inpkts: 10, outpkts: 8, inbytes: 1000, outbytes: 4000 };
        let b = RsStats { conns: 2, inpkts: 5, outpkts: 0, inbytes: 300, outbytes: 0 };
        a.add(&b);
        assert_eq!(a, RsStats { conns: 3, inpkts: 15, outpkts: 8, inbytes: 1300, outbytes: 4000 });
        assert_eq!(a.since(&b), RsStats { conns: 1, inpkts: 10, outpkts: 8, inbytes: 1000, outbytes: 4000 });
        assert_eq!(b.since(&a), RsStats::default(), "a baseline above the value clamps to zero");
    }
}
