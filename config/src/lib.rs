//! rvs configuration: the TOML file rvsd reads, and the service model shared with rvsadm.
#![forbid(unsafe_code)]

pub mod model;
