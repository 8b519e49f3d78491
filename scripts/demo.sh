#!/usr/bin/env bash
# The demo on a fresh machine: installs the build dependencies if missing (scripts/deps.sh),
# then runs `rvsd --demo` (three HTTP real servers on loopback behind 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
rvs_install "${rvs_build_deps[@]}"
exec cargo run --release --bin rvsd -- --demo "$@"
