//! rvs-bench, as a library: drives rvsd's worker pipeline (`rvs_dataplane::worker::Worker` over
//! `rvs::pkt::Pkt`, real DPDK mbufs) with traffic built in advance and reports Mpps, ns and
//! cycles per packet, connections per second, bytes per session (counted by the global
//! allocator), per-burst latency, each next to a bare MAC-swap forwarder over the same mbufs
//! and port; and a control-plane benchmark. The `rvs-bench` binary parses the command line and
//! calls [`run::run`]. See docs/performance.md.
//!
//! - [`frames`]: the test network, frames built in advance, checks of output frames (pure);
//! - [`driver`]: EAL, mempool, `net_ring0` port, the burst loop of the pipeline and of the bare forwarder;
//! - [`cases`]: modes × workloads × sessions, their flows and what each case measures and checks;
//! - [`ctrl_bench`]: applying services, publishing snapshots, and the worker's gaps meanwhile;
//! - [`gaps`]: `/proc` counters of the worker thread and the attribution of long gaps (pure parsers);
//! - [`machine`]: the machine from /proc and /sys (pure parsers);
//! - [`stats`]: what a run of bursts measured and the figures derived from it;
//! - [`report`]: stdout lines, JSON, markdown;
//! - [`run`]: a whole run as the command line asks for it;
//! - [`util`]: counts on the command line and in the report, the flows' shuffle.
#![forbid(unsafe_code)]

pub mod cases;
pub mod ctrl_bench;
pub mod driver;
pub mod e2e;
pub mod frames;
pub mod gaps;
pub mod machine;
pub mod report;
pub mod run;
pub mod stats;
pub mod util;

pub use frames::{build, client_of, net, proto_of, tuple, verify, Frame, OutDir, ACK, FRAME_LEN, SYN, TCP, UDP};
pub use run::{run, Huge, Options, RunError};
pub use util::{parse_count, Rng};

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

/// Counts every heap allocation, so bytes per session are measured, not computed. Installed by
/// this library for whatever links it (the bench binary and its tests).
#[global_allocator]
pub(crate) static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;
