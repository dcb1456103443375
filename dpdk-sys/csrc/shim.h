#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stdint.h>

/* rte_errno is a thread-local (per-lcore) variable: Rust reads it only through
 * these functions, never as a bindgen static. */
int rvs_rte_errno(void);
void rvs_rte_errno_set(int value);

/* RTE_BIT64()-based macros that bindgen cannot evaluate. */
/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP */
uint64_t rvs_eth_rss_ip_tcp_udp(void);
/* RTE_ETH_RX_OFFLOAD_RSS_HASH */
uint64_t rvs_eth_rx_offload_rss_hash(void);

#endif
