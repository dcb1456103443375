//! rvs configuration: the TOML file rvsd reads, and the service model shared with rvsadm.
#![forbid(unsafe_code)]

pub mod file;
pub mod model;
pub mod services;

pub use file::{Config, ConfigError};
pub use services::{ModelError, ServiceTable};
