#!/usr/bin/env bash
# The one test command: deps, hugepages, build, every test of the workspace
# (the network-namespace lab tests in tests/ included; they need root).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=deploy/install-deps.sh
source deploy/install-deps.sh

# Hugepages are optional (the labs run rvsd with --no-huge), so only warn.
if ! echo 512 >/proc/sys/vm/nr_hugepages 2>/dev/null; then
    echo "test.sh: warning: could not reserve hugepages (labs use --no-huge)" >&2
fi
if ! mountpoint -q /dev/hugepages 2>/dev/null; then
    mkdir -p /dev/hugepages 2>/dev/null || true
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null \
        || echo "test.sh: warning: could not mount hugetlbfs at /dev/hugepages" >&2
fi

cargo build --workspace --bins
cargo test --workspace
