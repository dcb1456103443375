//! rvs configuration: the TOML file rvsd reads, and the service model shared with rvsadm.
#![forbid(unsafe_code)]

pub mod file;
/// The service model lives in its own crate (`rvs-model`), so the dataplane has it without serde/toml.
pub use rvs_model as model;
pub mod services;

pub use file::{Config, ConfigError};
pub use services::{ModelError, ServiceTable};
