/* Small C shims around DPDK thread-local variables and macros. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_byteorder.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "shim.h"

int rvs_rte_errno(void) { return rte_errno; }

void rvs_rte_errno_set(int value) { rte_errno = value; }

uint64_t rvs_eth_rss_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }

uint64_t rvs_eth_rx_offload_rss_hash(void) { return RTE_ETH_RX_OFFLOAD_RSS_HASH; }
uint64_t rvs_eth_rx_offload_ipv4_cksum(void) { return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM; }

/* Copy an rte_flow_error (or strerror of ret) into msg. */
static int flow_fail(int ret, const struct rte_flow_error *err, char *msg, size_t msg_len)
{
    if (ret >= 0)
        ret = -EIO;
    if (msg != NULL && msg_len > 0) {
        if (err->message != NULL)
            snprintf(msg, msg_len, "%s (error type %d)", err->message, (int)err->type);
        else
            snprintf(msg, msg_len, "%s", rte_strerror(-ret));
    }
    return ret;
}

/* Pattern and actions of the lport rule, filled into caller storage. */
struct lport_rule {
    struct rte_flow_attr attr;
    struct rte_flow_item pattern[4];
    struct rte_flow_action actions[2];
    struct rte_flow_item_ipv4 ip_spec, ip_mask;
    struct rte_flow_item_tcp tcp_spec, tcp_mask;
    struct rte_flow_item_udp udp_spec, udp_mask;
    struct rte_flow_action_queue queue;
};

static int lport_rule_fill(struct lport_rule *r, uint32_t dst_ip, uint8_t l4proto,
                           uint16_t port_mask, uint16_t port_value, uint16_t queue)
{
    if (l4proto != IPPROTO_TCP && l4proto != IPPROTO_UDP)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->attr.ingress = 1;
    r->ip_spec.hdr.dst_addr = rte_cpu_to_be_32(dst_ip);
    r->ip_mask.hdr.dst_addr = RTE_BE32(0xffffffff);
    r->pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
    r->pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
    r->pattern[1].spec = &r->ip_spec;
    r->pattern[1].mask = &r->ip_mask;
    if (l4proto == IPPROTO_TCP) {
        r->tcp_spec.hdr.dst_port = rte_cpu_to_be_16(port_value & port_mask);
        r->tcp_mask.hdr.dst_port = rte_cpu_to_be_16(port_mask);
        r->pattern[2].type = RTE_FLOW_ITEM_TYPE_TCP;
        r->pattern[2].spec = &r->tcp_spec;
        r->pattern[2].mask = &r->tcp_mask;
    } else {
        r->udp_spec.hdr.dst_port = rte_cpu_to_be_16(port_value & port_mask);
        r->udp_mask.hdr.dst_port = rte_cpu_to_be_16(port_mask);
        r->pattern[2].type = RTE_FLOW_ITEM_TYPE_UDP;
        r->pattern[2].spec = &r->udp_spec;
        r->pattern[2].mask = &r->udp_mask;
    }
    r->pattern[3].type = RTE_FLOW_ITEM_TYPE_END;
    r->queue.index = queue;
    r->actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
    r->actions[0].conf = &r->queue;
    r->actions[1].type = RTE_FLOW_ACTION_TYPE_END;
    return 0;
}

int rvs_flow_lport_validate(uint16_t port, uint32_t dst_ip, uint8_t l4proto,
                            uint16_t port_mask, uint16_t port_value, uint16_t queue,
                            char *msg, size_t msg_len)
{
    struct lport_rule r;
    struct rte_flow_error err;
    memset(&err, 0, sizeof(err));
    int ret = lport_rule_fill(&r, dst_ip, l4proto, port_mask, port_value, queue);
    if (ret < 0)
        return flow_fail(ret, &err, msg, msg_len);
    ret = rte_flow_validate(port, &r.attr, r.pattern, r.actions, &err);
    if (ret < 0)
        return flow_fail(ret, &err, msg, msg_len);
    return 0;
}

int rvs_flow_lport_create(uint16_t port, uint32_t dst_ip, uint8_t l4proto,
                          uint16_t port_mask, uint16_t port_value, uint16_t queue,
                          struct rte_flow **out, char *msg, size_t msg_len)
{
    struct lport_rule r;
    struct rte_flow_error err;
    memset(&err, 0, sizeof(err));
    *out = NULL;
    int ret = lport_rule_fill(&r, dst_ip, l4proto, port_mask, port_value, queue);
    if (ret < 0)
        return flow_fail(ret, &err, msg, msg_len);
    struct rte_flow *f = rte_flow_create(port, &r.attr, r.pattern, r.actions, &err);
    if (f == NULL)
        return flow_fail(-rte_errno, &err, msg, msg_len);
    *out = f;
    return 0;
}

int rvs_flow_destroy(uint16_t port, struct rte_flow *flow, char *msg, size_t msg_len)
{
    struct rte_flow_error err;
    memset(&err, 0, sizeof(err));
    int ret = rte_flow_destroy(port, flow, &err);
    if (ret < 0)
        return flow_fail(ret, &err, msg, msg_len);
    return 0;
}
