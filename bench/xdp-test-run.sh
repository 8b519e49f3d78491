#!/usr/bin/env bash
# Nanoseconds per packet of rvs's XDP program for each kind of packet, measured by the kernel
# through BPF_PROG_TEST_RUN (no network, one CPU). Run as root; installs clang and the
# libbpf headers when missing. Usage: bench/xdp-test-run.sh [RUNS] (default 100000: each row
# is the mean of RUNS single runs on a fresh copy of its packet).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v clang >/dev/null || need+=(clang)
[[ -e /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
cargo run --quiet --release -p rvs-bpf --example testrun_bench -- "${1:-100000}"
