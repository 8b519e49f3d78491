#!/usr/bin/env bash
# Installs what building rvs needs beyond a Rust toolchain: a C compiler for the linker,
# clang and the libbpf / kernel UAPI headers the BPF programs are compiled with (rvs-bpf's
# build.rs). Sourced by scripts/test.sh and scripts/demo.sh; installs only what is missing.
rvs_build_deps=()
command -v cc >/dev/null || rvs_build_deps+=(gcc)
command -v clang >/dev/null || rvs_build_deps+=(clang)
[[ -e /usr/include/bpf/bpf_helpers.h ]] || rvs_build_deps+=(libbpf-dev)
[[ -e /usr/include/linux/bpf.h ]] || rvs_build_deps+=(linux-libc-dev)
rvs_install() {
  (($#)) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "rvs: needs the Debian packages: $* (run as root, or install them first)" >&2
    return 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
