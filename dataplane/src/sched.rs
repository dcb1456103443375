//! Schedulers: which real server gets a new flow. State is per worker and per service.
//! OWNER: tables helper. API is fixed (other modules code against it); bodies to be written.

use rvs_config::model::{RealServer, SchedKind};
use std::net::Ipv4Addr;

/// What a scheduler may look at for one new flow.
#[derive(Debug, Clone, Copy)]
pub struct PickCtx<'a> {
    pub client: Ipv4Addr,
    pub client_port: u16,
    /// Per real server (indexed like `reals`): (active, inactive) connections on this worker.
    /// Empty when the caller does not track them (rr and wrr do not need them).
    pub conns: &'a [(u32, u32)],
}

/// Scheduler state of one service on one worker.
#[derive(Debug, Clone)]
pub struct SchedState {}

impl SchedState {
    /// Errors name the scheduler when this build does not implement it.
    pub fn new(_kind: SchedKind, _reals: &[RealServer]) -> Result<Self, String> {
        todo!()
    }
    pub fn kind(&self) -> SchedKind {
        todo!()
    }
    /// The real server list changed (added, removed, reweighted): keep the rotation position
    /// where it makes sense, recompute weights.
    pub fn update(&mut self, _reals: &[RealServer]) {
        todo!()
    }
    /// Index into `reals` of the server for a new flow; `None` when no server can take one
    /// (all weight 0, or over their upper threshold). Weight 0 servers are never picked.
    pub fn pick(&mut self, _reals: &[RealServer], _ctx: &PickCtx<'_>) -> Option<usize> {
        todo!()
    }
}
