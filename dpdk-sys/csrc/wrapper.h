/* Headers bound by dpdk-sys. rte_config.h is force-included via pkg-config cflags. */
#ifndef RVS_DPDK_WRAPPER_H
#define RVS_DPDK_WRAPPER_H

#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

#include "shim.h"

#endif
