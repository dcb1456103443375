//! rvs packet logic, independent of DPDK: everything between "a frame arrived on port P" and
//! "send this frame on port Q". Unit-testable, fuzzable and benchable over [`buf::VecBuf`].
#![forbid(unsafe_code)]

pub mod buf;
pub mod clientaddr;
pub mod conn;
pub mod counters;
pub mod laddr;
pub mod nat;
pub mod neigh;
pub mod route;
pub mod sched;
pub mod snapshot;
pub mod tun;
pub mod wire;
pub mod worker;

pub use buf::{PacketBuf, VecBuf};
pub use counters::{Counters, DropReason, RsStats};
pub use snapshot::{Snapshot, SnapshotError};
