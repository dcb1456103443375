//! rvs packet logic, independent of DPDK: everything between "a frame arrived on port P" and
//! "send this frame on port Q". Unit-testable, fuzzable and benchable over [`buf::VecBuf`].
#![forbid(unsafe_code)]

pub mod buf;
pub mod clientaddr;
pub mod conn;
pub mod counters;
pub mod ipip;
pub mod laddr;
pub mod mode;
pub mod neigh;
pub mod rewrite;
pub mod route;
pub mod sched;
pub mod segment;
pub mod snapshot;
pub mod wire;
pub mod worker;

pub use buf::{PacketBuf, VecBuf};
pub use counters::{Counters, DropReason, RsStats};
pub use snapshot::{Snapshot, SnapshotError};
