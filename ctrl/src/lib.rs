//! rvs control plane: the rvsd ↔ rvsadm protocol (JSON lines over a Unix socket), its server
//! and client, the ipvsadm command-line syntax, and rvsadm's output formats.
#![forbid(unsafe_code)]

pub mod client;
pub mod display;
pub mod ipvsadm;
pub mod proto;
pub mod server;

pub use client::{request, Client, ClientError};
pub use ipvsadm::{Command, ParseError};
pub use proto::{
    ConnEntry, NeighEntry, PortAddrs, PortReport, RateRow, Request, Response, RouteEntry, RsStats, ServiceLaddrs,
    ServiceRates, ServiceStats, ServiceStatus,
};
pub use server::{Handler, Server, ServerHandle};

/// Control socket used when neither `--socket` nor `$RVSADM_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";
