//! Session idle timeouts per state, in seconds, with IPVS's defaults written once. The config
//! file's `[sessions]`, rvsadm's `--set`/`-L --timeout` and the dataplane's per-state
//! nanosecond table (`rvs_dataplane::conn::Timeouts`, built from this) all start from here.

/// Idle timeout of each session state, seconds. [`Default`] is [`SessionTimeouts::IPVS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    pub tcp_syn_sent_s: u32,
    pub tcp_syn_recv_s: u32,
    pub tcp_established_s: u32,
    pub tcp_fin_wait_s: u32,
    pub tcp_time_wait_s: u32,
    pub tcp_close_s: u32,
    pub tcp_close_wait_s: u32,
    pub tcp_last_ack_s: u32,
    pub tcp_listen_s: u32,
    pub tcp_synack_s: u32,
    pub udp_s: u32,
}

impl SessionTimeouts {
    /// IPVS's defaults (`tcp_timeouts[]` of ip_vs_proto_tcp.c; UDP 300 s).
    pub const IPVS: SessionTimeouts = SessionTimeouts {
        tcp_syn_sent_s: 120,
        tcp_syn_recv_s: 60,
        tcp_established_s: 900,
        tcp_fin_wait_s: 120,
        tcp_time_wait_s: 120,
        tcp_close_s: 10,
        tcp_close_wait_s: 60,
        tcp_last_ack_s: 30,
        tcp_listen_s: 120,
        tcp_synack_s: 120,
        udp_s: 300,
    };

    /// Longest timeout `--set` accepts, seconds (one year).
    pub const MAX_S: u32 = 31_536_000;
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        SessionTimeouts::IPVS
    }
}
