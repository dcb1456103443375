//! rvsd, the rvs gateway daemon: the DPDK glue around the DPDK-free packet logic of
//! `rvs-dataplane`. Every call into DPDK goes through `dpdk-sys`'s safe wrapper.
#![forbid(unsafe_code)]

pub mod control;
pub mod daemon;
pub mod flow;
pub mod metrics;
pub mod pkt;
pub mod reload;
pub mod workers;

/// Version with the build's git revision (from build.rs).
pub fn version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("RVS_GIT_REV"), ")")
}
