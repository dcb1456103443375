//! The safe wrapper over DPDK used by rvsd. Everything here is re-exported at the crate root.
//!
//! Lifecycle: [`Eal::init`] once per process → [`Mempool::new`] → [`port_configure`] →
//! [`port_start`] → workers ([`register_thread`], [`rx_burst`], [`tx_burst`]) → [`port_stop`] /
//! [`port_close`] → drop pools, rings and mbufs → [`Eal::cleanup`].
//!
//! Thread safety: [`Mempool`] and [`Ring`] are `Send + Sync`; [`Mbuf`] is `Send` (ownership of a
//! packet moves between threads) but not `Sync`. A port queue should be polled by one thread at a
//! time (DPDK queues are not thread-safe); the wrapper serialises nothing on the hot path, but
//! it does make stop/close wait until no burst is in flight, so a racing stop cannot free a queue
//! under a worker.

mod cpu;
mod eal;
mod error;
mod flow;
mod mbuf;
mod port;
mod ring;

pub use cpu::{advise_hugepages, prefetch};
pub use eal::{lcore_id, register_thread, socket_id, tsc, tsc_hz, unregister_thread, Eal};
pub use error::{strerror, DpdkError};
pub use flow::{flow_validate, FlowL4, FlowRule, LportRule};
pub use mbuf::{Mbuf, Mempool, MBUF_DEFAULT_BUF_SIZE, PKTMBUF_HEADROOM};
pub use port::{
    port_close, port_configure, port_info, port_link, port_start, port_stats, port_stats_reset, port_stop, rx_burst,
    tx_burst, LinkStatus, PortConf, PortInfo, PortSetup, PortStats, MAX_BURST, MAX_QUEUES,
};
pub use ring::Ring;
