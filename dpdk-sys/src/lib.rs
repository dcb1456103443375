//! placeholder until the dpdk-sys helper lands
