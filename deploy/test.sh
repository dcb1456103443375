#!/usr/bin/env bash
# The one test command: deps, format and lint gates, hugepages, build, every test of the
# workspace (the network-namespace lab tests in tests/ included; they need root).
#
# Fails on: `cargo fmt --all --check`, `cargo clippy --workspace --all-targets -- -D warnings`,
# any failing test. A test that needs root / `ip netns` and cannot have it fails too; with
# RVS_SKIP_LAB=1 such tests are skipped instead, each printing `SKIPPED: <test>: <reason>`,
# and the summary at the end lists them (a run with skips has not proven the labs).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=deploy/install-deps.sh
source deploy/install-deps.sh

# rustfmt and clippy: part of a rustup default profile, but not of a minimal one.
rvs_lint_tools() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    ((${#missing[@]})) || return 0
    if ! command -v rustup >/dev/null 2>&1; then
        echo "test.sh: cargo lacks ${missing[*]} and there is no rustup to add them;" \
             "install the Rust toolchain's ${missing[*]} component(s)" >&2
        return 1
    fi
    echo "test.sh: adding rustup component(s) ${missing[*]}" >&2
    if ! rustup component add "${missing[@]}"; then
        echo "test.sh: 'rustup component add ${missing[*]}' failed (no network to" \
             "static.rust-lang.org?); the format and lint gates cannot run without them" >&2
        return 1
    fi
}
rvs_lint_tools

echo "test.sh: cargo fmt --all --check" >&2
cargo fmt --all --check || { echo "test.sh: FAILED: code not formatted; run 'cargo fmt --all'" >&2; exit 1; }
echo "test.sh: cargo clippy --workspace --all-targets -- -D warnings" >&2
cargo clippy --workspace --all-targets -- -D warnings \
    || { echo "test.sh: FAILED: clippy warnings (treated as errors)" >&2; exit 1; }

# Hugepages are optional (the labs run rvsd with --no-huge), so only warn.
if ! echo 512 >/proc/sys/vm/nr_hugepages 2>/dev/null; then
    echo "test.sh: warning: could not reserve hugepages (labs use --no-huge)" >&2
fi
if ! mountpoint -q /dev/hugepages 2>/dev/null; then
    mkdir -p /dev/hugepages 2>/dev/null || true
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null \
        || echo "test.sh: warning: could not mount hugetlbfs at /dev/hugepages" >&2
fi

if [[ -n ${RVS_SKIP_LAB:-} && ${RVS_SKIP_LAB} != 0 ]]; then
    echo "test.sh: RVS_SKIP_LAB=${RVS_SKIP_LAB}: tests that need root and network namespaces are skipped" >&2
fi

cargo build --workspace --bins

# The tests' output also goes to a log, to collect the SKIPPED lines for the summary.
log="$(mktemp -t rvs-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
rc=0
cargo test --workspace 2>&1 | tee "$log" || rc=$?
skipped="$(grep -o 'SKIPPED: .*' "$log" || true)"
if [[ -n $skipped ]]; then
    echo
    echo "test.sh: $(grep -c . <<<"$skipped") test(s) SKIPPED, not run (so not proven):"
    sed 's/^/  /' <<<"$skipped"
fi
# One closing line over every test binary: cargo's last "test result" is a doc-test's, often 0.
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
nskipped=0
[[ -z $skipped ]] || nskipped="$(grep -c . <<<"$skipped")"
echo "tests: $((passed - nskipped)) passed, ${failed} failed${skipped:+, ${nskipped} skipped}"
if ((rc)); then
    echo "test.sh: FAILED (cargo test exit status $rc)" >&2
else
    echo "test.sh: all tests passed${skipped:+, but some were skipped (see above)}"
fi
exit "$rc"
