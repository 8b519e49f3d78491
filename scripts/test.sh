#!/usr/bin/env bash
# Every test of rvs: formatting, lints, unit/property/golden/simulation tests.
# Runs on a fresh Debian machine with a Rust toolchain; installs what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
need_pkgs=("${rvs_build_deps[@]}")
# the data-plane tests: a network namespace for the DR init script (ip), a descriptor limit (prlimit)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v prlimit >/dev/null || need_pkgs+=(util-linux)
# the XDP end-to-end tests: nftables counts what the client sends, sysctl sets up the hosts
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v sysctl >/dev/null || need_pkgs+=(procps)
# the XDP NAT end-to-end test turns checksum offload off, so every checksum crosses the wire
command -v ethtool >/dev/null || need_pkgs+=(ethtool)
rvs_install "${need_pkgs[@]}"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== cargo test"
# SIM_SEEDS: how many seeds the deterministic simulation sweeps (see crates/rvs-core/tests/simulation.rs)
SIM_SEEDS=${SIM_SEEDS:-1000} cargo test --workspace --locked --release
echo "== all tests passed"
