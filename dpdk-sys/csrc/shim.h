#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stddef.h>
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
/* RTE_ETH_RX_OFFLOAD_IPV4_CKSUM */
uint64_t rvs_eth_rx_offload_ipv4_cksum(void);

/* ---- rte_flow: FULLNAT reply steering (DPVS-style) ------------------------------------
 * One rule: ingress, ETH / IPV4 dst == dst_ip / (TCP or UDP) dst port & port_mask ==
 * port_value → QUEUE queue. Built in C because the rte_flow item structs embed packed
 * protocol headers that bindgen cannot lay out. Addresses and ports are in host order.
 * l4proto is IPPROTO_TCP (6) or IPPROTO_UDP (17). On failure the functions return a
 * negative errno and copy DPDK's explanation (if any) into msg (NUL-terminated, truncated
 * to msg_len). */
struct rte_flow;

int rvs_flow_lport_validate(uint16_t port, uint32_t dst_ip, uint8_t l4proto,
                            uint16_t port_mask, uint16_t port_value, uint16_t queue,
                            char *msg, size_t msg_len);

/* As validate, but installs the rule; *out receives the handle on success. */
int rvs_flow_lport_create(uint16_t port, uint32_t dst_ip, uint8_t l4proto,
                          uint16_t port_mask, uint16_t port_value, uint16_t queue,
                          struct rte_flow **out, char *msg, size_t msg_len);

/* rte_flow_destroy with the same error convention. */
int rvs_flow_destroy(uint16_t port, struct rte_flow *flow, char *msg, size_t msg_len);

#endif
