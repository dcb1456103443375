#!/usr/bin/env bash
# Prepare a bare-metal host for rvsd: hugepages (reserved and mounted), the vfio-pci module,
# and the NICs rvsd takes over bound to vfio-pci. mlx5 (ConnectX) ports are bifurcated: they
# stay on mlx5_core and need no binding, only hugepages (and rdma-core).
#
#   deploy/host-setup.sh [--dry-run] [--hugepages SIZE] [--driver vfio-pci|uio_pci_generic]
#                        [--bind PCI]... [--hugepages-only]
#
#   --dry-run        print every command instead of running it
#   --hugepages 2G   total hugepage memory to reserve (default 2G), as dpdk-hugepages.py --setup
#   --bind PCI       bind this device (0000:03:00.0) to the driver; repeatable. The device that
#                    carries the default route is refused: you would cut yourself off.
#   --driver D       vfio-pci (default; needs the IOMMU: intel_iommu=on iommu=pt) or
#                    uio_pci_generic (no IOMMU, no isolation)
#
# Needs root (unless --dry-run). Idempotent: reserving or binding twice changes nothing.
set -euo pipefail

DRY=0
SIZE=2G
DRIVER=vfio-pci
BIND=()
BINDLIST=()
HUGE_ONLY=0

die() { echo "host-setup: $*" >&2; exit 1; }
run() {
    if [ "$DRY" = 1 ]; then
        echo "+ $*"
    else
        echo "+ $*" >&2
        "$@"
    fi
}
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --hugepages) SIZE="${2:?--hugepages needs a size}"; shift ;;
        --hugepages=*) SIZE="${1#*=}" ;;
        --driver) DRIVER="${2:?--driver needs a name}"; shift ;;
        --driver=*) DRIVER="${1#*=}" ;;
        --bind) BIND+=("${2:?--bind needs a PCI address}"); shift ;;
        --bind=*) BIND+=("${1#*=}") ;;
        --hugepages-only) HUGE_ONLY=1 ;;
        -h|--help) usage 0 ;;
        *) echo "host-setup: unknown argument '$1'" >&2; usage 2 ;;
    esac
    shift
done

[ "$DRY" = 1 ] || [ "$(id -u)" = 0 ] || die "run as root (or with --dry-run)"
case "$DRIVER" in vfio-pci|uio_pci_generic) ;; *) die "--driver must be vfio-pci or uio_pci_generic" ;; esac
[[ "$SIZE" =~ ^[0-9]+[KMG]$ ]] || die "--hugepages '$SIZE': expected e.g. 2G or 1024M"

# --- check the devices first: nothing changes if one is refused -----------------------------
pci_re='^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$'
# PCI address of the device that carries the default route (IPv4 or IPv6).
route_pci() {
    local dev
    for dev in $(ip -4 route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev") print $(i+1)}') \
               $(ip -6 route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev") print $(i+1)}'); do
        if [ -e "/sys/class/net/$dev/device" ]; then
            # Walk up to the PCI function (virtio-net: .../0000:00:03.0/virtio2).
            local d
            d=$(readlink -f "/sys/class/net/$dev/device")
            while [ "$d" != / ] && ! [[ "$(basename "$d")" =~ $pci_re ]]; do d=$(dirname "$d"); done
            [ "$d" = / ] || basename "$d"
        fi
    done
}
protected=$(route_pci | sort -u)
for pci in "${BIND[@]}"; do
    [[ "$pci" =~ $pci_re ]] || die "--bind '$pci' is not a PCI address (0000:03:00.0)"
    [[ "$pci" == *:*:* ]] || pci="0000:$pci"
    for p in $protected; do
        [ "$p" != "$pci" ] || die "refusing to bind $pci: it carries the default route (management access would be lost)"
    done
    if [ -e "/sys/bus/pci/devices/$pci/driver" ]; then
        cur=$(basename "$(readlink -f "/sys/bus/pci/devices/$pci/driver")")
        if [ "$cur" = mlx5_core ]; then
            echo "host-setup: $pci is mlx5 (bifurcated): leave it on mlx5_core, use device = \"$pci\" in the config" >&2
            continue
        fi
    elif [ "$DRY" = 0 ] && [ ! -e "/sys/bus/pci/devices/$pci" ]; then
        die "no PCI device $pci (lspci -D | grep -i ethernet)"
    fi
    BINDLIST+=("$pci")
done


# --- hugepages -----------------------------------------------------------------------------
to_kb() {
    local n="${1%?}" u="${1: -1}"
    case "$u" in K) echo "$n" ;; M) echo $((n * 1024)) ;; G) echo $((n * 1024 * 1024)) ;; esac
}
if command -v dpdk-hugepages.py >/dev/null 2>&1; then
    run dpdk-hugepages.py --setup "$SIZE"
else
    # sysfs fallback: 2 MB pages, spread over NUMA nodes by the kernel.
    kb=$(to_kb "$SIZE")
    pages=$((kb / 2048))
    [ "$pages" -gt 0 ] || die "--hugepages $SIZE is less than one 2 MB page"
    run sh -c "echo $pages > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
    if ! mountpoint -q /dev/hugepages 2>/dev/null; then
        run mkdir -p /dev/hugepages
        run mount -t hugetlbfs nodev /dev/hugepages
    fi
fi
if [ "$DRY" = 0 ]; then
    grep -E 'HugePages_(Total|Free)|Hugepagesize' /proc/meminfo >&2
fi
[ "$HUGE_ONLY" = 1 ] && exit 0
[ "${#BINDLIST[@]}" -gt 0 ] || { echo "host-setup: nothing to bind; hugepages only" >&2; exit 0; }

# --- NIC binding ---------------------------------------------------------------------------

run modprobe "$DRIVER"
if command -v dpdk-devbind.py >/dev/null 2>&1; then
    run dpdk-devbind.py --bind="$DRIVER" "${BINDLIST[@]}"
    [ "$DRY" = 1 ] || dpdk-devbind.py --status-dev net >&2
else
    # sysfs fallback: driver_override, unbind, probe.
    for pci in "${BINDLIST[@]}"; do
        run sh -c "echo $DRIVER > /sys/bus/pci/devices/$pci/driver_override"
        if [ -e "/sys/bus/pci/devices/$pci/driver" ] || [ "$DRY" = 1 ]; then
            run sh -c "echo $pci > /sys/bus/pci/devices/$pci/driver/unbind"
        fi
        run sh -c "echo $pci > /sys/bus/pci/drivers_probe"
    done
fi
