#!/usr/bin/env bash
# Installs what building rvs and running its lab need (Debian 12, root), and
# makes sure cargo is on PATH. Safe to run repeatedly; may be sourced.
set -euo pipefail

# nginx and wrk: the lab's real servers (own instances per namespace, deploy/nginx/) and load
# runs; the distribution's nginx service itself is not used by the lab.
RVS_APT_PKGS=(libdpdk-dev dpdk clang libclang-dev pkg-config iproute2 ethtool curl
              iputils-ping python3-scapy tcpdump nginx wrk)

rvs_install_deps() {
    local missing=() p
    for p in "${RVS_APT_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "install-deps: missing packages ${missing[*]}; run as root" >&2
            return 1
        fi
        echo "install-deps: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # promtool (checks the metrics endpoint's text) comes with Debian's prometheus package; its
    # recommends (node exporter, ...) are not wanted on a gateway or a CI machine.
    if ! command -v promtool >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "install-deps: installing prometheus (for promtool)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        local home
        for home in "$HOME" /root ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"}; do
            if [[ -x "$home/.cargo/bin/cargo" ]]; then
                export PATH="$home/.cargo/bin:$PATH"
                break
            fi
        done
    fi
    command -v cargo >/dev/null 2>&1 || {
        echo "install-deps: cargo not found; install the Rust toolchain (rustup, stable) first" >&2
        return 1
    }
    pkg-config --exists libdpdk || { echo "install-deps: pkg-config cannot find libdpdk" >&2; return 1; }
}

rvs_install_deps
