/* Small C shims around DPDK thread-local variables and macros. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>

#include "shim.h"

int rvs_rte_errno(void) { return rte_errno; }

void rvs_rte_errno_set(int value) { rte_errno = value; }

uint64_t rvs_eth_rss_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }

uint64_t rvs_eth_rx_offload_rss_hash(void) { return RTE_ETH_RX_OFFLOAD_RSS_HASH; }
